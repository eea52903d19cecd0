"""The ingest benchmark: OTLP spans and CloudEvents per second into a real node, beside the ceilings.

``python -m bench.ingest --size quick|full [--profile]``, or ``make bench-ingest BENCH_SIZE=...``.

A real ``milepost serve`` runs as its own process on a fresh data directory; the load comes from
separate sender processes (spawned, so they never share the node's GIL) over keep-alive HTTP, with
requests encoded before the clock starts. Only 200 answers count; 429/503 are retried after
Retry-After and counted. After each run the node writes its write-ahead log out, is stopped
(SIGTERM) and the store is queried: a run whose stored rows differ from what was acknowledged
has no figure. In the same invocation, a child process measures the ceilings on the same span rows:
pure protobuf parsing, ``decode_traces`` on one core, and chDB's ``insert_arrow`` in 100k-row chunks.

The node and the load generator share this machine's cores; the notes of each figure say how much
CPU each side used.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from queue import Empty
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.freshness import LANES, POLL_S, FreshnessProbe
from bench.report import BENCH_DIR, Figure, record, show

SPANS_PER_REQUEST = 512
EVENTS_PER_BATCH = 500
# Event batches decoded and inserted for the ceilings: 100,000 events, one insert_arrow chunk.
CEILING_EVENT_BATCHES = 200
SENDERS = 4  # load generator processes
CONNECTIONS = 4  # keep-alive connections (threads) per sender, each with one request in flight
WARM_UP_REQUESTS = 2  # per sender, acknowledged before the clock starts
RATE_CAP = 150_000  # items/s the request pools are sized for; a faster node ends a run early
PROFILE_SVG = BENCH_DIR / "profile-ingest.svg"
# Requests cycle through this many templates (other values: SKUs, stores, durations, errors), so the
# stored columns are not one 512-span pattern repeated; compression is still somewhat optimistic.
TEMPLATES = 16

# Stamped into every pre-encoded request: the first 8 bytes of each trace id, and an ASCII
# sequence number inside order and event ids, so every request carries unique ids.
TRACE_MARK = bytes.fromhex("b37a1ce4550f92d8")
SEQ_MARK = b"~SEQ~~~~"


@dataclass(frozen=True)
class Size:
    """How long and how often each measurement runs."""

    runs: int  # load runs per throughput figure (median)
    seconds: float  # length of one throughput run
    latency_seconds: float  # length of the half-rate latency run
    ceiling_spans: int  # span rows the ceilings are measured on
    ceiling_repeats: int  # repetitions of each ceiling (median)


SIZES = {
    "quick": Size(runs=1, seconds=5.0, latency_seconds=4.0, ceiling_spans=128 * 1024, ceiling_repeats=1),
    "full": Size(runs=3, seconds=20.0, latency_seconds=20.0, ceiling_spans=512 * 1024, ceiling_repeats=3),
}


@dataclass(frozen=True)
class Signal:
    """One kind of load: what it counts, where it is sent and how many items a request carries."""

    name: str  # "otlp" or "events"
    unit: str
    path: str
    content_type: str
    per_request: int


OTLP = Signal("otlp", "spans/s", "/v1/traces", "application/x-protobuf", SPANS_PER_REQUEST)
EVENTS = Signal("events", "events/s", "/v1/events", "application/cloudevents-batch+json", EVENTS_PER_BATCH)


# -- pre-encoded requests -----------------------------------------------------------------------

_SERVER, _CLIENT, _INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL


class _Step(NamedTuple):
    """One span of the benchmark's checkout trace; ``parent`` is a position in ``_TRACE_SHAPE``."""

    service: str
    name: str
    kind: Span.SpanKind.ValueType
    parent: int
    route: str
    peer: str
    milestone: str = ""


_TRACE_SHAPE = (
    _Step("web-storefront", "POST /api/checkout", _SERVER, -1, "/api/checkout", "shop.example", "accepted"),
    _Step("web-storefront", "POST order-service", _CLIENT, 0, "/orders", "order-service"),
    _Step("order-service", "POST /orders", _SERVER, 1, "/orders", "web-storefront"),
    _Step("order-service", "orders.persist", _INTERNAL, 2, "/orders", "orders-db"),
    _Step(
        "inventory-service", "POST /reservations", _SERVER, 2, "/reservations", "order-service", "reserved"
    ),
    _Step("inventory-service", "stock.lookup", _INTERNAL, 4, "/reservations", "stock-db"),
    _Step("payment-service", "POST /payments/authorize", _SERVER, 2, "/payments", "order-service", "paid"),
    _Step("payment-service", "POST psp charges", _CLIENT, 6, "/v1/charges", "psp.example.net"),
)
_SERVICES = ("web-storefront", "order-service", "inventory-service", "payment-service")
_CHANNELS = ("web", "app", "store", "marketplace")


