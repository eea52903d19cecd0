"""Fixtures of the dashboard tests: a real node filled with the estate (``estate.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dashboard.alerts_stub import AlertsApi
from tests.dashboard.estate import filled_node
from tests.support import NodeProcess


@pytest.fixture(scope="module")
def estate_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node (requiring tokens) filled with the estate, shared by one test module."""
    node = filled_node(tmp_path_factory.mktemp("dashboard") / "data")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def alerts_api(estate_node: NodeProcess) -> Iterator[AlertsApi]:
    """The alerts contract in front of the estate node (which does not serve alerts yet)."""
    stub = AlertsApi(estate_node.url).start()
    yield stub
    stub.stop()
