"""The business vocabulary and the rows the correlator derives from spans and events.

Everything here is a plain frozen value: mapping produces them, the store writes them,
verdicts read them. Times are microseconds since the epoch, UTC (event time, never
arrival time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# Lifecycle order: `state` is the furthest of these reached; SLA "after" means ranked later.
LIFECYCLE: tuple[str, ...] = (
    "accepted",
    "paid",
    "reserved",
    "ready",
    "fulfilled",
    "returned",
    "refunded",
    "reconciled",
)
CANCELLED = "cancelled"
MILESTONES: tuple[str, ...] = (*LIFECYCLE, CANCELLED)
RANK: dict[str, int] = {name: index for index, name in enumerate(LIFECYCLE)}

CHANNELS = ("web", "app", "store", "marketplace")
FULFILLMENTS = ("bopis", "ship", "ship_from_store", "in_store")


@dataclass(frozen=True)
class TimelineEntry:
    """One entry of an order's timeline, stored under the id the producer used (``order_key``).

    ``kind`` is ``milestone`` (``name`` is a milestone), ``event`` (an integration event
    linked to the order that is not a milestone, e.g. ``retail.finance.posting_failed``;
    ``name`` is its type) or ``span`` (a span carrying the order's key; ``name`` is the span
    name) — the last two make drill-down possible.
    """

    order_key: str
    kind: str
    name: str
    time_us: int
    source: str
    event_key: str
    event_type: str
    trace_id: str = ""
    span_id: str = ""
    store_id: str = ""
    channel: str = ""
    fulfillment: str = ""
    status: str = "ok"
    detail: str = ""  # compact JSON of the fields worth showing (amount, reason, error, erp_doc...)


@dataclass(frozen=True)
class AliasLink:
    """``alias`` is another system's id for the order known as ``order_key``."""

    alias: str
    order_key: str
    kind: str
    time_us: int
    event_key: str


@dataclass(frozen=True)
class SkuEntry:
    """Something that happened to a SKU at a location: a sale, reservation, return, snapshot or adjustment.

    ``on_hand`` is set for snapshots, ``delta`` for adjustments, ``qty`` for the rest.
    """

    sku: str
    location_id: str
    kind: str
    time_us: int
    event_key: str
    system: str = ""
    qty: int = 0
    on_hand: int | None = None
    delta: int = 0
    order_key: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PromotionEntry:
    """A promotion or price change published centrally (``kind`` published) or activated at one target."""

    promo_id: str
    kind: str
    time_us: int
    event_key: str
    target: str = ""
    effective_us: int | None = None
    targets: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    promo_kind: str = "promotion"


class Mapped(NamedTuple):
    """What one batch of spans or events says about orders, SKUs, promotions and stores."""

    timeline: list[TimelineEntry]
    links: list[AliasLink]
    skus: list[SkuEntry]
    promotions: list[PromotionEntry]
    stores: set[str]


@dataclass(frozen=True)
class Stall:
    after: str
    expected: str
    due_us: int
    overdue_seconds: float
    rule: str = ""


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: str


@dataclass(frozen=True)
class OrderVerdict:
    state: str
    stalled: Stall | None
    anomalies: tuple[Anomaly, ...] = field(default_factory=tuple)
