"""Talking to a node: POSTs that wait out backpressure and outages instead of dropping anything.

A 429 or 503 is the node asking for time (``Retry-After``); a refused connection is a node that is
restarting. Both are waited out, for as long as it takes, until the caller's ``stop`` event is set.
Any other refusal (a bad token, a body too large) cannot succeed by retrying: ``NodeRefused``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

TRANSIENT = frozenset({429, 502, 503, 504})
_MAX_WAIT_S = 30.0

# The SDK exporter logs every retry it makes; we wait out the same answers and count them instead.
logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)


class NodeRefused(Exception):
    """The node refused a request for a reason retrying cannot fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"The node answered {status}: {message}")
        self.status = status
        self.message = message


class Stopped(Exception):
    """The caller asked to stop while a request was still waiting for the node."""


@dataclass
class Waits:
    """How often the node asked us to wait (429/503) or could not be reached; shared by threads."""

    throttled: int = 0
    unreachable: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, throttled: bool) -> None:
        with self._lock:
            if throttled:
                self.throttled += 1
            else:
                self.unreachable += 1


def retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait: the node's ``Retry-After`` (seconds) when given, else a capped backoff."""
    if header and header.strip().isdigit():
        return min(float(header.strip()), _MAX_WAIT_S)
    return min(0.25 * 2.0**attempt, 5.0)


def _wait(stop: threading.Event, seconds: float) -> None:
    if stop.wait(seconds):
        raise Stopped()


def _refusal(response: requests.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(document, dict):
        return str(document.get("error") or document.get("message") or document)[:300]
    return str(document)[:300]


class Uploader:
    """POSTs bodies to one node. Thread-safe: each thread keeps its own HTTP session."""

    def __init__(
        self, target: str, token: str | None, stop: threading.Event, waits: Waits | None = None
    ) -> None:
        self.target = target.rstrip("/")
        self.token = token
        self.stop = stop
        self.waits = waits if waits is not None else Waits()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session = session
        return session

    def post(
        self, path: str, body: bytes, content_type: str, accept: Sequence[int] = ()
    ) -> requests.Response:
        """The node's answer: 2xx, or one of the ``accept`` statuses (an answer the caller reads).

        Raises ``NodeRefused`` for any other status and ``Stopped`` when ``stop`` is set while waiting.
        """
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Stopped()
            try:
                response = self._session().post(
                    f"{self.target}{path}", data=body, headers={"Content-Type": content_type}, timeout=60
                )
            except requests.ConnectionError:
                self.waits.count(throttled=False)
                _wait(self.stop, retry_after(None, attempt))
                attempt += 1
                continue
            except requests.Timeout:
                self.waits.count(throttled=False)
                attempt += 1
                continue
            if response.ok or response.status_code in accept:
                return response
            if response.status_code in TRANSIENT:
                self.waits.count(throttled=True)
                _wait(self.stop, retry_after(response.headers.get("Retry-After"), attempt))
                attempt += 1
                continue
            raise NodeRefused(response.status_code, _refusal(response))

    def get(self, path: str) -> requests.Response:
        return self._session().get(f"{self.target}{path}", timeout=30)


class PersistentSpanExporter(SpanExporter):
    """The SDK's OTLP/HTTP exporter, asked again until the node takes the batch.

    The SDK exporter honours ``Retry-After`` itself but gives up after six tries or its timeout;
    a node busy for a minute would then lose spans. Its session records each answer's status,
    so a transient failure is retried and a permanent one raises ``NodeRefused``.
    """

    def __init__(
        self, target: str, token: str | None, stop: threading.Event, waits: Waits | None = None
    ) -> None:
        self.stop = stop
        self.waits = waits if waits is not None else Waits()
        self._status: int | None = None
        session = requests.Session()
        session.hooks["response"].append(self._record)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._inner = OTLPSpanExporter(
            endpoint=f"{target.rstrip('/')}/v1/traces", headers=headers, session=session, timeout=60
        )

    def _record(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        self._status = response.status_code

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        attempt = 0
        while True:
            self._status = None
            if self._inner.export(spans) is SpanExportResult.SUCCESS:
                return SpanExportResult.SUCCESS
            status = self._status
            if status is not None and status not in TRANSIENT:
                raise NodeRefused(status, "the node refused a batch of spans")
            self.waits.count(throttled=status is not None)
            _wait(self.stop, retry_after(None, attempt))
            attempt += 1

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def wait_for_node(target: str, stop: threading.Event, timeout: float) -> bool:
    """Whether ``/readyz`` answered 200 within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if requests.get(f"{target.rstrip('/')}/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        stop.wait(0.2)
    return False
