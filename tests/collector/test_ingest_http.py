"""Ingest over real HTTP into a node running in this process, checked in its embedded store."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support import SHARED_DATA, InProcessNode, in_process_node, wait_until

BATCHED = "application/cloudevents-batch+json"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    # The shared OTLP files date from 2017-2018: keep spans long enough to read them back.
    config = {"storage": {"spans_ttl_days": 3650}}
    with in_process_node(tmp_path_factory.mktemp("ingest") / "data", config) as running:
        yield running


def event(
    event_type: str, data: dict[str, Any], source: str = "pos/042", event_id: str | None = None
) -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": event_type,
            "source": source,
            "id": event_id or uuid.uuid4().hex,
            "time": datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        },
        data=data,
    )


def batch_body(*events: CloudEvent) -> bytes:
    return json.dumps([json.loads(to_structured_event(e).body) for e in events]).encode()


def stored_events(live: InProcessNode, source: str) -> list[tuple[Any, ...]]:
    live.flush()
    return live.query("SELECT id, type, order_id FROM events WHERE source = {s:String} ORDER BY id", s=source)


def test_structured_binary_and_batched_modes_are_stored(live: InProcessNode) -> None:
    source = f"oms/{uuid.uuid4().hex[:8]}"
    structured = to_structured_event(event("retail.order.accepted", {"order_id": "W-1"}, source, "a1"))
    binary = to_binary_event(
        event("retail.payment.confirmed", {"order_id": "W-1", "amount": 10.0}, source, "a2")
    )
    for message in (structured, binary):
        answer = httpx.post(f"{live.url}/v1/events", headers=dict(message.headers), content=message.body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
    batched = batch_body(
        event("retail.inventory.reserved", {"order_id": "W-1", "sku": "884-12", "qty": 1}, source, "a3"),
        event("retail.order.ready", {"order_id": "W-1", "pickup_code": "P-77"}, source, "a4"),
    )
    answer = httpx.post(f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=batched)
    assert answer.json() == {"accepted": 2, "rejected": [], "quarantined": 0}
    assert stored_events(live, source) == [
        ("a1", "retail.order.accepted", "W-1"),
        ("a2", "retail.payment.confirmed", "W-1"),
        ("a3", "retail.inventory.reserved", "W-1"),
        ("a4", "retail.order.ready", "W-1"),
    ]


def test_repeats_are_acknowledged_and_stored_once(live: InProcessNode) -> None:
    source = f"pos/{uuid.uuid4().hex[:8]}"
    first = event("retail.order.fulfilled", {"order_id": "W-2"}, source, "dup-1")
    body = batch_body(first, first)  # a repeat inside one batch
    for _ in range(3):  # and across requests
        answer = httpx.post(f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=body)
        assert answer.status_code == 200
        live.flush()
    assert live.query("SELECT count() FROM events WHERE source = {s:String}", s=source) == [(1,)]
    assert live.node.metrics.duplicates.value("events") >= 5


def test_invalid_events_are_quarantined_and_valid_ones_kept(live: InProcessNode) -> None:
    source = f"erp/{uuid.uuid4().hex[:8]}"
    good = event(
        "retail.finance.posted", {"order_id": "W-3", "erp_doc": "9000001", "kind": "sale"}, source, "ok-1"
    )
    wrong_channel = event("retail.order.accepted", {"order_id": "W-4", "channel": "fax"}, source, "bad-1")
    items = json.loads(batch_body(good, wrong_channel))
    items.append(
        {"specversion": "1.0", "type": "retail.order.ready", "source": source, "data": {"order_id": "x"}}
    )
    answer = httpx.post(f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=json.dumps(items))
    assert answer.status_code == 200
    result = answer.json()
    assert result["accepted"] == 1
    rejected = {r["index"]: r for r in result["rejected"]}
    assert rejected[1]["field"] == "data.channel" and "fax" in rejected[1]["reason"]
    assert rejected[2]["field"] == "id" and "id" in rejected[2]["reason"]
    assert stored_events(live, source) == [("ok-1", "retail.finance.posted", "W-3")]
    quarantined = live.query(
        "SELECT position, field, value, reason, payload FROM quarantine "
        "WHERE source = {s:String} ORDER BY position",
        s=source,
    )
    assert [(q[0], q[1], q[2]) for q in quarantined] == [(1, "data.channel", "fax"), (2, "id", "<missing>")]
    assert json.loads(quarantined[0][4])["id"] == "bad-1"  # the original event, re-processable later


def test_single_invalid_event_is_400_naming_field_and_value(live: InProcessNode) -> None:
    message = to_structured_event(event("retail.inventory.snapshot", {"sku": "884-12", "location_id": "042"}))
    answer = httpx.post(f"{live.url}/v1/events", headers=dict(message.headers), content=message.body)
    assert answer.status_code == 400
    assert "data.system" in answer.json()["error"]
    assert answer.json()["detail"]["rejected"][0]["field"] == "data.system"


def _spans_request(trace_id: bytes, count: int, name: str) -> bytes:
    spans = [
        trace_pb2.Span(
            trace_id=trace_id,
            span_id=(index + 1).to_bytes(8, "big"),
            name=name,
            start_time_unix_nano=1_795_000_000_000_000_000 + index,
            end_time_unix_nano=1_795_000_000_000_100_000 + index,
        )
        for index in range(count)
    ]
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def test_chunked_bodies_without_content_length(live: InProcessNode) -> None:
    trace_id = uuid.uuid4().bytes
    body = gzip.compress(_spans_request(trace_id, 50, "chunked"))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 97):
            yield body[start : start + 97]

    answer = httpx.post(
        f"{live.url}/v1/traces",
        content=chunks(),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert "content-length" not in answer.request.headers
    live.flush()
    assert live.query("SELECT count() FROM spans WHERE trace_id = {t:String}", t=trace_id.hex()) == [(50,)]


def test_keep_alive_clients_are_served_concurrently(live: InProcessNode) -> None:
    trace_ids = [uuid.uuid4().bytes for _ in range(8)]
    failures: list[str] = []

    def client(trace_id: bytes) -> None:
        with httpx.Client(base_url=live.url) as session:  # one connection, many requests
            for round_ in range(10):
                answer = session.post(
                    "/v1/traces",
                    content=_spans_request(trace_id, 20, f"round-{round_}"),
                    headers={"content-type": "application/x-protobuf"},
                )
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=client, args=(t,)) for t in trace_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    live.flush()
    # Each client re-sent the same 20 span ids ten times: one stored row per span.
    rows = live.query(
        "SELECT trace_id, uniqExact(span_id) FROM spans "
        "WHERE trace_id IN {t:Array(String)} GROUP BY trace_id",
        t=[t.hex() for t in trace_ids],
    )
    assert sorted(count for _, count in rows) == [20] * 8


def test_shared_otlp_json_files_round_trip_through_the_api(live: InProcessNode) -> None:
    official = SHARED_DATA / "otlp" / "opentelemetry-proto-example-trace.json"
    document = json.loads(official.read_text())
    answer = httpx.post(
        f"{live.url}/v1/traces", content=official.read_bytes(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    trace_id = span["traceId"].lower()
    live.flush()
    stored = httpx.get(f"{live.url}/api/v1/traces/{span['traceId']}").json()["spans"]
    assert [(s["trace_id"], s["span_id"], s["name"]) for s in stored] == [
        (trace_id, span["spanId"].lower(), span["name"])
    ]
    fixtures = sorted((SHARED_DATA / "otlp" / "jaeger-fixtures").glob("*.json"))
    assert len(fixtures) == 32
    for fixture in fixtures:
        answer = httpx.post(
            f"{live.url}/v1/traces",
            content=fixture.read_bytes(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 200, (fixture.name, answer.text)


def test_metrics_count_what_happened(live: InProcessNode) -> None:
    text = httpx.get(f"{live.url}/metrics").text
    for name in (
        'milepost_accepted_total{signal="events"}',
        'milepost_rejected_total{signal="events"}',
        'milepost_quarantined_total{signal="events"}',
        'milepost_duplicates_total{signal="events"}',
        "milepost_wal_bytes",
        'milepost_insert_seconds_count{table="spans"}',
        'milepost_rows_per_insert_count{table="events"}',
    ):
        assert name in text, name


def test_protobuf_errors_answer_in_protobuf(live: InProcessNode) -> None:
    answer = httpx.post(
        f"{live.url}/v1/traces",
        content=b"\xff\xfe garbage",
        headers={"content-type": "application/x-protobuf"},
    )
    assert answer.status_code == 400
    status = status_pb2.Status.FromString(answer.content)
    assert "protobuf" in status.message.lower()
    wait_until(lambda: httpx.get(f"{live.url}/readyz").status_code == 200, 5, "node still ready")


def test_shared_data_folder_is_there() -> None:
    assert (SHARED_DATA / "otlp").is_dir(), f"tests read real data from {SHARED_DATA}"
    assert isinstance(Path(SHARED_DATA), Path)


def test_partial_success_names_the_rejected_spans(live: InProcessNode) -> None:
    good_trace = uuid.uuid4().bytes
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(_spans_request(good_trace, 3, "partial"))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x00" * 16  # all-zero trace id: invalid
    spans[2].span_id = b"\x01\x02"  # two bytes: invalid
    answer = httpx.post(
        f"{live.url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert answer.status_code == 200
    response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 2
    assert "traceId" in response.partial_success.error_message
    assert "spanId" in response.partial_success.error_message
    live.flush()
    assert live.query("SELECT count() FROM spans WHERE trace_id = {t:String}", t=good_trace.hex()) == [(1,)]
    quarantined = live.query("SELECT field FROM quarantine WHERE signal = 'traces' ORDER BY position")
    assert ("traceId",) in quarantined and ("spanId",) in quarantined

    as_json = httpx.post(
        f"{live.url}/v1/traces",
        content=json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {"spans": [{"traceId": "XYZ", "spanId": "0102030405060708", "name": "bad"}]}
                        ]
                    }
                ]
            }
        ),
        headers={"content-type": "application/json"},
    )
    assert as_json.status_code == 200
    assert as_json.json()["partialSuccess"]["rejectedSpans"] in ("1", 1)
