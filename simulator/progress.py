"""A progress bar on stderr: redrawn in place on a terminal, a line every tenth otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 28


def say(line: str) -> None:
    print(f"milepost: {line}", file=sys.stderr, flush=True)


def number(value: float) -> str:
    return f"{value:,.0f}"


class ProgressBar:
    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self._last_draw = 0.0
        self._last_tenth = -1
        self._shown = False

    def update(self, fraction: float, detail: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < self.interval and fraction < 1.0:
                return
            self._last_draw = now
            filled = round(fraction * _WIDTH)
            bar = "#" * filled + "." * (_WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {detail}\x1b[K")
            self.stream.flush()
            self._shown = True
            return
        tenth = int(fraction * 10)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(f"{self.label} {tenth * 10:3d}% {detail}\n")
            self.stream.flush()

    def done(self, detail: str = "") -> None:
        self.update(1.0, detail)
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
