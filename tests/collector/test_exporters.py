"""The OpenTelemetry Python SDK's own exporters, pointed at a real node, and the spans read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonHttpExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtoHttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.support import NodeProcess, wait_until

Factory = Callable[[NodeProcess], SpanExporter]

EXPORTERS: dict[str, Factory] = {
    "http-protobuf": lambda n: ProtoHttpExporter(endpoint=f"{n.url}/v1/traces"),
    "http-protobuf-gzip": lambda n: ProtoHttpExporter(
        endpoint=f"{n.url}/v1/traces", compression=Compression.Gzip
    ),
    "http-json": lambda n: JsonHttpExporter(endpoint=f"{n.url}/v1/traces"),
    "grpc": lambda n: GrpcExporter(endpoint=f"127.0.0.1:{n.grpc_port}", insecure=True),
}


def make_spans(order_id: str) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "web-shop", "deployment.env": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("checkout", "1.2.3")
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        root.set_attributes(
            {
                "retail.order.id": order_id,
                "retail.milestone": "accepted",
                "retail.store.id": "042",
                "retail.channel": "web",
                "http.status_code": 200,
                "cart.total": 59.5,
                "cart.gift": False,
                "cart.skus": ["884-12", "101-02"],
                "customer.email": "jane@example.com",
            }
        )
        root.add_event("cart.validated", {"lines": 2})
        with tracer.start_as_current_span(
            "reserve stock", kind=SpanKind.CLIENT, links=[Link(root.get_span_context(), {"why": "retry"})]
        ) as child:
            child.set_attribute("retail.sku", "884-12")
            child.set_status(Status(StatusCode.ERROR, "DC-2 timed out"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def read_trace(node: NodeProcess, trace_id: str, expected: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def complete() -> bool:
        nonlocal found
        answer = httpx.get(f"{node.url}/api/v1/traces/{trace_id}", timeout=5)
        if answer.status_code != 200:
            return False
        found = answer.json()["spans"]
        return len(found) >= expected

    wait_until(complete, 20, f"trace {trace_id} to be readable")
    return found


@pytest.mark.parametrize("exporter_name", list(EXPORTERS))
def test_sdk_exporter_spans_read_back_exactly(node: NodeProcess, exporter_name: str) -> None:
    spans = make_spans(f"W-{exporter_name}")
    exporter = EXPORTERS[exporter_name](node)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()

    trace_id = format(spans[0].context.trace_id, "032x")
    stored = {s["span_id"]: s for s in read_trace(node, trace_id, len(spans))}
    assert len(stored) == len(spans)
    for span in spans:
        row = stored[format(span.context.span_id, "016x")]
        assert row["trace_id"] == trace_id
        assert row["name"] == span.name
        assert row["kind"] == span.kind.name
        assert row["start_unix_nano"] == span.start_time
        assert row["end_unix_nano"] == span.end_time
        assert row["service_name"] == "web-shop"
        assert row["resource"]["deployment.env"] == "test"
        assert row["scope"] == {"name": "checkout", "version": "1.2.3"}
        parent = format(span.parent.span_id, "016x") if span.parent else ""
        assert row["parent_span_id"] == parent

    root = next(s for s in stored.values() if s["name"] == "POST /checkout")
    attributes = root["attributes"]
    assert attributes["retail.order.id"] == f"W-{exporter_name}"
    assert attributes["http.status_code"] == "200"
    assert attributes["cart.total"] == "59.5"
    assert attributes["cart.gift"] == "false"
    assert attributes["cart.skus"] == '["884-12","101-02"]'
    # Personal data is hashed at ingest, never stored as sent.
    assert attributes["customer.email"].startswith("sha256:")
    assert "jane@example.com" not in str(stored)
    assert (root["order_id"], root["milestone"], root["store_id"]) == (
        f"W-{exporter_name}",
        "accepted",
        "042",
    )
    assert [e["name"] for e in root["events"]] == ["cart.validated"]
    assert root["events"][0]["attributes"] == {"lines": "2"}
    assert root["events"][0]["time_unix_nano"] == spans[-1].events[0].timestamp

    child = next(s for s in stored.values() if s["name"] == "reserve stock")
    assert child["status"] == {"code": "error", "message": "DC-2 timed out"}
    assert child["sku"] == "884-12"
    assert child["links"][0]["span_id"] == root["span_id"]
    assert child["links"][0]["attributes"] == {"why": "retry"}


def test_repeated_export_is_stored_once(node: NodeProcess) -> None:
    spans = make_spans("W-repeat")
    exporter = ProtoHttpExporter(endpoint=f"{node.url}/v1/traces")
    for _ in range(3):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    trace_id = format(spans[0].context.trace_id, "032x")
    stored = read_trace(node, trace_id, len(spans))
    assert sorted(s["span_id"] for s in stored) == sorted(format(s.context.span_id, "016x") for s in spans)


def test_unknown_trace_is_404_and_bad_id_is_400(node: NodeProcess) -> None:
    missing = httpx.get(f"{node.url}/api/v1/traces/{'ab' * 16}")
    assert missing.status_code == 404
    assert "not known" in missing.json()["error"]
    bad = httpx.get(f"{node.url}/api/v1/traces/xyz")
    assert bad.status_code == 400
    assert "trace_id" in bad.json()["error"] and "xyz" in bad.json()["error"]
