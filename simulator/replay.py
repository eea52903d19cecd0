"""``milepost replay``: upload files of CloudEvents and OTLP/JSON to a node, idempotently and resumably.

A file is JSON lines — each line one CloudEvent, or one OTLP/JSON request (``resourceSpans`` or
``resourceLogs``) — or a ``.json`` document: an array of CloudEvents or one OTLP/JSON request.
Events go in batches of ``batch_size``; an OTLP request goes as it is. Batches go one at a time,
and after each one the node acknowledged, the byte offset reached is saved (atomically) in
``FILE.replay-state``, per target. An interrupted replay resumes after the last acknowledged
batch; at worst the batch in flight when it stopped is sent again, and the node stores it once:
``(source, id)`` and span ids are its idempotency keys. A file replayed completely is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.command import INTERRUPTED
from simulator.outbox import BATCH_MEDIA_TYPE
from simulator.progress import ProgressBar, number, say
from simulator.upload import NodeRefused, Stopped, Uploader, wait_for_node

MAX_BATCH_BYTES = 4 * 1024 * 1024
_HEAD_BYTES = 64 * 1024
_OTLP_PATHS = {"resourceSpans": ("/v1/traces", "spans"), "resourceLogs": ("/v1/logs", "log records")}


class ReplayError(Exception):
    """A file cannot be replayed (unreadable, not the format it claims)."""


@dataclass
class Totals:
    events: int = 0
    accepted: int = 0
    quarantined: int = 0
    otlp_requests: int = 0
    otlp_rejected: int = 0
    batches: int = 0
    unreadable: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Batch:
    """What one request carries: events or one OTLP request, and the file offset after it."""

    kind: str  # "events" or an OTLP key of _OTLP_PATHS
    body: bytes
    items: int
    end: int  # file offset after the batch; 0 when a resume could not start there


def state_path(path: Path) -> Path:
    return path.with_name(path.name + ".replay-state")


def _head(path: Path, length: int) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(length)).hexdigest()


class ReplayState:
    """Progress of one file, per target: the offset acknowledged, whether complete, and a digest of the
    file's first bytes (up to 64 KiB of what was sent), so a replaced file starts over while a queue
    that only grew resumes where it was."""

    def __init__(self, path: Path, target: str) -> None:
        self.file = path
        self.path = state_path(path)
        self.target = target
        self.size = path.stat().st_size
        self.document: dict[str, Any] = {}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self.document = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.document = {}

    def saved(self) -> dict[str, Any]:
        entry = self.document.get("targets", {}).get(self.target, {})
        return entry if isinstance(entry, dict) else {}

    def offset(self) -> int:
        """Where to resume: 0 when there is no usable progress (or the file is not the one it was)."""
        entry = self.saved()
        offset = int(entry.get("offset", 0))
        if offset > self.size or entry.get("head") != _head(self.file, min(offset, _HEAD_BYTES)):
            return 0
        return offset

    def save(self, offset: int, complete: bool, totals: Totals) -> None:
        targets = self.document.setdefault("targets", {})
        targets[self.target] = {
            "offset": offset,
            "complete": complete,
            "head": _head(self.file, min(offset, _HEAD_BYTES)),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "events_sent": totals.events,
            "batches": totals.batches,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.document, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)

    def reset(self) -> None:
        self.document.get("targets", {}).pop(self.target, None)


def _batches(path: Path, offset: int, batch_size: int, unreadable: list[str]) -> Iterator[Batch]:
    if path.suffix == ".json":
        yield from _document_batches(path, batch_size)
        return
    events: list[bytes] = []
    size = 0
    position = offset
    with path.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            position += len(raw)
            text = raw.strip()
            if not text:
                continue
            try:
                item = json.loads(text)
            except ValueError:
                unreadable.append(f"{path.name}: a line at byte {position - len(raw)} is not JSON")
                continue
            otlp = next((key for key in _OTLP_PATHS if isinstance(item, dict) and key in item), None)
            if otlp is not None:
                if events:
                    yield _events_batch(events, position - len(raw))
                    events, size = [], 0
                yield Batch(otlp, text, 1, position)
                continue
            events.append(text)
            size += len(text)
            if len(events) >= batch_size or size >= MAX_BATCH_BYTES:
                yield _events_batch(events, position)
                events, size = [], 0
    if events:
        yield _events_batch(events, position)


def _events_batch(events: list[bytes], end: int) -> Batch:
    return Batch("events", b"[" + b",".join(events) + b"]", len(events), end)


def _document_batches(path: Path, batch_size: int) -> Iterator[Batch]:
    """A ``.json`` file is sent whole (resuming restarts it; the node keeps each item once)."""
    try:
        document = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ReplayError(f"File '{path}' is not JSON ({exc}).") from None
    end = path.stat().st_size
    if isinstance(document, dict):
        otlp = next((key for key in _OTLP_PATHS if key in document), None)
        if otlp is None:
            return  # a single CloudEvent
        yield Batch(otlp, json.dumps(document).encode(), 1, end)
        return
    if not isinstance(document, list):
        raise ReplayError(f"File '{path}' holds neither CloudEvents nor an OTLP/JSON request.")
    for start in range(0, len(document), batch_size):
        chunk = document[start : start + batch_size]
        last = start + batch_size >= len(document)
        yield Batch("events", json.dumps(chunk).encode(), len(chunk), end if last else 0)


class Replayer:
    def __init__(
        self,
        uploader: Uploader,
        batch_size: int = 500,
        restart: bool = False,
        on_batch: Callable[[int], None] = lambda _count: None,
    ) -> None:
        self.uploader = uploader
        self.batch_size = batch_size
        self.restart = restart
        self.on_batch = on_batch
        self.totals = Totals()

    def replay_file(self, path: Path, progress: Callable[[int], None] = lambda _bytes: None) -> None:
        state = ReplayState(path, self.uploader.target)
        if self.restart:
            state.reset()
        saved = state.saved()
        offset = state.offset()
        if saved.get("complete") and offset == state.size:
            self.totals.skipped_files.append(path.name)
            progress(state.size)
            return
        if offset:
            say(f"{path.name}: resuming at byte {number(offset)} of {number(state.size)} (saved progress)")
        progress(offset)
        reached = offset
        for batch in _batches(path, offset, self.batch_size, self.totals.unreadable):
            self._send(batch)
            if batch.end:
                reached = batch.end
                state.save(reached, False, self.totals)
            progress(reached)
            self.on_batch(self.totals.batches)
        state.save(state.size, True, self.totals)
        progress(state.size)

    def _send(self, batch: Batch) -> None:
        totals = self.totals
        if batch.kind == "events":
            response = self.uploader.post("/v1/events", batch.body, BATCH_MEDIA_TYPE, accept=(400,))
            document = response.json()
            answer = document.get("detail") if response.status_code == 400 else document
            if not isinstance(answer, dict) or "rejected" not in answer:
                raise NodeRefused(response.status_code, str(document.get("error", document))[:300])
            totals.events += batch.items
            totals.accepted += int(answer.get("accepted", 0))
            totals.quarantined += int(answer.get("quarantined", 0))
            for rejection in answer.get("rejected") or []:
                field_name, reason = rejection.get("field"), rejection.get("reason")
                totals.rejected[f"{field_name}: {reason}"] += 1
        else:
            path, _ = _OTLP_PATHS[batch.kind]
            response = self.uploader.post(path, batch.body, "application/json")
            partial = (response.json() or {}).get("partialSuccess") or {}
            totals.otlp_requests += 1
            totals.otlp_rejected += int(
                partial.get("rejectedSpans") or partial.get("rejectedLogRecords") or 0
            )
        totals.batches += 1


def duplicates_counted(uploader: Uploader) -> dict[str, float] | None:
    """The node's ``milepost_duplicates_total`` by signal, or None when /metrics is not readable."""
    try:
        response = uploader.get("/metrics")
    except OSError:
        return None
    if response.status_code != 200:
        return None
    counts: dict[str, float] = {}
    wal = 0.0
    for line in response.text.splitlines():
        if line.startswith("milepost_duplicates_total{"):
            signal = line.split('signal="', 1)[1].split('"', 1)[0]
            counts[signal] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("milepost_wal_bytes "):
            wal = float(line.rsplit(" ", 1)[1])
    counts["_wal_bytes"] = wal
    return counts


