"""Where delivered events and spans go, in batches: a node over HTTP, files, or memory.

``NodeOutbox`` sends CloudEvents batches (``application/cloudevents-batch+json``) and OTLP spans
through the SDK's OTLP/HTTP exporter from a few worker threads. At most ``in_flight`` batches
wait at a time; past that ``add_*`` blocks, so a slow node slows the simulation down instead of
the simulator queueing without bound or dropping anything.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from simulator.upload import NodeRefused, PersistentSpanExporter, Uploader, Waits

EVENT_BATCH = 500
SPAN_BATCH = 512
BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"


@dataclass
class OutboxStats:
    events: int = 0
    spans: int = 0
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def refuse(self, reasons: Sequence[str]) -> None:
        with self._lock:
            self.rejected += len(reasons)
            self.reasons.update(reasons)


class Outbox(Protocol):
    stats: OutboxStats

    def add_event(self, event: dict[str, Any]) -> None: ...

    def add_span(self, span: ReadableSpan) -> None: ...

    def ship(self) -> None:
        """Hand the partial batches on now, without waiting for them (live traffic goes out promptly)."""
        ...

    def flush(self) -> None:
        """Send what is batched and wait until everything handed over is acknowledged (or written)."""
        ...

    def close(self) -> None: ...


def encode_events(events: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps(events, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, as the OTLP/JSON spec wants them)."""
    document = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for item in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()
    return document


class _Batching:
    def __init__(self) -> None:
        self.stats = OutboxStats()
        self._events: list[dict[str, Any]] = []
        self._spans: list[ReadableSpan] = []

    def add_event(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) >= EVENT_BATCH:
            batch, self._events = self._events, []
            self._ship_events(batch)

    def add_span(self, span: ReadableSpan) -> None:
        self._spans.append(span)
        if len(self._spans) >= SPAN_BATCH:
            batch, self._spans = self._spans, []
            self._ship_spans(batch)

    def ship(self) -> None:
        self._ship_pending()

    def _ship_pending(self) -> None:
        if self._events:
            batch, self._events = self._events, []
            self._ship_events(batch)
        if self._spans:
            spans, self._spans = self._spans, []
            self._ship_spans(spans)

    def _ship_events(self, batch: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _ship_spans(self, batch: list[ReadableSpan]) -> None:
        raise NotImplementedError


class MemoryOutbox(_Batching):
    """Keeps what it is given (``keep``) and counts the bytes it would send (``encode``).

    For tests and the benchmark."""

    def __init__(self, keep: bool = True, encode: bool = False) -> None:
        super().__init__()
        self.keep = keep
        self.encode = encode
        self.events: list[dict[str, Any]] = []
        self.spans: list[ReadableSpan] = []

    def _ship_events(self, batch: list[dict[str, Any]]) -> None:
        size = len(encode_events(batch)) if self.encode else 0
        self.stats.add(events=len(batch), accepted=len(batch), batches=1, bytes=size)
        if self.keep:
            self.events.extend(batch)

    def _ship_spans(self, batch: list[ReadableSpan]) -> None:
        size = len(encode_spans(batch).SerializeToString()) if self.encode else 0
        self.stats.add(spans=len(batch), batches=1, bytes=size)
        if self.keep:
            self.spans.extend(batch)

    def flush(self) -> None:
        self._ship_pending()

    def close(self) -> None:
        self.flush()


class FileOutbox(_Batching):
    """``events.jsonl`` (one CloudEvent a line) and ``spans.otlp.jsonl`` (one OTLP/JSON request a line)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.events_path = directory / "events.jsonl"
        self.spans_path = directory / "spans.otlp.jsonl"
        self._events_file: IO[str] = self.events_path.open("w", encoding="utf-8")
        self._spans_file: IO[str] = self.spans_path.open("w", encoding="utf-8")

    def _ship_events(self, batch: list[dict[str, Any]]) -> None:
        lines = "".join(
            json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n" for event in batch
        )
        self._events_file.write(lines)
        self.stats.add(events=len(batch), batches=1, bytes=len(lines))

    def _ship_spans(self, batch: list[ReadableSpan]) -> None:
        line = json.dumps(otlp_json(batch), separators=(",", ":")) + "\n"
        self._spans_file.write(line)
        self.stats.add(spans=len(batch), batches=1, bytes=len(line))

    def flush(self) -> None:
        self._ship_pending()
        self._events_file.flush()
        self._spans_file.flush()

    def close(self) -> None:
        self.flush()
        self._events_file.close()
        self._spans_file.close()


class NodeOutbox(_Batching):
    def __init__(
        self,
        target: str,
        token: str | None,
        stop: threading.Event,
        workers: int = 4,
        in_flight: int = 8,
    ) -> None:
        super().__init__()
        self.target = target
        self.token = token
        self.stop = stop
        self.waits = Waits()
        self.uploader = Uploader(target, token, stop, self.waits)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="milepost-send")
        self._slots = threading.BoundedSemaphore(in_flight)
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._local = threading.local()
        self._exporters: list[PersistentSpanExporter] = []

    def _submit(self, job: Callable[[], None]) -> None:
        self._raise_error()
        while not self._slots.acquire(timeout=0.2):
            self._raise_error()
        future = self._pool.submit(job)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)
            error = future.exception()
            if error is not None and self._error is None:
                self._error = error
        self._slots.release()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _ship_events(self, batch: list[dict[str, Any]]) -> None:
        self._submit(lambda: self._post_events(batch))

    def _post_events(self, batch: list[dict[str, Any]]) -> None:
        body = encode_events(batch)
        response = self.uploader.post("/v1/events", body, BATCH_MEDIA_TYPE, accept=(400,))
        document = response.json()
        # A 400 whose detail lists rejections is an answer about the events; any other 400 is not.
        answer = document.get("detail") if response.status_code == 400 else document
        if not isinstance(answer, dict) or "rejected" not in answer:
            raise NodeRefused(response.status_code, str(document.get("error", document))[:300])
        rejected = answer.get("rejected") or []
        self.stats.add(events=len(batch), accepted=int(answer.get("accepted", 0)), batches=1, bytes=len(body))
        self.stats.refuse([f"{r.get('field')}: {r.get('reason')}" for r in rejected if isinstance(r, dict)])

    def _exporter(self) -> PersistentSpanExporter:
        exporter: PersistentSpanExporter | None = getattr(self._local, "exporter", None)
        if exporter is None:
            exporter = PersistentSpanExporter(self.target, self.token, self.stop, self.waits)
            self._local.exporter = exporter
            with self._lock:
                self._exporters.append(exporter)
        return exporter

    def _ship_spans(self, batch: list[ReadableSpan]) -> None:
        def job() -> None:
            self._exporter().export(batch)
            self.stats.add(spans=len(batch), batches=1)

        self._submit(job)

    def flush(self) -> None:
        self._ship_pending()
        while True:
            with self._lock:
                pending = list(self._in_flight)
            if not pending:
                break
            for future in pending:
                future.exception()
        self._raise_error()

    def close(self) -> None:
        try:
            if not self.stop.is_set():
                self.flush()
        finally:
            for exporter in self._exporters:
                exporter.shutdown()
            self._pool.shutdown(wait=True, cancel_futures=True)
