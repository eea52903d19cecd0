"""The node gives freed memory back to the system (the ≤ 1 GiB RSS figure of ``make bench-ingest``).

Allocators are process-wide, so each check runs in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from storage.memory import JEMALLOC_CONF, PROMPT_RETURN

REPO = Path(__file__).resolve().parents[2]

# Allocates and frees 256 MiB of Arrow buffers (as the writer's batches come and go) three times,
# handing free heap pages back after each as the writer does; reports the process's anonymous
# resident memory before, at the peak and after.
_CHURN = """
import ctypes, json, sys, tempfile
from pathlib import Path
import pyarrow as pa
from storage.client import open_client
from storage.memory import release_free_heap

def anon_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) // 1024

client = open_client("", Path(tempfile.mkdtemp()))
client.query("SELECT 1")
before = anon_mib()
for _ in range(3):
    buffers = [pa.allocate_buffer(1 << 20) for _ in range(256)]
    for buffer in buffers:
        ctypes.memset(buffer.address, 1, buffer.size)
    peak = anon_mib()
    del buffers
    release_free_heap()  # as the writer does after each batch
print(json.dumps({"before": before, "peak": peak, "after": anon_mib(),
                  "pool": pa.default_memory_pool().backend_name,
                  "jemalloc": __import__("os").environ.get(sys.argv[1])}))
"""


def _run(script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``script`` printed as JSON on its last line, run in a fresh Python process."""
    out = subprocess.run(
        [sys.executable, "-c", script, JEMALLOC_CONF],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_a_process_with_the_embedded_store_returns_freed_arrow_buffers_and_tunes_the_engine() -> None:
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF}
    seen = _run(_CHURN, env)
    assert seen["pool"] == "system"
    assert seen["jemalloc"] == PROMPT_RETURN
    before, peak, after = (int(str(seen[k])) for k in ("before", "peak", "after"))
    assert peak - before >= 200, seen  # the buffers were really resident
    assert after - before <= 64, f"freed buffers stayed resident: {seen}"


def test_an_operators_own_engine_allocator_settings_are_kept() -> None:
    seen = _run(_CHURN, {**os.environ, JEMALLOC_CONF: "dirty_decay_ms:5000"})
    assert seen["jemalloc"] == "dirty_decay_ms:5000"


# Frees 250 MiB of 64 KiB C-heap blocks (below glibc's mmap threshold) but the last one, which pins
# the heap's top so glibc cannot give the rest back on its own; then asks for it back.
_HEAP = """
import ctypes, json
from storage.memory import release_free_heap

def anon_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) // 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = anon_mib()
blocks = [libc.malloc(64 * 1024) for _ in range(4000)]
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
for block in blocks[:-1]:
    libc.free(block)
kept = anon_mib()
release_free_heap()
print(json.dumps({"before": before, "kept": kept, "after": anon_mib()}))
"""


def test_the_writer_can_hand_the_c_heaps_free_pages_back() -> None:
    seen = _run(_HEAP)
    assert seen["kept"] - seen["before"] >= 200, seen  # freed, yet still resident
    assert seen["after"] - seen["before"] <= 32, seen
