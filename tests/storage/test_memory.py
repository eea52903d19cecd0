"""The node gives freed memory back to the system (the ≤ 1 GiB RSS figure of ``make bench-ingest``).

Allocators are process-wide, so each check runs in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from storage.client import JEMALLOC_CONF, PROMPT_RETURN

REPO = Path(__file__).resolve().parents[2]

# Allocates and frees 256 MiB of Arrow buffers (as the writer's batches come and go), three times,
# and reports the process's anonymous resident memory before, at the peak and after.
_CHURN = """
import ctypes, json, sys, tempfile
from pathlib import Path
import pyarrow as pa
from storage.client import open_client

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
print(json.dumps({"before": before, "peak": peak, "after": anon_mib(),
                  "pool": pa.default_memory_pool().backend_name,
                  "jemalloc": __import__("os").environ.get(sys.argv[1])}))
"""


def _run(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHURN, JEMALLOC_CONF],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_a_process_with_the_embedded_store_returns_freed_arrow_buffers_and_tunes_the_engine() -> None:
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF}
    seen = _run(env)
    assert seen["pool"] == "system"
    assert seen["jemalloc"] == PROMPT_RETURN
    before, peak, after = (int(str(seen[k])) for k in ("before", "peak", "after"))
    assert peak - before >= 200, seen  # the buffers were really resident
    assert after - before <= 64, f"freed buffers stayed resident: {seen}"


def test_an_operators_own_engine_allocator_settings_are_kept() -> None:
    seen = _run({**os.environ, JEMALLOC_CONF: "dirty_decay_ms:5000"})
    assert seen["jemalloc"] == "dirty_decay_ms:5000"
