"""Which faults are on, and when each incident happens.

History (before the live start) gets random incidents, about one of each kind a day. Live time is
cut into episodes (the run's duration, at most ten minutes by default, repeating) that follow one script, so
a short run still shows every fault and the demo tells the same story each time:

    5%  a promotion is published (two stragglers)      30%  an inventory adjustment misses a system
    10-55%  the warehouse (WMS) slows down             40%  a cancelled order is handed over anyway
    15-60%  a store goes offline, then replays          20-95%  ERP postings fail
    20-45%  the payment gateway is down                 always: duplicates and out-of-order arrival

Each windowed fault hits whatever order runs into it, and the script also makes one order its
victim just after the window opens (never paid, never reserved, never picked, never posted), so
even a short, quiet run has one of each. Incident durations are divided by ``speed``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.estate import DAY_US

PAYMENT_OUTAGE = "payment-outage"
WMS_SLOWNESS = "wms-slowness"
STORE_OFFLINE = "store-offline"
DUPLICATES = "duplicates"
OUT_OF_ORDER = "out-of-order"
PROMOTION_STRAGGLERS = "promotion-stragglers"
POSTING_FAILURES = "posting-failures"
INVENTORY_DRIFT = "inventory-drift"
STATE_MISMATCH = "state-mismatch"

FAULTS = (
    PAYMENT_OUTAGE,
    WMS_SLOWNESS,
    STORE_OFFLINE,
    DUPLICATES,
    OUT_OF_ORDER,
    PROMOTION_STRAGGLERS,
    POSTING_FAILURES,
    INVENTORY_DRIFT,
    STATE_MISMATCH,
)
EPISODE_MAX_S = 600.0
MIN_EPISODE_S = 10.0
# Fractions of an episode: (start, end) of each windowed fault, and the instants of one-off faults.
EPISODE_WINDOWS = {
    WMS_SLOWNESS: (0.10, 0.55),
    STORE_OFFLINE: (0.15, 0.60),
    PAYMENT_OUTAGE: (0.20, 0.45),
    POSTING_FAILURES: (0.20, 0.95),
}
EPISODE_PROMOTION = 0.05
EPISODE_DRIFT = 0.30
EPISODE_MISMATCH = 0.40
# Incidents of history, per simulated day: (probability, shortest, longest duration in seconds at speed 1).
HISTORY_INCIDENTS = {
    PAYMENT_OUTAGE: (0.7, 20 * 60, 60 * 60),
    WMS_SLOWNESS: (0.6, 60 * 60, 3 * 3600),
    STORE_OFFLINE: (0.5, 60 * 60, 6 * 3600),
    POSTING_FAILURES: (0.4, 30 * 60, 2 * 3600),
}


class FaultError(ValueError):
    pass


def parse_faults(text: str) -> frozenset[str]:
    """``all``, ``none`` or a comma list of ``FAULTS``."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if words == ["all"]:
        return frozenset(FAULTS)
    if words in ([], ["none"]):
        return frozenset()
    for word in words:
        if word not in FAULTS:
            raise FaultError(
                f"Flag '--faults' has value '{word}'. Use all, none or a comma list of: {', '.join(FAULTS)}."
            )
    return frozenset(words)


@dataclass(frozen=True)
class Incident:
    """One occurrence of a windowed fault (``store_id`` for a store outage)."""

    kind: str
    start_us: int
    end_us: int
    store_id: str = ""


class FaultPlan:
    def __init__(
        self,
        enabled: frozenset[str],
        seed: int,
        begin_us: int,
        live_us: int,
        end_us: int,
        speed: float,
        store_ids: tuple[str, ...],
        episode_s: float = EPISODE_MAX_S,
    ) -> None:
        self.enabled = enabled
        self.live_us = live_us
        self.end_us = end_us
        self.speed = speed
        self.store_ids = store_ids
        live_s = (end_us - live_us) / 1_000_000
        # A run with less live time than MIN_EPISODE_S gets no story: it is history only.
        self.episode_us = round(min(live_s, episode_s) * 1_000_000) if live_s >= MIN_EPISODE_S else 0
        self._random = random.Random(seed ^ 0xFA017)
        self.history: list[Incident] = self._history(begin_us, live_us)
        self._episodes: dict[tuple[str, int], Incident] = {}

    def on(self, fault: str) -> bool:
        return fault in self.enabled

    def _history(self, begin_us: int, live_us: int) -> list[Incident]:
        incidents = []
        day = begin_us
        while day < live_us:
            for kind, (probability, shortest, longest) in HISTORY_INCIDENTS.items():
                # Drawn whether or not the fault is on, so turning one fault off leaves the others put.
                happens = self._random.random() < probability
                start = day + self._random.randrange(DAY_US)
                length = round(self._random.uniform(shortest, longest) * 1_000_000 / self.speed)
                store = self._random.choice(self.store_ids) if self.store_ids else ""
                if happens and kind in self.enabled and start + length < live_us:
                    incidents.append(
                        Incident(kind, start, start + length, store if kind == STORE_OFFLINE else "")
                    )
            day += DAY_US
        return incidents

    def episode_start(self, index: int) -> int:
        return self.live_us + index * self.episode_us

    def at_fraction(self, index: int, fraction: float) -> int:
        return self.episode_start(index) + round(self.episode_us * fraction)

    def episode_incident(self, kind: str, index: int) -> Incident:
        key = (kind, index)
        incident = self._episodes.get(key)
        if incident is None:
            start, end = EPISODE_WINDOWS[kind]
            store = (
                self.store_ids[index % len(self.store_ids)]
                if kind == STORE_OFFLINE and self.store_ids
                else ""
            )
            incident = Incident(kind, self.at_fraction(index, start), self.at_fraction(index, end), store)
            self._episodes[key] = incident
        return incident

    def active(self, kind: str, time_us: int) -> Incident | None:
        """The incident of ``kind`` under way at ``time_us``, if any."""
        if kind not in self.enabled:
            return None
        if time_us < self.live_us:
            return next(
                (i for i in self.history if i.kind == kind and i.start_us <= time_us < i.end_us), None
            )
        if self.episode_us <= 0 or time_us >= self.end_us:
            return None
        index = (time_us - self.live_us) // self.episode_us
        incident = self.episode_incident(kind, index)
        return incident if incident.start_us <= time_us < incident.end_us else None

    def offline_incidents(self, index: int | None = None) -> list[Incident]:
        """Store outages of history, or of live episode ``index``."""
        if STORE_OFFLINE not in self.enabled:
            return []
        if index is None:
            return [i for i in self.history if i.kind == STORE_OFFLINE]
        return [self.episode_incident(STORE_OFFLINE, index)] if self.store_ids else []
