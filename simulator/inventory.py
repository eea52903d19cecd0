"""Stock as each system reports it: counts (snapshots) and adjustments from ERP, POS, web and WMS.

Stores are tracked by ERP, POS and the web shop; warehouses by ERP, WMS and the web shop. A count
reports every system's figure for a (SKU, location) at one instant, so systems that agree report
the same number. Adjustments (damage, count corrections) reach every system — except when the
``inventory-drift`` fault makes one miss it: from then on that system is off by the adjustment,
in every later count too. Those pairs are the drifted SKUs of the ground truth.
"""

from __future__ import annotations

from simulator.estate import HOUR_US
from simulator.faults import EPISODE_DRIFT, INVENTORY_DRIFT
from simulator.world import STOCK_SOURCES, World, wms_source

COUNT_EVERY_US = 12 * HOUR_US
COUNT_SHARE = 0.1
ADJUSTMENTS_PER_HOUR = 1.0
HISTORY_DRIFT_RATE = 0.02
_REASONS = {-1: "damaged", -2: "shrink", 1: "count correction", 2: "found in back room"}


class Inventory:
    def __init__(self, world: World) -> None:
        self.world = world
        estate = world.estate
        self.pairs = [(sku.id, location) for location in estate.locations for sku in estate.skus]
        self.warehouses = frozenset(estate.warehouses)

    def systems(self, location: str) -> tuple[str, ...]:
        return ("erp", "wms", "web") if location in self.warehouses else ("erp", "pos", "web")

    def _source(self, system: str, location: str) -> tuple[str, str]:
        """(CloudEvents source, origin) of a system's stock figures at a location."""
        if system == "pos":
            return f"pos/store-{location}", location
        if system == "wms":
            return wms_source(location), ""
        return STOCK_SOURCES[system], ""

    def start(self) -> None:
        world = self.world
        rng = world.sim.rng
        for sku, location in self.pairs:
            world.stock.on_hand[(sku, location)] = (
                rng.randint(4, 40) if location not in self.warehouses else rng.randint(80, 400)
            )
        self._count(self.pairs)
        world.sim.at(world.sim.begin_us + COUNT_EVERY_US, self._periodic_count, recurring=True)
        self._next_adjustment(world.sim.begin_us)

    def schedule_drift(self, episode: int) -> None:
        if self.world.faults.on(INVENTORY_DRIFT):
            due = self.world.faults.at_fraction(episode, EPISODE_DRIFT)
            self.world.sim.at(due, lambda: self._adjust(drift=True), recurring=True)

    def _periodic_count(self) -> None:
        world = self.world
        rng = world.sim.rng
        self._count([pair for pair in self.pairs if rng.random() < COUNT_SHARE])
        due = world.now + COUNT_EVERY_US
        if due < world.sim.end_us:
            world.sim.at(due, self._periodic_count, recurring=True)

    def _count(self, pairs: list[tuple[str, str]]) -> None:
        world = self.world
        for sku, location in pairs:
            for system in self.systems(location):
                source, origin = self._source(system, location)
                figure = world.stock.seen_by(sku, location, system)
                data = {"sku": sku, "location_id": location, "system": system, "on_hand": figure}
                world.event(source, "retail.inventory.snapshot", data, origin)
        world.counts["stock counts"] += len(pairs)

    def _next_adjustment(self, after_us: int) -> None:
        sim = self.world.sim
        rate_per_us = ADJUSTMENTS_PER_HOUR / HOUR_US
        due = after_us + max(1, round(sim.rng.expovariate(rate_per_us)))
        if due < sim.end_us:
            sim.at(due, self._scheduled_adjustment, recurring=True)

    def _scheduled_adjustment(self) -> None:
        world = self.world
        self._next_adjustment(world.now)
        drift = world.faults.on(INVENTORY_DRIFT) and world.now < world.faults.live_us
        self._adjust(drift=drift and world.sim.rng.random() < HISTORY_DRIFT_RATE)

    def _adjust(self, drift: bool) -> None:
        world = self.world
        rng = world.sim.rng
        sku, location = rng.choice(self.pairs)
        if drift and any(key[:2] == (sku, location) for key in world.stock.offsets):
            drift = False  # a second drift on the same pair could cancel the first
        delta = rng.choice((-2, -1, -1, 1, 2))
        world.stock.put(sku, location, delta)
        systems = self.systems(location)
        missed = rng.choice(systems) if drift else ""
        for system in systems:
            if system == missed:
                # This system never heard of it: its figure stays where it was.
                world.stock.offsets[(sku, location, system)] = -delta
                continue
            source, origin = self._source(system, location)
            data = {
                "sku": sku,
                "location_id": location,
                "system": system,
                "delta": delta,
                "reason": _REASONS[delta],
            }
            world.event(source, "retail.inventory.adjusted", data, origin)
        if missed:
            world.truth.drift(sku, location, missed, -delta)
            world.counts["drifted pairs"] += 1
