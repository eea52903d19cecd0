"""Stock per SKU and location as each system sees it, and how far the systems disagree.

A system's on_hand is its latest snapshot plus its adjustments after that snapshot, applied in
event-time order. Entries are deduplicated by event key, so redelivery and arrival order never
change a figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from correlator.model import SkuEntry
from correlator.propagation import rfc3339

SNAPSHOT = "snapshot"
ADJUSTMENT = "adjustment"
SALE = "sale"
RETURN = "return"
RESERVATION = "reservation"
# Past-tense spellings, as the event types say them (retail.inventory.adjusted, ...).
_KIND_ALIASES = {"adjusted": ADJUSTMENT, "sold": SALE, "returned": RETURN, "reserved": RESERVATION}

_Key = tuple[str, str, str, str, str]


def _kind(entry: SkuEntry) -> str:
    return _KIND_ALIASES.get(entry.kind, entry.kind)


def _identity(entry: SkuEntry) -> _Key:
    # One event may carry several SKUs (order lines), so the event key alone is not unique.
    return (entry.event_key, entry.sku, entry.location_id, _kind(entry), entry.system)


def _ordering(entry: SkuEntry) -> tuple[Any, ...]:
    return (
        entry.time_us,
        entry.event_key,
        entry.qty,
        entry.delta,
        entry.on_hand or 0,
        entry.order_key,
        entry.reason,
    )


def unique(entries: Iterable[SkuEntry]) -> list[SkuEntry]:
    """Each event once (the same copy whatever the input order), sorted by event time then event key."""
    kept: dict[_Key, SkuEntry] = {}
    for entry in entries:
        key = _identity(entry)
        if key not in kept or _ordering(entry) < _ordering(kept[key]):
            kept[key] = entry
    return sorted(kept.values(), key=_ordering)


def _groups(entries: Sequence[SkuEntry]) -> dict[tuple[str, str], list[SkuEntry]]:
    groups: dict[tuple[str, str], list[SkuEntry]] = {}
    for entry in unique(entries):
        groups.setdefault((entry.sku, entry.location_id), []).append(entry)
    return dict(sorted(groups.items()))


def _system_stock(entries: Sequence[SkuEntry]) -> dict[str, Any]:
    """One system at one location; ``entries`` are its snapshots and adjustments by event time."""
    snapshots = [e for e in entries if _kind(e) == SNAPSHOT and e.on_hand is not None]
    latest = snapshots[-1] if snapshots else None
    since = latest.time_us if latest is not None else None
    # Adjustments at or before the snapshot are already counted in it.
    pending = [e for e in entries if _kind(e) == ADJUSTMENT and (since is None or e.time_us > since)]
    delta = sum(e.delta for e in pending)
    last = max([e.time_us for e in pending] + ([since] if since is not None else []))
    return {
        "on_hand": latest.on_hand + delta if latest is not None and latest.on_hand is not None else None,
        "as_of": rfc3339(last),
        "snapshot_at": rfc3339(since),
        "pending_delta": delta,
    }


def _location(sku: str, location_id: str, entries: Sequence[SkuEntry]) -> dict[str, Any]:
    per_system: dict[str, list[SkuEntry]] = {}
    for entry in entries:
        if entry.system and _kind(entry) in (SNAPSHOT, ADJUSTMENT):
            per_system.setdefault(entry.system, []).append(entry)
    systems = {name: _system_stock(group) for name, group in sorted(per_system.items())}
    values = [s["on_hand"] for s in systems.values() if s["on_hand"] is not None]
    spread = max(values) - min(values) if len(values) >= 2 else 0
    return {
        "sku": sku,
        "location_id": location_id,
        "systems": systems,
        "spread": spread,
        "in_agreement": spread == 0,
    }


def variance(entries: Sequence[SkuEntry], now_us: int | None = None) -> list[dict[str, Any]]:
    """Per (sku, location_id), sorted: each system's on_hand and how far the systems disagree.

    ``systems`` holds every system (erp, pos, web, wms...) with a snapshot or adjustment there:
    ``on_hand`` (None until the system's first snapshot), ``pending_delta`` (the adjustments
    after that snapshot, or all of them before one), ``snapshot_at`` and ``as_of`` (the latest
    entry counted). ``spread`` is max - min over systems with an ``on_hand`` (0 with fewer than
    two); ``in_agreement`` is ``spread == 0``. With ``now_us``, entries after it are ignored.
    """
    visible = [e for e in entries if now_us is None or e.time_us <= now_us]
    locations = [_location(sku, location_id, group) for (sku, location_id), group in _groups(visible).items()]
    return [location for location in locations if location["systems"]]


def sku_totals(entries: Sequence[SkuEntry]) -> list[dict[str, Any]]:
    """Per (sku, location_id), sorted: units ``sold``, ``returned`` and ``reserved``, each event once.

    Returned quantities count as positive whatever their sign (some sources record returns as
    negative sales).
    """
    totals = []
    for (sku, location_id), group in _groups(entries).items():
        kinds = [(_kind(e), e.qty) for e in group if _kind(e) in (SALE, RETURN, RESERVATION)]
        if not kinds:
            continue
        totals.append(
            {
                "sku": sku,
                "location_id": location_id,
                "sold": sum(qty for kind, qty in kinds if kind == SALE),
                "returned": sum(abs(qty) for kind, qty in kinds if kind == RETURN),
                "reserved": sum(qty for kind, qty in kinds if kind == RESERVATION),
            }
        )
    return totals
