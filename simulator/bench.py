"""``python -m simulator.bench``: how fast the simulator makes traffic, and how fast a node takes a backfill.

The workload is a week of history of a 200-store retailer (``RETAILER``: about 144,000 orders
a day, each a dozen events and spans). Two measurements, each bounded to ``--seconds``:

- generation: events and spans made and encoded to their wire format (CloudEvents JSON batches,
  OTLP protobuf through the SDK's encoder) with no node, by 1..N processes, each simulating an
  equal share of the retailer's demand (its own seed). Generation must outpace the node's ingest
  (target: twice ``ingest.*_per_s`` of ``bench/results.json`` when that file has them).
- backfill: the same week sent to a real node (``--target``, or one started here on a temporary
  store) through the simulator's outbox: events and spans acknowledged per second, and how long
  the whole week would take at that rate.

Figures are printed as they are measured; ``measure()`` returns them for ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from simulator.estate import DAY_US
from simulator.outbox import MemoryOutbox, NodeOutbox, Outbox
from simulator.runner import RunReport, run
from simulator.scenario import Scenario
from simulator.upload import wait_for_node

RETAILER: dict[str, Any] = {"stores": 200, "skus": 60, "orders_per_minute": 100.0}
WEEK_DAYS = 7.0
START_US = 1_795_000_000_000_000  # a fixed start, so every run simulates the same week
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results.json"
SIZES = {"quick": (15.0, (1, 2)), "full": (40.0, (1, 2, 4))}
# The opening stock count (every SKU at every location, by three systems) is made once, at the start.
OPENING_COUNT = (RETAILER["stores"] + max(1, RETAILER["stores"] // 25)) * RETAILER["skus"] * 3


def _scenario(seed: int, share: float) -> Scenario:
    rate = RETAILER["orders_per_minute"] * share
    return Scenario(
        seed=seed,
        stores=RETAILER["stores"],
        skus=RETAILER["skus"],
        orders_per_minute=rate,
        history_orders_per_minute=rate,
        duration_s=1.0,
        backfill_days=WEEK_DAYS,
        speed=1.0,
        start_us=START_US,
    )


def _bounded_run(scenario: Scenario, outbox: Outbox, seconds: float) -> tuple[RunReport, float]:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    started = time.perf_counter()
    try:
        report = run(scenario, outbox, stop, narrate=lambda _line: None, progress=False)
    finally:
        timer.cancel()
    return report, time.perf_counter() - started


def _generate(job: tuple[int, float, float]) -> dict[str, float]:
    seed, share, seconds = job
    outbox = MemoryOutbox(keep=False, encode=True)
    report, elapsed = _bounded_run(_scenario(seed, share), outbox, seconds)
    covered = (report.reached_us - START_US) / (WEEK_DAYS * DAY_US)
    return {
        "events": report.counts.get("events", 0),
        "spans": report.counts.get("spans", 0),
        "bytes": outbox.stats.bytes,
        "seconds": elapsed,
        "covered": max(covered, 1e-9),
    }


def _figure(name: str, value: float, unit: str, target: str = "report", note: str = "") -> dict[str, Any]:
    figure = {"name": name, "value": value, "unit": unit, "target": target, "note": note}
    shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    print(
        f"  {name:<46} {shown:>14} {unit:<10} (target {target}){'  -- ' + note if note else ''}", flush=True
    )
    return figure


def _node_ingest() -> float | None:
    """The node's measured ingest rate (spans + events per second) from the ingest benchmark, if any."""
    try:
        figures = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None
    listed = figures.get("figures", {}) if isinstance(figures, dict) else {}
    found = {f.get("name"): f.get("value") for f in listed.values() if isinstance(f, dict)}
    spans, events = found.get("ingest.otlp.spans_per_s"), found.get("ingest.events.events_per_s")
    if not isinstance(spans, (int, float)) or not isinstance(events, (int, float)):
        return None
    return max(float(spans), float(events))