def _settled(uploader: Uploader, stop: threading.Event, timeout: float = 60.0) -> dict[str, float] | None:
    """Duplicates are counted when the node writes, not when it acknowledges: wait for its log to drain."""
    deadline = time.monotonic() + timeout
    counts = duplicates_counted(uploader)
    while (
        counts is not None and counts["_wal_bytes"] > 0 and time.monotonic() < deadline and not stop.is_set()
    ):
        stop.wait(0.2)
        counts = duplicates_counted(uploader)
    return counts


def replay(
    files: list[Path], target: str, token: str | None, batch_size: int, restart: bool, stop: threading.Event
) -> int:
    uploader = Uploader(target, token, stop)
    if not wait_for_node(target, stop, timeout=30):
        say(f"no node answers at {target}/readyz; start one with 'milepost serve' or pass --target.")
        return 1
    before = _settled(uploader, stop)
    replayer = Replayer(uploader, batch_size, restart)
    total = sum(path.stat().st_size for path in files) or 1
    bar = ProgressBar("replay")
    done_before = 0
    started = time.monotonic()

    def progress(done: int) -> None:
        bar.update((done_before + done) / total, f"{number(replayer.totals.events)} events sent")

    interrupted = False
    try:
        for path in files:
            replayer.replay_file(path, progress)
            done_before += path.stat().st_size
        bar.done(f"{number(replayer.totals.events)} events sent")
    except Stopped:
        interrupted = True
    except NodeRefused as exc:
        say(f"{exc}; stopping. Progress so far is saved: run the same command again to resume.")
        return 1
    except (ReplayError, OSError) as exc:
        say(str(exc))
        return 1
    after = None if interrupted else _settled(uploader, stop)
    _summary(replayer.totals, before, after, time.monotonic() - started)
    if interrupted:
        say("interrupted: progress is saved after every acknowledged batch; run the same command to resume.")
        return INTERRUPTED
    return 0


