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
