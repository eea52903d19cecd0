"""Promotion and price propagation: did every target (store or channel) activate it, and how late?

Per target, lag = activation time - start, where start = max(published time, effective time)
(the first activation when the publication was never seen). A target is ``on_time`` when
activated with lag ≤ the threshold, ``late`` when activated later, ``pending`` while not
activated within the threshold, ``missing`` after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from correlator.model import PromotionEntry
from milepost.config import ConfigError, parse_duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PromotionError(ConfigError):
    """The ``promotions`` config section has a bad key or value."""


@dataclass(frozen=True)
class PromotionSettings:
    """``lag_threshold_s``: how long a target may take to activate before it is late (or missing)."""

    lag_threshold_s: float = 600.0

    @property
    def lag_threshold_us(self) -> int:
        return round(self.lag_threshold_s * 1_000_000)


def parse_promotions(raw: Mapping[str, Any] | None) -> PromotionSettings:
    """Settings from the ``promotions`` config section (``{lag_threshold: 10m}``); None gives defaults."""
    if raw is None:
        return PromotionSettings()
    if not isinstance(raw, Mapping):
        raise PromotionError(
            f"Config 'promotions' has value '{raw}'. Must be a mapping such as {{lag_threshold: 10m}}."
        )
    for key, value in raw.items():
        if key != "lag_threshold":
            raise PromotionError(
                f"Config 'promotions.{key}' has value '{value}'. Not a known key; use lag_threshold."
            )
    if "lag_threshold" not in raw:
        return PromotionSettings()
    try:
        return PromotionSettings(parse_duration("promotions.lag_threshold", raw["lag_threshold"]))
    except ConfigError as exc:
        raise PromotionError(str(exc)) from None


def rfc3339(time_us: int | None) -> str | None:
    """``2026-11-27T10:04:00Z`` (with microseconds when there are any); None stays None."""
    if time_us is None:
        return None
    return (_EPOCH + timedelta(microseconds=time_us)).isoformat().replace("+00:00", "Z")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least p% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _first_activations(activations: Sequence[PromotionEntry]) -> dict[str, int]:
    first: dict[str, int] = {}
    for entry in activations:
        if entry.target:
            first[entry.target] = min(first.get(entry.target, entry.time_us), entry.time_us)
    return first


def _start_us(published: PromotionEntry | None, first: Mapping[str, int]) -> int:
    if published is None:
        return min(first.values())
    return max(published.time_us, published.effective_us or published.time_us)


def _target_row(
    target: str, activated_us: int | None, start_us: int, now_us: int, threshold_us: int
) -> dict[str, Any]:
    if activated_us is None:
        status = "pending" if now_us - start_us <= threshold_us else "missing"
        return {"target": target, "activated_at": None, "lag_seconds": None, "status": status}
    lag_us = max(0, activated_us - start_us)  # activated early counts as on time
    return {
        "target": target,
        "activated_at": rfc3339(activated_us),
        "lag_seconds": lag_us / 1_000_000,
        "status": "on_time" if lag_us <= threshold_us else "late",
    }


def _curve(first: Mapping[str, int], start_us: int, total: int) -> list[dict[str, Any]]:
    """Cumulative completeness at the start (0) and at each activation time (early ones at the start)."""
    points: list[dict[str, Any]] = [{"time": rfc3339(start_us), "completeness": 0.0}]
    times = sorted(max(start_us, t) for t in first.values())
    for index, time_us in enumerate(times, 1):
        if index < len(times) and times[index] == time_us:
            continue  # one point per instant, after every activation at it
        points.append({"time": rfc3339(time_us), "completeness": round(index / total * 100, 1)})
    return points


def propagation(
    published: PromotionEntry | None,
    activations: Sequence[PromotionEntry],
    known_targets: Sequence[str],
    now_us: int,
    settings: PromotionSettings,
) -> dict[str, Any]:
    """The propagation of one promotion at ``now_us``, as the ``/api/v1/promotions/{id}`` JSON.

    Targets are the published ``targets``, or ``known_targets`` when it named none (or was never
    seen), plus any other target that activated it; a target's first activation counts.
    ``completeness`` is activated targets over all listed targets (%, one decimal). Raises
    ``ValueError`` when there is neither a publication nor an activation.
    """
    first = _first_activations(activations)
    if published is None and not first:
        raise ValueError("A promotion needs its publication or at least one activation.")
    promo_id = (
        published.promo_id if published is not None else next(a.promo_id for a in activations if a.target)
    )
    start_us = _start_us(published, first)
    expected = published.targets if published is not None and published.targets else tuple(known_targets)
    names = sorted(set(expected) | set(first))
    threshold_us = settings.lag_threshold_us
    rows = [_target_row(name, first.get(name), start_us, now_us, threshold_us) for name in names]
    lags = [row["lag_seconds"] for row in rows if row["lag_seconds"] is not None]
    return {
        "promo_id": promo_id,
        "kind": published.promo_kind if published is not None else None,
        "published_at": rfc3339(published.time_us) if published is not None else None,
        "effective_at": rfc3339(published.effective_us) if published is not None else None,
        "skus": list(published.skus) if published is not None else [],
        "targets": rows,
        "completeness": round(len(first) / len(rows) * 100, 1),
        "lag_p50_seconds": percentile(lags, 50),
        "lag_p95_seconds": percentile(lags, 95),
        "stragglers": [row["target"] for row in rows if row["status"] in ("late", "missing")],
        "completeness_curve": _curve(first, start_us, len(rows)),
    }


def promotion_summary(
    published: PromotionEntry | None,
    activations: Sequence[PromotionEntry],
    known_targets: Sequence[str],
    now_us: int,
    settings: PromotionSettings,
) -> dict[str, Any]:
    """One line of the ``/api/v1/promotions`` list: ``propagation``'s figures without per-target detail."""
    full = propagation(published, activations, known_targets, now_us, settings)
    return {
        "promo_id": full["promo_id"],
        "kind": full["kind"],
        "published_at": full["published_at"],
        "effective_at": full["effective_at"],
        "completeness": full["completeness"],
        "target_count": len(full["targets"]),
        "straggler_count": len(full["stragglers"]),
        "lag_p95_seconds": full["lag_p95_seconds"],
    }
