"""Where the writer puts rows: ClickHouse tables, behind a small protocol tests can wrap."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from storage.client import StorageUnavailable
from storage.tables import EVENT_SCHEMA

# What makes a span or an event the same one when it arrives again.
SPAN_IDENTITY = ["trace_id", "span_id"]
EVENT_IDENTITY = ["source", "id"]


class RowSink(Protocol):
    """Writes decoded batches to storage; raises ``StorageUnavailable`` when it cannot."""

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        """Store spans; return how many were repeats of spans in the same batch.

        ``derived`` holds the decode workers' derived-rows payloads of exactly these rows, one per
        request (None when the batch has rows logged without them); a sink that stores derived
        rows uses them instead of deriving again.
        """
        ...

    def write_events(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        """Store events not stored before (by source and id); return how many were repeats."""
        ...

    def write_quarantine(self, table: pa.Table, token: str) -> None: ...

    def settle(self, token: str) -> None:
        """Finish the batch ``token`` once all its rows are written (each kind's write got
        ``token:<kind>``): a sink that derives from rows does it here, once for the whole batch."""
        ...

    def ping(self) -> bool: ...


def first_of_each(table: pa.Table, keys: list[str]) -> pa.Table:
    """The first row of each distinct key, in the original order."""
    if table.num_rows < 2:
        return table
    numbered = table.select(keys).append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    firsts = numbered.group_by(keys, use_threads=False).aggregate([("__row", "min")]).column("__row_min")
    if len(firsts) == table.num_rows:
        return table
    return table.take(pc.take(firsts, pc.array_sort_indices(firsts)))


def _key(table: pa.Table, first: str, second: str) -> pa.Array:
    return pc.binary_join_element_wise(table.column(first), table.column(second), "\x1f")


class ClickHouseSink:
    """The real sink. Owns the SQL of every write the collector makes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self.client.command("DROP TABLE IF EXISTS events_incoming")
        # A Memory table holds each incoming batch so the repeat check is a primary-key
        # lookup of exactly the batch's keys, never a scan of the events table.
        self.client.command("CREATE TABLE events_incoming (source String, id String) ENGINE = Memory")

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        unique = first_of_each(table, SPAN_IDENTITY)
        self._insert("spans", unique, token)
        return int(table.num_rows - unique.num_rows)

    def write_events(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        unique = first_of_each(table, EVENT_IDENTITY)
        with self._lock:
            try:
                self.client.command("TRUNCATE TABLE events_incoming")
                self.client.insert_arrow("events_incoming", unique.select(EVENT_IDENTITY))
                stored = self.client.query_arrow(
                    "SELECT source, id FROM events "
                    "WHERE (source, id) IN (SELECT source, id FROM events_incoming)",
                    use_strings=True,
                )
            except Exception as exc:
                raise StorageUnavailable(f"ClickHouse refused the events repeat check: {exc}") from exc
        fresh = unique
        if stored.num_rows:
            seen = pc.is_in(_key(unique, "source", "id"), value_set=_key(stored, "source", "id"))
            fresh = unique.filter(pc.invert(seen))
        if fresh.num_rows:
            self._insert("events", fresh.cast(EVENT_SCHEMA), token)
        return int(table.num_rows - fresh.num_rows)

    def write_quarantine(self, table: pa.Table, token: str) -> None:
        self._insert("quarantine", table, token)

    def settle(self, token: str) -> None:
        pass  # raw rows are complete once inserted

    def ping(self) -> bool:
        try:
            return bool(self.client.command("SELECT 1") == 1)
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False

    def _insert(self, name: str, table: pa.Table, token: str) -> None:
        try:
            self.client.insert_arrow(name, table, settings={"insert_deduplication_token": f"{token}:{name}"})
        except Exception as exc:
            raise StorageUnavailable(f"ClickHouse refused an insert into {name}: {exc}") from exc