def _attribute(span: Span, key: str, value: str | int) -> None:
    kv: KeyValue = span.attributes.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def otlp_template(base_ns: int, seed: int = 0) -> bytes:
    """One ``ExportTraceServiceRequest`` of 512 spans (64 traces across 4 services), 10 attributes each.

    Trace ids start with ``TRACE_MARK`` and order ids hold ``SEQ_MARK``; ``stamp`` replaces both.
    """
    rng = random.Random(seed)
    traces = SPANS_PER_REQUEST // len(_TRACE_SHAPE)
    request = ExportTraceServiceRequest()
    for service in _SERVICES:
        resource_spans = request.resource_spans.add()
        for key, value in (
            ("service.name", service),
            ("service.namespace", "retail"),
            ("service.version", "2.14.3"),
            ("deployment.environment", "production"),
            ("host.name", f"{service}-7d9f8c-{rng.randrange(10)}"),
            ("telemetry.sdk.language", "python"),
        ):
            kv = resource_spans.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = "opentelemetry.instrumentation.asgi", "0.54b1"
        for trace in range(traces):
            for position, step in enumerate(_TRACE_SHAPE):
                if step.service == service:
                    span = scope_spans.spans.add()
                    _fill_span(span, step, rng, base_ns, trace, position)
                    _add_attributes(span, step, rng, trace)
    return request.SerializeToString()


def _fill_span(span: Span, step: _Step, rng: random.Random, base_ns: int, trace: int, position: int) -> None:
    span.trace_id = TRACE_MARK + struct.pack(">Q", trace + 1)
    span.span_id = struct.pack(">II", trace + 1, position + 1)
    if step.parent >= 0:
        span.parent_span_id = struct.pack(">II", trace + 1, step.parent + 1)
    span.name, span.kind = step.name, step.kind
    span.start_time_unix_nano = base_ns + trace * 1_000_000 + position * 50_000
    span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(200_000, 40_000_000)
    if rng.random() < 0.02:
        span.status.code, span.status.message = Status.STATUS_CODE_ERROR, "upstream timed out"
        event = span.events.add()
        event.name, event.time_unix_nano = "exception", span.end_time_unix_nano
        kv = event.attributes.add()
        kv.key, kv.value.string_value = "exception.type", "TimeoutError"
    else:
        span.status.code = Status.STATUS_CODE_OK if step.kind == _SERVER else Status.STATUS_CODE_UNSET


def _add_attributes(span: Span, step: _Step, rng: random.Random, trace: int) -> None:
    _attribute(span, "http.method", "POST" if rng.random() < 0.8 else "GET")
    _attribute(span, "http.route", step.route)
    _attribute(span, "http.status_code", 200 if span.status.code != Status.STATUS_CODE_ERROR else 504)
    _attribute(span, "net.peer.name", step.peer)
    _attribute(span, "retail.order.id", f"web-{SEQ_MARK.decode()}-{trace:03d}")
    _attribute(span, "retail.store.id", f"st-{rng.randrange(800):04d}")
    _attribute(span, "retail.sku", f"SKU-{rng.randrange(200_000):06d}")
    _attribute(span, "retail.channel", rng.choice(_CHANNELS))
    _attribute(span, "app.cart.items", rng.randrange(1, 12))
    if step.milestone:
        _attribute(span, "retail.milestone", step.milestone)
    else:
        _attribute(span, "code.function", span.name.split()[-1])


