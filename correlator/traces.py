"""Reading one trace back: a time-bounded lookup, as the OpenTelemetry ClickHouse exporter does."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")

_COLUMNS = (
    "timestamp, trace_id, span_id, parent_span_id, trace_state, span_name, span_kind, service_name, "
    "resource_attributes, scope_name, scope_version, span_attributes, duration_ns, status_code, "
    "status_message, events_timestamp, events_name, events_attributes, links_trace_id, links_span_id, "
    "links_trace_state, links_attributes, order_id, milestone, sku, store_id, "
    "toUnixTimestamp64Nano(timestamp) AS start_ns, "
    "arrayMap(t -> toUnixTimestamp64Nano(t), events_timestamp) AS events_ns"
)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class TraceReader:
    """Spans of one trace: its time range from ``trace_index``, then spans inside that range only."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def spans(self, trace_id: str, stores: tuple[str, ...] = ()) -> list[dict[str, Any]] | None:
        """The trace's spans by start time, each once; None if the trace is unknown (or not visible)."""
        trace_id = trace_id.lower()
        bounds = self.client.query(
            "SELECT toUnixTimestamp64Nano(min(start)), toUnixTimestamp64Nano(max(end)), count() "
            "FROM trace_index WHERE trace_id = {t:String}",
            parameters={"t": trace_id},
        ).result_rows[0]
        if not bounds[2]:
            return None
        rows = self.client.query(
            f"SELECT {_COLUMNS} FROM spans WHERE trace_id = {{t:String}} "
            "AND timestamp >= fromUnixTimestamp64Nano({start:Int64}, 'UTC') "
            "AND timestamp <= fromUnixTimestamp64Nano({end:Int64}, 'UTC') "
            "ORDER BY timestamp, span_id LIMIT 1 BY span_id",
            parameters={"t": trace_id, "start": bounds[0], "end": bounds[1]},
        ).named_results()
        spans = [_span_json(row) for row in rows]
        if stores and not any(span["store_id"] in stores for span in spans):
            return None
        return spans or None


def _span_json(row: dict[str, Any]) -> dict[str, Any]:
    start: datetime = row["timestamp"]
    return {
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "trace_state": row["trace_state"],
        "name": row["span_name"],
        "kind": row["span_kind"],
        "service_name": row["service_name"],
        "start": _iso(start),
        "start_unix_nano": row["start_ns"],
        "end_unix_nano": row["start_ns"] + row["duration_ns"],
        "duration_ns": row["duration_ns"],
        "status": {"code": row["status_code"], "message": row["status_message"]},
        "attributes": dict(row["span_attributes"]),
        "resource": dict(row["resource_attributes"]),
        "scope": {"name": row["scope_name"], "version": row["scope_version"]},
        "events": [
            {"time": _iso(t), "time_unix_nano": ns, "name": n, "attributes": dict(a)}
            for t, ns, n, a in zip(
                row["events_timestamp"],
                row["events_ns"],
                row["events_name"],
                row["events_attributes"],
                strict=True,
            )
        ],
        "links": [
            {"trace_id": t, "span_id": s, "trace_state": ts, "attributes": dict(a)}
            for t, s, ts, a in zip(
                row["links_trace_id"],
                row["links_span_id"],
                row["links_trace_state"],
                row["links_attributes"],
                strict=True,
            )
        ],
        "order_id": row["order_id"],
        "milestone": row["milestone"],
        "sku": row["sku"],
        "store_id": row["store_id"],
    }
