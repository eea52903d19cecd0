"""The node's ``/metrics`` (Prometheus text format) read into the ingest-health figures ops look at."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> dict[str, dict[Labels, float]]:
    """Samples by metric name, then by their sorted labels; comments and bad lines are skipped."""
    samples: dict[str, dict[Labels, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        key = tuple(sorted(_LABEL.findall(labels or "")))
        samples.setdefault(name, {})[key] = number
    return samples


@dataclass(frozen=True)
class IngestHealth:
    """Totals since the node started, per signal (``spans``, ``events``...), and its queue depth."""

    accepted: Mapping[str, float] = field(default_factory=dict)
    rejected: Mapping[str, float] = field(default_factory=dict)
    quarantined: Mapping[str, float] = field(default_factory=dict)
    duplicates: Mapping[str, float] = field(default_factory=dict)
    insert_errors: float = 0.0
    wal_bytes: float = 0.0
    storage_up: bool = True
    answers: Mapping[str, float] = field(default_factory=dict)  # ingest requests by HTTP status

    @property
    def signals(self) -> list[str]:
        return sorted({*self.accepted, *self.rejected, *self.quarantined, *self.duplicates})


def _by(samples: Mapping[Labels, float], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in samples.items():
        name = dict(labels).get(label, "")
        out[name] = out.get(name, 0.0) + value
    return out


def ingest_health(text: str) -> IngestHealth:
    samples = parse(text)

    def total(name: str) -> float:
        return sum(samples.get(name, {}).values())

    return IngestHealth(
        accepted=_by(samples.get("milepost_accepted_total", {}), "signal"),
        rejected=_by(samples.get("milepost_rejected_total", {}), "signal"),
        quarantined=_by(samples.get("milepost_quarantined_total", {}), "signal"),
        duplicates=_by(samples.get("milepost_duplicates_total", {}), "signal"),
        insert_errors=total("milepost_insert_errors_total"),
        wal_bytes=total("milepost_wal_bytes"),
        storage_up=total("milepost_storage_up") >= 1 if "milepost_storage_up" in samples else True,
        answers=_by(samples.get("milepost_requests_total", {}), "status"),
    )


def rates(earlier: Mapping[str, float], later: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Per-second rates between two scrapes of the same counters; a restart (counter drop) gives 0."""
    if seconds <= 0:
        return {}
    return {name: max(0.0, later[name] - earlier.get(name, 0.0)) / seconds for name in later}


def byte_text(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def rate_text(values: Sequence[float]) -> str:
    return f"{sum(values):,.1f}/s"
