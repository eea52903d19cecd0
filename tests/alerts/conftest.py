from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerts.harness import Hook, Scenario, truncate_all
from tests.support import InProcessNode, in_process_node


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    """One real node per test module (its own data directory); each test empties the store first.

    Two SLA rules instead of the seven defaults: the scenarios stall orders between paid and
    reserved, and a shorter rule list keeps each evaluation's query quick to plan.
    """
    sla = [
        {"from": "accepted", "to": "paid", "within": "15m"},
        {"from": "paid", "to": "reserved", "within": "10m"},
    ]
    with in_process_node(tmp_path_factory.mktemp("alerts") / "data", {"sla": sla}) as running:
        yield running


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    with Hook() as running:
        yield running


@pytest.fixture
def scenario(live: InProcessNode, hook: Hook) -> Scenario:
    truncate_all(live)
    hook.clear()
    return Scenario(live, hook)
