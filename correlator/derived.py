"""What mapping derives from stored rows, as Arrow tables ready to insert, and how they travel.

Mapping runs where the rows are decoded: each decode worker maps its request (spans column by
column with the built-in mapping, events and spans under user rules row by row) and hands the
node a ``Derived`` set packed into one write-ahead-log record next to the rows it came from
(``Derivation``). The storage writer then only inserts. The same builders serve the writer's own
mapping, used when a batch cannot take the workers' tables (see ``correlator.sink``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from correlator.mapping import Mapper, parse_mapping
from correlator.model import Mapped, SkuEntry
from correlator.span_columns import MAPPED_COLUMNS, span_entries
from storage.tables import from_ipc, to_ipc

# The tables mapping writes, in insert order.
TABLES = ("timeline", "order_links", "sku_events", "promotions", "stores")
Derived = dict[str, pa.Table]

_TS = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())
SCHEMAS: dict[str, pa.Schema] = {
    "timeline": pa.schema(
        [
            ("order_key", pa.string()),
            ("kind", pa.string()),
            ("name", pa.string()),
            ("time", _TS),
            ("source", pa.string()),
            ("event_key", pa.string()),
            ("event_type", pa.string()),
            ("trace_id", pa.string()),
            ("span_id", pa.string()),
            ("store_id", pa.string()),
            ("channel", pa.string()),
            ("fulfillment", pa.string()),
            ("status", pa.string()),
            ("detail", pa.string()),
        ]
    ),
    "order_links": pa.schema(
        [
            ("alias", pa.string()),
            ("order_key", pa.string()),
            ("kind", pa.string()),
            ("time", _TS),
            ("event_key", pa.string()),
        ]
    ),
    "sku_events": pa.schema(
        [
            ("sku", pa.string()),
            ("location_id", pa.string()),
            ("kind", pa.string()),
            ("time", _TS),
            ("event_key", pa.string()),
            ("system", pa.string()),
            ("qty", pa.int64()),
            ("on_hand", pa.int64()),
            ("delta", pa.int64()),
            ("order_key", pa.string()),
            ("reason", pa.string()),
        ]
    ),
    "promotions": pa.schema(
        [
            ("promo_id", pa.string()),
            ("kind", pa.string()),
            ("target", pa.string()),
            ("time", _TS),
            ("effective", _TS),
            ("targets", _STRINGS),
            ("skus", _STRINGS),
            ("promo_kind", pa.string()),
            ("event_key", pa.string()),
        ]
    ),
    "stores": pa.schema([("store_id", pa.string()), ("first_seen", _TS)]),
}

# The event columns the built-in mapping reads.
_BUILTIN_EVENT_COLUMNS = ["source", "id", "type", "time", "data"]

# Entry attributes named otherwise than their column (times are kept in microseconds).
_ATTRIBUTE = {"time": "time_us", "effective": "effective_us"}


def _table(name: str, entries: Sequence[Any], **columns: Sequence[Any]) -> pa.Table:
    """The table ``name`` of ``entries``, one column per schema field read from the entries'
    attribute of that name, except the ``columns`` given."""
    schema = SCHEMAS[name]
    for field in schema.names:
        if field not in columns:
            attribute = _ATTRIBUTE.get(field, field)
            columns[field] = [getattr(entry, attribute) for entry in entries]
    return pa.table(columns, schema=schema)


def _sku_event_keys(entries: Sequence[SkuEntry]) -> list[str]:
    # Two lines of one event for the same SKU and location are two rows, not one.
    seen: dict[tuple[str, str, str, str], int] = {}
    keys = []
    for entry in entries:
        identity = (entry.sku, entry.location_id, entry.event_key, entry.kind)
        count = seen.get(identity, 0)
        seen[identity] = count + 1
        keys.append(entry.event_key if count == 0 else f"{entry.event_key}#{count}")
    return keys


def tables(mapped: Mapped, now_us: int | None = None) -> Derived:
    """``mapped`` as one Arrow table per derived table; tables with no rows are left out."""
    out: Derived = {}
    if mapped.timeline:
        out["timeline"] = _table("timeline", mapped.timeline)
    if mapped.links:
        out["order_links"] = _table("order_links", mapped.links)
    if mapped.skus:
        out["sku_events"] = _table("sku_events", mapped.skus, event_key=_sku_event_keys(mapped.skus))
    if mapped.promotions:
        out["promotions"] = _table("promotions", mapped.promotions)
    if mapped.stores:
        out["stores"] = _stores_table(mapped.stores, now_us)
    return out


def _stores_table(stores: Iterable[str], now_us: int | None) -> pa.Table:
    ordered = sorted(stores)
    first_seen = time.time_ns() // 1000 if now_us is None else now_us
    return _table("stores", ordered, store_id=ordered, first_seen=[first_seen] * len(ordered))


def span_tables(mapper: Mapper, table: pa.Table, now_us: int | None = None) -> Derived:
    """What a spans table (``storage.tables.SPAN_SCHEMA``) derives, tables with no rows left out.

    With the built-in mapping alone this works column by column (``correlator.span_columns``);
    user span rules may read any attribute of any span, so with them it goes row by row.
    """
    if mapper.rules.spans:
        return tables(mapper.map_spans(_rule_rows(table)), now_us)
    timeline, links, stores = span_entries(table)
    out: Derived = {}
    if timeline.num_rows:
        out["timeline"] = timeline.cast(SCHEMAS["timeline"])
    if links.num_rows:
        out["order_links"] = links.cast(SCHEMAS["order_links"])
    if stores:
        out["stores"] = _stores_table(stores, now_us)
    return out


def touched_keys(derived: Derived) -> set[str]:
    """The order keys and aliases whose identity and summary a write of ``derived`` changes."""
    keys: set[str] = set()
    for name, columns in (("timeline", ("order_key",)), ("order_links", ("alias", "order_key"))):
        table = derived.get(name)
        if table is not None:
            for column in columns:
                keys.update(pc.unique(table.column(column)).to_pylist())
    return keys


def merge(parts: Iterable[Derived]) -> Derived:
    """Several requests' derived tables as one set, table by table."""
    gathered: dict[str, list[pa.Table]] = {}
    for part in parts:
        for name, table in part.items():
            gathered.setdefault(name, []).append(table)
    return {name: pa.concat_tables(found) for name, found in gathered.items()}