def events_template(base_ns: int, seed: int = 0) -> bytes:
    """A CloudEvents batch of 500 valid ``retail.*`` events (about 5 per order); ids hold ``SEQ_MARK``."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    order = 0
    while len(events) < EVENTS_PER_BATCH:
        events.extend(_order_events(rng, order, base_ns))
        order += 1
    events = events[:EVENTS_PER_BATCH]
    for index, event in enumerate(events):
        event["id"] = f"{SEQ_MARK.decode()}-{index:03d}"
    return json.dumps(events, separators=(",", ":")).encode()


def _order_events(rng: random.Random, order: int, base_ns: int) -> list[dict[str, Any]]:
    order_id = f"web-{SEQ_MARK.decode()}-{order:03d}"
    store = f"st-{rng.randrange(800):04d}"
    lines: list[dict[str, Any]] = [
        {"sku": f"SKU-{rng.randrange(200_000):06d}", "qty": rng.randrange(1, 4), "unit_price": 19.99}
        for _ in range(rng.randrange(1, 3))
    ]
    total = round(sum(line["qty"] * line["unit_price"] for line in lines), 2)
    order_key = {"order_id": order_id}
    accepted = {
        **order_key,
        "channel": rng.choice(_CHANNELS),
        "store_id": store,
        "fulfillment": "bopis",
        "lines": lines,
        "total": total,
        "currency": "EUR",
    }
    # Aliases carry the request's stamp too: every order's payment reference and pickup code is its own.
    payment = {
        **order_key,
        "amount": total,
        "currency": "EUR",
        "payment_ref": f"pay-{SEQ_MARK.decode()}-{order:05d}",
    }
    ready = {**order_key, "store_id": store, "pickup_code": f"P-{SEQ_MARK.decode()}-{order:05d}"}
    flow: list[tuple[str, str, dict[str, Any]]] = [
        ("retail.order.accepted", "/web/checkout", accepted),
        ("retail.payment.confirmed", "/payments/psp", payment),
        *[
            ("retail.inventory.reserved", "/wms/dc-01", {**order_key, "sku": line["sku"], "qty": line["qty"]})
            for line in lines
        ],
        ("retail.order.ready", f"/stores/{store}/pos", ready),
    ]
    stamp_s = base_ns / 1e9 + order * 0.01
    return [
        {
            "specversion": "1.0",
            "type": kind,
            "source": source,
            "id": "",
            "time": datetime.fromtimestamp(stamp_s + step * 0.5, UTC).isoformat(timespec="milliseconds"),
            "subject": order_id,
            "datacontenttype": "application/json",
            "data": data,
        }
        for step, (kind, source, data) in enumerate(flow)
    ]


def stamp(template: bytes, seq: int) -> bytes:
    """``template`` with unique ids for request number ``seq`` (< 2**32): trace ids, order and event ids."""
    return template.replace(TRACE_MARK, struct.pack(">II", 0x4D500000, seq)).replace(SEQ_MARK, b"%08x" % seq)


def encoded_requests(signal: Signal, base_ns: int, seqs: range) -> list[bytes]:
    """One request per number in ``seqs``, cycling through ``TEMPLATES`` templates of different values."""
    build = otlp_template if signal.name == OTLP.name else events_template
    templates = [build(base_ns + k * 64_000_000, seed=k) for k in range(TEMPLATES)]
    return [stamp(templates[seq % TEMPLATES], seq) for seq in seqs]


def request_seq(run: int, sender: int, index: int) -> int:
    """A request number unique across runs (< 256), senders (< 16) and requests (< 2**20)."""
    return (run << 24) | (sender << 20) | index


# -- the load generator (runs in sender processes) ----------------------------------------------


@dataclass(frozen=True)
class SenderJob:
    url: str
    signal: Signal
    run: int
    sender: int
    requests: int  # size of this sender's pre-encoded pool
    seconds: float
    base_ns: int
    rate: float | None = None  # requests/s for this sender; None = as fast as the node answers


@dataclass
class SenderStats:
    """What one sender saw; merged across senders by the parent."""

    acked: int = 0
    warm_up_acked: int = 0  # acknowledged before the clock started: stored, but not in the rate
    requests: int = 0
    retried: int = 0  # 429/503 answers (retried after Retry-After)
    errors: int = 0
    error_sample: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    last_done: float = 0.0
    cpu_seconds: float = 0.0


def run_sender(job: SenderJob, ready: Any, go: EventType, results: Any) -> None:
    """Sender process: encode the pool, say ready, wait for go, send until the pool or the time runs out."""
    first = request_seq(job.run, job.sender, 0)
    pool = encoded_requests(job.signal, job.base_ns, range(first, first + job.requests))
    warm_up_acked = _warm_up(job, pool[:WARM_UP_REQUESTS])
    ready.put(job.sender)
    go.wait()
    started = time.monotonic()
    cpu_before = time.process_time()
    stats = SenderStats(warm_up_acked=warm_up_acked)
    lock = threading.Lock()
    counter = itertools.count(WARM_UP_REQUESTS)
    threads = [
        threading.Thread(target=_connection_loop, args=(job, pool, counter, started, stats, lock))
        for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.cpu_seconds = time.process_time() - cpu_before
    results.put(stats)


def _warm_up(job: SenderJob, requests: list[bytes]) -> int:
    """Send ``requests`` before the clock starts: one-off costs (worker imports) stay out of the figures."""
    connection = _connect(job.url)
    acked = 0
    for body in requests:
        count, _retried, error = _deliver(connection, job.signal, body)
        if error:
            raise RuntimeError(f"warm-up request failed: {error}")
        acked += count
    connection.close()
    return acked


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)


def _connection_loop(
    job: SenderJob,
    pool: list[bytes],
    counter: Iterator[int],
    started: float,
    stats: SenderStats,
    lock: threading.Lock,
) -> None:
    """One keep-alive connection sending pool entries in turn; latencies from the intended send time."""
    connection = _connect(job.url)
    deadline = started + job.seconds
    # Senders are staggered so that rate-limited requests are spread evenly over time.
    offset = job.sender / (SENDERS * job.rate) if job.rate else 0.0
    while True:
        index = next(counter)
        if index >= len(pool):
            break
        position = index - WARM_UP_REQUESTS
        intended = started + offset + position / job.rate if job.rate else time.monotonic()
        if intended >= deadline:
            break
        pause = intended - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        acked, retried, error = _deliver(connection, job.signal, pool[index])
        done = time.monotonic()
        with lock:
            stats.requests += 1
            stats.acked += acked
            stats.retried += retried
            stats.last_done = max(stats.last_done, done)
            if error:
                stats.errors += 1
                stats.error_sample = stats.error_sample or error
            else:
                stats.latencies_ms.append((done - intended) * 1000)
    connection.close()


def _deliver(connection: http.client.HTTPConnection, signal: Signal, body: bytes) -> tuple[int, int, str]:
    """Send one request until it is answered 200; (items acknowledged, retries, error or "")."""
    headers = {"Content-Type": signal.content_type}
    retried = 0
    for _attempt in range(100):
        try:
            connection.request("POST", signal.path, body, headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()  # reconnects on the next request
            return 0, retried, f"connection: {exc!r}"
        if response.status == 200:
            return _acknowledged(signal, answer), retried, ""
        if response.status in (429, 503):
            retried += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return 0, retried, f"HTTP {response.status}: {answer[:300]!r}"
    return 0, retried, "still refused after 100 retries"


def _acknowledged(signal: Signal, answer: bytes) -> int:
    if signal.name == OTLP.name:
        rejected = ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans
        return SPANS_PER_REQUEST - rejected
    return int(json.loads(answer)["accepted"])


# -- one load run against a fresh node ----------------------------------------------------------


@dataclass
class LoadResult:
    """A load run as measured by the senders, merged."""

    acked: int
    warm_up_acked: int
    seconds: float
    requests: int
    retried: int
    errors: int
    error_sample: str
    latencies_ms: list[float]
    generator_cpu: float  # cores used by the load generator on average

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def generate_load(
    url: str,
    signal: Signal,
    run: int,
    seconds: float,
    rate: float | None = None,
    at_start: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Send ``signal`` from ``SENDERS`` processes for ``seconds``, at ``rate`` items/s or flat out."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    items_per_s = rate if rate is not None else RATE_CAP
    pool = int(items_per_s * seconds / signal.per_request / SENDERS) + 2 * CONNECTIONS + WARM_UP_REQUESTS
    sender_rate = rate / signal.per_request / SENDERS if rate is not None else None
    base_ns = time.time_ns()
    processes = [
        context.Process(
            target=run_sender,
            args=(
                SenderJob(url, signal, run, sender, pool, seconds, base_ns, sender_rate),
                ready,
                go,
                results,
            ),
            daemon=True,
        )
        for sender in range(SENDERS)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        receive(ready, processes, timeout=120)
    at_start()
    started = time.monotonic()
    go.set()
    stats: list[SenderStats] = [receive(results, processes, timeout=seconds + 600) for _ in processes]
    for process in processes:
        process.join(30)
    return LoadResult(
        acked=sum(s.acked for s in stats),
        warm_up_acked=sum(s.warm_up_acked for s in stats),
        seconds=max(s.last_done for s in stats) - started,
        requests=sum(s.requests for s in stats),
        retried=sum(s.retried for s in stats),
        errors=sum(s.errors for s in stats),
        error_sample=next((s.error_sample for s in stats if s.error_sample), ""),
        latencies_ms=sorted(itertools.chain.from_iterable(s.latencies_ms for s in stats)),
        generator_cpu=sum(s.cpu_seconds for s in stats)
        / max(1e-9, max(s.last_done for s in stats) - started),
    )


class NodeWatch:
    """Samples the node's process tree (the node and its decode workers) from ``/proc``.

    Keeps the peak of the summed resident memory and reads each process's CPU time on demand.
    Resident sizes count shared pages (the Python runtime and libraries every worker maps) once per
    process; the proportional size (PSS) splits them, so its peak is noted beside.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self.hwm_kib = 0  # largest sum of the processes' own high-water marks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> NodeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = hwm = pss = 0
            for pid in self.tree():
                status = _proc_memory(pid)
                rss += status.get("VmRSS", 0)
                hwm += status.get("VmHWM", 0)
                pss += status.get("Pss", 0)
            if rss:
                self.peak_rss_kib = max(self.peak_rss_kib, rss)
                self.peak_pss_kib = max(self.peak_pss_kib, pss)
                self.hwm_kib = max(self.hwm_kib, hwm)
            self._stop.wait(self.interval)

    def tree(self) -> list[int]:
        """The node's pid and every descendant's."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat:
                    children.setdefault(int(stat[1]), []).append(int(entry.name))
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system) so far of every process in the tree."""
        ticks = os.sysconf("SC_CLK_TCK")
        times = {}
        for pid in self.tree():
            stat = _proc_stat(pid)
            if stat:
                times[pid] = (int(stat[11]) + int(stat[12])) / ticks
        return times


