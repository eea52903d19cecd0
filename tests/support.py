"""Running real nodes for tests: ``milepost serve`` as a subprocess, or in this process with uvicorn.

Readiness is awaited with bounded polling of ``/readyz``; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import uvicorn
import yaml

from collector.sink import RowSink
from milepost.config import Config, parse_config
from milepost.node import Node

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MILEPOST = [sys.executable, "-m", "milepost.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class NodeProcess:
    """``milepost serve`` in a child process, on free ports, with its own data directory."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None, grpc: bool = False) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = data_dir.parent / f"{data_dir.name}-config.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"

    def start(self, timeout: float = 60.0) -> NodeProcess:
        args = [*MILEPOST, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        args += ["--grpc-port", str(self.grpc_port)]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=REPO)
        log.close()
        wait_until(self._ready_or_dead, timeout, f"node on {self.url} to be ready")
        if self.process.poll() is not None:
            raise AssertionError(f"node exited with {self.process.returncode}: {self.log()}")
        return self

    def _ready_or_dead(self) -> bool:
        return (self.process is not None and self.process.poll() is not None) or _ready(self.url)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """``kill -9``: no chance to flush anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the node writes what it acknowledged, then exits."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def store_query(data_dir: Path, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` run on a stopped node's embedded store, from a separate process.

    A process holds one chDB data path for its life, so the check runs in a child.
    """
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from storage.client import open_client\n"
        "client = open_client('', Path(sys.argv[1]))\n"
        "rows = client.query(sys.argv[2]).result_rows\n"
        "print(json.dumps([list(r) for r in rows], default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), sql],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    if out.returncode != 0:
        raise AssertionError(f"store query failed: {out.stderr[-2000:]}")
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


class InProcessNode:
    """A node in this process, so a test can reach its storage layer (fault injection, direct queries)."""

    def __init__(self, node: Node, server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
        self.node = node
        self.server = server
        self.thread = thread
        self.url = f"http://127.0.0.1:{port}"

    def query(self, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
        return list(self.node.query_client.query(sql, parameters=parameters).result_rows)

    def flush(self, timeout: float = 30.0) -> None:
        assert self.node.writer.wait_idle(timeout), "the writer did not drain the write-ahead log"


@contextmanager
def in_process_node(
    data_dir: Path,
    raw_config: dict[str, Any] | None = None,
    wrap_sink: Callable[[RowSink], RowSink] = lambda sink: sink,
) -> Iterator[InProcessNode]:
    raw = dict(raw_config or {})
    raw.setdefault("server", {}).setdefault("decode_workers", 1)
    config: Config = parse_config(raw)
    # Opening the embedded store points TMPDIR at the node's own folder (process-wide, as the
    # node owns its process); here the process is pytest's, so it is put back afterwards.
    saved_tmpdir, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    node = Node(config, data_dir, wrap_sink=wrap_sink)
    node.open()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(node.app(), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    running = InProcessNode(node, server, thread, port)
    try:
        wait_until(lambda: _ready(running.url), 30, "in-process node")
        yield running
    finally:
        server.should_exit = True
        thread.join(30)
        node.close()
        if saved_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmpdir
        tempfile.tempdir = saved_tempdir


def table_of(schema: pa.Schema, rows: Sequence[Mapping[str, Any]], **defaults: Any) -> pa.Table:
    """``rows`` as a table of ``schema`` (keys it does not hold are left out); a field a row leaves
    out holds ``defaults[name]``, else its type's empty value: "", 0, false, [] or now."""
    now = datetime.now(UTC)

    def empty(kind: pa.DataType) -> Any:
        if pa.types.is_string(kind):
            return ""
        if pa.types.is_timestamp(kind):
            return now
        if pa.types.is_boolean(kind):
            return False
        return 0 if pa.types.is_integer(kind) else []

    blank = {field.name: defaults.get(field.name, empty(field.type)) for field in schema}
    return pa.Table.from_pylist([{**blank, **row} for row in rows], schema=schema)


# Debian's Chromium, as the browser tests and the dashboard benchmark drive it: the flags that
# work as root on this kind of machine (see FACTS.md); Playwright adds a fresh profile.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A chart that has been drawn: the SVG plotly.js draws into the dashboard's Plotly component
# (dashboard/plotly_chart.js), or the root group Vega draws into its SVG (one per chart).
PLOTLY_DRAWN = ".milepost-plotly .main-svg"
CHART_DRAWN = f'{PLOTLY_DRAWN}, [data-testid="stVegaLiteChart"] svg.marks g.root'


class DerivedRecorder:
    """Wraps a node's sink and records which batches came with the decode workers' derived rows.

    With ``withhold`` it passes none on, as a log written without them would.
    """

    def __init__(self, inner: RowSink, withhold: bool = False) -> None:
        self.inner = inner
        self.withhold = withhold
        self.batches: list[tuple[str, int, int | None]] = []  # (kind, rows, derived payloads)
        self._lock = threading.Lock()

    def _pass(self, kind: str, table: pa.Table, derived: Sequence[bytes] | None) -> Sequence[bytes] | None:
        with self._lock:
            self.batches.append((kind, table.num_rows, None if derived is None else len(derived)))
        return None if self.withhold else derived

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        return self.inner.write_spans(table, token, self._pass("spans", table, derived))

    def write_events(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        return self.inner.write_events(table, token, self._pass("events", table, derived))

    def write_quarantine(self, table: pa.Table, token: str) -> None:
        self.inner.write_quarantine(table, token)

    def settle(self, token: str) -> None:
        self.inner.settle(token)

    def ping(self) -> bool:
        return self.inner.ping()
