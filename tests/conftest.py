from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A real ``milepost serve`` (with OTLP/gRPC) shared by one test module; tests use unique ids."""
    data_dir: Path = tmp_path_factory.mktemp("node") / "data"
    running = NodeProcess(data_dir, grpc=True).start()
    yield running
    running.stop()