def _proc_stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or [] if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rfind(")") + 2 :].split()


def _proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (``/proc/<pid>/status``) and Pss (``smaps_rollup``) in KiB; {} if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        lines += Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    return {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("VmRSS", "VmHWM", "Pss")
    }


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all processes, all cores), from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuShares:
    """Cores used on average during a load run, by whom (1.0 = one core busy all the time)."""

    node: float  # the node's main process: HTTP, write-ahead log, storage writer
    workers: list[float]  # each decode worker process
    generator: float  # the sender processes
    machine: float  # everything on the machine, including other users' processes

    def describe(self) -> str:
        workers = "+".join(f"{cpu:.0%}" for cpu in self.workers) or "none"
        others = max(0.0, self.machine - self.node - sum(self.workers) - self.generator)
        return (
            f"node main {self.node:.0%} of a core, decode workers {workers}, generator {self.generator:.0%},"
            f" other processes {others:.0%} (machine busy {self.machine:.0%} of {os.cpu_count()} cores)"
        )


@dataclass
class RunOutcome:
    """One load run, with what the node did meanwhile and whether the store holds every acknowledged item."""

    signal: str
    load: LoadResult
    cpu: CpuShares
    peak_rss_mib: float
    peak_pss_mib: float
    hwm_mib: float
    wal_backlog_mib: float  # acknowledged but not yet in storage when the load stopped
    drain_seconds: float  # from the end of the load until that backlog was in storage
    verified: bool = False
    detail: str = ""
    storage: dict[str, float] = field(default_factory=dict)
    freshness_ms: list[float] = field(default_factory=list)  # event sent to visible, sorted
    freshness_lost: list[str] = field(default_factory=list)

    @property
    def stored_rate(self) -> float:
        """Items/s into storage: acknowledged items over the load time plus the time to write the backlog."""
        return self.load.acked / (self.load.seconds + self.drain_seconds)

    def summary(self) -> str:
        return (
            f"{self.cpu.describe()}; WAL backlog {self.wal_backlog_mib:.0f} MiB when the load stopped,"
            f" in storage {self.drain_seconds:.1f}s later; {self.load.retried} answers 429/503 (retried)"
        )


