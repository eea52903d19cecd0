"""Spans and events that reach storage in the same writer batch are all correlated."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.metrics import IngestMetrics
from collector.otlp import decode_traces
from collector.privacy import PersonalData
from collector.sink import ClickHouseSink, RowSink
from collector.wal import WriteAheadLog
from collector.writer import SPANS, SPANS_DERIVED, StorageWriter
from correlator.derived import Derivation
from milepost.config import StorageConfig
from storage.client import open_client
from storage.schema import migrate
from storage.tables import to_ipc
from tests.support import DerivedRecorder, in_process_node, wait_until


def _spans_request(order_id: str, name: str = "pos.sale") -> bytes:
    """An OTLP request of one span naming ``order_id``."""
    span = trace_pb2.Span(
        trace_id=uuid.uuid4().bytes,
        span_id=b"\x01" * 8,
        name=name,
        start_time_unix_nano=1_795_000_000_000_000_000,
        end_time_unix_nano=1_795_000_000_100_000_000,
        attributes=[
            common_pb2.KeyValue(key="retail.order.id", value=common_pb2.AnyValue(string_value=order_id))
        ],
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]
    ).SerializeToString()


def test_events_and_spans_written_together_are_both_kept(tmp_path: Path) -> None:
    order_a, order_b = f"X-{uuid.uuid4().hex[:6]}", f"Z-{uuid.uuid4().hex[:6]}"
    events = [
        {
            "specversion": "1.0",
            "id": f"acc-{order}",
            "source": "shop/web",
            "type": "retail.order.accepted",
            "time": "2026-11-27T09:00:00Z",
            "data": {"order_id": order, "channel": "web"},
        }
        for order in (order_a, order_b)
    ]
    # A long flush interval puts both requests into one writer batch, as bursts do in production.
    with in_process_node(tmp_path / "data", {"writer": {"flush_interval": "2s"}}) as live:
        sent = httpx.post(
            f"{live.url}/v1/events",
            content=json.dumps(events),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert sent.json()["accepted"] == 2
        traced = httpx.post(
            f"{live.url}/v1/traces",
            content=_spans_request(order_a, "reserve stock"),
            headers={"content-type": "application/x-protobuf"},
        )
        assert traced.status_code == 200
        live.flush()
        first = httpx.get(f"{live.url}/api/v1/orders/{order_a}").json()
        assert first["state"] == "accepted"
        assert [e["name"] for e in first["events"]] == ["reserve stock"]
        assert httpx.get(f"{live.url}/api/v1/orders/{order_b}").json()["state"] == "accepted"


def test_derived_rows_are_used_only_when_every_request_of_the_batch_brought_them(tmp_path: Path) -> None:
    """Derived rows are logged right before their rows; rows logged without them (an older
    node's log, or a batch cut between the two) make the writer map the whole kind itself."""
    derivation = Derivation(None)
    now = time.time_ns()
    rows = {}
    for order_id in ("W-1", "W-2", "W-3"):
        table = decode_traces(_spans_request(order_id), "protobuf", PersonalData(), now).table
        rows[order_id] = (to_ipc(table), derivation.spans(table))
    recorders: list[DerivedRecorder] = []

    def record(sink: RowSink) -> RowSink:
        recorders.append(DerivedRecorder(sink))
        return recorders[0]

    with in_process_node(tmp_path / "data", {"writer": {"flush_interval": "1s"}}, wrap_sink=record) as live:
        wal = live.node.wal
        # Paired: both requests' derived rows go to the sink.
        wal.append([(SPANS_DERIVED, rows["W-1"][1]), (SPANS, rows["W-1"][0])])
        wal.append([(SPANS_DERIVED, rows["W-2"][1]), (SPANS, rows["W-2"][0])]).result()
        live.flush()
        # A request logged without them, next to one with them, and a stray derived record last.
        wal.append([(SPANS, rows["W-3"][0])])
        wal.append([(SPANS_DERIVED, rows["W-1"][1]), (SPANS, rows["W-1"][0]), (SPANS_DERIVED, b"")]).result()
        live.flush()
        for order_id in ("W-1", "W-2", "W-3"):
            order = httpx.get(f"{live.url}/api/v1/orders/{order_id}").json()
            assert [e["name"] for e in order["events"]] == ["pos.sale"], order_id
    assert recorders[0].batches == [("spans", 2, 2), ("spans", 2, None)]


class SlowWrites(DerivedRecorder):
    """Records batches; while ``slow`` is set a write takes 15 s on the writer's clock, and
    ``during`` runs in the middle of it (rows arriving while the write is under way)."""

    def __init__(self, inner: RowSink, now: list[float]) -> None:
        super().__init__(inner)
        self.now = now
        self.slow = False
        self.during: Callable[[], object] = lambda: None

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        if self.slow:
            self.slow = False
            self.during()
            self.now[0] += 15
        return super().write_spans(table, token, derived)


def _append(wal: WriteAheadLog, order_id: str) -> Future[None]:
    table = decode_traces(_spans_request(order_id), "protobuf", PersonalData(), 0).table
    return wal.append([(SPANS, to_ipc(table))])


def test_batches_are_cut_at_most_once_per_flush_interval_and_rows_never_wait_an_extra_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first rows after a quiet spell are written at once; rows that arrive soon after a batch
    was cut wait until the interval since that cut has passed, then go together; rows that arrive
    during a write longer than the interval go as soon as it ends."""
    now = [1_000.0]
    # open_client points TMPDIR at the store's folder; give the rest of the session its own back.
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)
    client = open_client("", tmp_path / "store")
    migrate(client, StorageConfig())
    sink = SlowWrites(ClickHouseSink(client), now)
    wal = WriteAheadLog(tmp_path / "wal", 1 << 20, 64 << 20)
    writer = StorageWriter(
        wal, sink, IngestMetrics(), batch_rows=1_000, flush_interval=10.0, clock=lambda: now[0]
    )
    writer.start()
    try:
        now[0] += 60  # quiet for a minute
        _append(wal, "W-1").result()
        wait_until(lambda: len(sink.batches) == 1, 10, "the first rows after a quiet spell to be written")
        _append(wal, "W-2").result()
        _append(wal, "W-3").result()
        time.sleep(0.5)  # real time passes; on the writer's clock the interval has not
        assert sink.batches == [("spans", 1, None)]
        sink.slow = True  # the next write takes 15 s, and W-5 arrives meanwhile
        sink.during = lambda: _append(wal, "W-5")  # not waited for: the writer is busy writing
        now[0] += 10  # from here the clock stands still but for the long write's 15 s
        # W-5 is written only if it waits for no further interval after the long write.
        wait_until(lambda: len(sink.batches) == 3, 10, "the rows that arrived during the long write")
        assert sink.batches == [("spans", 1, None), ("spans", 2, None), ("spans", 1, None)]
    finally:
        writer.stop()
        client.close()
