"""Promotions and price changes: published centrally, activated by every store and channel.

Pricing publishes a few minutes ahead of ``effective_at``; each store's POS and the web and app
channels pick the price list up within half the nominal lag threshold (10 minutes at speed 1, so
the node's ``promotions.lag_threshold`` should be ``10m`` divided by ``--speed``). Stragglers
activate two to four thresholds late, or never. A late activation still due when the run ends is
never sent, so the ground truth calls that target missing.
"""

from __future__ import annotations

from functools import partial

from simulator.estate import DAY_US
from simulator.faults import EPISODE_PROMOTION, PROMOTION_STRAGGLERS
from simulator.truth import LATE, MISSING
from simulator.world import CATALOG, PRICING, World, rfc3339

NOMINAL_THRESHOLD_S = 600.0
PER_DAY = 3
CHANNEL_TARGETS = ("web", "app")
_NAMES = ("SPRING", "WEEKEND", "CLEARANCE", "OUTDOOR", "LOYALTY", "FLASH", "BUNDLE", "RAINY-DAY")


class Promotions:
    def __init__(self, world: World) -> None:
        self.world = world
        self.published = 0

    def start(self) -> None:
        """History: about ``PER_DAY`` promotions a day at random times; live: one per episode."""
        world = self.world
        rng = world.sim.rng
        day = world.sim.begin_us
        while day < world.faults.live_us:
            for _ in range(PER_DAY):
                due = day + rng.randrange(DAY_US)
                if due < world.faults.live_us:
                    late, missing = int(rng.random() < 0.5), int(rng.random() < 0.25)
                    world.sim.at(due, partial(self.publish, late, missing), recurring=True)
            day += DAY_US

    def schedule_episode(self, episode: int) -> None:
        due = self.world.faults.at_fraction(episode, EPISODE_PROMOTION)
        self.world.sim.at(due, lambda: self.publish(1, 1), recurring=True)

    def publish(self, late: int, missing: int) -> None:
        world = self.world
        sim, rng, now = world.sim, world.sim.rng, world.now
        if not world.faults.on(PROMOTION_STRAGGLERS):
            late = missing = 0
        self.published += 1
        kind = "price" if rng.random() < 0.3 else "promotion"
        name = _NAMES[self.published % len(_NAMES)]
        number = world.ids.promotion()
        promo_id = f"PRICE-{number}" if kind == "price" else f"{name}-{10 * rng.randint(1, 5)}-{number}"
        effective = now + sim.flow_us(rng.uniform(60, 300))
        targets = [store.id for store in world.estate.stores] + list(CHANNEL_TARGETS)
        skus = [
            sku.id for sku in rng.sample(world.estate.skus, min(len(world.estate.skus), rng.randint(1, 5)))
        ]
        data = {
            "promo_id": promo_id,
            "kind": kind,
            "effective_at": rfc3339(effective),
            "targets": targets,
            "skus": skus,
        }
        world.event(PRICING, "retail.promotion.published", data)
        world.telemetry.span(
            "middleware", "distribute price list", now, now + world.ms(800), {"retail.promotion.id": promo_id}
        )
        world.counts["promotions"] += 1
        stores = [store.id for store in world.estate.stores]
        stragglers = rng.sample(stores, min(len(stores), late + missing))
        threshold = sim.flow_us(NOMINAL_THRESHOLD_S)
        for target in targets:
            if target in stragglers[late:]:
                world.truth.straggler(promo_id, target, MISSING)
                continue
            is_late = target in stragglers[:late]
            lag = rng.uniform(2 * threshold, 4 * threshold) if is_late else rng.uniform(0, 0.5 * threshold)
            sim.at(effective + round(lag), partial(self._activate, promo_id, target, is_late))

    def _activate(self, promo_id: str, target: str, late: bool) -> None:
        world = self.world
        if late and world.sim.draining:
            world.truth.straggler(promo_id, target, MISSING)
            return
        if late:
            world.truth.straggler(promo_id, target, LATE)
        # While draining, an on-time activation runs sooner than planned, never later.
        time_us = min(world.sim.scheduled_us, world.now)
        if target in CHANNEL_TARGETS:
            world.event(
                CATALOG,
                "retail.promotion.activated",
                {"promo_id": promo_id, "target": target},
                time_us=time_us,
            )
            service, origin = "web-shop", ""
        else:
            store = world.estate.store(target)
            world.event(
                store.source,
                "retail.promotion.activated",
                {"promo_id": promo_id, "target": target},
                store.id,
                time_us,
            )
            service, origin = store.service, store.id
        world.telemetry.span(
            service,
            "apply price list",
            time_us,
            time_us + world.ms(120),
            {"retail.promotion.id": promo_id, **({"retail.store.id": origin} if origin else {})},
        )
