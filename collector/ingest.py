"""The ingest path shared by OTLP/HTTP, OTLP/gRPC and CloudEvents: decode, log durably, answer.

Nothing here blocks forever or buffers without bound: decoding runs in the worker
pool, the write-ahead log refuses appends past its cap, and that refusal becomes a
retry-later answer at the edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

from collector.decoding import (
    Decoded,
    DecoderPool,
    decode_events_job,
    decode_logs_job,
    decode_traces_job,
)
from collector.metrics import IngestMetrics
from collector.model import Rejection
from collector.wal import WalClosed, WalFull, WriteAheadLog
from collector.writer import DERIVED_KIND, EVENTS, QUARANTINE, SPANS


class Backpressure(Exception):
    """The node cannot take this request now; the client should retry after ``retry_after`` seconds.

    ``unavailable`` is true when storage is down (503) rather than the node being busy (429).
    """

    def __init__(self, reason: str, retry_after: int, unavailable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unavailable = unavailable


class IngestResult(NamedTuple):
    accepted: int
    rejected: list[Rejection]
    ignored: int = 0


class Ingest:
    """Turns request bodies into durable log records; the answer is sent only after fsync."""

    def __init__(
        self,
        wal: WriteAheadLog,
        decoder: DecoderPool,
        metrics: IngestMetrics,
        storage_available: Callable[[], bool],
    ) -> None:
        self.wal = wal
        self.decoder = decoder
        self.metrics = metrics
        self.storage_available = storage_available

    async def traces(self, body: bytes, encoding: str) -> IngestResult:
        started = time.perf_counter()
        decoded = await self.decoder.run(decode_traces_job, body, encoding, time.time_ns())
        await asyncio.wrap_future(self._append(decoded, SPANS))
        return self._count(decoded, "spans", started)

    async def logs(self, body: bytes, encoding: str) -> IngestResult:
        started = time.perf_counter()
        decoded = await self.decoder.run(decode_logs_job, body, encoding, time.time_ns())
        await asyncio.wrap_future(self._append(decoded, EVENTS))
        return self._count(decoded, "logs", started)

    async def events(self, headers: dict[str, str], body: bytes) -> IngestResult:
        started = time.perf_counter()
        decoded = await self.decoder.run(decode_events_job, headers, body, time.time_ns())
        await asyncio.wrap_future(self._append(decoded, EVENTS))
        return self._count(decoded, "events", started)

    def traces_sync(self, body: bytes) -> IngestResult:
        """The gRPC path: same as ``traces`` for a protobuf body, on the caller's thread."""
        started = time.perf_counter()
        decoded = self.decoder.run_sync(decode_traces_job, body, "protobuf", time.time_ns())
        self._append(decoded, SPANS).result()
        return self._count(decoded, "spans", started)

    def _append(self, decoded: Decoded, kind: int) -> Future[None]:
        records = []
        if decoded.rows:
            if decoded.derived is not None:
                records.append((DERIVED_KIND[kind], decoded.derived))
            records.append((kind, decoded.ipc))
        if decoded.rejected:
            records.append((QUARANTINE, decoded.quarantine_ipc))
        if not records:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        try:
            return self.wal.append(records)
        except WalFull as exc:
            available = self.storage_available()
            reason = (
                "Storage is unavailable and the write-ahead log is full; retry later."
                if not available
                else "The node is writing a backlog; retry later."
            )
            raise Backpressure(
                reason, retry_after=5 if not available else 1, unavailable=not available
            ) from exc
        except WalClosed as exc:
            raise Backpressure(
                "The node is shutting down; retry later.", retry_after=5, unavailable=True
            ) from exc

    def _count(self, decoded: Decoded, signal: str, started: float) -> IngestResult:
        self.metrics.accepted.inc(decoded.rows, signal)
        if decoded.rejected:
            self.metrics.rejected.inc(len(decoded.rejected), signal)
            self.metrics.quarantined.inc(len(decoded.rejected), signal)
        self.metrics.ack_latency.observe(time.perf_counter() - started, signal)
        return IngestResult(decoded.rows, decoded.rejected, decoded.ignored)
