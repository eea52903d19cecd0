"""Where the writer puts rows: ClickHouse tables, behind a small protocol tests can wrap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from storage.client import StorageUnavailable
from storage.tables import EVENT_IDENTITY, EVENT_SCHEMA, SPAN_IDENTITY, first_of_each


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


def _key(table: pa.Table, first: str, second: str) -> pa.Array:
    return pc.binary_join_element_wise(table.column(first), table.column(second), "\x1f")


class ClickHouseSink:
    """The real sink. Owns the SQL of every write the collector makes.

    Given ``insert_client``, a second client on the same store, the raw inserts run on a thread
    of their own with it: the writer goes on with the batch (the events' repeat check, the rows
    the correlator derives) while the spans go in, and ``settle`` waits for them, so a batch still
    counts as written only once its raw rows are stored. ``timed`` hears how long each raw insert
    took, and into which table.
    """

    def __init__(
        self,
        client: Client,
        insert_client: Client | None = None,
        timed: Callable[[float, str], None] = lambda seconds, table: None,
    ) -> None:
        self.client = client
        self.insert_client = insert_client or client
        self.timed = timed
        self._beside = None
        if insert_client is not None:
            self._beside = ThreadPoolExecutor(1, "raw-inserts")
        self._inserting: list[Future[None]] = []
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
        """Wait for the batch's raw inserts; raise the first that failed."""
        inserting, self._inserting = self._inserting, []
        failures = [exc for exc in (insert.exception() for insert in inserting) if exc is not None]
        if failures:
            raise failures[0]

    def close(self) -> None:
        if self._beside is not None:
            self._beside.shutdown(wait=True)

    def ping(self) -> bool:
        try:
            return bool(self.client.command("SELECT 1") == 1)
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False

    def _insert(self, name: str, table: pa.Table, token: str) -> None:
        if self._beside is None:
            self._insert_now(name, table, token)
        else:
            self._inserting.append(self._beside.submit(self._insert_now, name, table, token))

    def _insert_now(self, name: str, table: pa.Table, token: str) -> None:
        started = time.perf_counter()
        try:
            self.insert_client.insert_arrow(
                name, table, settings={"insert_deduplication_token": f"{token}:{name}"}
            )
        except Exception as exc:
            raise StorageUnavailable(f"ClickHouse refused an insert into {name}: {exc}", name) from exc
        self.timed(time.perf_counter() - started, name)
