"""The engine inside the node: configured rules are evaluated in the background on the real clock,
the alerts API shows the live instance, and the node stops cleanly with the engine running."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.alerts.harness import Hook, Scenario
from tests.support import in_process_node, wait_until


def test_a_configured_node_notifies_in_the_background(tmp_path: Path) -> None:
    with Hook() as hook:
        alerts = {
            "evaluation_interval": "200ms",
            "group_wait": "0s",
            "rules": [{"name": "stalled", "kind": "stalled_orders"}],
            "routes": [{"notify": [hook.url("/ops")]}],
        }
        with in_process_node(tmp_path / "data", {"alerts": alerts}) as live:
            scenario = Scenario(live, hook)
            scenario.base = float(int(time.time()))  # the node's engine runs on the real clock
            scenario.send(*scenario.paid("W-NODE", "042", -15))
            wait_until(lambda: bool(hook.received("/ops")), 30, "the node's engine to notify")
            (item,) = httpx.get(f"{live.url}/api/v1/alerts", params={"state": "firing"}).json()["items"]
            assert item["context"]["orders"] == ["W-NODE"]
            engine = live.node.alerts
            assert engine is not None and engine.counts["evaluations"] >= 1
        assert live.node.alerts is None  # stopped with the node
        (post,) = hook.received("/ops")
        assert "1 BOPIS order at store 042 paid but not reserved" in post.title
