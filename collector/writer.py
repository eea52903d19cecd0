"""The storage writer: moves acknowledged rows from the write-ahead log into ClickHouse.

One thread reads the log from its checkpoint, gathers records into batches of ``batch_rows``
rows, cutting one at most every ``flush_interval`` seconds, writes them, then moves the
checkpoint. While storage is down it retries the same batch with backoff; the log keeps taking
acknowledged data up to its cap meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pyarrow as pa

from collector.metrics import IngestMetrics
from collector.sink import RowSink
from collector.wal import Position, Record, WriteAheadLog
from storage.client import StorageUnavailable
from storage.memory import release_free_heap
from storage.tables import from_ipc

log = logging.getLogger(__name__)

SPANS, EVENTS, QUARANTINE = 1, 2, 3
KIND_NAMES = {SPANS: "spans", EVENTS: "events", QUARANTINE: "quarantine"}
# Rows derived from one request's spans or events (opaque to the collector), logged just
# before that request's rows; the writer hands them to the sink with the rows.
SPANS_DERIVED, EVENTS_DERIVED = 4, 5
DERIVED_KIND = {SPANS: SPANS_DERIVED, EVENTS: EVENTS_DERIVED}
# The ``table`` label of the insert metrics for ``RowSink.settle``: storing everything a batch
# derives, with the raw inserts that run beside it (the sink times those itself, by table).
SETTLED = "derived"


class StorageWriter:
    """Drains the log into a ``RowSink`` on its own thread."""

    def __init__(
        self,
        wal: WriteAheadLog,
        sink: RowSink,
        metrics: IngestMetrics,
        batch_rows: int,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
        batch_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.wal = wal
        self.sink = sink
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.clock = clock
        self._cut_at = clock()  # when the last batch was cut from the log
        # Rows of large events cost far more memory than spans; bytes bound the batch too.
        self.batch_bytes = batch_bytes
        self.available = True
        self.last_error = ""
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="storage-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write what the log holds without waiting for a full batch (within ``timeout``), then stop.

        If storage is down, the data stays in the log for the next start.
        """
        self._stop.set()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything committed to the log is in storage (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.wal.checkpoint_position >= self.wal.committed:
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        if self.wal.inflight is not None:
            start, end = self.wal.inflight
            records = [r for r in self.wal.read(start, 1 << 30) if r.end <= end]
            if records:
                self._write_until_done(records)
        position = self.wal.checkpoint_position
        while True:
            if not self.wal.wait_for_data(position, 0.2):
                if self._stop.is_set():
                    return
                continue
            records = self._gather(position)
            if not records:
                continue
            self.wal.begin(records[0].start, records[-1].end)
            if not self._write_until_done(records):
                return
            position = records[-1].end

    def _gather(self, position: Position) -> list[Record]:
        """Records from ``position`` until ``batch_rows`` rows, or until ``flush_interval`` has
        passed since the previous batch was cut.

        A trickle shares each batch's fixed costs over an interval; rows that arrived while a
        long write ran, or the first rows after a quiet spell, wait no interval of their own.
        (Counted from the end of the previous write instead, an event behind a 0.4 s write
        waited 0.4 + 0.5 + 0.4 s to be seen: bench ingest.freshness.)
        """
        deadline = self._cut_at + self.flush_interval
        records: list[Record] = []
        rows = size = 0
        while rows < self.batch_rows and size < self.batch_bytes:
            for record in self.wal.read(position, 10_000):
                records.append(record)
                size += len(record.payload)
                position = record.end
                if record.kind in KIND_NAMES:
                    rows += _row_count(record.payload)
                    # Never right after derived rows: they go with the rows logged next.
                    if rows >= self.batch_rows or size >= self.batch_bytes:
                        break
            remaining = deadline - self.clock()
            if rows >= self.batch_rows or size >= self.batch_bytes or remaining <= 0 or self._stop.is_set():
                break
            self.wal.wait_for_data(position, min(remaining, 0.05))
        if records:
            self._cut_at = self.clock()
        return records

    def _write_until_done(self, records: list[Record]) -> bool:
        """Write ``records`` to storage, retrying while it is unavailable. False if stopped first."""
        first, last = records[0].start, records[-1].end
        token = f"{first.segment}.{first.offset}-{last.segment}.{last.offset}"
        delay = 0.1
        while True:
            try:
                self._write(records, token)
            except StorageUnavailable as exc:
                if self.available:
                    log.warning(
                        "storage unavailable; holding data in the write-ahead log", extra={"error": str(exc)}
                    )
                self.available = False
                self.last_error = str(exc)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
                continue
            if not self.available:
                log.info("storage available again; writing the write-ahead log backlog")
            self.available = True
            self.last_error = ""
            self.wal.checkpoint(records[-1].end)
            release_free_heap()  # the batch's buffers, before the next one is read
            return True

    def _write(self, records: list[Record], token: str) -> None:
        by_kind: dict[int, list[pa.Table]] = {}
        # A request's derived rows are logged right before its rows; a kind gets them only
        # when every one of its records has them (a log written without a deriver, or a batch
        # cut between the two records, has rows without them).
        derived: dict[int, list[bytes] | None] = {}
        previous: Record | None = None
        for record in records:
            if record.kind in KIND_NAMES:
                by_kind.setdefault(record.kind, []).append(from_ipc(record.payload))
                found = derived.setdefault(record.kind, [])
                if previous is None or previous.kind != DERIVED_KIND.get(record.kind):
                    derived[record.kind] = None
                elif found is not None:
                    found.append(previous.payload)
            previous = record
        written: list[tuple[str, int, int]] = []  # table, rows, repeats: counted once stored
        for kind, tables in sorted(by_kind.items()):
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            name = KIND_NAMES[kind]
            # One token per kind: spans and events of one batch both derive timeline rows, and
            # a shared token would make ClickHouse drop the second insert as a repeat.
            kind_token = f"{token}:{name}"
            repeats = 0
            try:
                if kind == SPANS:
                    repeats = self.sink.write_spans(table, kind_token, derived[kind])
                elif kind == EVENTS:
                    repeats = self.sink.write_events(table, kind_token, derived[kind])
                else:
                    self.sink.write_quarantine(table, kind_token)
            except StorageUnavailable as exc:
                self.metrics.insert_errors.inc(1, exc.table or name)
                raise
            written.append((name, table.num_rows, repeats))
        started = time.perf_counter()
        try:
            self.sink.settle(token)
        except StorageUnavailable as exc:
            # A raw insert that ran beside the batch's correlation fails here, and names its table.
            self.metrics.insert_errors.inc(1, exc.table or SETTLED)
            raise
        self.metrics.insert_latency.observe(time.perf_counter() - started, SETTLED)
        for name, rows, repeats in written:
            self.metrics.rows_per_insert.observe(rows, name)
            self.metrics.stored.inc(rows, name)
            if name != KIND_NAMES[QUARANTINE]:
                self.metrics.duplicates.inc(repeats, name)


def _row_count(payload: bytes) -> int:
    reader = pa.ipc.open_stream(payload)
    return sum(batch.num_rows for batch in reader)
