"""``milepost demo --no-browser --quick``: node, simulated estate and dashboard come up; Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import MILEPOST, REPO, free_port, wait_until

pytestmark = pytest.mark.slow


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def total(url: str) -> int:
    """The ``total`` of a list answer; 0 while the node cannot answer yet."""
    try:
        return int(httpx.get(url, params={"limit": 1}, timeout=10).json()["total"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


def test_the_demo_serves_the_api_and_the_dashboard_with_data_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, dashboard_port = free_port(), free_port()
    base = tmp_path / "demo"
    args = ["demo", "--no-browser", "--quick", "--seed", "5", "--data-dir", str(base)]
    args += ["--port", str(port), "--dashboard-port", str(dashboard_port)]
    log = (tmp_path / "demo.out").open("w")
    process = subprocess.Popen([*MILEPOST, *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    api, dashboard = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}"

    def history_done() -> bool:
        return "history done" in (tmp_path / "demo.out").read_text() or process.poll() is not None

    try:
        wait_until(history_done, 150, "the demo's history", 0.5)
        assert process.poll() is None, (tmp_path / "demo.out").read_text()
        output = (tmp_path / "demo.out").read_text()
        assert f"dashboard  {dashboard}" in output and f"API        {api}" in output
        assert answers(f"{dashboard}/_stcore/health"), output
        # Acknowledged is durable, not yet correlated: the node may still be writing its backlog.
        wait_until(lambda: total(f"{api}/api/v1/orders") > 100, 60, "the history's orders", 0.5)
        wait_until(lambda: total(f"{api}/api/v1/promotions") > 0, 60, "the history's promotions", 0.5)
        assert (base / "milepost.yaml").exists() and (base / "node.log").exists()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(90)
        log.close()
    output = (tmp_path / "demo.out").read_text()
    assert code == 0, output
    assert "node stopped (exit 0)" in output and "dashboard stopped" in output, output
    assert not answers(f"{api}/healthz") and not answers(f"{dashboard}/_stcore/health")
