"""The write-ahead log: an acknowledgement means the request's rows are on disk here.

Appends are group-committed: one committer thread writes every pending request and
calls fsync once for all of them, so throughput grows with concurrency instead of
paying a disk flush per request. The storage writer reads the log from its checkpoint
and moves the checkpoint on once the rows are in ClickHouse; whole segments behind the
checkpoint are deleted. A record torn by a crash was never acknowledged and is cut off
at start.

Record layout: ``<u32 payload length><u32 crc32 of kind+payload><u8 kind><payload>``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIB")
_SEGMENT = "{:012d}.wal"


class WalFull(Exception):
    """The log holds its configured maximum of data not yet in storage."""


class WalClosed(Exception):
    """The log is shutting down and takes no more appends."""


class Position(NamedTuple):
    segment: int
    offset: int


class Record(NamedTuple):
    kind: int
    payload: bytes
    start: Position
    end: Position


@dataclass
class _Pending:
    records: list[tuple[int, bytes]]
    size: int
    future: Future[None]


class WriteAheadLog:
    """Append-only segments in ``directory`` with group commit and a persisted checkpoint."""

    def __init__(self, directory: Path, segment_bytes: int, max_bytes: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Condition()
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._closed = False
        self.checkpoint_position, self.inflight = self._read_checkpoint()
        self._sizes: dict[int, int] = {}
        self._recover()
        self.committed = self._end_position()
        self._file = open(self._path(self.committed.segment), "ab")  # noqa: SIM115 - kept open for appends
        self.records_committed = 0
        self.commits = 0
        self._thread = threading.Thread(target=self._commit_loop, name="wal-commit", daemon=True)
        self._thread.start()

    # -- appending ---------------------------------------------------------------------------

    def append(self, records: list[tuple[int, bytes]]) -> Future[None]:
        """Queue ``records`` (kind, payload); the future resolves once they are fsync'ed.

        Raises ``WalFull`` when the log already holds ``max_bytes`` not yet in storage,
        so the caller answers with a retry-later status instead of buffering in memory.
        """
        size = sum(_HEADER.size + len(payload) for _, payload in records)
        future: Future[None] = Future()
        with self._lock:
            if self._closed:
                raise WalClosed("The write-ahead log is closed.")
            if self.depth_bytes() + self._pending_bytes + size > self.max_bytes:
                raise WalFull(
                    f"The write-ahead log holds {self.depth_bytes()} bytes, its cap is {self.max_bytes}."
                )
            self._pending.append(_Pending(records, size, future))
            self._pending_bytes += size
            self._lock.notify_all()
        return future

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, []
                self._pending_bytes = 0
            try:
                end = self._write(batch)
            except OSError as exc:
                log.error("write-ahead log write failed", extra={"error": str(exc)})
                self._rewind()
                for item in batch:
                    item.future.set_exception(exc)
                continue
            with self._lock:
                self.committed = end
                self.records_committed += sum(len(item.records) for item in batch)
                self.commits += 1
                self._lock.notify_all()
            for item in batch:
                item.future.set_result(None)

    def _write(self, batch: list[_Pending]) -> Position:
        segment, offset = self.committed
        for item in batch:
            for kind, payload in item.records:
                if offset >= self.segment_bytes:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    self._file.close()
                    segment, offset = segment + 1, 0
                    self._file = open(self._path(segment), "ab")  # noqa: SIM115
                header = _HEADER.pack(len(payload), _checksum(kind, payload), kind)
                self._file.write(header)
                self._file.write(payload)
                offset += _HEADER.size + len(payload)
                self._sizes[segment] = offset
        self._file.flush()
        os.fdatasync(self._file.fileno())
        return Position(segment, offset)

    def _rewind(self) -> None:
        """Cut off what a failed write left past the last commit.

        Those records were never acknowledged; left in place, the next batch would be
        written after them while its positions were counted from the commit point.
        """
        segment, offset = self.committed
        with contextlib.suppress(OSError):  # closing flushes what is still buffered, which failed already
            self._file.close()
        try:
            for number in [n for n in self._sizes if n > segment]:
                self._path(number).unlink(missing_ok=True)
                del self._sizes[number]
            with open(self._path(segment), "r+b") as handle:
                handle.truncate(offset)
            self._sizes[segment] = offset
        except OSError as exc:
            log.error("write-ahead log could not cut a failed write", extra={"error": str(exc)})
        self._file = open(self._path(segment), "ab")  # noqa: SIM115

    # -- reading and checkpointing -----------------------------------------------------------

    def wait_for_data(self, after: Position, timeout: float) -> bool:
        """Block until something was committed past ``after`` (or the timeout); True if so."""
        with self._lock:
            if self.committed > after:
                return True
            self._lock.wait(timeout)
            return self.committed > after

    def read(self, start: Position, max_records: int) -> Iterator[Record]:
        """Committed records from ``start`` on, at most ``max_records``."""
        end = self.committed
        segment, offset = start
        count = 0
        while count < max_records and Position(segment, offset) < end:
            limit = end.offset if segment == end.segment else self._sizes.get(segment, 0)
            if offset >= limit:
                segment, offset = segment + 1, 0
                continue
            with open(self._path(segment), "rb") as handle:
                handle.seek(offset)
                while offset < limit and count < max_records:
                    record = _read_record(handle)
                    if record is None:
                        raise OSError(f"write-ahead log segment {segment} is unreadable at offset {offset}")
                    kind, payload = record
                    begin = Position(segment, offset)
                    offset += _HEADER.size + len(payload)
                    count += 1
                    yield Record(kind, payload, begin, Position(segment, offset))

    def begin(self, start: Position, end: Position) -> None:
        """Record that ``[start, end)`` is being written to storage, before the write starts.

        After a crash the same range is re-read and written with the same deduplication
        token, so a write that landed before the crash is not stored twice.
        """
        self.inflight = (start, end)
        self._write_checkpoint()

    def checkpoint(self, position: Position) -> None:
        """Everything before ``position`` is in storage: persist that and drop old segments."""
        with self._lock:
            self.checkpoint_position = position
            self.inflight = None
        self._write_checkpoint()
        for number in sorted(self._sizes):
            if number < position.segment:
                self._path(number).unlink(missing_ok=True)
                del self._sizes[number]

    def depth_bytes(self) -> int:
        """Bytes committed but not yet in storage."""
        # A copy: the committer adds segments and checkpoint() removes them from other threads.
        sizes = list(self._sizes.items())
        total = sum(size for number, size in sizes if number >= self.checkpoint_position.segment)
        return max(0, total - self.checkpoint_position.offset)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout=10)
        self._file.close()

    # -- files ---------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / _SEGMENT.format(segment)

    def _read_checkpoint(self) -> tuple[Position, tuple[Position, Position] | None]:
        path = self.directory / "checkpoint"
        if not path.exists():
            return Position(0, 0), None
        numbers = [int(part) for part in path.read_text().split()]
        position = Position(numbers[0], numbers[1])
        inflight = None
        if len(numbers) == 6:
            inflight = (Position(numbers[2], numbers[3]), Position(numbers[4], numbers[5]))
        return position, inflight

    def _write_checkpoint(self) -> None:
        parts = [*self.checkpoint_position]
        if self.inflight is not None:
            parts += [*self.inflight[0], *self.inflight[1]]
        temp = self.directory / "checkpoint.tmp"
        with open(temp, "w") as handle:
            handle.write(" ".join(str(part) for part in parts))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.directory / "checkpoint")

    def _recover(self) -> None:
        """Measure the segments on disk and cut a torn record off the last one."""
        numbers = sorted(int(path.stem) for path in self.directory.glob("*.wal"))
        for number in numbers:
            if number < self.checkpoint_position.segment:
                self._path(number).unlink(missing_ok=True)
                continue
            self._sizes[number] = self._valid_length(self._path(number))
            if self._sizes[number] != self._path(number).stat().st_size:
                log.warning(
                    "write-ahead log segment %s had a torn record; cut at %s", number, self._sizes[number]
                )
                with open(self._path(number), "r+b") as handle:
                    handle.truncate(self._sizes[number])
        if not self._sizes:
            self._sizes[self.checkpoint_position.segment] = 0
            self._path(self.checkpoint_position.segment).touch()

    @staticmethod
    def _valid_length(path: Path) -> int:
        offset = 0
        with open(path, "rb") as handle:
            while True:
                record = _read_record(handle)
                if record is None:
                    return offset
                offset += _HEADER.size + len(record[1])

    def _end_position(self) -> Position:
        last = max(self._sizes)
        return Position(last, self._sizes[last])


def _checksum(kind: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(bytes([kind])))


def _read_record(handle: BinaryIO) -> tuple[int, bytes] | None:
    header = handle.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    length, crc, kind = _HEADER.unpack(header)
    payload = handle.read(length)
    if len(payload) < length or _checksum(kind, payload) != crc:
        return None
    return kind, bytes(payload)