_VERIFY_SQL = {
    OTLP.name: "SELECT count(), uniqExact(trace_id, span_id), (SELECT count() FROM quarantine) FROM spans",
    EVENTS.name: "SELECT count(), uniqExact(source, id), (SELECT count() FROM quarantine) FROM events",
}
_PARTS = "FROM system.parts WHERE active AND database = currentDatabase()"
_COLUMNS = "FROM system.columns WHERE database = currentDatabase() AND table = 'spans'"
_STORAGE_SQL = f"""
SELECT
    (SELECT sum(rows) {_PARTS} AND table = 'spans'),
    (SELECT sum(bytes_on_disk) {_PARTS} AND table IN ('spans', 'trace_index')),
    (SELECT sum(bytes_on_disk) {_PARTS} AND table = 'spans'),
    (SELECT sum(data_compressed_bytes) {_COLUMNS}),
    (SELECT sum(data_uncompressed_bytes) {_COLUMNS})
"""


def measured_run(
    signal: Signal,
    run: int,
    seconds: float,
    rate: float | None = None,
    storage: bool = False,
    profile: bool = False,
    freshness: bool = False,
) -> RunOutcome:
    """Start a fresh node, load it, stop it, and check the store against what was acknowledged.

    With ``freshness``, a probe times single order events to their timeline during the load.
    """
    # Imported here, not at the top: it loads the whole node (chDB included), and every sender
    # process re-imports this module.
    from tests.support import NodeProcess

    with tempfile.TemporaryDirectory(prefix="milepost-bench-") as temp:
        data_dir = Path(temp) / "data"
        node = NodeProcess(data_dir).start()
        assert node.process is not None
        try:
            with NodeWatch(node.process.pid) as watch, _profiler(node.process.pid, profile):
                meter = _CpuMeter(watch)
                probe = FreshnessProbe(node.url, label=str(run))
                with probe if freshness else nullcontext():
                    load = generate_load(node.url, signal, run, seconds, rate, at_start=meter.start)
                cpu = meter.stop(load.generator_cpu)
                backlog = _wal_bytes(node.url)
                drain = _wait_for_empty_wal(node.url, timeout=900)
                code = node.stop(timeout=600)
        finally:
            node.stop(timeout=60)
        if code != 0:
            raise RuntimeError(f"the node exited with {code}: {node.log()[-3000:]}")
        outcome = RunOutcome(
            signal=signal.name,
            load=load,
            cpu=cpu,
            peak_rss_mib=watch.peak_rss_kib / 1024,
            peak_pss_mib=watch.peak_pss_kib / 1024,
            hwm_mib=watch.hwm_kib / 1024,
            wal_backlog_mib=backlog / 2**20,
            drain_seconds=drain,
            freshness_ms=sorted(probe.samples_ms),
            freshness_lost=probe.lost,
        )
        _verify(outcome, data_dir, signal)
        if storage and outcome.verified:
            outcome.storage = _storage_cost(data_dir)
        return outcome


class _CpuMeter:
    """CPU time of the node's processes and of the machine between ``start`` and ``stop``."""

    def __init__(self, watch: NodeWatch) -> None:
        self.watch = watch
        self.started = time.monotonic()
        self.tree = watch.cpu_seconds()
        self.machine = machine_cpu_seconds()

    def start(self) -> None:
        self.started = time.monotonic()
        self.tree = self.watch.cpu_seconds()
        self.machine = machine_cpu_seconds()

    def stop(self, generator: float) -> CpuShares:
        elapsed = max(1e-9, time.monotonic() - self.started)
        after = self.watch.cpu_seconds()
        used = {pid: (after[pid] - self.tree.get(pid, 0.0)) / elapsed for pid in after}
        node = used.pop(self.watch.pid, 0.0)
        return CpuShares(
            node=node,
            workers=sorted((cpu for cpu in used.values() if cpu > 0.01), reverse=True),
            generator=generator,
            machine=(machine_cpu_seconds() - self.machine) / elapsed,
        )


@contextmanager
def _profiler(pid: int, enabled: bool) -> Iterator[None]:
    """``py-spy record`` attached to the node and its workers while the block runs (if asked)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not enabled or not Path(spy).exists():
        if enabled:
            print("  py-spy is not installed: no profile", flush=True)
        yield
        return
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--output", str(PROFILE_SVG)]
    spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        # py-spy writes the flame graph when the node exits; the caller stops the node next.
        threading.Thread(target=_await_profile, args=(spying,), daemon=True).start()


def _await_profile(spying: subprocess.Popen[bytes]) -> None:
    try:
        spying.wait(120)
    except subprocess.TimeoutExpired:
        spying.send_signal(2)
        spying.wait(30)
    print(f"  profile written to {PROFILE_SVG}", flush=True)


def _wait_for_empty_wal(url: str, timeout: float) -> float:
    """Seconds until the node has written its whole write-ahead log to storage (or ``timeout``)."""
    started = time.monotonic()
    while _wal_bytes(url) > 0 and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return time.monotonic() - started


def _wal_bytes(url: str) -> float:
    """Acknowledged bytes not yet in storage, from the node's ``/metrics``."""
    connection = _connect(url)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    for line in text.splitlines():
        if line.startswith("milepost_wal_bytes "):
            return float(line.split()[1])
    return 0.0


