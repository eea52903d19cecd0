"""Orders arrive and are paid: web and app checkouts, marketplace imports and POS sales in stores.

Arrivals follow a daily curve (quiet nights, lunch and evening peaks); in-store sales happen only
in open stores. The web shop's checkout trace reaches the OMS and the inventory service; the OMS
emits ``retail.order.accepted``; the payment gateway's capture span is the ``paid`` milestone.
During a payment gateway outage captures fail: most orders are retried when it is over, some are
cancelled, and some — among them the victim the episode's script picks — are never retried: stalls
of the ground truth.
"""

from __future__ import annotations

from simulator import fulfilment
from simulator.estate import HOUR_US
from simulator.faults import PAYMENT_OUTAGE, STATE_MISMATCH
from simulator.model import (
    CANCEL_THEN_HANDOVER,
    LOST_PAYMENT,
    PAYMENT_STUCK,
    PICKING_STUCK,
    POSTING_FAILED,
    RESERVATION_STUCK,
    Line,
    Order,
)
from simulator.telemetry import CLIENT, SERVER
from simulator.truth import MISSING_PREREQUISITE
from simulator.world import MARKETPLACE, OMS, PAYMENTS, World

# Relative demand by hour of day (UTC), scaled to average 1.
_CURVE = (
    0.25, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.1, 1.2, 1.4,
    1.5, 1.4, 1.2, 1.1, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.7, 0.4,
)  # fmt: skip
DEMAND = tuple(value * len(_CURVE) / sum(_CURVE) for value in _CURVE)
PEAK = max(DEMAND)
CHANNELS = (("web", 0.35), ("app", 0.25), ("marketplace", 0.10), ("store", 0.30))
ONLINE_FULFILMENT = (("bopis", 0.35), ("ship", 0.45), ("ship_from_store", 0.20))
LOST_PAYMENT_RATE = 0.01
# The orders an episode's script makes each fault hit, whatever else happens: (channel, fulfilment).
SCRIPTED = {
    PAYMENT_STUCK: ("web", "ship"),
    RESERVATION_STUCK: ("marketplace", "ship"),
    PICKING_STUCK: ("app", "ship"),
    POSTING_FAILED: ("web", "ship_from_store"),
    CANCEL_THEN_HANDOVER: ("web", "bopis"),
}
CANCEL_HANDOVER_RATE = 0.003
# A missing prerequisite is reported an hour after the milestone; older orders show it by the end.
_MISMATCH_AGE_US = 3 * HOUR_US


def _pick(world: World, weights: tuple[tuple[str, float], ...]) -> str:
    return world.sim.rng.choices([name for name, _ in weights], [weight for _, weight in weights])[0]


