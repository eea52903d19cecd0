"""A writer batch holding spans and events is correlated once, after both are stored.

Correlating costs a fixed ~150 ms of statements per pass whatever the batch holds, so a batch of
both kinds used to pay it twice, and an event behind a batch of spans waited for both passes
before its order showed it (bench: ingest.freshness).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.sink import RowSink
from correlator.sink import CorrelatingSink
from storage.client import StorageUnavailable
from tests.support import in_process_node


def _send_reservation(url: str, order_id: str) -> None:
    """One span of the inventory service, through the OpenTelemetry SDK's own exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "inventory"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    with provider.get_tracer("inventory").start_as_current_span("reserve stock") as span:
        span.set_attributes(
            {"retail.order.id": order_id, "retail.milestone": "reserved", "retail.sku": "884-12"}
        )
    provider.shutdown()


def _accepted(order_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "retail.order.accepted",
        "source": "/web/checkout",
        "id": f"accepted-{order_id}",
        "time": "2026-11-27T09:00:00Z",
        "data": {"order_id": order_id, "channel": "web", "store_id": "042", "fulfillment": "bopis"},
    }


class FlakySettle:
    """The node's sink, counting its correlation passes; the first ``failures`` settles fail after
    the rows went in, as a server dropping the connection mid-batch would."""

    def __init__(self, inner: RowSink, failures: int) -> None:
        assert isinstance(inner, CorrelatingSink)
        self.inner = inner
        self.failures = failures
        self.passes: list[set[str]] = []
        refresh = inner.refresh

        def counted(keys: set[str]) -> Any:
            self.passes.append(set(keys))
            return refresh(keys)

        inner.refresh = counted  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def settle(self, token: str) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("injected: connection reset before the batch settled")
        self.inner.settle(token)


def _run(tmp_path: Path, failures: int) -> tuple[FlakySettle, dict[str, Any], int]:
    sinks: list[FlakySettle] = []

    def wrap(inner: RowSink) -> RowSink:
        sinks.append(FlakySettle(inner, failures))
        return sinks[0]  # type: ignore[return-value]

    # A long flush interval: the span and the event are acknowledged into one writer batch.
    config = {"writer": {"flush_interval": "3s"}}
    with in_process_node(tmp_path / "data", config, wrap_sink=wrap) as live:
        live.node.query_client.command("SYSTEM STOP MERGES timeline")  # a repeated row would stay visible
        _send_reservation(live.url, "W-77")
        answer = httpx.post(
            f"{live.url}/v1/events",
            json=[_accepted("W-77")],
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert answer.status_code == 200, answer.text
        live.flush()
        order = httpx.get(f"{live.url}/api/v1/orders/W-77").json()
        [[rows]] = live.node.query_client.query(
            "SELECT count() FROM timeline WHERE order_key = 'W-77'"
        ).result_rows
    return sinks[0], order, int(rows)


def test_spans_and_events_of_one_batch_are_correlated_in_one_pass(tmp_path: Path) -> None:
    sink, order, rows = _run(tmp_path, failures=0)
    assert [m["milestone"] for m in order["milestones"]] == ["accepted", "reserved"]
    assert order["state"] == "reserved"
    assert rows == 2
    touching = [keys for keys in sink.passes if "W-77" in keys]
    assert len(touching) == 1, sink.passes


def test_a_batch_retried_after_a_failed_settle_derives_each_row_once(tmp_path: Path) -> None:
    sink, order, rows = _run(tmp_path, failures=2)
    assert [m["milestone"] for m in order["milestones"]] == ["accepted", "reserved"]
    assert rows == 2  # the failed attempts' derived rows were replaced, not added to
    assert sink.failures == 0


def test_a_store_is_stored_once_per_node_run_however_many_batches_name_it(tmp_path: Path) -> None:
    with in_process_node(tmp_path / "data", {"writer": {"flush_interval": "50ms"}}) as live:
        live.node.query_client.command("SYSTEM STOP MERGES stores")  # a repeated row would stay visible
        for number, store in enumerate(["042", "042", "042", "117"]):
            event = _accepted(f"W-{number}")
            event["data"]["store_id"] = store
            answer = httpx.post(
                f"{live.url}/v1/events",
                json=[event],
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert answer.status_code == 200, answer.text
            live.flush()  # each order in a batch of its own
        rows = live.node.query_client.query(
            "SELECT store_id, count() FROM stores GROUP BY store_id"
        ).result_rows
    assert sorted(rows) == [("042", 1), ("117", 1)]