def _verify(outcome: RunOutcome, data_dir: Path, signal: Signal) -> None:
    from tests.support import store_query

    count, unique, quarantined = (int(v) for v in store_query(data_dir, _VERIFY_SQL[signal.name])[0])
    acked = outcome.load.acked + outcome.load.warm_up_acked
    outcome.verified = count == unique == acked and quarantined == 0 and outcome.load.errors == 0
    outcome.detail = (
        f"acknowledged {acked:,}, stored {count:,} rows ({unique:,} distinct), {quarantined} quarantined,"
        f" {outcome.load.errors} errors {outcome.load.error_sample}".strip()
    )


def _storage_cost(data_dir: Path) -> dict[str, float]:
    """Disk use of the spans (after merging the run's parts, as a long-running node would)."""
    from tests.support import store_query

    store_query(data_dir, "OPTIMIZE TABLE spans FINAL")
    rows, with_index, spans, compressed, uncompressed = (
        float(v or 0) for v in store_query(data_dir, _STORAGE_SQL)[0]
    )
    return {
        "rows": rows,
        "bytes_per_million": with_index / rows * 1e6 if rows else 0.0,
        "spans_bytes_per_million": spans / rows * 1e6 if rows else 0.0,
        "compression_ratio": uncompressed / compressed if compressed else 0.0,
    }


# -- the ceilings (a child process: it opens its own embedded store) -----------------------------


def measure_ceilings(spans: int, repeats: int) -> dict[str, float]:
    """Parse, decode and chDB-insert rates of the benchmark's own span rows, in a fresh child process."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_ceilings_child, args=(spans, repeats, results), daemon=True)
    child.start()
    measured: dict[str, float] = receive(results, [child], timeout=900)
    child.join(60)
    return measured


def receive(queue: Any, processes: list[Any], timeout: float) -> Any:
    """The next item from ``queue``; raises if every process that could send it has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=1.0)
        except Empty:
            if not any(process.is_alive() for process in processes):
                codes = [process.exitcode for process in processes]
                raise RuntimeError(f"benchmark child processes exited ({codes}) without a result") from None
    raise TimeoutError(f"no result from benchmark child processes within {timeout:.0f}s")


