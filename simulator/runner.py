"""Running a scenario: history as fast as the node takes it, then real time, then the drain.

The simulated clock waits for the wall clock only when it gets ahead of it, so history (event
times in the past) is sent as fast as the outbox lets it go, with a progress bar, and live
traffic at the pace it happens. ``stop`` ends the run early (Ctrl-C); the report says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.delivery import DeliveryStats
from simulator.outbox import NodeOutbox, Outbox, OutboxStats
from simulator.progress import ProgressBar, number, say
from simulator.scenario import Scenario, build
from simulator.truth import GroundTruth
from simulator.upload import Stopped
from simulator.world import rfc3339

_STATUS_EVERY_S = 30.0
_DAY_S = 86_400.0


@dataclass(frozen=True)
class RunReport:
    meta: dict[str, Any]
    counts: dict[str, int]
    truth: GroundTruth
    outbox: OutboxStats
    delivery: DeliveryStats
    throttled: int
    unreachable: int
    interrupted: bool
    history_seconds: float
    elapsed_seconds: float
    reached_us: int = 0

    def ground_truth(self) -> dict[str, Any]:
        meta = {**self.meta, "complete": not self.interrupted, "counts": dict(sorted(self.counts.items()))}
        return self.truth.to_json(meta)

    def summary(self) -> list[str]:
        counts = self.counts
        channels = {
            channel: sum(v for k, v in counts.items() if k.startswith(f"orders.{channel}."))
            for channel in ("web", "app", "marketplace", "store")
        }
        mix = ", ".join(f"{name} {number(value)}" for name, value in channels.items())
        orders, returns = number(counts.get("orders", 0)), number(counts.get("returns", 0))
        promotions, stock = number(counts.get("promotions", 0)), number(counts.get("stock counts", 0))
        lines = [
            f"simulated {orders} orders ({mix}), {returns} returns, {promotions} promotions, "
            f"{stock} stock counts",
            f"emitted {number(counts.get('events', 0))} events and {number(counts.get('spans', 0))} spans; "
            f"sent {number(self.outbox.events)} events ({number(self.outbox.accepted)} accepted, "
            f"{number(self.outbox.rejected)} rejected) and {number(self.outbox.spans)} spans "
            f"in {number(self.outbox.batches)} batches",
            f"delivery: {number(self.delivery.duplicated)} sent twice, "
            f"{number(self.delivery.delayed)} delivered late, "
            f"{number(self.delivery.queued_offline)} queued by offline stores and replayed; "
            f"the node asked us to wait {number(self.throttled)} times"
            + (f" and was unreachable {number(self.unreachable)} times" if self.unreachable else ""),
            f"injected: {self.truth.summary()}",
        ]
        for reason, count in self.outbox.reasons.most_common(5):
            lines.append(f"rejected {count}x: {reason}")
        if self.history_seconds > 0:
            sent = counts.get("history items", 0)
            rate = number(sent / self.history_seconds)
            lines.append(f"history took {self.history_seconds:.1f}s ({rate} events and spans/s)")
        if self.interrupted:
            lines.append(
                f"stopped early at simulated {rfc3339(self.reached_us)[:19]}Z: flows in flight were not "
                "finished, so the ground truth is incomplete"
            )
        return lines


def run(
    scenario: Scenario,
    outbox: Outbox,
    stop: threading.Event,
    narrate: Callable[[str], None] = say,
    clock: Callable[[], float] = time.time,
    progress: bool = True,
) -> RunReport:
    started = time.monotonic()
    built = build(scenario, outbox, round(clock() * 1_000_000), narrate)
    world = built.world
    sim, counts = world.sim, world.counts
    begin, live = sim.begin_us, world.faults.live_us
    bar = ProgressBar("history") if progress and live > begin else None
    history_done: list[float] = []
    last_status = [time.monotonic()]

    def items() -> int:
        return counts["events"] + counts["spans"]

    def finish_history() -> None:
        if history_done:
            return
        history_done.append(time.monotonic() - started)
        counts["history items"] = items()
        if bar is not None:
            bar.done(f"{number(counts['orders'])} orders")
            narrate(
                f"history done: {number(counts['orders'])} orders, {number(counts['events'])} events, "
                f"{number(counts['spans'])} spans in {history_done[0]:.1f}s; "
                f"now live from {rfc3339(sim.now_us)[:19]}Z"
            )

    def pace(time_us: int) -> bool:
        if stop.is_set():
            return False
        wall_us = round(clock() * 1_000_000)
        if time_us > wall_us:
            finish_history()
            outbox.ship()
            while time_us > wall_us:
                if stop.wait(min((time_us - wall_us) / 1_000_000, 0.5)):
                    return False
                wall_us = round(clock() * 1_000_000)
                if time.monotonic() - last_status[0] > _STATUS_EVERY_S:
                    last_status[0] = time.monotonic()
                    narrate(
                        f"live: {number(counts['orders'])} orders, {number(counts['events'])} events, "
                        f"{number(counts['spans'])} spans so far"
                    )
        elif bar is not None and time_us < live:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                (time_us - begin) / (live - begin),
                f"day {(time_us - begin) / 1e6 / _DAY_S:.1f} of {(live - begin) / 1e6 / _DAY_S:.1f} · "
                f"{number(items())} events and spans · {number(items() / elapsed)}/s",
            )
        if sim.draining and not counts["drain announced"]:
            counts["drain announced"] = 1
            finish_history()
            narrate(f"duration reached: finishing the {number(sim.pending())} steps still in flight")
        world.delivery.release(time_us)
        return True

    try:
        finished = sim.run(pace)
    except Stopped:  # a sender noticed the stop first
        finished = False
    interrupted = not finished
    try:
        if finished:
            finish_history()
            world.delivery.close()
            outbox.flush()
    finally:
        outbox.close()
    counts.pop("drain announced", None)
    waits = outbox.waits if isinstance(outbox, NodeOutbox) else None
    return RunReport(
        meta=built.meta,
        counts=dict(counts),
        truth=world.truth,
        outbox=outbox.stats,
        delivery=world.delivery.stats,
        throttled=waits.throttled if waits else 0,
        unreachable=waits.unreachable if waits else 0,
        interrupted=interrupted,
        history_seconds=history_done[0] if history_done and live > begin else 0.0,
        elapsed_seconds=time.monotonic() - started,
        reached_us=sim.now_us,
    )
