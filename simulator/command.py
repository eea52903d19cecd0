"""``milepost simulate``, ``milepost replay`` and ``milepost demo``: flags, validation and exit codes.

Bad flags give one sentence naming the flag and its value, and exit code 2 (``milepost.cli``
turns ``ConfigError`` into that). A node that refuses us (bad token) exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from milepost.config import ConfigError

DEFAULT_TARGET = "http://127.0.0.1:4318"
INTERRUPTED = 130


def register(commands: Any) -> None:
    """Add ``simulate``, ``replay`` and ``demo`` to the ``milepost`` sub-commands."""
    simulate = commands.add_parser(
        "simulate",
        help="a retail estate sending spans and events to a node, with faults and a ground truth",
        description="Simulate a retailer (stores, SKUs, orders, promotions, stock) and send its spans and "
        "events to a node, with fault injection and a ground-truth file.",
    )
    simulate.add_argument("--target", default=DEFAULT_TARGET, help=f"the node (default {DEFAULT_TARGET})")
    simulate.add_argument("--token", help="bearer token with the ingest scope")
    simulate.add_argument("--seed", type=int, help="makes the run reproducible (default: random, printed)")
    simulate.add_argument("--stores", type=int, default=12, help="number of stores (default 12)")
    simulate.add_argument("--skus", type=int, default=40, help="number of SKUs (default 40)")
    simulate.add_argument(
        "--orders-per-minute", type=float, default=30.0, help="live order rate (default 30)"
    )
    simulate.add_argument(
        "--backfill-orders-per-minute",
        type=float,
        help="order rate of the history (default: --orders-per-minute)",
    )
    simulate.add_argument(
        "--duration",
        type=float,
        default=300.0,
        help="seconds of live traffic; 0 runs until Ctrl-C (default 300)",
    )
    simulate.add_argument(
        "--backfill-days",
        type=float,
        default=0.0,
        help="days of history sent first, as fast as the node takes it",
    )
    simulate.add_argument(
        "--faults", default="all", help="all (default), none, or a comma list of fault names"
    )
    simulate.add_argument("--ground-truth", type=Path, help="write what was injected to this JSON file")
    simulate.add_argument(
        "--speed", type=float, default=1.0, help="divide every delay inside a flow by this (default 1)"
    )
    simulate.add_argument(
        "--start", help="RFC 3339 time where simulated history begins (default: now minus --backfill-days)"
    )
    simulate.add_argument(
        "--output", type=Path, help="write events.jsonl and spans.otlp.jsonl here instead of sending"
    )
    simulate.set_defaults(handler=simulate_command)

    replay = commands.add_parser(
        "replay",
        help="upload CloudEvents JSONL and OTLP/JSON files to a node, resumably",
        description="Upload JSONL files of CloudEvents (one event a line) and OTLP/JSON files to a node in "
        "batches. Idempotent, and resumable: progress is kept in FILE.replay-state.",
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    replay.add_argument("--target", default=DEFAULT_TARGET, help=f"the node (default {DEFAULT_TARGET})")
    replay.add_argument(
        "--token", help="bearer token with the ingest scope (and read, for the duplicate count)"
    )
    replay.add_argument("--batch-size", type=int, default=500, help="events per request (default 500)")
    replay.add_argument(
        "--restart", action="store_true", help="ignore saved progress and send everything again"
    )
    replay.set_defaults(handler=replay_command)

    demo = commands.add_parser(
        "demo",
        help="node + simulated estate + dashboard in one command",
        description="Start a node on a fresh store, backfill history, run live traffic with faults, start the"
        " "
        "dashboard and print where to look. Ctrl-C stops everything.",
    )
    demo.add_argument("--port", type=int, default=4318, help="the node's HTTP port (default 4318)")
    demo.add_argument("--dashboard-port", type=int, default=8501, help="the dashboard's port (default 8501)")
    demo.add_argument(
        "--data-dir", type=Path, help="a new or empty directory for the demo (default: a temp dir)"
    )
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.add_argument("--quick", action="store_true", help="one day of history instead of seven")
    demo.add_argument("--seed", type=int, help="seed of the simulated estate (default: random)")
    demo.set_defaults(handler=demo_command)


def _positive(args: argparse.Namespace, name: str, allow_zero: bool = False) -> None:
    value = getattr(args, name)
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"Flag '--{name.replace('_', '-')}' has value '{value}'. Must be {bound}.")


def _start_us(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"Flag '--start' has value '{text}'. Must be an RFC 3339 time such as 2026-11-20T00:00:00Z."
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"Flag '--start' has value '{text}'. Must carry a timezone, e.g. a trailing Z.")
    return round(moment.timestamp() * 1_000_000)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM (instead of an exception in the middle of a request)."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def simulate_command(args: argparse.Namespace) -> int:
    from simulator.faults import FaultError, parse_faults
    from simulator.scenario import Scenario

    for name in ("stores", "skus", "speed"):
        _positive(args, name)
    for name in ("orders_per_minute", "backfill_orders_per_minute", "duration", "backfill_days"):
        _positive(args, name, allow_zero=True)
    try:
        faults = parse_faults(args.faults)
    except FaultError as exc:
        raise ConfigError(str(exc)) from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    scenario = Scenario(
        seed=seed,
        stores=args.stores,
        skus=args.skus,
        orders_per_minute=args.orders_per_minute,
        history_orders_per_minute=args.backfill_orders_per_minute,
        duration_s=args.duration,
        backfill_days=args.backfill_days,
        faults=faults,
        speed=args.speed,
        start_us=_start_us(args.start),
    )
    from simulator.simulate import simulate

    with stop_on_signals() as stop:
        return simulate(scenario, args.target, args.token, args.ground_truth, args.output, stop)


def replay_command(args: argparse.Namespace) -> int:
    from simulator.replay import replay

    if args.batch_size < 1 or args.batch_size > 10_000:
        raise ConfigError(f"Flag '--batch-size' has value '{args.batch_size}'. Must be 1 to 10000.")
    for path in args.files:
        if not path.is_file():
            raise ConfigError(f"File '{path}' does not exist or is not a file.")
    with stop_on_signals() as stop:
        return replay(args.files, args.target, args.token, args.batch_size, args.restart, stop)


def demo_command(args: argparse.Namespace) -> int:
    from simulator.demo import Demo

    for name in ("port", "dashboard_port"):
        value = getattr(args, name)
        if not 1 <= value <= 65535:
            raise ConfigError(f"Flag '--{name.replace('_', '-')}' has value '{value}'. Must be 1 to 65535.")
    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        raise ConfigError(
            f"Flag '--data-dir' has value '{args.data_dir}'. Must be a new or empty directory: the demo "
            "starts "
            "from a fresh store."
        )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    with stop_on_signals() as stop:
        return Demo(
            args.port, args.dashboard_port, args.data_dir, not args.no_browser, args.quick, seed, stop
        ).run()