def _summary(
    totals: Totals, before: dict[str, float] | None, after: dict[str, float] | None, seconds: float
) -> None:
    if totals.skipped_files:
        say(
            f"already replayed completely, nothing sent: {', '.join(totals.skipped_files)} "
            "(pass --restart to send again; the node would store nothing new)"
        )
    rejected = sum(totals.rejected.values())
    say(
        f"sent {number(totals.events)} events in {number(totals.batches)} requests ({seconds:.1f}s): "
        f"{number(totals.accepted)} accepted, {number(rejected)} rejected and quarantined"
        + (
            f"; {number(totals.otlp_requests)} OTLP requests, {number(totals.otlp_rejected)} items rejected"
            if totals.otlp_requests
            else ""
        )
    )
    if before is not None and after is not None:
        events = after.get("events", 0) - before.get("events", 0)
        spans = after.get("spans", 0) - before.get("spans", 0)
        say(
            f"duplicates: {number(events)} events and {number(spans)} spans were already stored "
            "(the node's duplicate counters before and after; they count every sender's repeats)"
        )
    else:
        say("duplicates: unknown (the node's /metrics could not be read; a token needs the read scope)")
    for reason, count in totals.rejected.most_common(10):
        say(f"rejected {count}x: {reason}")
    for line in totals.unreadable[:10]:
        say(f"not sent: {line}")
