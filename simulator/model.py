"""The state flows carry: an order and its ids in every system, and stock per SKU and location."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.trace import Span

from simulator.estate import Store

REPLENISH_BELOW = 3
REPLENISH_UNITS = 24
# Fates of the orders an episode's script picks as victims (see simulator.faults).
PAYMENT_STUCK = "payment-stuck"
RESERVATION_STUCK = "reservation-stuck"
PICKING_STUCK = "picking-stuck"
POSTING_FAILED = "posting-failed"
# Fates of orders that will show a state mismatch.
LOST_PAYMENT = "lost-payment"
CANCEL_THEN_HANDOVER = "cancel-then-handover"


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int
    unit_price: float


@dataclass
class Order:
    """One order's flow state. ``order_id`` is the id of its ``retail.order.accepted`` event.

    ``fate`` is empty for a normal order, or names what will go wrong with it (a state mismatch, or
    the fault that makes it stall for good); an order with a fate is spared every other fault.
    """

    order_id: str
    channel: str
    fulfillment: str
    store: Store | None
    location: str
    lines: tuple[Line, ...]
    fate: str = ""
    marketplace_id: str = ""
    receipt: str = ""
    pickup_code: str = ""
    delivery: str = ""
    invoice: str = ""
    slow_factor: float = 1.0
    root: Span | None = field(default=None, repr=False)

    @property
    def total(self) -> float:
        return round(sum(line.qty * line.unit_price for line in self.lines), 2)

    def lines_json(self) -> list[dict[str, object]]:
        return [{"sku": line.sku, "qty": line.qty, "unit_price": line.unit_price} for line in self.lines]


@dataclass
class Stock:
    """Units on hand per (sku, location), and how far each system's figure is off (drift)."""

    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)
    offsets: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def take(self, sku: str, location: str, qty: int) -> None:
        key = (sku, location)
        left = self.on_hand.get(key, 0) - qty
        # The shelf is refilled by a delivery nobody here reports; the next count shows it.
        self.on_hand[key] = left + REPLENISH_UNITS if left < REPLENISH_BELOW else left

    def put(self, sku: str, location: str, qty: int) -> None:
        key = (sku, location)
        self.on_hand[key] = self.on_hand.get(key, 0) + qty

    def seen_by(self, sku: str, location: str, system: str) -> int:
        return self.on_hand.get((sku, location), 0) + self.offsets.get((sku, location, system), 0)