class OrderSource:
    """New orders at ``history_rate`` per minute before the live start, ``rate`` after it."""

    def __init__(self, world: World, rate: float, history_rate: float) -> None:
        self.world = world
        self.rate = rate
        self.history_rate = history_rate

    def start(self) -> None:
        self._next(self.world.sim.begin_us)

    def _next(self, after_us: int) -> None:
        sim, live = self.world.sim, self.world.faults.live_us
        rate = self.history_rate if after_us < live else self.rate
        if rate <= 0:
            if after_us < live:
                sim.at(live, lambda: self._next(live), recurring=True)
            return
        gap_us = round(sim.rng.expovariate(rate * PEAK / 60) * 1_000_000)
        due = after_us + max(1, gap_us)
        if due < sim.end_us:
            sim.at(due, self._arrive, recurring=True)

    def _arrive(self) -> None:
        world = self.world
        now = world.now
        self._next(now)
        if world.sim.rng.random() * PEAK > DEMAND[(now // HOUR_US) % 24]:
            return  # thinning: the daily curve
        create_order(world)


def create_order(world: World, fate: str = "") -> None:
    """A new order; ``fate`` (one of ``SCRIPTED``) makes it the victim an episode's script needs."""
    rng = world.sim.rng
    estate = world.estate
    open_stores = estate.open_stores(world.now)
    if fate:
        channel, fulfillment = SCRIPTED[fate]
    else:
        channel = _pick(world, CHANNELS)
        if channel == "store" and not open_stores:
            channel = "web"
        if channel == "store":
            fulfillment = "in_store"
        elif channel == "marketplace":
            fulfillment = "ship"
        else:
            fulfillment = _pick(world, ONLINE_FULFILMENT)
    store = rng.choice(open_stores) if channel == "store" else rng.choice(estate.stores)
    location = rng.choice(estate.warehouses) if fulfillment == "ship" else store.id
    lines = tuple(
        Line(sku.id, 1 if rng.random() < 0.8 else 2, sku.price)
        for sku in rng.sample(estate.skus, min(len(estate.skus), rng.choice((1, 1, 1, 2, 2, 3))))
    )
    order_id = world.ids.receipt(store.id) if channel == "store" else world.ids.web_order()
    order = Order(
        order_id, channel, fulfillment, store if fulfillment != "ship" else None, location, lines, fate
    )
    world.counts["orders"] += 1
    world.counts[f"orders.{channel}.{fulfillment}"] += 1
    mismatches = world.faults.on(STATE_MISMATCH) and not fate
    if mismatches and fulfillment == "bopis" and rng.random() < CANCEL_HANDOVER_RATE:
        order.fate = CANCEL_THEN_HANDOVER
    elif (
        mismatches
        and channel in ("web", "app")
        and world.now < world.sim.end_us - _MISMATCH_AGE_US
        and rng.random() < LOST_PAYMENT_RATE
    ):
        order.fate = LOST_PAYMENT
    if channel == "store":
        _pos_sale(world, order)
    else:
        _checkout(world, order)


def _accepted(world: World, order: Order, source: str, origin: str = "") -> None:
    data: dict[str, object] = {
        "order_id": order.order_id,
        "channel": order.channel,
        "fulfillment": order.fulfillment,
        "lines": order.lines_json(),
        "total": order.total,
        "currency": world.estate.currency,
    }
    if order.store is not None:
        data["store_id"] = order.store.id
    if order.marketplace_id:
        data["aliases"] = {"marketplace_order": order.marketplace_id}
    world.event(source, "retail.order.accepted", data, origin)


def _checkout(world: World, order: Order) -> None:
    tel, now, ms = world.telemetry, world.now, world.ms
    attributes: dict[str, str | int] = {"retail.order.id": order.order_id, "retail.channel": order.channel}
    if order.store is not None:
        attributes["retail.store.id"] = order.store.id
    if order.channel == "marketplace":
        order.marketplace_id = world.ids.marketplace_order()
        tel.span(
            "middleware",
            "import marketplace order",
            now,
            now + ms(40),
            {
                **attributes,
                "retail.alias.kind": "marketplace_order",
                "retail.alias.value": order.marketplace_id,
                "messaging.system": "kafka",
            },
            kind=SERVER,
        )
    else:
        route = "/checkout" if order.channel == "web" else "/api/v2/checkout"
        root = tel.open_span(
            "web-shop",
            f"POST {route}",
            now,
            {
                **attributes,
                "http.request.method": "POST",
                "http.route": route,
                "cart.lines": len(order.lines),
            },
            kind=SERVER,
        )
        tel.span(
            "web-shop", "validate cart", now + ms(2), now + ms(9), {"cart.lines": len(order.lines)}, root
        )
        tel.span(
            "inventory-service",
            "GET /availability",
            now + ms(10),
            now + ms(34),
            {"retail.sku": order.lines[0].sku, "retail.location.id": order.location},
            root,
            SERVER,
        )
        tel.span("oms", "create order", now + ms(40), now + ms(95), attributes, root, SERVER)
        tel.close(root, now + ms(120))
    _accepted(world, order, OMS)
    world.sim.after(world.sim.rng.uniform(3, 45), lambda: _capture(world, order))


def _capture(world: World, order: Order) -> None:
    tel, now, ms, rng = world.telemetry, world.now, world.ms, world.sim.rng
    amount = {"amount": order.total, "currency": world.estate.currency}
    if order.channel == "marketplace":
        # The marketplace collects the money and tells us under its own order number.
        data = {"order_id": order.marketplace_id, "payment_ref": world.ids.payment_ref(), **amount}
        world.event(MARKETPLACE, "retail.payment.confirmed", data)
        world.sim.after(rng.uniform(20, 300), lambda: fulfilment.reserve(world, order))
        return
    if order.fate == LOST_PAYMENT:
        # The gateway captured the money, but its confirmation never reached anyone.
        world.truth.mismatch(order.order_id, MISSING_PREREQUISITE, STATE_MISMATCH)
        world.sim.after(rng.uniform(20, 300), lambda: fulfilment.reserve(world, order))
        return
    outage = world.faults.active(PAYMENT_OUTAGE, now) if order.fate in ("", PAYMENT_STUCK) else None
    failing = outage is not None or order.fate == PAYMENT_STUCK
    reference = world.ids.payment_ref()
    # A milestone's time is its action's time: the client call starts a little before the gateway's span.
    call = tel.open_span(
        "oms", "capture payment", now - ms(5), {"retail.order.id": order.order_id}, kind=CLIENT
    )
    attributes: dict[str, str | float] = {
        "retail.order.id": order.order_id,
        "http.request.method": "POST",
        "payment.amount": order.total,
    }
    if not failing:
        attributes |= {
            "retail.milestone": "paid",
            "retail.alias.kind": "payment_ref",
            "retail.alias.value": reference,
        }
        tel.span(
            "payment-gateway",
            "POST /v1/payments/capture",
            now,
            now + ms(180),
            attributes,
            call,
            SERVER,
        )
        tel.close(call, now + ms(190))
        world.sim.after(rng.uniform(20, 300), lambda: fulfilment.reserve(world, order))
        return
    error = "503 Service Unavailable: acquirer timeout"
    tel.span(
        "payment-gateway",
        "POST /v1/payments/capture",
        now,
        now + ms(5000),
        attributes,
        call,
        SERVER,
        error,
    )
    tel.close(call, now + ms(5010), error)
    world.event(
        PAYMENTS, "retail.payment.failed", {"order_id": order.order_id, "payment_ref": reference, **amount}
    )
    world.counts["payment failures"] += 1
    if order.fate == PAYMENT_STUCK or rng.random() < 0.1:
        world.truth.stall(order.order_id, "accepted", "paid", PAYMENT_OUTAGE)
    elif rng.random() < 0.3:
        world.sim.after(
            rng.uniform(600, 2400), lambda: fulfilment.cancel(world, order, "payment not captured")
        )
    else:
        retry = (outage.end_us if outage is not None else now) + world.sim.flow_us(rng.uniform(60, 600))
        world.sim.at(retry, lambda: _capture(world, order))


def _pos_sale(world: World, order: Order) -> None:
    assert order.store is not None
    store, tel, now, rng = order.store, world.telemetry, world.now, world.sim.rng
    order.receipt = order.order_id
    attributes = {"retail.order.id": order.order_id, "retail.store.id": store.id, "retail.channel": "store"}
    order.root = tel.open_span(store.service, "pos.transaction", now, attributes, kind=SERVER)
    for index, line in enumerate(order.lines):
        scanned = now + world.sim.flow_us(2 + 3 * index)
        tel.span(
            store.service,
            "scan item",
            scanned,
            scanned + world.ms(300),
            {"retail.sku": line.sku, "retail.location.id": store.id, "item.qty": line.qty},
            order.root,
        )
    _accepted(world, order, store.source, store.id)
    world.sim.after(rng.uniform(20, 60), lambda: _card_payment(world, order))


def _card_payment(world: World, order: Order) -> None:
    assert order.store is not None and order.root is not None
    tel, now, ms = world.telemetry, world.now, world.ms
    terminal = tel.open_span(
        order.store.service,
        "card payment",
        now - ms(20),
        {"retail.order.id": order.order_id},
        order.root,
        CLIENT,
    )
    tel.span(
        "payment-gateway",
        "POST /v1/payments",
        now,
        now + ms(900),
        {
            "retail.order.id": order.order_id,
            "retail.milestone": "paid",
            "retail.alias.kind": "payment_ref",
            "retail.alias.value": world.ids.payment_ref(),
            "payment.amount": order.total,
        },
        terminal,
        SERVER,
    )
    tel.close(terminal, now + ms(950))
    world.sim.after(world.sim.rng.uniform(5, 20), lambda: fulfilment.hand_over_sale(world, order))
