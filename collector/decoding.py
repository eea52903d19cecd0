"""Decoding jobs, run in worker processes so every core decodes while the node acknowledges.

A job turns one request body into Arrow IPC bytes ready for the write-ahead log, plus
its rejections (also as IPC, for the quarantine table) and, when the node gives the workers a
``Deriver``, the rows derived from it (the correlator's mapping, which is Python work and so
belongs where every core can run it). Workers build their privacy filter and contract registry
once, at start.

A worker never talks to ClickHouse and never needs pandas, and its imports keep it that way
(``storage.memory``, ``storage.tables``): each worker is a whole Python process, so what it
loads counts once per worker in the node's memory.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, Protocol

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector.cloudevents import EventValidator, parse_http
from collector.contracts import ContractRegistry
from collector.model import Rejection
from collector.otlp import decode_logs, decode_traces
from collector.privacy import DEFAULT_FIELDS, PersonalData
from storage.memory import return_freed_memory
from storage.tables import EVENT_IDENTITY, QUARANTINE_SCHEMA, SPAN_IDENTITY, first_of_each, to_ipc


class Deriver(Protocol):
    """Derives rows from a decoded table, as an opaque payload the storage sink understands.

    Pickled into every worker, so it must be picklable.
    """

    def spans(self, table: pa.Table) -> bytes: ...

    def events(self, table: pa.Table) -> bytes: ...


@dataclass(frozen=True)
class DecodeSettings:
    """What a worker needs: the personal-data fields, the event contracts and the deriver."""

    hash_fields: tuple[str, ...] = ()
    hash_key: str = "milepost"
    contracts: tuple[Mapping[str, Any], ...] = ()
    deriver: Deriver | None = None


class Decoded(NamedTuple):
    rows: int
    ipc: bytes
    rejected: list[Rejection]
    quarantine_ipc: bytes
    ignored: int = 0
    derived: bytes | None = None  # None: no deriver; b"" derived nothing


class _Worker:
    def __init__(self, settings: DecodeSettings) -> None:
        self.deriver = settings.deriver
        self.privacy = PersonalData(DEFAULT_FIELDS | set(settings.hash_fields), settings.hash_key.encode())
        self.validator = EventValidator(
            ContractRegistry.builtin().with_user_contracts(list(settings.contracts)), self.privacy
        )


_worker: _Worker | None = None


def init_worker(settings: DecodeSettings) -> None:
    global _worker
    return_freed_memory()
    _worker = _Worker(settings)


PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether its node is still there


class _WithoutPandas(importlib.abc.MetaPathFinder):
    """Refuses to load pandas: pyarrow imports it (when installed) the first time it builds an
    array from Python objects, only to check whether they are pandas objects. A decode worker has
    none, and pandas would add ~33 MiB to each worker's memory."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("a decode worker does not load pandas (collector.decoding)")