# Payload: per table, a 4-byte name length, the name, an 8-byte IPC length and the IPC stream.
_NAME = struct.Struct("<I")
_SIZE = struct.Struct("<Q")


def pack(derived: Derived) -> bytes:
    """``derived`` as one write-ahead-log payload (empty tables are not written)."""
    parts = []
    for name in TABLES:
        table = derived.get(name)
        if table is None or not table.num_rows:
            continue
        encoded_name = name.encode()
        payload = to_ipc(table)
        parts += [_NAME.pack(len(encoded_name)), encoded_name, _SIZE.pack(len(payload)), payload]
    return b"".join(parts)


def unpack(payload: bytes) -> Derived:
    """The tables ``pack`` wrote; raises ``ValueError`` on a payload it did not write."""
    out: Derived = {}
    view = memoryview(payload)
    offset = 0
    while offset < len(view):
        try:
            (name_size,) = _NAME.unpack_from(view, offset)
            offset += _NAME.size
            name = bytes(view[offset : offset + name_size]).decode()
            offset += name_size
            (size,) = _SIZE.unpack_from(view, offset)
            offset += _SIZE.size
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"derived-rows payload is damaged at byte {offset}: {exc}") from exc
        if name not in SCHEMAS or offset + size > len(view):
            raise ValueError(f"derived-rows payload is damaged at byte {offset}: '{name}', {size} bytes")
        out[name] = from_ipc(bytes(view[offset : offset + size]))
        offset += size
    return out


def event_rows(mapper: Mapper, table: pa.Table) -> list[dict[str, Any]]:
    """An events table (``storage.tables.EVENT_SCHEMA``) as the rows ``Mapper.map_events`` reads.

    User event rules may read any attribute; the built-in mapping reads five, its time as µs
    since the epoch (an int, cheaper than a ``datetime`` per event).
    """
    if mapper.rules.events:
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    read = table.select(_BUILTIN_EVENT_COLUMNS)
    micros = pc.cast(read.column("time"), pa.int64())
    rows = read.set_column(read.schema.get_field_index("time"), "time", micros).to_pylist()
    return rows


def _rule_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows user span rules read, times in µs: a ``datetime`` each, not a pandas ``Timestamp``
    (decode workers load no pandas; see ``collector.decoding``)."""
    read = table.select(["timestamp", *MAPPED_COLUMNS, "span_attributes", "resource_attributes"])
    times = pc.cast(read.column("timestamp"), _TS, safe=False)
    rows: list[dict[str, Any]] = read.set_column(0, "timestamp", times).to_pylist()
    return rows


class Derivation:
    """The decode workers' mapping step (``collector.decoding.Deriver``).

    Pickled into each worker as the config section ``mapping`` it was built from (compiled
    rules hold closures, which do not pickle); each worker compiles the rules again.
    """

    def __init__(self, mapping: Mapping[str, Any] | None) -> None:
        self.mapping = mapping
        self.mapper = Mapper(parse_mapping(mapping))

    def __getstate__(self) -> dict[str, Any]:
        # Wrapped: pickle skips __setstate__ when the state is None (no mapping section).
        return {"mapping": self.mapping}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["mapping"])  # type: ignore[misc]

    def spans(self, table: pa.Table) -> bytes:
        return pack(span_tables(self.mapper, table))

    def events(self, table: pa.Table) -> bytes:
        return pack(tables(self.mapper.map_events(event_rows(self.mapper, table))))
