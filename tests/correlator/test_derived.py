"""The decode workers derive the same rows the writer would: mapping moved, results unchanged.

Two nodes take the same simulated traffic (spans and events of orders, stock and promotions,
faults included); one stores the rows its decode workers derived, the other is made to map
every batch in its writer. Every correlator table must end up the same, and resolving every
key again from scratch must change no order's identity.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from collector.sink import RowSink
from correlator import derived
from correlator.model import AliasLink, Mapped, PromotionEntry, SkuEntry, TimelineEntry
from correlator.sink import CorrelatingSink
from simulator.outbox import MemoryOutbox, encode_events
from simulator.runner import run
from simulator.scenario import Scenario
from tests.support import DerivedRecorder, in_process_node

START_US = 1_795_000_000_000_000

# Every column but the ones that say when a row was written (versions, first_seen of a store).
TABLE_QUERIES = {
    "timeline": "SELECT DISTINCT * FROM timeline ORDER BY ALL",
    "order_links": "SELECT DISTINCT * FROM order_links ORDER BY ALL",
    "sku_events": "SELECT DISTINCT * FROM sku_events ORDER BY ALL",
    "promotions": "SELECT DISTINCT * FROM promotions ORDER BY ALL",
    "stores": "SELECT DISTINCT store_id FROM stores ORDER BY ALL",
    "key_owner": "SELECT key, argMax(canonical, version) FROM key_owner GROUP BY key ORDER BY ALL",
    "order_summary": "SELECT * EXCEPT version FROM order_summary FINAL ORDER BY canonical",
}


@pytest.fixture(scope="module")
def traffic() -> list[tuple[str, bytes]]:
    """(path, body) of every request a small simulated estate sends, in order."""
    outbox = MemoryOutbox()
    scenario = Scenario(
        seed=11, stores=3, skus=6, duration_s=20, backfill_days=0.06, speed=300, start_us=START_US
    )
    run(scenario, outbox, threading.Event(), narrate=lambda _line: None, progress=False)
    requests = [
        ("/v1/events", encode_events(outbox.events[i : i + 150])) for i in range(0, len(outbox.events), 150)
    ]
    requests += [
        ("/v1/traces", encode_spans(outbox.spans[i : i + 200]).SerializeToString())
        for i in range(0, len(outbox.spans), 200)
    ]
    assert len(outbox.events) > 500 and len(outbox.spans) > 500
    return requests


def stored_tables(data_dir: Path, requests: list[tuple[str, bytes]], writer_maps: bool) -> dict[str, Any]:
    recorded: list[DerivedRecorder] = []

    def wrap(sink: RowSink) -> RowSink:
        recorded.append(DerivedRecorder(sink, withhold=writer_maps))
        return recorded[0]

    kinds = {
        "/v1/events": "application/cloudevents-batch+json",
        "/v1/traces": "application/x-protobuf",
    }
    with in_process_node(data_dir, {"writer": {"flush_interval": "0.3s"}}, wrap_sink=wrap) as live:
        # Which of two rows with one key survives a merge depends on batch timing: keep them all.
        for table in ("timeline", "order_links", "sku_events", "promotions"):
            live.node.query_client.command(f"SYSTEM STOP MERGES {table}")
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for path, body in requests:
                answer = client.post(path, content=body, headers={"content-type": kinds[path]})
                assert answer.status_code == 200, answer.text
        live.flush()
        query = live.node.query_client.query
        rows = {name: query(sql).result_rows for name, sql in TABLE_QUERIES.items()}
        # Resolving every key again from scratch changes no owner: the writer kept identity whole.
        correlating = recorded[0].inner
        assert isinstance(correlating, CorrelatingSink)
        everything = {row[0] for row in rows["key_owner"]}
        correlating.refresh(everything)
        assert query(TABLE_QUERIES["key_owner"]).result_rows == rows["key_owner"]
    sink = recorded[0]
    # Every batch came with the workers' rows (the suppressed node threw them away).
    assert sink.batches and all(derived is not None for _, _, derived in sink.batches)
    return rows


def test_rows_derived_in_the_workers_equal_rows_mapped_by_the_writer(
    tmp_path: Path, traffic: list[tuple[str, bytes]]
) -> None:
    from_workers = stored_tables(tmp_path / "workers", traffic, writer_maps=False)
    from_writer = stored_tables(tmp_path / "writer", traffic, writer_maps=True)
    for name in TABLE_QUERIES:
        assert from_workers[name], f"the traffic derived no {name} rows"
        assert from_workers[name] == from_writer[name], name


def test_packed_tables_come_back_as_they_were() -> None:
    mapped = Mapped(
        [TimelineEntry("W-1", "milestone", "paid", 5, "shop", "shop/e1", "retail.payment.confirmed")],
        [AliasLink("R-042-1", "W-1", "pos_receipt", 5, "pos/e2")],
        [
            SkuEntry("SKU-1", "store-042", "sale", 6, "pos/e2", qty=2, delta=-2),
            SkuEntry("SKU-1", "store-042", "sale", 6, "pos/e2", qty=1, delta=-1),
        ],
        [PromotionEntry("P-1", "published", 7, "erp/p1", targets=("store-042",), skus=("SKU-1",))],
        {"store-042"},
    )
    tables = derived.tables(mapped, now_us=9)
    back = derived.unpack(derived.pack(tables))
    assert back.keys() == tables.keys() == set(derived.TABLES)
    for name, table in tables.items():
        assert back[name].equals(table), name
    # Two lines of one event for one SKU and location stay two rows.
    assert back["sku_events"].column("event_key").to_pylist() == ["pos/e2", "pos/e2#1"]
    assert derived.touched_keys(back) == {"W-1", "R-042-1"}
    assert derived.unpack(derived.pack(derived.tables(Mapped([], [], [], [], set())))) == {}


def test_merged_requests_keep_every_row_and_type() -> None:
    first = derived.tables(Mapped([], [AliasLink("A", "W-1", "pickup_code", 1, "e1")], [], [], set()))
    second = derived.tables(
        Mapped([], [AliasLink("B", "W-2", "pickup_code", 2, "e2")], [], [], {"store-001"}), now_us=3
    )
    merged = derived.merge([derived.unpack(derived.pack(first)), derived.unpack(derived.pack(second))])
    assert merged["order_links"].column("alias").to_pylist() == ["A", "B"]
    assert merged["order_links"].schema == derived.SCHEMAS["order_links"]
    assert merged["stores"].to_pylist()[0]["store_id"] == "store-001"


@pytest.mark.parametrize("cut", [3, 9, 20])
def test_a_damaged_payload_is_refused_with_where(cut: int) -> None:
    payload = derived.pack(derived.tables(Mapped([], [AliasLink("A", "W-1", "k", 1, "e1")], [], [], set())))
    with pytest.raises(ValueError, match="derived-rows payload is damaged at byte"):
        derived.unpack(payload[:cut])


def test_the_derivation_survives_pickling_into_a_worker() -> None:
    import pickle

    mapping = {"events": [{"type": "acme.order.placed", "milestone": "accepted", "order_id": "data.ref"}]}
    worker_side = pickle.loads(pickle.dumps(derived.Derivation(mapping)))
    events = pa.table(
        {
            "source": ["acme"],
            "id": ["1"],
            "type": ["acme.order.placed"],
            "time": pa.array([START_US], pa.timestamp("us", tz="UTC")),
            "data": [json.dumps({"ref": "A-77"})],
        }
    )
    rows = derived.unpack(worker_side.events(events))
    assert rows["timeline"].column("order_key").to_pylist() == ["A-77"]
    assert rows["timeline"].column("name").to_pylist() == ["accepted"]
