"""Quarantined events are listed with their reasons and can be re-processed once config accepts them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import in_process_node

BATCHED = {"content-type": "application/cloudevents-batch+json"}


def pos_sale(event_id: str, receipt: str | int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "pos/042",
        "type": "com.acme.pos.sale",
        "dataschema": "com.acme.pos.sale/v1",
        "data": {"receipt_no": receipt},
    }


def sale_contract(receipt_type: str | list[str]) -> dict[str, object]:
    return {
        "type": "com.acme.pos.sale",
        "version": 1,
        "schema": {
            "type": "object",
            "required": ["receipt_no"],
            "properties": {"receipt_no": {"type": receipt_type}},
        },
    }


def test_listed_with_reasons_then_reprocessed_after_the_contract_is_fixed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    events = [pos_sale("s-1", 1001), pos_sale("s-2", 1002)]
    # The contract says receipt numbers are text; these tills send numbers: both refused.
    with in_process_node(data_dir, {"events": {"contracts": [sale_contract("string")]}}) as live:
        answer = httpx.post(f"{live.url}/v1/events", content=json.dumps(events), headers=BATCHED)
        assert answer.status_code == 400
        live.flush()
        listing = httpx.get(f"{live.url}/api/v1/quarantine", params={"signal": "events"}).json()
        assert listing["total"] == 2
        assert {item["field"] for item in listing["items"]} == {"data.receipt_no"}
        assert {item["value"] for item in listing["items"]} == {"1001", "1002"}
        assert httpx.get(f"{live.url}/api/v1/quarantine", params={"signal": "nope"}).status_code == 400

    fixed = sale_contract(["string", "integer"])
    with in_process_node(data_dir, {"events": {"contracts": [fixed]}}) as live:
        result = httpx.post(f"{live.url}/api/v1/quarantine/reprocess").json()
        assert result == {"examined": 2, "accepted": 2, "still_invalid": 0}
        live.flush()
        assert live.query("SELECT id FROM events WHERE source = 'pos/042' ORDER BY id") == [
            ("s-1",),
            ("s-2",),
        ]
        assert httpx.get(f"{live.url}/api/v1/quarantine").json()["total"] == 0
        again = httpx.post(f"{live.url}/api/v1/quarantine/reprocess").json()
        assert again["examined"] == 0
