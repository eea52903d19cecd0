"""Spans and events that reach storage in the same writer batch are all correlated."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support import in_process_node


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
    span = trace_pb2.Span(
        trace_id=uuid.uuid4().bytes,
        span_id=b"\x01" * 8,
        name="reserve stock",
        start_time_unix_nano=1_795_000_000_000_000_000,
        end_time_unix_nano=1_795_000_000_100_000_000,
        attributes=[
            common_pb2.KeyValue(key="retail.order.id", value=common_pb2.AnyValue(string_value=order_a))
        ],
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]
    )
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
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert traced.status_code == 200
        live.flush()
        first = httpx.get(f"{live.url}/api/v1/orders/{order_a}").json()
        assert first["state"] == "accepted"
        assert [e["name"] for e in first["events"]] == ["reserve stock"]
        assert httpx.get(f"{live.url}/api/v1/orders/{order_b}").json()["state"] == "accepted"
