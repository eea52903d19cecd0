"""From paid to fulfilled: stock reserved, picked, staged for pickup, handed over or shipped.

Warehouse orders go through the middleware to the WMS, which knows them by its delivery number
(an alias that the middleware's span links to the web order). Store orders are reserved by the
inventory service and picked in the store; BOPIS orders wait for the customer during opening
hours. While the WMS is slow, reservations and picking take ten to thirty times longer; a few
orders (and the episode's scripted victims) are never reserved, or never picked: stalls of the
ground truth.
"""

from __future__ import annotations

from simulator import finance
from simulator.faults import STATE_MISMATCH, WMS_SLOWNESS
from simulator.model import CANCEL_THEN_HANDOVER, PICKING_STUCK, RESERVATION_STUCK, Order
from simulator.telemetry import CONSUMER, SERVER
from simulator.truth import FULFILLED_AFTER_CANCEL
from simulator.world import CARRIER, ERP, INVENTORY, OMS, World, wms_source

NOT_COLLECTED_RATE = 0.04
HOUR_S = 3600.0


def cancel(world: World, order: Order, reason: str) -> None:
    world.event(OMS, "retail.order.cancelled", {"order_id": order.order_id, "reason": reason})
    world.counts["cancelled"] += 1


def reserve(world: World, order: Order) -> None:
    if order.location in world.estate.warehouses:
        _route_to_warehouse(world, order)
    else:
        _reserve_in_store(world, order)


def _route_to_warehouse(world: World, order: Order) -> None:
    tel, now, rng = world.telemetry, world.now, world.sim.rng
    order.delivery = world.ids.delivery()
    tel.span(
        "middleware",
        "route order to WMS",
        now,
        now + world.ms(25),
        {
            "retail.order.id": order.order_id,
            "retail.alias.kind": "delivery",
            "retail.alias.value": order.delivery,
            "messaging.system": "kafka",
        },
        kind=CONSUMER,
    )
    slow = world.faults.active(WMS_SLOWNESS, now) if not order.fate else None
    if slow is not None:
        order.slow_factor = rng.uniform(10, 30)
    if slow is not None or order.fate == RESERVATION_STUCK:
        if order.fate == RESERVATION_STUCK or rng.random() < 0.08:
            tel.span(
                "wms",
                "allocate stock",
                now + world.ms(30),
                now + world.ms(30_000),
                {"retail.order.id": order.delivery, "retail.location.id": order.location},
                kind=SERVER,
                error="lock wait timeout exceeded",
            )
            world.truth.stall(order.order_id, "paid", "reserved", WMS_SLOWNESS)
            return
        if slow is not None and rng.random() < 0.05:
            order.fate = PICKING_STUCK
    world.sim.after(rng.uniform(5, 60) * order.slow_factor, lambda: _allocate(world, order))


def _allocate(world: World, order: Order) -> None:
    tel, now = world.telemetry, world.now
    for line in order.lines:
        data = {"order_id": order.delivery, "sku": line.sku, "qty": line.qty, "location_id": order.location}
        world.event(wms_source(order.location), "retail.inventory.reserved", data)
        tel.span(
            "wms",
            "allocate stock",
            now,
            now + world.ms(40),
            {"retail.order.id": order.delivery, "retail.sku": line.sku, "retail.location.id": order.location},
            kind=SERVER,
        )
    if order.fate == PICKING_STUCK:
        world.truth.stall(order.order_id, "reserved", "ready", WMS_SLOWNESS)
        return
    world.sim.after(
        world.sim.rng.uniform(1200, 5400) * order.slow_factor, lambda: _pick_in_warehouse(world, order)
    )


def _pick_in_warehouse(world: World, order: Order) -> None:
    tel, now, ms = world.telemetry, world.now, world.ms
    # The parcel is packed now (the ready milestone); its lines were picked just before.
    began = now - ms(100 + 400 * len(order.lines))
    wave = tel.open_span("wms", "pick wave", began, {"retail.location.id": order.location}, kind=SERVER)
    for index, line in enumerate(order.lines):
        start = began + ms(50 + 400 * index)
        attributes = {
            "retail.order.id": order.delivery,
            "retail.sku": line.sku,
            "retail.location.id": order.location,
        }
        tel.span("wms", "pick line", start, start + ms(350), attributes, wave)
    tel.span(
        "wms",
        "pack parcel",
        now,
        now + ms(600),
        {
            "retail.order.id": order.delivery,
            "retail.milestone": "ready",
            "retail.location.id": order.location,
        },
        wave,
    )
    tel.close(wave, now + ms(700))
    world.sim.after(world.sim.rng.uniform(HOUR_S, 8 * HOUR_S), lambda: _ship_from_warehouse(world, order))


def _ship_from_warehouse(world: World, order: Order) -> None:
    world.event(CARRIER, "retail.order.fulfilled", {"order_id": order.delivery})
    world.telemetry.span(
        "middleware",
        "carrier status update",
        world.now,
        world.now + world.ms(15),
        {"retail.order.id": order.delivery, "carrier.status": "shipped"},
        kind=CONSUMER,
    )
    for line in order.lines:
        world.stock.take(line.sku, order.location, line.qty)
    world.sim.after(world.sim.rng.uniform(300, 3600), lambda: _invoice(world, order))