def measure_generation(seconds: float, processes: tuple[int, ...]) -> list[dict[str, Any]]:
    figures = []
    node_rate = _node_ingest()
    target = f"≥ {2 * node_rate:,.0f}" if node_rate else "≥ 2x node ingest"
    week_items = 0.0
    context = multiprocessing.get_context("spawn")
    for count in processes:
        jobs = [(1000 + index, 1.0 / count, seconds) for index in range(count)]
        if count == 1:
            results = [_generate(jobs[0])]
        else:
            with context.Pool(count) as pool:
                results = pool.map(_generate, jobs)
        elapsed = max(r["seconds"] for r in results)
        events, spans = sum(r["events"] for r in results), sum(r["spans"] for r in results)
        # One opening count, plus each process's other traffic scaled up to the whole week.
        week_items = max(
            week_items,
            OPENING_COUNT + sum((r["events"] + r["spans"] - OPENING_COUNT) / r["covered"] for r in results),
        )
        megabytes = sum(r["bytes"] for r in results) / elapsed / 1e6
        note = (
            f"{count} process(es) on {os.cpu_count()} cores; {events / elapsed:,.0f} events/s + "
            f"{spans / elapsed:,.0f} spans/s, {megabytes:.1f} MB/s encoded"
        )
        figures.append(
            _figure(
                f"simulator.generate.items_per_s.{count}p",
                (events + spans) / elapsed,
                "items/s",
                target,
                note,
            )
        )
    figures.append(
        _figure(
            "simulator.week.items",
            week_items,
            "items",
            note="events + spans in 7 days of a 200-store retailer",
        )
    )
    return figures


def _start_node(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (directory / "node.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    args = [sys.executable, "-m", "milepost.cli", "serve", "--data-dir", str(directory / "store")]
    process = subprocess.Popen(
        [*args, "--port", str(port), "--grpc-port", "0"], stdout=log, stderr=log, env=env
    )
    return process, f"http://127.0.0.1:{port}"


def measure_backfill(seconds: float, target: str | None, week_items: float) -> list[dict[str, Any]]:
    process: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="milepost-bench-") as directory:
        if target is None:
            process, target = _start_node(Path(directory))
        try:
            if not wait_for_node(target, threading.Event(), timeout=120):
                raise RuntimeError(f"no node answered at {target}")
            outbox = NodeOutbox(target, None, threading.Event())
            report, elapsed = _bounded_run(_scenario(1000, 1.0), outbox, seconds)
        finally:
            if process is not None:
                process.terminate()
                process.wait(120)
    acknowledged = outbox.stats.events + outbox.stats.spans
    rate = acknowledged / elapsed
    note = f"{acknowledged:,} acknowledged in {elapsed:.1f}s; the node asked to wait {report.throttled} times"
    figures = [_figure("simulator.backfill.items_per_s", rate, "items/s", note=note)]
    if week_items > 0:
        figures.append(
            _figure(
                "simulator.backfill.week_200_stores_min",
                week_items / rate / 60,
                "min",
                note="7 days of a 200-store retailer sent as fast as the node acknowledges",
            )
        )
    return figures


def measure(size: str = "quick", target: str | None = None, node: bool = True) -> list[dict[str, Any]]:
    seconds, processes = SIZES[size]
    stores, rate = RETAILER["stores"], RETAILER["orders_per_minute"]
    print(f"simulator benchmark ({size}): a week of {stores} stores at {rate:g} orders/min")
    figures = measure_generation(seconds, processes)
    if node:
        week = next(f["value"] for f in figures if f["name"] == "simulator.week.items")
        figures += measure_backfill(seconds, target, float(week))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument(
        "--target", help="a running node to backfill (default: start one on a temporary store)"
    )
    parser.add_argument("--no-node", action="store_true", help="measure generation only")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(args.size, args.target, not args.no_node)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
