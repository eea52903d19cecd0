"""A batch's raw spans go into storage on a thread of their own, beside its correlation.

The two used to follow each other: an event waited for its batch's spans insert (~0.2 s per 15k
spans here, twice that under load) before the correlator started on it (bench: ingest.freshness).
The batch still counts as written only when both are stored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.sink import ClickHouseSink, RowSink
from correlator.sink import CorrelatingSink
from tests.support import InProcessNode, in_process_node


class HeldSpans:
    """The node's insert client; each spans insert waits until ``released`` (10 s at most), and
    the first ``failures`` of them fail afterwards, as a connection reset mid-insert would."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client = client
        self.failures = failures
        self.released = threading.Event()
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def insert_arrow(self, table: str, data: Any, **kwargs: Any) -> Any:
        if table == "spans":
            self.attempts += 1
            self.released.wait(10)
            if self.failures:
                self.failures -= 1
                raise ConnectionResetError("injected: connection reset during the spans insert")
        return self.client.insert_arrow(table, data, **kwargs)


def _run(tmp_path: Path, failures: int, check: Any) -> tuple[HeldSpans, list[int]]:
    """Send one reserved span; while its batch is correlated, count the spans stored, then let the
    spans insert go. ``check`` runs on the node before it stops."""
    held: list[HeldSpans] = []
    stored_while_correlating: list[int] = []

    def wrap(sink: RowSink) -> RowSink:
        assert isinstance(sink, CorrelatingSink) and isinstance(sink.inner, ClickHouseSink)
        raw = sink.inner
        held.append(HeldSpans(raw.insert_client, failures))
        raw.insert_client = held[0]
        refresh = sink.refresh

        def refresh_then_release(keys: set[str]) -> Any:
            groups = refresh(keys)
            [[spans]] = sink.client.query("SELECT count() FROM spans").result_rows
            stored_while_correlating.append(int(spans))
            held[0].released.set()
            return groups

        sink.refresh = refresh_then_release  # type: ignore[method-assign]
        return sink

    with in_process_node(tmp_path / "data", {"writer": {"flush_interval": "50ms"}}, wrap_sink=wrap) as live:
        live.node.query_client.command("SYSTEM STOP MERGES spans")  # a repeated row would stay visible
        live.node.query_client.command("SYSTEM STOP MERGES timeline")
        provider = TracerProvider(resource=Resource.create({"service.name": "inventory"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{live.url}/v1/traces")))
        with provider.get_tracer("inventory").start_as_current_span("reserve stock") as span:
            span.set_attributes({"retail.order.id": "W-31", "retail.milestone": "reserved"})
        provider.shutdown()
        live.flush()
        check(live)
    return held[0], stored_while_correlating


def _stored_once(live: InProcessNode) -> None:
    assert live.query("SELECT count() FROM spans WHERE span_name = 'reserve stock'") == [(1,)]
    assert live.query("SELECT count() FROM timeline WHERE order_key = 'W-31'") == [(1,)]
    order = httpx.get(f"{live.url}/api/v1/orders/W-31").json()
    assert [m["milestone"] for m in order["milestones"]] == ["reserved"]


def test_the_spans_insert_runs_beside_the_correlation_and_the_batch_waits_for_both(tmp_path: Path) -> None:
    def check(live: InProcessNode) -> None:
        _stored_once(live)
        metrics = httpx.get(f"{live.url}/metrics").text
        # The sink times its own raw inserts: the writer hands them off and goes on.
        assert 'milepost_insert_seconds_count{table="spans"} 1' in metrics
        assert 'milepost_stored_rows_total{table="spans"} 1' in metrics

    held, stored_while_correlating = _run(tmp_path, failures=0, check=check)
    assert stored_while_correlating == [0]  # the order was correlated while its span was held
    assert held.attempts == 1


def test_a_failed_spans_insert_fails_its_batch_which_is_written_again_whole(tmp_path: Path) -> None:
    def check(live: InProcessNode) -> None:
        _stored_once(live)  # the retries' derived rows replaced the first attempts', none added
        metrics = httpx.get(f"{live.url}/metrics").text
        assert 'milepost_insert_errors_total{table="spans"} 2' in metrics  # named, not "derived"
        assert 'milepost_stored_rows_total{table="spans"} 1' in metrics  # counted once, when stored

    held, stored_while_correlating = _run(tmp_path, failures=2, check=check)
    assert held.attempts == 3
    assert len(stored_while_correlating) == 3  # each attempt correlated the batch again
    assert stored_while_correlating[0] == 0  # (later attempts are not held: the gate stays open)
