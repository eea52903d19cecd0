"""The built-in span mapping (SPEC "Span attributes"), column by column on the Arrow spans table.

Every span of a busy node goes through this, so it never turns rows into Python objects: with
512-span requests, ``table.to_pylist()`` alone (a ``pandas.Timestamp`` per span) cost more than
the mapping. It gives exactly what ``correlator.mapping`` gives row by row for a mapper without
span rules (``_builtin_span``, which still maps the spans no user rule claims);
``tests/correlator/test_span_columns.py`` holds the two to each other.

- A span with an ``order_id`` is a timeline entry: a milestone when its ``milestone`` (trimmed,
  lower case) is one of ``MILESTONES``, else a linked span named by its span name.
- Its alias (``alias_value`` with an ``alias_kind``), unless it is the order id itself, is a link.
- Every ``store_id`` of a span worth mapping (one with any of ``_KEYS``) is a known store.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from correlator.mapping import encode_detail
from correlator.model import MILESTONES
from storage.tables import BUSINESS_KEYS

# Shown in a span entry's detail, in the order compact JSON with sorted keys writes them.
DETAIL_FIELDS = ("error", "location_id", "promotion_id", "sku")
# A character JSON must escape; a value holding one has its detail written by ``json``.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
# The span columns the built-in mapping reads (besides ``timestamp``), and the keys that make a
# span worth mapping.
MAPPED_COLUMNS = (
    "trace_id",
    "span_id",
    "span_name",
    "service_name",
    "status_code",
    "status_message",
    *BUSINESS_KEYS,
)
_KEYS = ("order_id", "sku", "alias_value", "promotion_id")
_MILESTONES = sorted(MILESTONES)
_TS_US = pa.timestamp("us", tz="UTC")


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    return pc.fill_null(table.column(name), "")


def _present(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.not_equal(column, "")


def span_entries(table: pa.Table) -> tuple[pa.Table, pa.Table, list[str]]:
    """The timeline rows, the alias links and the sorted stores of a spans table.

    ``table`` holds at least the columns of ``storage.tables.SPAN_SCHEMA`` the mapping reads;
    the two tables come in ``correlator.derived.SCHEMAS``' column order and may be empty.
    """
    ordered = table.select(["timestamp", *MAPPED_COLUMNS]).filter(_present(_text(table, "order_id")))
    texts = {name: _text(ordered, name) for name in MAPPED_COLUMNS}
    milestone = pc.utf8_lower(pc.utf8_trim_whitespace(texts["milestone"]))
    valid = pc.is_in(milestone, value_set=pa.array(_MILESTONES, pa.string()))
    failed = pc.equal(texts["status_code"], "error")
    time = pc.cast(ordered.column("timestamp"), _TS_US, safe=False)
    event_key = pc.binary_join_element_wise("span:", texts["trace_id"], ":", texts["span_id"], "")
    timeline = pa.table(
        {
            "order_key": texts["order_id"],
            "kind": pc.if_else(valid, "milestone", "span"),
            "name": pc.if_else(valid, milestone, texts["span_name"]),
            "time": time,
            "source": texts["service_name"],
            "event_key": event_key,
            "event_type": texts["span_name"],
            "trace_id": texts["trace_id"],
            "span_id": texts["span_id"],
            "store_id": texts["store_id"],
            "channel": texts["channel"],
            "fulfillment": pa.repeat("", ordered.num_rows),
            "status": pc.if_else(failed, "error", "ok"),
            "detail": _details(texts, failed),
        }
    )
    linked = pc.and_(
        pc.and_(_present(texts["alias_value"]), _present(texts["alias_kind"])),
        pc.not_equal(texts["alias_value"], texts["order_id"]),
    )
    links = pa.table(
        {
            "alias": texts["alias_value"],
            "order_key": texts["order_id"],
            "kind": texts["alias_kind"],
            "time": time,
            "event_key": event_key,
        }
    ).filter(linked)
    return timeline, links, _stores(table)


def _stores(table: pa.Table) -> list[str]:
    keyed = _present(_text(table, _KEYS[0]))
    for key in _KEYS[1:]:
        keyed = pc.or_(keyed, _present(_text(table, key)))
    stores = pc.unique(_text(table, "store_id").filter(keyed)).to_pylist()
    return sorted(store for store in stores if store)


def _details(texts: dict[str, pa.ChunkedArray], failed: pa.ChunkedArray) -> pa.Array:
    """Each entry's detail: compact JSON of its non-empty ``DETAIL_FIELDS`` (the error message only
    of a failed span), or "" when it has none."""
    values = {name: texts[name] for name in DETAIL_FIELDS if name != "error"}
    values["error"] = pc.if_else(failed, texts["status_message"], "")
    # Each present field as '"name":"value",', then the last comma trimmed. (Joining with nulls
    # skipped would be shorter, but pyarrow 26 drops the rows where every piece is null.)
    pieces = [
        pc.if_else(
            _present(values[name]), pc.binary_join_element_wise(f'"{name}":"', values[name], '",', ""), ""
        )
        for name in DETAIL_FIELDS
    ]
    inner = pc.utf8_rtrim(pc.binary_join_element_wise(*pieces, ""), characters=",")
    detail = pc.if_else(_present(inner), pc.binary_join_element_wise("{", inner, "}", ""), "")
    detail = detail.combine_chunks() if isinstance(detail, pa.ChunkedArray) else detail
    unusual = None
    for name in DETAIL_FIELDS:
        found = pc.match_substring_regex(values[name], _NEEDS_ESCAPE)
        unusual = found if unusual is None else pc.or_(unusual, found)
    if unusual is None or not pc.any(unusual).as_py():
        return detail
    # Quotes, backslashes and control characters are rare in ids and messages: ``json`` writes those.
    rows = pa.table(values).filter(unusual).to_pylist()
    written = pa.array([encode_detail({k: v for k, v in row.items() if v}) for row in rows], pa.string())
    return pc.replace_with_mask(detail, unusual.combine_chunks(), written)
