"""Arrow layouts of the rows Milepost writes to ClickHouse.

Decoders build tables with exactly these schemas; the writer hands them to
``insert_arrow`` unchanged, so a column added here must be added to the DDL in
``storage.schema`` in a new migration.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

TS_NS = pa.timestamp("ns", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")
ATTRS = pa.map_(pa.string(), pa.string())

# Business keys read from spans (``retail.*`` attributes) and events (catalogue fields).
BUSINESS_KEYS = (
    "order_id",
    "milestone",
    "sku",
    "store_id",
    "location_id",
    "channel",
    "promotion_id",
    "alias_kind",
    "alias_value",
)

SPAN_SCHEMA = pa.schema(
    [
        ("timestamp", TS_NS),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),
        ("trace_state", pa.string()),
        ("span_name", pa.string()),
        ("span_kind", pa.string()),
        ("service_name", pa.string()),
        ("resource_attributes", ATTRS),
        ("scope_name", pa.string()),
        ("scope_version", pa.string()),
        ("span_attributes", ATTRS),
        ("duration_ns", pa.uint64()),
        ("status_code", pa.string()),
        ("status_message", pa.string()),
        ("events_timestamp", pa.list_(TS_NS)),
        ("events_name", pa.list_(pa.string())),
        ("events_attributes", pa.list_(ATTRS)),
        ("links_trace_id", pa.list_(pa.string())),
        ("links_span_id", pa.list_(pa.string())),
        ("links_trace_state", pa.list_(pa.string())),
        ("links_attributes", pa.list_(ATTRS)),
        *[(key, pa.string()) for key in BUSINESS_KEYS],
        ("received_at", TS_US),
    ]
)

EVENT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("id", pa.string()),
        ("type", pa.string()),
        ("spec_version", pa.string()),
        # Event time; when the producer sent none, the arrival time (and time_missing is true).
        ("time", TS_US),
        ("time_missing", pa.bool_()),
        ("received_at", TS_US),
        ("subject", pa.string()),
        ("data_schema", pa.string()),
        ("data_content_type", pa.string()),
        ("data", pa.string()),
        ("extensions", ATTRS),
        ("contract", pa.string()),
        ("signal", pa.string()),
        *[(key, pa.string()) for key in BUSINESS_KEYS],
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("received_at", TS_US),
        ("signal", pa.string()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("type", pa.string()),
        ("position", pa.uint32()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),
    ]
)


# What makes a span or an event the same one when it arrives again.
SPAN_IDENTITY = ["trace_id", "span_id"]
EVENT_IDENTITY = ["source", "id"]


def first_of_each(table: pa.Table, keys: list[str]) -> pa.Table:
    """The first row of each distinct key, in the original order."""
    if table.num_rows < 2:
        return table
    numbered = table.select(keys).append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    firsts = numbered.group_by(keys, use_threads=False).aggregate([("__row", "min")]).column("__row_min")
    if len(firsts) == table.num_rows:
        return table
    return table.take(pc.take(firsts, pc.array_sort_indices(firsts)))


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()
