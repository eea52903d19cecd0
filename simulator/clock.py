"""The simulated clock: actions run in time order, and only the seed decides what happens.

Time runs from ``begin`` to ``end``. The caller's ``pace`` decides how fast: history (times before
the wall clock) as fast as the node takes it, then real time. Delays inside a flow (picking,
pickup, posting) are divided by ``speed``.

After ``end`` the clock drains: recurring actions (new orders, stock counts, incidents) stop, and
whatever is still in flight finishes at once, each remaining step ``DRAIN_STEP_US`` after the
previous one, so the run ends with every order at rest.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

Action = Callable[[], None]

DRAIN_STEP_US = 2_000
SECOND_US = 1_000_000


class Simulation:
    def __init__(self, begin_us: int, end_us: int, speed: float, seed: int) -> None:
        self.begin_us = begin_us
        self.end_us = end_us
        self.speed = speed
        self.rng = random.Random(seed)
        self.now_us = begin_us
        # When the running action was due; differs from now_us only while draining.
        self.scheduled_us = begin_us
        self.draining = False
        self._queue: list[tuple[int, int, bool, Action]] = []
        self._sequence = 0

    def at(self, time_us: int, action: Action, recurring: bool = False) -> None:
        """Run ``action`` at ``time_us``; a ``recurring`` action is dropped once the clock drains."""
        if self.draining and recurring:
            return
        self._sequence += 1
        heapq.heappush(self._queue, (max(time_us, self.now_us), self._sequence, recurring, action))

    def after(self, seconds: float, action: Action) -> None:
        """Run ``action`` after a delay inside a flow, which ``speed`` compresses."""
        self.at(self.now_us + self.flow_us(seconds), action)

    def flow_us(self, seconds: float) -> int:
        return max(1, round(seconds * SECOND_US / self.speed))

    def pending(self) -> int:
        return len(self._queue)

    def run(self, pace: Callable[[int], bool]) -> bool:
        """Run actions until none is left; ``pace(t)`` runs before each and returns False to stop early."""
        while self._queue:
            due, _, recurring, action = heapq.heappop(self._queue)
            if not self.draining and due > self.end_us:
                self.draining = True
            time_us = due
            if self.draining:
                if recurring:
                    continue
                time_us = max(self.now_us + 1, min(due, self.now_us + DRAIN_STEP_US))
            if not pace(time_us):
                return False
            self.scheduled_us = due
            self.now_us = time_us
            action()
        return True
