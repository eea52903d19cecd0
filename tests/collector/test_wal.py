"""The write-ahead log: group commit, segments, checkpoints, recovery from a torn tail, back-pressure."""

from __future__ import annotations

import errno
import itertools
import os
import random
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector import wal as wal_module
from collector.wal import Position, Record, WalClosed, WalFull, WriteAheadLog

HEADER = 9  # <u32 length><u32 crc><u8 kind>
START = Position(0, 0)
REAL_FDATASYNC = os.fdatasync

OpenWal = Callable[..., WriteAheadLog]


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "wal"


@pytest.fixture
def open_wal(wal_dir: Path) -> Iterator[OpenWal]:
    """Opens logs on ``wal_dir`` (or another folder) and closes every one of them after the test."""
    opened: list[WriteAheadLog] = []

    def open_(
        directory: Path | None = None, segment_bytes: int = 1 << 20, max_bytes: int = 1 << 30
    ) -> WriteAheadLog:
        log = WriteAheadLog(directory or wal_dir, segment_bytes=segment_bytes, max_bytes=max_bytes)
        opened.append(log)
        return log

    yield open_
    for log in opened:
        log.close()


class GatedDisk:
    """A disk whose flush waits for the test to open the gate, so a commit can be held mid-way."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.flushing = threading.Event()

    def fdatasync(self, fd: int) -> None:
        self.flushing.set()
        assert self.gate.wait(10), "the test never opened the gate"
        REAL_FDATASYNC(fd)


@pytest.fixture
def gated_disk(monkeypatch: pytest.MonkeyPatch, open_wal: OpenWal) -> Iterator[GatedDisk]:
    # Depends on open_wal so the gate opens before the logs close (teardown runs in reverse).
    disk = GatedDisk()
    monkeypatch.setattr(os, "fdatasync", disk.fdatasync)
    yield disk
    disk.gate.set()


def read_all(log: WriteAheadLog, start: Position = START) -> list[Record]:
    return list(log.read(start, 1_000_000))


def payloads(records: list[Record]) -> list[bytes]:
    return [record.payload for record in records]


def size_of(*payloads_: bytes) -> int:
    return sum(HEADER + len(payload) for payload in payloads_)


def segment_files(directory: Path) -> list[int]:
    return sorted(int(path.stem) for path in directory.glob("*.wal"))


def fill(log: WriteAheadLog, count: int, size: int = 40, kind: int = 1) -> list[bytes]:
    """Append ``count`` records one request at a time; return their payloads."""
    written = []
    for number in range(count):
        payload = f"record-{number:04d}-".encode().ljust(size, b".")
        log.append([(kind, payload)]).result(5)
        written.append(payload)
    return written


# -- appending -------------------------------------------------------------------------------------


def test_an_append_resolves_only_once_its_records_are_committed(
    open_wal: OpenWal, gated_disk: GatedDisk
) -> None:
    log = open_wal()
    future = log.append([(3, b"order W-10023 accepted")])

    assert gated_disk.flushing.wait(5)
    assert not future.done()
    assert log.committed == START
    assert read_all(log) == []
    assert log.wait_for_data(START, 0.05) is False

    gated_disk.gate.set()
    assert future.result(5) is None
    assert log.committed == Position(0, size_of(b"order W-10023 accepted"))
    assert [(r.kind, r.payload) for r in read_all(log)] == [(3, b"order W-10023 accepted")]
    assert log.wait_for_data(START, 0.05) is True
    assert (log.commits, log.records_committed) == (1, 1)


def test_one_append_with_several_records_is_committed_together_in_order(open_wal: OpenWal) -> None:
    log = open_wal()
    batch = [(1, b"span"), (2, b"event"), (1, b""), (255, bytes(range(256)))]

    log.append(batch).result(5)

    records = read_all(log)
    assert [(r.kind, r.payload) for r in records] == batch
    assert log.commits == 1
    assert log.records_committed == 4
    assert records[0].start == START
    assert all(a.end == b.start for a, b in itertools.pairwise(records))
    assert records[-1].end == log.committed == Position(0, size_of(*(p for _, p in batch)))


def test_concurrent_appends_are_group_committed_and_keep_each_threads_order(
    open_wal: OpenWal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk flush of a couple of milliseconds, as on real hardware, is what group commit amortises.
    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.002)
        REAL_FDATASYNC(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    log = open_wal(segment_bytes=4096)
    threads, appends = 16, 200
    requests: dict[int, list[list[tuple[int, bytes]]]] = {t: [] for t in range(threads)}
    for number in range(appends):
        rng = random.Random(number)
        thread = number % threads
        request = []
        for part in range(2 if number % 5 == 0 else 1):
            payload = f"t{thread:02d}-{number:03d}-{part}|".encode() + rng.randbytes(rng.randrange(0, 300))
            request.append((rng.randrange(0, 256), payload))
        requests[thread].append(request)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def producer(thread: int) -> None:
        try:
            barrier.wait(10)
            for request in requests[thread]:
                log.append(request).result(10)  # like a request handler, wait for the ack
        except BaseException as exc:  # a thread cannot fail the test itself
            errors.append(exc)

    workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)

    assert errors == []
    expected = {t: [record for request in requests[t] for record in request] for t in range(threads)}
    assert log.records_committed == sum(len(records) for records in expected.values())
    assert log.commits < appends / 4, f"{log.commits} commits for {appends} appends: no group commit"
    assert len(segment_files(log.directory)) > 1
    read_back: dict[int, list[tuple[int, bytes]]] = {t: [] for t in range(threads)}
    for record in read_all(log):
        read_back[int(record.payload[1:3])].append((record.kind, record.payload))
    assert read_back == expected


def test_depth_stays_consistent_while_segments_rotate_and_checkpoints_delete_them(open_wal: OpenWal) -> None:
    """Appends, the committer and the storage writer touch the segment table from different threads."""
    log = open_wal(segment_bytes=1)  # every record opens a new segment
    errors: list[BaseException] = []
    done = threading.Event()

    def producer() -> None:
        try:
            for _ in range(250):
                log.append([(1, b"x" * 16)]).result(5)
        except BaseException as exc:
            errors.append(exc)

    def storage_writer() -> None:
        try:
            while not done.is_set():
                log.checkpoint(log.committed)
        except BaseException as exc:
            errors.append(exc)

    def metrics() -> None:
        try:
            while not done.is_set():
                log.depth_bytes()
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose unguarded shared state
    try:
        producers = [threading.Thread(target=producer) for _ in range(4)]
        readers = [threading.Thread(target=storage_writer), threading.Thread(target=metrics)]
        for thread in [*producers, *readers]:
            thread.start()
        for thread in producers:
            thread.join(60)
        done.set()
        for thread in readers:
            thread.join(10)
    finally:
        sys.setswitchinterval(interval)

    assert errors == []
    assert log.records_committed == 1000
    log.checkpoint(log.committed)
    assert log.depth_bytes() == 0


# -- segments and checkpoints ----------------------------------------------------------------------


def test_records_span_segment_rotation_and_read_back_from_any_position(open_wal: OpenWal) -> None:
    log = open_wal(segment_bytes=256)
    written = [f"sku-884-12 store 042 #{n}".encode() * (1 + n % 4) for n in range(60)]
    for payload in written:
        log.append([(2, payload)]).result(5)

    records = read_all(log)
    assert payloads(records) == written
    assert len(segment_files(log.directory)) >= 10
    for before, after in itertools.pairwise(records):
        assert after.start in (before.end, Position(before.end.segment + 1, 0))
    assert records[-1].end == log.committed
    # A segment is closed once it reaches segment_bytes, so it overshoots by at most one record.
    longest = max(size_of(payload) for payload in written)
    for number in segment_files(log.directory)[:-1]:
        assert 256 <= (log.directory / f"{number:012d}.wal").stat().st_size < 256 + longest

    middle = records[37]
    assert payloads(read_all(log, middle.start)) == written[37:]
    assert payloads(read_all(log, middle.end)) == written[38:]
    assert payloads(list(log.read(middle.start, 3))) == written[37:40]
    assert read_all(log, log.committed) == []


def test_checkpoint_deletes_whole_segments_behind_it_and_lowers_the_depth(open_wal: OpenWal) -> None:
    log = open_wal(segment_bytes=200)
    written = fill(log, 40, size=60)
    records = read_all(log)
    assert log.depth_bytes() == size_of(*written)
    files_before = segment_files(log.directory)

    mark = records[25].end
    assert mark.segment >= 2
    log.checkpoint(mark)

    assert log.checkpoint_position == mark
    assert segment_files(log.directory) == [n for n in files_before if n >= mark.segment]
    assert log.depth_bytes() == size_of(*written[26:])
    assert payloads(read_all(log, mark)) == written[26:]
    # Reading from before the checkpoint skips what was deleted instead of failing.
    assert payloads(read_all(log)) == [r.payload for r in records if r.start.segment >= mark.segment]

    log.checkpoint(log.committed)
    assert log.depth_bytes() == 0
    assert segment_files(log.directory) == [log.committed.segment]


def test_reopening_resumes_from_the_persisted_checkpoint(open_wal: OpenWal, wal_dir: Path) -> None:
    log = open_wal(segment_bytes=300)
    written = fill(log, 30, size=50)
    mark = read_all(log)[11].end
    log.checkpoint(mark)
    end = log.committed
    log.close()

    reopened = open_wal(segment_bytes=300)

    assert reopened.checkpoint_position == mark
    assert reopened.inflight is None
    assert reopened.committed == end
    assert payloads(read_all(reopened, reopened.checkpoint_position)) == written[12:]
    assert reopened.depth_bytes() == size_of(*written[12:])
    reopened.append([(1, b"after restart")]).result(5)
    assert payloads(read_all(reopened, mark)) == [*written[12:], b"after restart"]


def test_reopening_deletes_segments_a_crash_left_behind_the_checkpoint(
    open_wal: OpenWal, wal_dir: Path
) -> None:
    log = open_wal(segment_bytes=200)
    written = fill(log, 20, size=60)
    first_segment = (wal_dir / f"{0:012d}.wal").read_bytes()
    mark = read_all(log)[10].end
    log.checkpoint(mark)
    log.close()
    # A crash after the checkpoint was persisted but before old segments were unlinked.
    (wal_dir / f"{0:012d}.wal").write_bytes(first_segment)

    reopened = open_wal(segment_bytes=200)

    assert 0 not in segment_files(wal_dir)
    assert payloads(read_all(reopened, mark)) == written[11:]
    assert reopened.depth_bytes() == size_of(*written[11:])


def test_begin_persists_the_inflight_range_until_the_checkpoint(open_wal: OpenWal) -> None:
    log = open_wal(segment_bytes=150)
    fill(log, 12, size=40)
    records = read_all(log)
    log.begin(records[2].start, records[7].end)
    assert log.inflight == (records[2].start, records[7].end)
    log.close()

    reopened = open_wal(segment_bytes=150)
    assert reopened.inflight == (records[2].start, records[7].end)
    assert all(isinstance(position, Position) for position in reopened.inflight)
    assert reopened.checkpoint_position == START

    reopened.checkpoint(records[7].end)
    assert reopened.inflight is None
    reopened.close()

    again = open_wal(segment_bytes=150)
    assert again.inflight is None
    assert again.checkpoint_position == records[7].end


# -- recovery --------------------------------------------------------------------------------------


def _partial_header() -> bytes:
    return struct.pack("<IIB", 40, 0, 1)[:5]


def _partial_payload() -> bytes:
    payload = b"half a record"
    return struct.pack("<IIB", 100, wal_module._checksum(1, payload), 1) + payload


def _corrupt_crc() -> bytes:
    payload = b"order W-10024 ready"
    return struct.pack("<IIB", len(payload), wal_module._checksum(1, payload) ^ 1, 1) + payload


def _garbage() -> bytes:
    return b"\xff" * 23


@pytest.mark.parametrize("torn", [_garbage, _partial_header, _partial_payload, _corrupt_crc])
def test_a_torn_record_at_the_end_is_cut_off_on_reopen(
    open_wal: OpenWal, wal_dir: Path, torn: Callable[[], bytes]
) -> None:
    log = open_wal(segment_bytes=200)
    written = fill(log, 9, size=50)
    end = log.committed
    log.close()
    last = wal_dir / f"{end.segment:012d}.wal"
    assert end.segment > 0 and last.stat().st_size == end.offset
    with open(last, "ab") as handle:
        handle.write(torn())

    reopened = open_wal(segment_bytes=200)

    assert last.stat().st_size == end.offset
    assert reopened.committed == end
    assert payloads(read_all(reopened)) == written
    reopened.append([(1, b"after the crash")]).result(5)
    reopened.close()
    assert payloads(read_all(open_wal(segment_bytes=200))) == [*written, b"after the crash"]


def test_a_log_whose_only_record_is_torn_reopens_empty(open_wal: OpenWal, wal_dir: Path) -> None:
    wal_dir.mkdir()
    (wal_dir / f"{0:012d}.wal").write_bytes(_corrupt_crc())

    log = open_wal()

    assert log.committed == START
    assert read_all(log) == []
    log.append([(1, b"first")]).result(5)
    assert payloads(read_all(log)) == [b"first"]


@pytest.mark.parametrize("segment_bytes", [1 << 20, 20], ids=["same-segment", "across-rotation"])
def test_a_failed_flush_fails_its_appends_and_leaves_the_log_consistent(
    open_wal: OpenWal, monkeypatch: pytest.MonkeyPatch, segment_bytes: int
) -> None:
    log = open_wal(segment_bytes=segment_bytes)
    log.append([(1, b"before")]).result(5)
    calls = 0

    def fails_once(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EIO, "Input/output error")
        REAL_FDATASYNC(fd)

    monkeypatch.setattr(os, "fdatasync", fails_once)
    with pytest.raises(OSError, match="Input/output error"):
        log.append([(1, b"never acknowledged 1"), (1, b"never acknowledged 2")]).result(5)
    log.append([(1, b"after")]).result(5)

    # What was refused is gone; what was acknowledged is readable now and after a restart.
    assert payloads(read_all(log)) == [b"before", b"after"]
    assert log.depth_bytes() == size_of(b"before", b"after")
    log.close()
    assert payloads(read_all(open_wal(segment_bytes=segment_bytes))) == [b"before", b"after"]


# -- back-pressure and shutdown --------------------------------------------------------------------


def test_append_raises_wal_full_past_max_bytes_until_a_checkpoint(open_wal: OpenWal) -> None:
    log = open_wal(max_bytes=1000)
    payload = b"p" * (100 - HEADER)
    for _ in range(10):
        log.append([(1, payload)]).result(5)  # exactly at the cap is still accepted
    assert log.depth_bytes() == 1000

    with pytest.raises(WalFull, match=r"holds 1000 bytes, its cap is 1000"):
        log.append([(1, b"")])
    with pytest.raises(WalFull):
        log.append([(1, b"x")])
    assert log.records_committed == 10

    log.checkpoint(read_all(log)[4].end)
    assert log.depth_bytes() == 500
    for _ in range(5):
        log.append([(1, payload)]).result(5)
    with pytest.raises(WalFull):
        log.append([(1, b"")])

    log.checkpoint(log.committed)
    log.append([(1, b"accepted again")]).result(5)
    assert payloads(read_all(log, log.checkpoint_position)) == [b"accepted again"]


def test_wal_full_counts_appends_still_waiting_for_their_commit(
    open_wal: OpenWal, gated_disk: GatedDisk
) -> None:
    log = open_wal(max_bytes=1000)
    first = log.append([(1, b"a" * 491)])  # 500 bytes, held in the committer's flush
    assert gated_disk.flushing.wait(5)
    second = log.append([(1, b"b" * 391)])  # 400 bytes, pending behind it

    with pytest.raises(WalFull):
        log.append([(1, b"c" * 200)])
    assert not first.done() and not second.done()

    gated_disk.gate.set()
    first.result(5)
    second.result(5)
    assert log.depth_bytes() == 900


def test_a_request_larger_than_the_cap_is_refused_even_when_empty(open_wal: OpenWal) -> None:
    log = open_wal(max_bytes=100)
    with pytest.raises(WalFull):
        log.append([(1, b"x" * 100)])
    assert log.depth_bytes() == 0


def test_close_commits_what_was_queued_and_refuses_later_appends(open_wal: OpenWal, wal_dir: Path) -> None:
    log = open_wal()
    futures = [log.append([(1, f"queued {n}".encode())]) for n in range(20)]
    log.close()

    assert all(future.done() and future.exception() is None for future in futures)
    with pytest.raises(WalClosed, match="closed"):
        log.append([(1, b"too late")])
    assert payloads(read_all(open_wal())) == [f"queued {n}".encode() for n in range(20)]


def test_a_new_directory_starts_empty_with_one_segment(open_wal: OpenWal, tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "wal"
    log = open_wal(directory)

    assert directory.is_dir()
    assert segment_files(directory) == [0]
    assert log.committed == log.checkpoint_position == START
    assert log.inflight is None
    assert log.depth_bytes() == 0
    assert read_all(log) == []
