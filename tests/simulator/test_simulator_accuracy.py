"""The simulator's ground truth against a real node: every injected fault is reported, nothing else is.

``milepost simulate`` runs as a user runs it (a seeded, small, fast scenario: 4.8 hours of history
then 30 seconds live, flows 300x faster than life) against ``milepost serve`` with short SLAs.
Once the SLAs have expired, the node's API must report exactly the ground truth: stalled orders
(with their after/expected), late and missing promotion targets, failed postings, state
mismatches and drifted SKU/location pairs — recall and precision both 100%.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from tests.support import MILEPOST, REPO, NodeProcess

SPEED = 300
SLA_S = 10
PAIRS = [
    ("accepted", "paid"),
    ("paid", "reserved"),
    ("reserved", "ready"),
    ("ready", "fulfilled"),
    ("returned", "refunded"),
    ("fulfilled", "reconciled"),
    ("refunded", "reconciled"),
]
CONFIG = {
    "sla": [{"from": a, "to": b, "within": f"{SLA_S}s"} for a, b in PAIRS],
    # The simulator's nominal lag threshold is 10 minutes divided by its speed.
    "promotions": {"lag_threshold": f"{600 / SPEED:g}s"},
}
MISMATCH_KINDS = {"missing_prerequisite", "fulfilled_after_cancel"}
T = TypeVar("T")

pytestmark = pytest.mark.slow


def settle(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """``read()`` until ``done`` holds or ``timeout`` passes; the last value either way (bounded polling)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = read()
    return value


def pages(client: httpx.Client, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"status": status, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        answer = client.get("/api/v1/orders", params=params)
        assert answer.status_code == 200, answer.text
        document = answer.json()
        items += document["items"]
        cursor = document["next_cursor"]
        if not cursor:
            assert len(items) == document["total"]
            return items


def wal_bytes(client: httpx.Client) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith("milepost_wal_bytes "))
    return float(line.split()[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, dict[str, Any], str]]:
    base = tmp_path_factory.mktemp("accuracy")
    node = NodeProcess(base / "data", CONFIG).start()
    truth_path = base / "ground-truth.json"
    args = [
        "simulate", "--target", node.url, "--seed", "11", "--stores", "4", "--skus", "10",
        "--orders-per-minute", "60", "--duration", "30", "--backfill-days", "0.2",
        "--backfill-orders-per-minute", "2", "--speed", str(SPEED), "--ground-truth", str(truth_path),
    ]  # fmt: skip
    result = subprocess.run([*MILEPOST, *args], capture_output=True, text=True, cwd=REPO, timeout=240)
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        yield node, json.loads(truth_path.read_text()), result.stderr
    finally:
        node.stop()


def test_the_run_injects_every_kind_of_fault(run: tuple[NodeProcess, dict[str, Any], str]) -> None:
    _, truth, output = run
    assert truth["complete"] is True
    causes = {entry["cause"] for entry in truth["stalled_orders"]}
    assert causes == {"payment-outage", "wms-slowness", "posting-failures"}, truth["stalled_orders"]
    assert {entry["status"] for entry in truth["promotion_targets"]} == {"late", "missing"}
    assert truth["failed_postings"] and truth["drifted_skus"]
    assert "fulfilled_after_cancel" in {entry["anomaly"] for entry in truth["mismatched_orders"]}
    assert "ground truth written to" in output and "0 rejected" in output


def test_the_node_reports_exactly_the_ground_truth(run: tuple[NodeProcess, dict[str, Any], str]) -> None:
    node, truth, _ = run
    with httpx.Client(base_url=node.url, timeout=30) as client:
        check_against(client, truth)


def check_against(client: httpx.Client, truth: dict[str, Any]) -> None:
    expected_stalls = {s["order_id"]: (s["after"], s["expected"]) for s in truth["stalled_orders"]}

    def stalls() -> dict[str, tuple[str, str]]:
        if wal_bytes(client) > 0:
            return {}
        return {
            i["order_id"]: (i["stalled"]["after"], i["stalled"]["expected"]) for i in pages(client, "stalled")
        }

    # The last stuck orders' SLAs run out SLA_S after the run ends; the node writes its backlog first.
    found = settle(stalls, lambda found: found == expected_stalls, timeout=SLA_S + 60)
    assert found == expected_stalls, {
        "missed": {k: v for k, v in expected_stalls.items() if found.get(k) != v},
        "extra": {k: v for k, v in found.items() if k not in expected_stalls},
    }

    orders = pages(client, "all")
    with ThreadPoolExecutor(8) as pool:
        details = list(pool.map(lambda o: client.get(f"/api/v1/orders/{o['order_id']}").json(), orders))
    kinds = {d["order_id"]: {a["kind"] for a in d["anomalies"]} for d in details}
    failed = {order for order, found_kinds in kinds.items() if "posting_failed" in found_kinds}
    assert failed == set(truth["failed_postings"])
    mismatched = {order for order, found_kinds in kinds.items() if found_kinds & MISMATCH_KINDS}
    assert mismatched == {m["order_id"] for m in truth["mismatched_orders"]}
    assert not any("identity" in found_kinds for found_kinds in kinds.values())
    # Every order not left stuck is at rest.
    states = {d["order_id"]: d["state"] for d in details if d["order_id"] not in expected_stalls}
    assert set(states.values()) <= {"reconciled", "cancelled"}, {
        k: v for k, v in states.items() if v not in ("reconciled", "cancelled")
    }

    stragglers = set()
    for promotion in client.get("/api/v1/promotions").json()["items"]:
        document = client.get(f"/api/v1/promotions/{promotion['promo_id']}").json()
        stragglers |= {
            (promotion["promo_id"], t["target"], t["status"])
            for t in document["targets"]
            if t["status"] != "on_time"
        }
    assert stragglers == {(p["promo_id"], p["target"], p["status"]) for p in truth["promotion_targets"]}

    drifted = set()
    for sku in truth["estate"]["skus"]:
        for stock in client.get(f"/api/v1/skus/{sku}").json()["stock"]:
            if stock["spread"]:
                drifted.add((sku, stock["location_id"]))
    assert drifted == {(d["sku"], d["location_id"]) for d in truth["drifted_skus"]}
