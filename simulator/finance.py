"""Money after the goods: ERP postings and reconciliation, returns in store, refunds.

The ERP posts under whichever document it knows (invoice, POS receipt, return), and reconciles
under its own document number: aliases the correlator must resolve. During an ERP incident (and
now and then outside one) a posting fails; half are posted again later, the rest — and the sale of
the episode's scripted victim — stay failed: failed postings of the ground truth, stalled before
reconciled. Stores refund their own sales at the till (an event); online refunds are the payment
gateway's spans.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.faults import POSTING_FAILURES
from simulator.model import POSTING_FAILED, Line, Order
from simulator.telemetry import SERVER
from simulator.world import ERP, World

BACKGROUND_FAILURE_RATE = 0.01
RETURN_RATE = {"store": 0.03}
ONLINE_RETURN_RATE = 0.08
HOUR_S = 3600.0
_ERRORS = ("posting period 11/2026 is closed", "cost center RETAIL-DE not found", "tax code V9 invalid")


def post_sale(world: World, order: Order, key: str) -> None:
    """Post the sale under ``key`` (the document the ERP knows) some time after fulfilment."""
    world.sim.after(
        world.sim.rng.uniform(600, 2 * HOUR_S),
        lambda: _post(
            world, order, key, "sale", order.total, lambda doc: _reconcile(world, order, doc, True)
        ),
    )


def _post(
    world: World, order: Order, key: str, kind: str, amount: float, then: Callable[[str], None]
) -> None:
    rng, now, faults = world.sim.rng, world.now, world.faults
    document = world.ids.erp_doc()
    incident = faults.active(POSTING_FAILURES, now)
    scripted = order.fate == POSTING_FAILED and kind == "sale"
    failing = scripted or (
        not order.fate
        and (incident is not None or (faults.on(POSTING_FAILURES) and rng.random() < BACKGROUND_FAILURE_RATE))
    )
    attributes = {"retail.order.id": key, "erp.document": document, "erp.posting.kind": kind}
    data: dict[str, object] = {"order_id": key, "erp_doc": document, "kind": kind, "amount": amount}
    if not failing:
        world.telemetry.span(
            "erp-finance", "post FI document", now, now + world.ms(220), attributes, kind=SERVER
        )
        world.event(ERP, "retail.finance.posted", data)
        world.sim.after(rng.uniform(HOUR_S, 12 * HOUR_S), lambda: then(document))
        return
    error = rng.choice(_ERRORS)
    world.telemetry.span(
        "erp-finance", "post FI document", now, now + world.ms(450), attributes, kind=SERVER, error=error
    )
    world.event(ERP, "retail.finance.posting_failed", {**data, "error": error})
    world.counts["posting failures"] += 1
    if scripted or rng.random() < 0.5:
        world.truth.failed_posting(order.order_id, kind)
        world.truth.stall(
            order.order_id, "fulfilled" if kind == "sale" else "refunded", "reconciled", POSTING_FAILURES
        )
        return
    world.sim.after(rng.uniform(1800, 3 * HOUR_S), lambda: _post(world, order, key, kind, amount, then))


def _reconcile(world: World, order: Order, document: str, sale: bool) -> None:
    world.event(ERP, "retail.finance.reconciled", {"order_id": document, "erp_doc": document})
    rate = RETURN_RATE.get(order.channel, ONLINE_RETURN_RATE)
    if sale and not order.fate and world.sim.rng.random() < rate:
        store = order.store or world.sim.rng.choice(world.estate.stores)
        due = store.next_open(
            world.now + world.sim.flow_us(world.sim.rng.uniform(24 * HOUR_S, 14 * 24 * HOUR_S))
        )
        world.sim.at(due, lambda: _return_in_store(world, order, store.id))


def _return_in_store(world: World, order: Order, store_id: str) -> None:
    store, now = world.estate.store(store_id), world.now
    line: Line = order.lines[0]
    key = order.receipt or order.order_id  # the customer brings the receipt, or the web order mail
    return_id = world.ids.return_id()
    data = {
        "order_id": key,
        "return_id": return_id,
        "store_id": store.id,
        "lines": [{"sku": line.sku, "qty": line.qty, "unit_price": line.unit_price}],
    }
    world.event(store.source, "retail.order.returned", data, store.id)
    world.telemetry.span(
        store.service,
        "return",
        now,
        now + world.ms(2000),
        {"retail.order.id": key, "retail.store.id": store.id, "retail.sku": line.sku},
        kind=SERVER,
    )
    world.stock.put(line.sku, store.id, line.qty)
    world.counts["returns"] += 1
    amount = round(line.qty * line.unit_price, 2)
    world.sim.after(
        world.sim.rng.uniform(1800, 12 * HOUR_S), lambda: _refund(world, order, store.id, return_id, amount)
    )


def _refund(world: World, order: Order, store_id: str, return_id: str, amount: float) -> None:
    now = world.now
    if order.channel == "store":
        # A store refunds its own sales at the till, and its POS says so in an event.
        store = world.estate.store(store_id)
        data = {"order_id": return_id, "return_id": return_id, "amount": amount}
        world.event(store.source, "retail.refund.issued", data, store.id)
    else:
        world.telemetry.span(
            "payment-gateway",
            "POST /v1/refunds",
            now,
            now + world.ms(300),
            {"retail.order.id": return_id, "retail.milestone": "refunded", "payment.amount": amount},
            kind=SERVER,
        )
    world.sim.after(
        world.sim.rng.uniform(600, 2 * HOUR_S),
        lambda: _post(
            world, order, return_id, "refund", amount, lambda doc: _reconcile(world, order, doc, False)
        ),
    )
