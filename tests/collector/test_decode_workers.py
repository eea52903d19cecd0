"""Decode worker processes: what they load, and that they map spans under user rules without pandas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector.decoding import DecoderPool, DecodeSettings, decode_traces_job
from correlator.derived import Derivation, unpack
from tests.support import REPO, wait_until

START_NS = 1_790_000_000_123_456_789  # nanoseconds a datetime cannot hold
RULES = {"spans": [{"name": "pack box", "milestone": "ready", "order_id": "attributes.shop.order"}]}


def _workers(parent: int | None = None) -> list[int]:
    """The decode workers of ``parent`` (this process): its spawned children, not the resource tracker."""
    found = []
    for children in Path(f"/proc/{parent or os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command:
                found.append(int(pid))
    return found


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    pool = DecoderPool(DecodeSettings(deriver=Derivation(RULES)), workers=1)
    try:
        pool.warm_up()
        yield pool
    finally:
        pool.close()


def _request() -> bytes:
    def attribute(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    spans = [
        Span(
            trace_id=b"\1" * 16,
            span_id=number.to_bytes(8, "big"),
            name=name,
            start_time_unix_nano=START_NS,
            end_time_unix_nano=START_NS + 1000,
            attributes=attributes,
        )
        for number, name, attributes in (
            (1, "pack box", [attribute("shop.order", "W-9")]),
            (2, "charge", [attribute("retail.order.id", "W-9"), attribute("retail.milestone", "paid")]),
        )
    ]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString()


def test_a_decode_worker_loads_neither_pandas_nor_the_clickhouse_client(pool: DecoderPool) -> None:
    pool.run_sync(decode_traces_job, _request(), "protobuf", time.time_ns())
    [worker] = _workers()
    maps = Path(f"/proc/{worker}/maps").read_text()
    assert "pandas/_libs" not in maps
    assert "clickhouse_connect" not in maps
    assert "pyarrow" in maps  # the check can see what a worker does load


def test_a_worker_maps_spans_under_user_rules(pool: DecoderPool) -> None:
    decoded = pool.run_sync(decode_traces_job, _request(), "protobuf", time.time_ns())
    assert decoded.rows == 2 and decoded.derived
    timeline = unpack(decoded.derived)["timeline"].to_pylist()
    assert [(row["order_key"], row["name"]) for row in timeline] == [("W-9", "ready"), ("W-9", "paid")]
    assert {row["time"].timestamp() for row in timeline} == {START_NS // 1000 / 1e6}


def test_warm_up_runs_a_job_in_every_worker() -> None:
    pool = DecoderPool(DecodeSettings(deriver=Derivation(None)), workers=2)
    try:
        answered = pool.warm_up()
        assert answered == set(_workers()) and len(answered) == 2
    finally:
        pool.close()


# A node's decode pool, then nothing: the test kills this process as the OOM killer would.
_NODE = """
import time
from collector.decoding import DecoderPool, DecodeSettings
if __name__ == "__main__":
    pool = DecoderPool(DecodeSettings(), workers=2)
    pool.warm_up()
    print("ready", flush=True)
    time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_their_node_is_killed_outright(tmp_path: Path) -> None:
    script = tmp_path / "node.py"
    script.write_text(_NODE)
    node = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None and node.stdout.readline().strip() == "ready"
        workers = _workers(node.pid)
        assert len(workers) == 2
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        wait_until(lambda: not any(_alive(pid) for pid in workers), 15, "the workers to exit", 0.2)
    finally:
        node.kill()
        node.wait(10)
        if node.stdout is not None:
            node.stdout.close()
