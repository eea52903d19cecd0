"""A value many orders share by mistake (a payment reference "N/A") never merges them, and the
conflict is reported briefly on each order rather than naming every other one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import in_process_node

ORDERS = 120


def test_a_junk_reference_shared_by_many_orders_stays_a_reported_conflict(tmp_path: Path) -> None:
    events = []
    for number in range(ORDERS):
        order_id = f"W-{number:04d}"
        events.append(
            {
                "specversion": "1.0",
                "id": f"acc-{number}",
                "source": "web",
                "type": "retail.order.accepted",
                "time": "2026-11-27T09:00:00Z",
                "data": {"order_id": order_id, "channel": "web"},
            }
        )
        events.append(
            {
                "specversion": "1.0",
                "id": f"pay-{number}",
                "source": "psp",
                "type": "retail.payment.confirmed",
                "time": "2026-11-27T09:01:00Z",
                "data": {"order_id": order_id, "payment_ref": "N/A"},
            }
        )
    with in_process_node(tmp_path / "data") as live:
        answer = httpx.post(
            f"{live.url}/v1/events",
            content=json.dumps(events),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert answer.json()["accepted"] == 2 * ORDERS
        live.flush()
        for number in (0, 57, ORDERS - 1):
            order = httpx.get(f"{live.url}/api/v1/orders/W-{number:04d}").json()
            assert order["order_id"] == f"W-{number:04d}"
            assert [m["milestone"] for m in order["milestones"]] == ["accepted", "paid"]
            [conflict] = [a["detail"] for a in order["anomalies"] if a["kind"] == "identity"]
            assert conflict.startswith("conflicting alias N/A also links W-")
            assert conflict.endswith(f"and {ORDERS - 1 - 5} more")
        assert httpx.get(f"{live.url}/api/v1/orders/N%2FA").status_code == 404


def _event(source: str, number: int, event_type: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"{event_type}-{number}",
        "source": source,
        "type": event_type,
        "time": "2026-11-27T09:00:00Z",
        "data": data,
    }


def test_a_batch_touching_thousands_of_small_groups_resolves_each_whole(tmp_path: Path) -> None:
    """Under load one writer batch touches far more keys than one group may hold (5,000):
    every group is still read whole, and none is reported as partly read."""
    orders = 2500  # 7,500 keys in one batch
    events = []
    for number in range(orders):
        order_id, pickup, receipt = f"W-{number:05d}", f"PU-{number:05d}", f"R-042-{number:05d}"
        events.append(_event("web", number, "retail.order.accepted", {"order_id": order_id}))
        events.append(
            _event(
                "oms",
                number,
                "retail.order.alias",
                {"order_id": order_id, "kind": "pickup_code", "value": pickup},
            )
        )
        events.append(
            _event(
                "pos",
                number,
                "retail.order.alias",
                {"order_id": pickup, "kind": "pos_receipt", "value": receipt},
            )
        )
    config = {"writer": {"flush_interval": "5s", "batch_rows": 100_000}}
    with in_process_node(tmp_path / "data", config) as live:
        for start in range(0, len(events), 2500):
            answer = httpx.post(
                f"{live.url}/v1/events",
                content=json.dumps(events[start : start + 2500]),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert answer.json()["accepted"] == 2500
        live.flush()
        client = live.node.query_client
        owners = dict(
            client.query("SELECT key, argMax(canonical, version) FROM key_owner GROUP BY key").result_rows
        )
        flagged = client.query(
            "SELECT count() FROM order_summary FINAL WHERE notEmpty(identity_issues)"
        ).result_rows[0][0]
    assert flagged == 0
    assert len(owners) == 3 * orders
    assert all(owners[f"R-042-{n:05d}"] == owners[f"PU-{n:05d}"] == f"W-{n:05d}" for n in range(orders))
