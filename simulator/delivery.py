"""Between the estate's systems and the node: what real networks and stores do to messages.

A store that is offline queues everything its systems emit and replays the queue when it is back
(at least once: a few items twice). Some messages are delivered twice (a retry after a lost
acknowledgement) or held back and delivered late, so they arrive after newer ones. Event times
never change: the node must order by event time and count each id once.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from simulator.outbox import Outbox

DUPLICATE_RATE = 0.02
LATE_RATE = 0.05
REPLAY_REPEAT_RATE = 0.05
_SECOND_US = 1_000_000

Item = tuple[str, Any]  # ("event", CloudEvent dict) or ("span", ReadableSpan)


@dataclass
class DeliveryStats:
    duplicated: int = 0
    delayed: int = 0
    queued_offline: int = 0
    replayed: int = 0


def span_origin(span: ReadableSpan) -> str:
    """The store whose outage holds this span back ('' for central services)."""
    service = str(span.resource.attributes.get("service.name", ""))
    return service[len("pos-store-") :] if service.startswith("pos-store-") else ""


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], int],
        seed: int,
        duplicates: bool,
        out_of_order: bool,
    ) -> None:
        self.outbox = outbox
        self.clock = clock
        self.duplicates = duplicates
        self.out_of_order = out_of_order
        self.stats = DeliveryStats()
        self._random = random.Random(seed ^ 0xDE11)
        self._held: list[tuple[int, int, Item]] = []
        self._sequence = 0
        self._offline: dict[str, list[Item]] = {}

    def event(self, event: dict[str, Any], origin: str = "") -> None:
        self._route(("event", event), origin)

    def span(self, span: ReadableSpan) -> None:
        self._route(("span", span), span_origin(span))

    def _route(self, item: Item, origin: str) -> None:
        queue = self._offline.get(origin) if origin else None
        if queue is not None:
            queue.append(item)
            self.stats.queued_offline += 1
            return
        if self.out_of_order and self._random.random() < LATE_RATE:
            self.stats.delayed += 1
            self._hold(item, self._random.uniform(1, 20))
            return
        self._send(item)
        if self.duplicates and self._random.random() < DUPLICATE_RATE:
            self.stats.duplicated += 1
            self._hold(item, self._random.uniform(0.5, 15))

    def _hold(self, item: Item, seconds: float) -> None:
        self._sequence += 1
        heapq.heappush(self._held, (self.clock() + round(seconds * _SECOND_US), self._sequence, item))

    def _send(self, item: Item) -> None:
        kind, value = item
        if kind == "event":
            self.outbox.add_event(value)
        else:
            self.outbox.add_span(value)

    def release(self, now_us: int) -> None:
        """Deliver what was held back until ``now_us``."""
        while self._held and self._held[0][0] <= now_us:
            self._send(heapq.heappop(self._held)[2])

    def go_offline(self, store_id: str) -> None:
        self._offline.setdefault(store_id, [])

    def come_online(self, store_id: str) -> int:
        """Replay the store's queue in the order it was made; returns how many items it held."""
        queue = self._offline.pop(store_id, [])
        for item in queue:
            self._send(item)
            if self._random.random() < REPLAY_REPEAT_RATE:
                self._send(item)
        self.stats.replayed += len(queue)
        return len(queue)

    def close(self) -> None:
        """Deliver everything still held or queued (stores still offline replay now)."""
        for store_id in list(self._offline):
            self.come_online(store_id)
        while self._held:
            self._send(heapq.heappop(self._held)[2])