def _invoice(world: World, order: Order) -> None:
    # ERP invoices the delivery: order -> delivery -> invoice, a chain the correlator follows.
    order.invoice = world.ids.invoice()
    world.event(
        ERP, "retail.order.alias", {"order_id": order.delivery, "kind": "invoice", "value": order.invoice}
    )
    finance.post_sale(world, order, order.invoice)


def _reserve_in_store(world: World, order: Order) -> None:
    assert order.store is not None
    tel, now = world.telemetry, world.now
    for line in order.lines:
        data = {"order_id": order.order_id, "sku": line.sku, "qty": line.qty, "location_id": order.location}
        world.event(INVENTORY, "retail.inventory.reserved", data)
        tel.span(
            "inventory-service",
            "reserve stock",
            now,
            now + world.ms(30),
            {"retail.order.id": order.order_id, "retail.sku": line.sku, "retail.location.id": order.location},
            kind=SERVER,
        )
    world.sim.after(world.sim.rng.uniform(900, 3600), lambda: _ready_in_store(world, order))


def _ready_in_store(world: World, order: Order) -> None:
    assert order.store is not None
    store, tel, now, sim = order.store, world.telemetry, world.now, world.sim
    data: dict[str, object] = {"order_id": order.order_id, "store_id": store.id}
    attributes = {"retail.order.id": order.order_id, "retail.store.id": store.id}
    if order.fulfillment == "ship_from_store":
        world.event(store.source, "retail.order.ready", data, store.id)
        tel.span(store.service, "pack parcel", now, now + world.ms(500), attributes)
        sim.after(sim.rng.uniform(HOUR_S, 6 * HOUR_S), lambda: _ship_from_store(world, order))
        return
    order.pickup_code = world.ids.pickup_code()
    world.event(store.source, "retail.order.ready", {**data, "pickup_code": order.pickup_code}, store.id)
    tel.span(store.service, "stage for pickup", now, now + world.ms(400), attributes)
    if order.fate == CANCEL_THEN_HANDOVER:
        sim.after(sim.rng.uniform(HOUR_S, 3 * HOUR_S), lambda: _cancel_then_hand_over(world, order))
    elif sim.rng.random() < NOT_COLLECTED_RATE:
        sim.after(sim.rng.uniform(48 * HOUR_S, 72 * HOUR_S), lambda: cancel(world, order, "not collected"))
    else:
        collected = store.next_open(now + sim.flow_us(sim.rng.uniform(HOUR_S, 48 * HOUR_S)))
        sim.at(collected, lambda: _hand_over_pickup(world, order))


def _cancel_then_hand_over(world: World, order: Order) -> None:
    assert order.store is not None
    cancel(world, order, "customer cancelled")
    # The store never heard of the cancellation: the customer comes and gets the goods.
    handed = order.store.next_open(world.now + world.sim.flow_us(world.sim.rng.uniform(300, 1800)))
    world.sim.at(handed, lambda: _hand_over_pickup(world, order))


def _hand_over_pickup(world: World, order: Order) -> None:
    assert order.store is not None
    store, now = order.store, world.now
    order.receipt = world.ids.receipt(store.id)
    world.telemetry.span(
        store.service,
        "pickup.handover",
        now,
        now + world.ms(1500),
        {
            "retail.order.id": order.pickup_code,
            "retail.milestone": "fulfilled",
            "retail.store.id": store.id,
            "retail.alias.kind": "pos_receipt",
            "retail.alias.value": order.receipt,
        },
        kind=SERVER,
    )
    for line in order.lines:
        world.stock.take(line.sku, store.id, line.qty)
    if order.fate == CANCEL_THEN_HANDOVER:
        world.truth.mismatch(order.order_id, FULFILLED_AFTER_CANCEL, STATE_MISMATCH)
        return
    finance.post_sale(world, order, order.receipt)


def _ship_from_store(world: World, order: Order) -> None:
    assert order.store is not None
    world.event(order.store.source, "retail.order.fulfilled", {"order_id": order.order_id}, order.store.id)
    for line in order.lines:
        world.stock.take(line.sku, order.store.id, line.qty)
    finance.post_sale(world, order, order.order_id)


def hand_over_sale(world: World, order: Order) -> None:
    """The end of a POS sale: goods handed over, the transaction's root span ends."""
    assert order.store is not None and order.root is not None
    now = world.now
    world.telemetry.span(
        order.store.service,
        "bag and hand over",
        now,
        now + world.ms(800),
        {
            "retail.order.id": order.order_id,
            "retail.milestone": "fulfilled",
            "retail.store.id": order.store.id,
        },
        order.root,
    )
    world.telemetry.close(order.root, now + world.ms(900))
    order.root = None
    for line in order.lines:
        world.stock.take(line.sku, order.store.id, line.qty)
    finance.post_sale(world, order, order.order_id)