def init_worker_process(settings: DecodeSettings, node: int) -> None:
    """``init_worker`` in a worker process of its own, which loads no pandas from here on and
    exits when ``node``, the process that started it, is gone."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _WithoutPandas())
    threading.Thread(target=_exit_with, args=(node,), name="exit-with-node", daemon=True).start()
    init_worker(settings)


def _exit_with(node: int) -> None:
    """Exit once ``node`` is no longer this process's parent (also when it was gone before this
    worker finished starting). A worker waits for jobs on a queue whose write end it holds
    itself, so a node killed outright (SIGKILL, the OOM killer) would otherwise leave its
    workers running, ~100 MiB each, until the machine restarts."""
    while os.getppid() == node:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _state() -> _Worker:
    if _worker is None:
        raise RuntimeError("decode worker used before init_worker")
    return _worker


def quarantine_table(rejected: list[Rejection], received_at_us: int) -> pa.Table:
    columns = {
        "received_at": [received_at_us] * len(rejected),
        "signal": [r.signal for r in rejected],
        "source": [r.source for r in rejected],
        "id": [r.id for r in rejected],
        "type": [r.type for r in rejected],
        "position": [r.position for r in rejected],
        "field": [r.field for r in rejected],
        "value": [r.value for r in rejected],
        "reason": [r.reason for r in rejected],
        "payload": [r.payload for r in rejected],
    }
    return pa.table(
        [pa.array(columns[f.name], type=f.type) for f in QUARANTINE_SCHEMA], schema=QUARANTINE_SCHEMA
    )


def _finish(
    table: pa.Table,
    rejected: list[Rejection],
    received_at_ns: int,
    derive: Callable[[pa.Table], bytes] | None,
    identity: list[str],
    ignored: int = 0,
) -> Decoded:
    """The job's answer; ``derive`` sees each span or event once (by ``identity``), as stored."""
    quarantine = to_ipc(quarantine_table(rejected, received_at_ns // 1000)) if rejected else b""
    if not table.num_rows:
        return Decoded(0, b"", rejected, quarantine, ignored)
    derived = None if derive is None else derive(first_of_each(table, identity))
    return Decoded(table.num_rows, to_ipc(table), rejected, quarantine, ignored, derived)


def _warm_job() -> int:
    """One request of each kind, decoded and mapped (``DecoderPool.warm_up``); the worker's pid."""
    now = time.time_ns()
    decode_traces_job(_WARM_TRACES, "protobuf", now)
    decode_events_job(_WARM_EVENTS[0], _WARM_EVENTS[1], now)
    return os.getpid()


def decode_traces_job(body: bytes, encoding: str, received_at_ns: int) -> Decoded:
    state = _state()
    batch = decode_traces(body, encoding, state.privacy, received_at_ns)
    derive = state.deriver.spans if state.deriver is not None else None
    return _finish(batch.table, batch.rejected, received_at_ns, derive, SPAN_IDENTITY)


def decode_logs_job(body: bytes, encoding: str, received_at_ns: int) -> Decoded:
    state = _state()
    logs = decode_logs(body, encoding, received_at_ns)
    batch = state.validator.build(logs.events, received_at_ns // 1000)
    derive = state.deriver.events if state.deriver is not None else None
    return _finish(batch.table, batch.rejected, received_at_ns, derive, EVENT_IDENTITY, logs.ignored)


def decode_events_job(headers: dict[str, str], body: bytes, received_at_ns: int) -> Decoded:
    state = _state()
    events = parse_http(headers, body)
    batch = state.validator.build(events, received_at_ns // 1000)
    derive = state.deriver.events if state.deriver is not None else None
    return _finish(batch.table, batch.rejected, received_at_ns, derive, EVENT_IDENTITY)


P = ParamSpec("P")

# One span and one event, decoded once per worker at start (never stored).
_WARM_TRACES = ExportTraceServiceRequest(
    resource_spans=[
        ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(trace_id=b"\1" * 16, span_id=b"\2" * 8)])])
    ]
).SerializeToString()
_WARM_EVENTS = (
    {"content-type": "application/cloudevents-batch+json"},
    b'[{"specversion":"1.0","id":"warm","source":"milepost","type":"retail.order.fulfilled",'
    b'"data":{"order_id":"warm"}}]',
)


class DecoderPool:
    """Runs decoding jobs in worker processes (``workers`` > 0) or in a thread of this process."""

    def __init__(self, settings: DecodeSettings, workers: int) -> None:
        self.workers = workers
        self._executor: Executor
        if workers > 0:
            # spawn, not fork: the node's process holds the ClickHouse engine and its threads.
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker_process,
                initargs=(settings, os.getpid()),
            )
        else:
            init_worker(settings)
            self._executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="decode")

    async def run(self, job: Callable[P, Decoded], *args: P.args, **kwargs: P.kwargs) -> Decoded:
        return await asyncio.wrap_future(self._executor.submit(job, *args, **kwargs))

    def run_sync(self, job: Callable[P, Decoded], *args: P.args, **kwargs: P.kwargs) -> Decoded:
        return self._executor.submit(job, *args, **kwargs).result()

    def warm_up(self, timeout: float = 120.0) -> set[int]:
        """Start every worker and run a real job in each, so the first requests pay no imports;
        returns the workers' pids.

        Workers start one by one and a started one takes whatever is queued, so jobs are sent
        in rounds until each worker has answered one.
        """
        if self.workers == 0:
            return set()
        answered: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(answered) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.workers - len(answered)} decode workers did not start in {timeout:g} s"
                )
            jobs = [self._executor.submit(_warm_job) for _ in range(self.workers)]
            answered.update(job.result() for job in jobs)
            if len(answered) < self.workers:
                time.sleep(0.05)  # the others are still importing: leave them the cores
        return answered

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
