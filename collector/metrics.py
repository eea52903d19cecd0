"""Counters, gauges and histograms served as Prometheus text on ``GET /metrics``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol


class _Metric(Protocol):
    def render(self) -> Iterable[str]: ...


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class Counter:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        if amount == 0:
            return
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Gauge:
    """A value read when scraped, so it is never stale."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {self.read():g}"


class Histogram:
    def __init__(
        self, name: str, help_text: str, buckets: tuple[float, ...], label_names: tuple[str, ...] = ()
    ) -> None:
        self.name, self.help, self.buckets, self.label_names = name, help_text, buckets, label_names
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> float:
        return self._series.get(labels, [0.0])[-1]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, series in sorted(self._series.items()):
            for index, bound in enumerate(self.buckets):
                names = (*self.label_names, "le")
                yield f"{self.name}_bucket{_labels(names, (*labels, f'{bound:g}'))} {series[index]:g}"
            names = (*self.label_names, "le")
            yield f"{self.name}_bucket{_labels(names, (*labels, '+Inf'))} {series[-1]:g}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {series[-2]:g}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {series[-1]:g}"


class IngestMetrics:
    """Everything the node counts about ingest; one instance per node."""

    def __init__(self) -> None:
        self.accepted = Counter("milepost_accepted_total", "Items acknowledged (durable).", ("signal",))
        self.rejected = Counter("milepost_rejected_total", "Items refused at ingest.", ("signal",))
        self.quarantined = Counter(
            "milepost_quarantined_total", "Refused items kept in quarantine.", ("signal",)
        )
        self.duplicates = Counter("milepost_duplicates_total", "Repeats stored once.", ("signal",))
        self.requests = Counter(
            "milepost_requests_total", "Ingest requests by answer.", ("endpoint", "status")
        )
        self.stored = Counter("milepost_stored_rows_total", "Rows written to ClickHouse.", ("table",))
        self.insert_errors = Counter(
            "milepost_insert_errors_total", "Failed writes to ClickHouse.", ("table",)
        )
        self.insert_latency = Histogram(
            "milepost_insert_seconds", "Time of one insert into ClickHouse.", _LATENCY_BUCKETS, ("table",)
        )
        self.rows_per_insert = Histogram(
            "milepost_rows_per_insert", "Rows in one insert into ClickHouse.", _SIZE_BUCKETS, ("table",)
        )
        self.ack_latency = Histogram(
            "milepost_ack_seconds",
            "Time from request to durable acknowledgement.",
            _LATENCY_BUCKETS,
            ("signal",),
        )
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        lines: list[str] = []
        metrics: tuple[_Metric, ...] = (
            self.accepted,
            self.rejected,
            self.quarantined,
            self.duplicates,
            self.requests,
            self.stored,
            self.insert_errors,
            self.insert_latency,
            self.rows_per_insert,
            self.ack_latency,
            *self.gauges,
        )
        for metric in metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
