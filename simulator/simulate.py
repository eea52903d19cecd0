"""``milepost simulate``: a scenario sent to a node (or written to files), a summary, a ground truth."""

from __future__ import annotations

import threading
from pathlib import Path

from simulator.command import INTERRUPTED
from simulator.outbox import FileOutbox, NodeOutbox, Outbox
from simulator.progress import number, say
from simulator.runner import run
from simulator.scenario import Scenario
from simulator.truth import write_ground_truth
from simulator.upload import NodeRefused, wait_for_node


def simulate(
    scenario: Scenario,
    target: str,
    token: str | None,
    ground_truth: Path | None,
    output: Path | None,
    stop: threading.Event,
) -> int:
    outbox: Outbox
    if output is not None:
        outbox = FileOutbox(output)
        where = f"files in {output}"
    else:
        if not wait_for_node(target, stop, timeout=30):
            say(f"no node answers at {target}/readyz; start one with 'milepost serve' or pass --target.")
            return 1
        outbox = NodeOutbox(target, token, stop)
        where = target
    duration = f"{number(scenario.duration_s)}s live" if scenario.duration_s > 0 else "live until Ctrl-C"
    days = scenario.backfill_days
    history = f"{days:g} day{'s' if days != 1 else ''} of history, then " if days > 0 else ""
    faults = ", ".join(sorted(scenario.faults)) or "none"
    say(
        f"simulating {scenario.stores} stores and {scenario.skus} SKUs, "
        f"seed {scenario.seed}, speed {scenario.speed:g}: "
        f"{history}{duration} at {scenario.orders_per_minute:g} orders/min -> {where}"
    )
    say(f"faults: {faults}")
    try:
        report = run(scenario, outbox, stop)
    except NodeRefused as exc:
        say(f"{exc}; stopping.")
        return 1
    for line in report.summary():
        say(line)
    if ground_truth is not None:
        write_ground_truth(ground_truth, report.ground_truth())
        say(f"ground truth written to {ground_truth}")
    return INTERRUPTED if report.interrupted else 0