def _ceilings_child(spans: int, repeats: int, results: Any) -> None:
    from collector.cloudevents import EventValidator, parse_http
    from collector.contracts import ContractRegistry
    from collector.otlp import decode_traces
    from collector.privacy import PersonalData

    first = request_seq(255, 0, 0)
    requests = encoded_requests(OTLP, time.time_ns(), range(first, first + spans // SPANS_PER_REQUEST))
    count = len(requests) * SPANS_PER_REQUEST
    privacy = PersonalData()
    tables: list[Any] = []

    def parse_all() -> None:
        for request in requests:
            ExportTraceServiceRequest.FromString(request)

    def decode_all() -> None:
        tables[:] = [decode_traces(r, "protobuf", privacy, time.time_ns()).table for r in requests]

    first = request_seq(255, 1, 0)
    batches = encoded_requests(EVENTS, time.time_ns(), range(first, first + CEILING_EVENT_BATCHES))
    validator = EventValidator(ContractRegistry.builtin(), privacy)
    headers = {"content-type": EVENTS.content_type}
    event_tables: list[Any] = []

    def validate_all() -> None:
        event_tables[:] = [
            validator.build(parse_http(headers, batch), time.time_ns() // 1000).table for batch in batches
        ]

    parse = [_rate(count, parse_all) for _ in range(repeats)]
    decode = [_rate(count, decode_all) for _ in range(repeats)]
    events = [_rate(len(batches) * EVENTS_PER_BATCH, validate_all) for _ in range(repeats)]
    inserts = _insert_rates({"spans": tables, "events": event_tables}, repeats)
    medians = {
        "parse": parse,
        "decode": decode,
        "events": events,
        "insert": inserts["spans"],
        "events_insert": inserts["events"],
    }
    results.put({name: statistics.median(rates) for name, rates in medians.items()})


def _insert_rates(tables: dict[str, list[Any]], repeats: int, chunk: int = 100_000) -> dict[str, list[float]]:
    """Rows/s of ``insert_arrow`` of each table's rows into it, fresh (made by the real migrations),
    in chunks; one embedded store for all (a process opens one store path only)."""
    import pyarrow as pa

    from milepost.config import StorageConfig
    from storage.client import open_client
    from storage.schema import migrate

    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="milepost-ceiling-") as temp:
        client = open_client("", Path(temp))
        migrate(client, StorageConfig())
        for into, parts in tables.items():
            table = pa.concat_tables(parts).combine_chunks()
            # One chunk first, discarded: the first insert into a new table pays one-off setup.
            warm_up = {"insert_deduplication_token": f"warm-up-{into}"}
            client.insert_arrow(into, table.slice(0, chunk), settings=warm_up)
            rates[into] = []
            for attempt in range(repeats):
                client.command(f"TRUNCATE TABLE {into} SYNC")

                def insert_all(attempt: int = attempt, into: str = into, table: Any = table) -> None:
                    for start in range(0, table.num_rows, chunk):
                        # A token per chunk, as the node's writer sends: no chunk is taken for a repeat.
                        token = {"insert_deduplication_token": f"ceiling-{into}-{attempt}-{start}"}
                        client.insert_arrow(into, table.slice(start, chunk), settings=token)

                rates[into].append(_rate(table.num_rows, insert_all))
        client.close()
    return rates


def _rate(items: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return items / (time.perf_counter() - started)


# -- figures ------------------------------------------------------------------------------------


def _median_rate(outcomes: list[RunOutcome]) -> float | None:
    """Median items/s over runs; None (FAILED) if any run lost or refused data."""
    if not all(o.verified for o in outcomes):
        return None
    return statistics.median(o.load.rate for o in outcomes)


def _median_run(outcomes: list[RunOutcome]) -> RunOutcome:
    """The run whose acknowledged rate is the median (the lower one of an even count)."""
    ordered = sorted(outcomes, key=lambda o: o.load.rate)
    return ordered[(len(ordered) - 1) // 2]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def _throughput_runs(signal: Signal, size: Size, first_run: int) -> list[RunOutcome]:
    outcomes = []
    for number in range(size.runs):
        outcome = measured_run(
            signal, first_run + number, size.seconds, storage=(signal.name == OTLP.name and number == 0)
        )
        outcomes.append(outcome)
        verdict = "verified" if outcome.verified else "FAILED verification"
        print(
            f"  {signal.name} run {number + 1}/{size.runs}: {outcome.load.rate:,.0f} {signal.unit}"
            f" acknowledged over {outcome.load.seconds:.1f}s, {outcome.stored_rate:,.0f} {signal.unit}"
            f" into storage; peak RSS {outcome.peak_rss_mib:,.0f} MiB; {verdict} ({outcome.detail});"
            f" {outcome.summary()}",
            flush=True,
        )
    return outcomes


def _failures(outcomes: list[RunOutcome]) -> str:
    failed = [o.detail for o in outcomes if not o.verified]
    return f"FAILED: {failed[0]}" if failed else ""


Emit = Callable[[Figure], None]


# (key in measure_ceilings' result, figure, unit, what was timed)
_CEILINGS = (
    ("parse", "ingest.ceiling.protobuf_parse_spans_per_s", "spans/s",
     "ExportTraceServiceRequest.FromString (upb parses lazily); one core"),
    ("decode", "ingest.ceiling.decode_spans_per_s", "spans/s",
     "collector.otlp.decode_traces: parse, walk, Arrow table; one core"),
    ("events", "ingest.ceiling.events_decode_per_s", "events/s",
     "collector.cloudevents parse_http + EventValidator.build; one core"),
    ("insert", "ingest.ceiling.chdb_insert_arrow_rows_per_s", "rows/s",
     "insert_arrow of the decoded spans into a fresh embedded spans table, 100k-row chunks"),
    ("events_insert", "ingest.ceiling.chdb_insert_arrow_events_per_s", "rows/s",
     f"insert_arrow of {CEILING_EVENT_BATCHES * EVENTS_PER_BATCH:,} validated events into a fresh"
     " embedded events table, 100k-row chunks"),
)  # fmt: skip


def ceiling_figures(size: Size, emit: Emit) -> dict[str, float]:
    print(f"ceilings on {size.ceiling_spans:,} spans (child process, no node running)", flush=True)
    ceiling = measure_ceilings(size.ceiling_spans, size.ceiling_repeats)
    for key, name, unit, timed in _CEILINGS:
        emit(Figure(name, ceiling[key], unit, "report", f"{timed}; no node running"))
    return ceiling


def otlp_figures(size: Size, ceiling: dict[str, float], emit: Emit) -> list[RunOutcome]:
    runs = _throughput_runs(OTLP, size, first_run=1)
    rate = _median_rate(runs)
    measured = statistics.median(o.load.rate for o in runs)
    note = _failures(runs) or (
        f"median of {len(runs)}; {measured / ceiling['decode']:.2f}x one-core decode,"
        f" {measured / ceiling['parse']:.3f}x protobuf parse; median run: {_median_run(runs).summary()}"
    )
    ratio = rate / ceiling["insert"] if rate is not None else None
    emit(Figure("ingest.otlp.spans_per_s", rate, "spans/s", "≥ 100,000", note, ratio))
    emit(_stored_figure(OTLP, runs))
    return runs


def latency_figures(size: Size, sustained_rate: float, emit: Emit) -> RunOutcome:
    half = sustained_rate / 2
    print(f"latency run at half the rate storage sustained: {half:,.0f} spans/s", flush=True)
    paced = measured_run(OTLP, 50, size.latency_seconds, rate=half, freshness=True)
    latencies = paced.load.latencies_ms
    note = _failures([paced]) or (
        f"{len(latencies)} requests at {paced.load.rate:,.0f} spans/s, timed from each request's"
        f" scheduled send; {paced.summary()}"
    )
    p50 = _percentile(latencies, 0.50) if paced.verified else None
    p99 = _percentile(latencies, 0.99) if paced.verified else None
    emit(Figure("ingest.otlp.ack_p50_ms", p50, "ms", "report", note))
    emit(Figure("ingest.otlp.ack_p99_ms", p99, "ms", "≤ 50 ms", note))
    _freshness_figures(paced, emit)
    return paced


def _freshness_figures(paced: RunOutcome, emit: Emit) -> None:
    samples, lost = paced.freshness_ms, paced.freshness_lost
    fine = paced.verified and bool(samples) and not lost
    note = (
        f"{len(samples)} orders, one retail.order.accepted CloudEvent each, sent one at a time by each of"
        f" {LANES} probe lanes started apart during the"
        f" half-rate OTLP run; from the send until GET /api/v1/orders/{{id}} shows the milestone"
        f" (asked every {POLL_S * 1000:.0f} ms); {paced.summary()}"
    )
    if lost:
        shown = "; ".join(lost[:3])
        note = f"FAILED: {len(lost)} of {len(samples) + len(lost)} probe orders lost: {shown}; {note}"
    elif not fine:
        note = _failures([paced]) or f"FAILED: no probe order was timed; {note}"
    p50 = _percentile(samples, 0.50) if fine else None
    p95 = _percentile(samples, 0.95) if fine else None
    emit(Figure("ingest.freshness.event_to_visible_p50_ms", p50, "ms", "report", note))
    emit(Figure("ingest.freshness.event_to_visible_p95_ms", p95, "ms", "≤ 1,000 ms", note))


def event_figures(size: Size, ceiling: dict[str, float], emit: Emit) -> list[RunOutcome]:
    runs = _throughput_runs(EVENTS, size, first_run=100)
    measured = statistics.median(o.load.rate for o in runs)
    note = _failures(runs) or (
        f"median of {len(runs)}; {measured / ceiling['events']:.2f}x one-core event decode;"
        f" median run: {_median_run(runs).summary()}"
    )
    rate = _median_rate(runs)
    ratio = rate / ceiling["events_insert"] if rate is not None else None
    emit(Figure("ingest.events.events_per_s", rate, "events/s", "≥ 100,000", note, ratio))
    emit(_stored_figure(EVENTS, runs))
    return runs


def _stored_figure(signal: Signal, runs: list[RunOutcome]) -> Figure:
    """The rate storage kept up with: the acknowledged rate is only sustainable while the WAL has room."""
    rate = statistics.median(o.stored_rate for o in runs) if all(o.verified for o in runs) else None
    backlog = max(o.wal_backlog_mib for o in runs)
    note = _failures(runs) or (
        f"acknowledged {signal.unit.split('/')[0]} / (load time + time until the WAL backlog was in"
        f" storage); backlog up to {backlog:,.0f} MiB after {runs[0].load.seconds:.0f}s of load"
    )
    name = f"ingest.{signal.name}.stored_{signal.unit.split('/')[0]}_per_s"
    return Figure(name, rate, signal.unit, "report", note)


def node_figures(outcomes: list[RunOutcome], emit: Emit) -> None:
    peak = max(outcomes, key=lambda o: o.peak_rss_mib)
    pss = max(o.peak_pss_mib for o in outcomes)
    note = (
        f"sum of VmRSS of the node and its decode workers, sampled every 0.2 s; peak in a {peak.signal}"
        f" run, where their VmHWM add up to {peak.hwm_mib:,.0f} MiB; peak PSS (shared pages counted"
        f" once) {pss:,.0f} MiB"
    )
    emit(Figure("ingest.node.peak_rss_mib", peak.peak_rss_mib, "MiB", "≤ 1024", note))
    cost = next((o.storage for o in outcomes if o.storage), None)
    if cost is None:
        return
    where = f"{cost['rows']:,.0f} spans after OPTIMIZE FINAL"
    per_million = cost["bytes_per_million"]
    spans_only = f"spans table alone {cost['spans_bytes_per_million']:,.0f}, the rest is trace_index"
    ratio_note = f"{where}; uncompressed / compressed bytes of the spans columns"
    emit(
        Figure(
            "ingest.storage.bytes_per_million_spans", per_million, "bytes", "report", f"{where}; {spans_only}"
        )
    )
    emit(Figure("ingest.storage.compression_ratio", cost["compression_ratio"], "x", "report", ratio_note))


def run(size_name: str, profile: bool, emit: Emit) -> None:
    """Measure every ingest figure, handing each to ``emit`` as soon as it is known."""
    size = SIZES[size_name]
    ceiling = ceiling_figures(size, emit)
    if profile:
        print(f"profiling one extra OTLP run (not counted) with py-spy into {PROFILE_SVG}", flush=True)
        measured_run(OTLP, 200, size.seconds, profile=True)
    spans = otlp_figures(size, ceiling, emit)
    # Half of what storage sustains: the acknowledged rate of a 20 s burst includes what the log
    # absorbed, which a sustained load would not get.
    paced = latency_figures(size, statistics.median(o.stored_rate for o in spans), emit)
    events = event_figures(size, ceiling, emit)
    node_figures([*spans, paced, *events], emit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument(
        "--profile", action="store_true", help=f"also write a py-spy flame graph to {PROFILE_SVG}"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures: list[Figure] = []

    def emit(figure: Figure) -> None:
        figures.append(figure)
        show(figure)

    print(f"ingest benchmark ({args.size}); node and load generator share {os.cpu_count()} cores", flush=True)
    try:
        run(args.size, args.profile, emit)
    finally:
        if figures:  # what was measured before a failure is still worth keeping
            record(figures, size=args.size)
    print(
        f"ingest benchmark done in {time.monotonic() - started:.0f}s; results in bench/RESULTS.md", flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
