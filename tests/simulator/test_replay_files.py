"""``milepost replay`` against a real node: idempotent (a second replay changes nothing) and resumable.

Inputs are what ``milepost simulate --output`` writes: ``events.jsonl`` (one CloudEvent a line,
repeats included, as a store's queue has them) and ``spans.otlp.jsonl`` (OTLP/JSON requests).
"Stored once" is read from the node's counters: rows written minus repeats.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.replay import Replayer, state_path
from simulator.upload import Stopped, Uploader
from tests.support import MILEPOST, REPO, NodeProcess, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    running = NodeProcess(tmp_path_factory.mktemp("replay") / "data").start()
    yield running
    running.stop()


def simulate_files(directory: Path, seed: int, start: str) -> Path:
    args = [
        "simulate", "--output", str(directory), "--seed", str(seed), "--start", start, "--stores", "3",
        "--skus", "5", "--orders-per-minute", "30", "--duration", "20", "--backfill-days", "0.1",
        "--backfill-orders-per-minute", "3", "--speed", "300",
    ]  # fmt: skip
    result = subprocess.run([*MILEPOST, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return directory


def replay(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*MILEPOST, "replay", "--target", node.url, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=180)


def counters(node: NodeProcess) -> dict[str, float]:
    """Repeats and rows written by signal, once the node has written everything it acknowledged."""
    values: dict[str, float] = {}

    def drained() -> bool:
        text = httpx.get(f"{node.url}/metrics", timeout=10).text
        values.clear()
        for line in text.splitlines():
            if line.startswith(("milepost_duplicates_total{", "milepost_stored_rows_total{")):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
            elif line.startswith("milepost_wal_bytes "):
                values["wal"] = float(line.split()[1])
        return values.get("wal", 1) == 0

    wait_until(drained, 60, "the node to write its backlog")
    return values


def stored_once(values: dict[str, float], signal_name: str, table: str) -> float:
    written = values.get(f'milepost_stored_rows_total{{table="{table}"}}', 0)
    return written - values.get(f'milepost_duplicates_total{{signal="{signal_name}"}}', 0)


def distinct_events(path: Path) -> int:
    return len({(e["source"], e["id"]) for e in map(json.loads, path.read_text().splitlines())})


def span_ids(path: Path) -> list[tuple[str, str]]:
    """(trace id, span id) of every span in an OTLP/JSON file, repeats included."""
    ids = []
    for line in path.read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                ids += [(s["traceId"], s["spanId"]) for s in scope["spans"]]
    return ids


def assert_spans_stored_once(
    node: NodeProcess, path: Path, before: dict[str, float], after: dict[str, float]
) -> None:
    """Every span of the file is stored once. The duplicates metric counts repeats inside one
    write; a repeat written in a later batch is merged away by the spans table instead. So the
    metric may count up to the file's repeats more than its distinct spans, and each trace that
    holds a repeat is read back through the API: each of its spans exactly once."""
    ids = span_ids(path)
    distinct = set(ids)
    written_once = stored_once(after, "spans", "spans") - stored_once(before, "spans", "spans")
    assert len(distinct) <= written_once <= len(ids), (written_once, len(distinct), len(ids))
    repeated_traces = {trace for (trace, _), count in Counter(ids).items() if count > 1}
    assert repeated_traces  # the simulated feed repeats spans, or this proves nothing
    for trace in sorted(repeated_traces):
        answer = httpx.get(f"{node.url}/api/v1/traces/{trace}", timeout=30)
        assert answer.status_code == 200, answer.text
        stored = [span["span_id"] for span in answer.json()["spans"]]
        expected = sorted({span for t, span in distinct if t == trace})
        assert sorted(stored) == expected, trace


def orders_total(node: NodeProcess) -> int:
    return int(httpx.get(f"{node.url}/api/v1/orders", params={"limit": 1}, timeout=30).json()["total"])


def test_replaying_twice_changes_nothing(node: NodeProcess, tmp_path: Path) -> None:
    files = simulate_files(tmp_path / "queue", 21, "2026-11-20T09:00:00Z")
    events, spans = files / "events.jsonl", files / "spans.otlp.jsonl"
    before = counters(node)
    first = replay(node, str(events), str(spans))
    assert first.returncode == 0, first.stderr
    assert "0 rejected" in first.stderr and "duplicates:" in first.stderr
    after_first = counters(node)
    assert stored_once(after_first, "events", "events") - stored_once(
        before, "events", "events"
    ) == distinct_events(events)
    assert_spans_stored_once(node, spans, before, after_first)
    orders = orders_total(node)
    assert orders > 0

    second = replay(node, str(events), str(spans))
    assert second.returncode == 0, second.stderr
    assert "already replayed completely" in second.stderr and "sent 0 events" in second.stderr
    assert counters(node) == after_first

    # Sent again from the start, every event is a repeat the node stores once.
    forced = replay(node, "--restart", str(events))
    assert forced.returncode == 0, forced.stderr
    after_forced = counters(node)
    assert stored_once(after_forced, "events", "events") == stored_once(after_first, "events", "events")
    repeats = after_forced['milepost_duplicates_total{signal="events"}'] - after_first.get(
        'milepost_duplicates_total{signal="events"}', 0
    )
    assert repeats == len(events.read_text().splitlines())
    assert f"duplicates: {repeats:,.0f} events" in forced.stderr
    assert orders_total(node) == orders


def test_a_replay_interrupted_at_a_batch_resumes_and_completes_exactly_once(
    node: NodeProcess, tmp_path: Path
) -> None:
    events = simulate_files(tmp_path / "queue", 22, "2026-11-20T12:00:00Z") / "events.jsonl"
    lines = len(events.read_text().splitlines())
    before = counters(node)

    def interrupt_at_third(batches: int) -> None:
        if batches == 3:
            raise Stopped()  # what Ctrl-C does between two batches

    uploader = Uploader(node.url, None, threading.Event())
    interrupted = Replayer(uploader, batch_size=100, on_batch=interrupt_at_third)
    with pytest.raises(Stopped):
        interrupted.replay_file(events)
    saved = json.loads(state_path(events).read_text())["targets"][node.url]
    assert saved["complete"] is False and 0 < saved["offset"] < events.stat().st_size
    assert interrupted.totals.events == 300

    resumed = Replayer(uploader, batch_size=100)
    resumed.replay_file(events)
    assert interrupted.totals.events + resumed.totals.events == lines  # no line sent twice, none skipped
    after = counters(node)
    assert stored_once(after, "events", "events") - stored_once(
        before, "events", "events"
    ) == distinct_events(events)
    repeats = after['milepost_duplicates_total{signal="events"}'] - before.get(
        'milepost_duplicates_total{signal="events"}', 0
    )
    assert repeats == lines - distinct_events(events)  # only the repeats the queue itself holds


def test_ctrl_c_stops_a_replay_that_the_same_command_resumes(node: NodeProcess, tmp_path: Path) -> None:
    events = simulate_files(tmp_path / "queue", 23, "2026-11-20T15:00:00Z") / "events.jsonl"
    before = counters(node)
    command = [*MILEPOST, "replay", "--target", node.url, "--batch-size", "10", str(events)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    state = state_path(events)
    wait_until(state.exists, 60, "the first acknowledged batch")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command to resume" in stderr

    resumed = replay(node, "--batch-size", "10", str(events))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at byte" in resumed.stderr
    after = counters(node)
    assert stored_once(after, "events", "events") - stored_once(
        before, "events", "events"
    ) == distinct_events(events)


class RecordingUploader(Uploader):
    """Takes every request as the node would (everything accepted), and keeps what was sent."""

    def __init__(self) -> None:
        super().__init__("http://node.invalid", None, threading.Event())
        self.requests: list[tuple[str, bytes]] = []

    def post(self, path: str, body: bytes, content_type: str, accept: Sequence[int] = ()) -> Any:
        """An answer shaped like the node's (the replayer reads ``status_code`` and ``json()``)."""
        self.requests.append((path, body))
        if path == "/v1/events":
            return httpx.Response(
                200, json={"accepted": len(json.loads(body)), "rejected": [], "quarantined": 0}
            )
        return httpx.Response(200, json={})


