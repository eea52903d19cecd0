"""An acknowledgement is durable: it survives kill -9, SIGTERM and a storage outage, and lands once."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyarrow as pa
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.sink import RowSink
from storage.client import StorageUnavailable
from tests.support import NodeProcess, free_port, in_process_node, store_query, wait_until

BATCHED = "application/cloudevents-batch+json"
# Nothing reaches storage on its own during these tests: only the log holds the data.
SLOW_WRITER = {"writer": {"flush_interval": "1h", "batch_rows": 10_000_000}}


def spans_request(trace_id: bytes, count: int) -> bytes:
    spans = [
        trace_pb2.Span(
            trace_id=trace_id,
            span_id=(index + 1).to_bytes(8, "big"),
            name="reserve stock",
            start_time_unix_nano=1_795_000_000_000_000_000 + index * 1000,
            end_time_unix_nano=1_795_000_000_000_500_000 + index * 1000,
        )
        for index in range(count)
    ]
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def events_body(source: str, start: int, count: int) -> bytes:
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": f"e-{n}",
                "source": source,
                "type": "retail.order.fulfilled",
                "time": "2026-11-27T10:00:00Z",
                "data": {"order_id": f"W-{n}", "note": "x" * 200},
            }
            for n in range(start, start + count)
        ]
    ).encode()


def send_traffic(url: str, source: str, requests: int) -> list[str]:
    trace_ids = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for number in range(requests):
            trace_id = uuid.uuid4().bytes
            answer = client.post(
                "/v1/traces",
                content=spans_request(trace_id, 100),
                headers={"content-type": "application/x-protobuf"},
            )
            assert answer.status_code == 200
            trace_ids.append(trace_id.hex())
            answer = client.post(
                "/v1/events", content=events_body(source, number * 50, 50), headers={"content-type": BATCHED}
            )
            assert answer.json()["accepted"] == 50
    return trace_ids


def test_kill_9_right_after_acknowledgements_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    node = NodeProcess(data_dir, config=SLOW_WRITER).start()
    trace_ids = send_traffic(node.url, "pos/kill9", 20)
    node.kill()
    assert store_query(data_dir, "SELECT count() FROM events") == [[0]], "the writer was meant to hold off"

    restarted = NodeProcess(data_dir).start()
    assert "replaying" in restarted.log()

    def replayed(trace_id: str) -> bool:
        answer = httpx.get(f"{restarted.url}/api/v1/traces/{trace_id}")
        return answer.status_code == 200 and len(answer.json()["spans"]) == 100

    # The log is replayed in the background after start; every acknowledged trace comes back.
    for trace_id in trace_ids:
        wait_until(lambda: replayed(trace_id), 30, f"trace {trace_id} replayed from the log")  # noqa: B023
    assert restarted.stop() == 0
    assert store_query(data_dir, "SELECT count(), uniqExact(id) FROM events WHERE source = 'pos/kill9'") == [
        [1000, 1000]
    ]
    assert store_query(data_dir, "SELECT count() FROM spans") == [[2000]]


def test_sigterm_writes_everything_acknowledged_then_exits_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    node = NodeProcess(data_dir, config=SLOW_WRITER).start()
    send_traffic(node.url, "pos/sigterm", 5)
    assert node.stop() == 0
    assert "everything acknowledged is in storage" in node.log()
    assert store_query(data_dir, "SELECT count() FROM events WHERE source = 'pos/sigterm'") == [[250]]
    assert store_query(data_dir, "SELECT count() FROM spans") == [[500]]
    assert (
        sorted(p.name for p in (data_dir / "wal").glob("*.wal")) != []
    )  # the log stays, empty past the checkpoint


class OutageSink:
    """The real sink with an outage switch: while down, every write fails as a dead server would."""

    def __init__(self, inner: RowSink) -> None:
        self.inner = inner
        self.down = threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise StorageUnavailable("injected outage: connection refused")

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        self._check()
        return self.inner.write_spans(table, token, derived)

    def write_events(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        self._check()
        return self.inner.write_events(table, token, derived)

    def write_quarantine(self, table: pa.Table, token: str) -> None:
        self._check()
        self.inner.write_quarantine(table, token)

    def settle(self, token: str) -> None:
        self._check()
        self.inner.settle(token)

    def ping(self) -> bool:
        return not self.down.is_set() and self.inner.ping()


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[Any, OutageSink]]:
    sinks: list[OutageSink] = []

    def wrap(inner: RowSink) -> RowSink:
        sinks.append(OutageSink(inner))
        return sinks[0]

    config = {
        "wal": {"max_bytes": 1024 * 1024, "segment_bytes": 128 * 1024},
        "writer": {"flush_interval": "50ms"},
    }
    with in_process_node(tmp_path / "data", config, wrap_sink=wrap) as live:
        yield live, sinks[0]


def test_storage_outage_acknowledges_into_the_log_then_pushes_back(outage: tuple[Any, OutageSink]) -> None:
    live, sink = outage
    sink.down.set()
    accepted = 0
    refused = None
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for number in range(200):
            answer = client.post(
                "/v1/events",
                content=events_body("wms/outage", number * 50, 50),
                headers={"content-type": BATCHED},
            )
            if answer.status_code != 200:
                refused = answer
                break
            accepted += 50
    assert accepted >= 500, "the log should take data while storage is down"
    assert refused is not None, "the log cap was never reached"
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert "storage" in refused.json()["error"].lower()
    assert httpx.get(f"{live.url}/readyz").status_code == 503

    # OTLP over HTTP and gRPC push back the same way, never with a 500.
    otlp = httpx.post(
        f"{live.url}/v1/traces",
        content=spans_request(uuid.uuid4().bytes, 2000),
        headers={"content-type": "application/x-protobuf"},
    )
    assert otlp.status_code == 503 and "retry-after" in otlp.headers
    grpc_port = free_port()
    live.node.start_grpc("127.0.0.1", grpc_port)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda body: body,
            response_deserializer=lambda body: body,
        )
        with pytest.raises(grpc.RpcError) as failure:
            export(spans_request(uuid.uuid4().bytes, 2000), timeout=10)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    details = dict(failure.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds > 0

    sink.down.clear()
    live.flush(60)
    assert httpx.get(f"{live.url}/readyz").status_code == 200
    rows = live.query("SELECT count(), uniqExact(id) FROM events WHERE source = 'wms/outage'")
    assert rows == [(accepted, accepted)], "every acknowledged event exactly once"
