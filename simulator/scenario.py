"""A scenario (the flags of ``milepost simulate``) and the world it builds.

Only the seed and the scenario decide what happens, never the wall clock or the node's pace.
``start`` (default: now minus the backfill) anchors simulated time: the same seed and start give
the same traffic, ids and ground truth. Ids also derive from the start, so two runs against one
node never collide; the same seed at another start tells the same story with other ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from simulator.clock import Simulation
from simulator.delivery import Delivery
from simulator.estate import DAY_US, build_estate
from simulator.faults import (
    DUPLICATES,
    EPISODE_MAX_S,
    EPISODE_MISMATCH,
    FAULTS,
    OUT_OF_ORDER,
    PAYMENT_OUTAGE,
    POSTING_FAILURES,
    STATE_MISMATCH,
    WMS_SLOWNESS,
    FaultPlan,
)
from simulator.ids import Identifiers, run_key
from simulator.inventory import Inventory
from simulator.model import (
    CANCEL_THEN_HANDOVER,
    PAYMENT_STUCK,
    PICKING_STUCK,
    POSTING_FAILED,
    RESERVATION_STUCK,
)
from simulator.orders import OrderSource, create_order
from simulator.outbox import Outbox
from simulator.promotions import Promotions
from simulator.telemetry import Telemetry
from simulator.world import World, rfc3339

ENDLESS_US = 2**62
# The scripted victims of each windowed fault, created just after its window opens.
VICTIMS = {
    PAYMENT_OUTAGE: (PAYMENT_STUCK,),
    WMS_SLOWNESS: (RESERVATION_STUCK, PICKING_STUCK),
    POSTING_FAILURES: (POSTING_FAILED,),
}
INCIDENT_LABELS = {
    PAYMENT_OUTAGE: "payment gateway outage",
    WMS_SLOWNESS: "warehouse (WMS) slowdown",
    POSTING_FAILURES: "ERP posting incident",
}


@dataclass(frozen=True)
class Scenario:
    """What ``milepost simulate`` is asked for.

    ``backfill_days`` of history (at ``history_orders_per_minute``, default ``orders_per_minute``)
    end where live time starts, which lasts ``duration_s`` (0: until stopped). ``speed`` divides
    every delay inside a flow; ``episode_s`` is the length of the live fault script (see
    ``simulator.faults``); ``start_us`` is where history begins (default: now minus the backfill).
    """

    seed: int
    stores: int = 12
    skus: int = 40
    orders_per_minute: float = 30.0
    history_orders_per_minute: float | None = None
    duration_s: float = 300.0
    backfill_days: float = 0.0
    faults: frozenset[str] = field(default_factory=lambda: frozenset(FAULTS))
    speed: float = 1.0
    start_us: int | None = None
    episode_s: float = EPISODE_MAX_S

    def window(self, now_us: int) -> tuple[int, int, int]:
        """(begin, live start, end) in µs since the epoch."""
        history_us = round(self.backfill_days * DAY_US)
        begin = self.start_us if self.start_us is not None else now_us - history_us
        live = begin + history_us
        end = live + round(self.duration_s * 1_000_000) if self.duration_s > 0 else ENDLESS_US
        return begin, live, end


@dataclass
class Built:
    """A world ready to run, and what the ground truth says about the run itself."""

    world: World
    meta: dict[str, Any]


def build(scenario: Scenario, outbox: Outbox, now_us: int, narrate: Callable[[str], None]) -> Built:
    """Assemble the world and schedule everything it will do; ``narrate`` tells the live incidents."""
    begin, live, end = scenario.window(now_us)
    seed = scenario.seed
    sim = Simulation(begin, end, scenario.speed, seed)
    estate = build_estate(seed, scenario.stores, scenario.skus)
    delivery = Delivery(
        outbox, lambda: sim.now_us, seed, DUPLICATES in scenario.faults, OUT_OF_ORDER in scenario.faults
    )

    def deliver_span(span: ReadableSpan) -> None:
        world.counts["spans"] += 1
        delivery.span(span)

    stores = tuple(store.id for store in estate.stores)
    faults = FaultPlan(scenario.faults, seed, begin, live, end, scenario.speed, stores, scenario.episode_s)
    run = run_key(seed, begin)
    world = World(sim, estate, Identifiers(run), Telemetry(run, deliver_span), delivery, faults)
    history_rate = scenario.history_orders_per_minute
    orders = OrderSource(
        world,
        scenario.orders_per_minute,
        scenario.orders_per_minute if history_rate is None else history_rate,
    )
    inventory = Inventory(world)
    promotions = Promotions(world)
    inventory.start()
    orders.start()
    promotions.start()

    def tell(line: str) -> None:
        if sim.now_us >= live:
            narrate(line)

    def offline(store_id: str) -> None:
        delivery.go_offline(store_id)
        tell(f"store {store_id} went offline: its POS queues every event and span")

    def online(store_id: str) -> None:
        queued = delivery.come_online(store_id)
        tell(f"store {store_id} is back online and replays its queue of {queued} events and spans")

    def outage(start_us: int, end_us: int, store_id: str) -> None:
        sim.at(start_us, lambda: offline(store_id), recurring=True)
        # Not recurring: a store that went offline always comes back, even while draining.
        sim.at(end_us, lambda: online(store_id))

    for incident in faults.offline_incidents():
        outage(incident.start_us, incident.end_us, incident.store_id)

    def victim(due: int, fate: str) -> None:
        sim.at(due, lambda: create_order(world, fate), recurring=True)

    def episode(index: int) -> None:
        promotions.schedule_episode(index)
        inventory.schedule_drift(index)
        if faults.on(STATE_MISMATCH):
            victim(faults.at_fraction(index, EPISODE_MISMATCH), CANCEL_THEN_HANDOVER)
        for kind, fates in VICTIMS.items():
            if faults.on(kind):
                opens = faults.episode_incident(kind, index).start_us
                for number, fate in enumerate(fates, 1):
                    victim(opens + round(faults.episode_us * 0.01 * number), fate)
        for incident in faults.offline_incidents(index):
            outage(incident.start_us, incident.end_us, incident.store_id)
        for kind, label in INCIDENT_LABELS.items():
            if faults.on(kind):
                incident = faults.episode_incident(kind, index)
                sim.at(incident.start_us, partial(tell, f"{label} begins"), recurring=True)
                sim.at(incident.end_us, partial(tell, f"{label} is over"), recurring=True)
        following = faults.episode_start(index + 1)
        if following < end:
            sim.at(following, lambda: episode(index + 1), recurring=True)

    if faults.episode_us > 0:
        sim.at(live, lambda: episode(0), recurring=True)
    meta: dict[str, Any] = {
        "seed": seed,
        "start": rfc3339(begin),
        "live_start": rfc3339(live),
        "end": rfc3339(end) if end < ENDLESS_US else None,
        "speed": scenario.speed,
        "faults": sorted(scenario.faults),
        "estate": {
            "stores": [store.id for store in estate.stores],
            "warehouses": list(estate.warehouses),
            "skus": [sku.id for sku in estate.skus],
        },
    }
    return Built(world, meta)