def test_lines_are_batched_by_kind_and_progress_is_saved_after_each_batch(tmp_path: Path) -> None:
    event = {
        "specversion": "1.0",
        "source": "pos/store-042",
        "type": "retail.order.fulfilled",
        "data": {"order_id": "W1"},
    }
    otlp = {"resourceSpans": []}
    lines = [json.dumps({**event, "id": str(n)}) for n in range(5)]
    lines[2:2] = ["", "not json", json.dumps(otlp)]
    queue = tmp_path / "store-042.jsonl"
    queue.write_text("\n".join(lines) + "\n")
    uploader = RecordingUploader()
    replayer = Replayer(uploader, batch_size=2)
    replayer.replay_file(queue)
    assert [
        (path, len(json.loads(body)) if path == "/v1/events" else 1) for path, body in uploader.requests
    ] == [
        ("/v1/events", 2),
        ("/v1/traces", 1),
        ("/v1/events", 2),
        ("/v1/events", 1),
    ]
    assert replayer.totals.events == 5 and len(replayer.totals.unreadable) == 1
    saved = json.loads(state_path(queue).read_text())["targets"]["http://node.invalid"]
    assert saved["complete"] is True and saved["offset"] == queue.stat().st_size

    # The store's queue grows: a replay sends only what was appended.
    with queue.open("a") as handle:
        handle.write(json.dumps({**event, "id": "5"}) + "\n")
    again = RecordingUploader()
    Replayer(again, batch_size=2).replay_file(queue)
    assert [json.loads(body)[0]["id"] for _, body in again.requests] == ["5"]


def test_a_json_document_is_a_batch_of_events(tmp_path: Path) -> None:
    batch = tmp_path / "batch.json"
    event = {
        "specversion": "1.0",
        "source": "erp",
        "type": "retail.finance.reconciled",
        "data": {"order_id": "4900"},
    }
    batch.write_text(json.dumps([{**event, "id": str(n)} for n in range(5)]))
    uploader = RecordingUploader()
    Replayer(uploader, batch_size=3).replay_file(batch)
    assert [len(json.loads(body)) for _, body in uploader.requests] == [3, 2]
