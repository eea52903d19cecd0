"""Arrival order and repeats never change an order's story.

Hypothesis draws an order's events (which milestones happened and when), then sends them to a
real node in any order, split over one to three requests, with repeats inside and across
requests. The API's answer for every id of the order must equal the answer for the same events
sent once each, in event-time order, under another order id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import InProcessNode, in_process_node

BATCHED = "application/cloudevents-batch+json"
# Every id an order's events use, as a suffix of the order id ("" is the order id itself).
KEYS = ("", "-R", "-PC", "-RET", "-SO", "-FI")
OPTIONAL = (
    "paid",
    "reserved",
    "ready",
    "fulfilled",
    "returned",
    "refunded",
    "sales_order",
    "reconciled",
    "posting_failed",
    "posted",
    "cancelled",
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    with in_process_node(
        tmp_path_factory.mktemp("properties") / "data", {"writer": {"flush_interval": 0.02}}
    ) as running:
        yield running


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def build(oid: str, name: str, at: datetime) -> dict[str, Any]:
    """The CloudEvent of ``name`` for order ``oid``; returns, refunds and postings name its aliases."""
    sku = {"sku": "884-12", "qty": 1}
    kinds: dict[str, tuple[str, str, dict[str, Any]]] = {
        "accepted": (
            "retail.order.accepted",
            "oms/web",
            {
                "order_id": oid,
                "channel": "web",
                "store_id": "042",
                "fulfillment": "bopis",
                "lines": [sku],
                "aliases": {"pos_receipt": f"{oid}-R"},
            },
        ),
        "paid": ("retail.payment.confirmed", "psp/adyen", {"order_id": oid, "payment_ref": f"{oid}-PAY"}),
        "reserved": ("retail.inventory.reserved", "wms/eu", {"order_id": oid, "location_id": "042", **sku}),
        "ready": (
            "retail.order.ready",
            "pos/042",
            {"order_id": oid, "store_id": "042", "pickup_code": f"{oid}-PC"},
        ),
        "fulfilled": ("retail.order.fulfilled", "pos/042", {"order_id": f"{oid}-PC"}),
        "returned": (
            "retail.order.returned",
            "pos/042",
            {"order_id": f"{oid}-R", "return_id": f"{oid}-RET", "store_id": "042", "lines": [sku]},
        ),
        "refunded": ("retail.refund.issued", "psp/adyen", {"order_id": f"{oid}-RET", "amount": 19.9}),
        "sales_order": (
            "retail.order.alias",
            "erp/sap",
            {"order_id": oid, "kind": "sales_order", "value": f"{oid}-SO"},
        ),
        "reconciled": (
            "retail.finance.reconciled",
            "erp/sap",
            {"order_id": f"{oid}-SO", "erp_doc": f"{oid}-FI"},
        ),
        "posting_failed": (
            "retail.finance.posting_failed",
            "erp/sap",
            {"order_id": f"{oid}-SO", "kind": "sale", "error": "period closed"},
        ),
        "posted": (
            "retail.finance.posted",
            "erp/sap",
            {"order_id": f"{oid}-FI", "kind": "sale", "amount": 19.9},
        ),
        "cancelled": ("retail.order.cancelled", "oms/web", {"order_id": oid, "reason": "customer"}),
    }
    event_type, source, data = kinds[name]
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": source,
        "id": f"{oid}-{name}",
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "data": data,
    }


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[str, int], list[int], list[int]]:
    """(minutes after the base time per event, arrival order as indices into the events, request splits)."""
    names = ["accepted", *draw(st.lists(st.sampled_from(OPTIONAL), unique=True, max_size=len(OPTIONAL)))]
    offsets = {name: draw(st.integers(min_value=0, max_value=330)) for name in names}
    repeats = draw(st.lists(st.integers(0, len(names) - 1), max_size=4))
    arrival = draw(st.permutations(list(range(len(names))) + repeats))
    cuts = draw(st.lists(st.integers(1, max(1, len(arrival) - 1)), max_size=2, unique=True))
    return offsets, arrival, sorted(cuts)


def post(live: InProcessNode, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    answer = httpx.post(
        f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=json.dumps(events), timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == [], answer.text
    live.flush()


def story(live: InProcessNode, oid: str) -> dict[str, Any]:
    """Every id's answer with the order id replaced, so two orders' stories compare."""
    answers: dict[str, Any] = {}
    for suffix in KEYS:
        answer = httpx.get(f"{live.url}/api/v1/orders/{oid}{suffix}", timeout=30)
        assert answer.status_code in (200, 404), answer.text
        body = answer.json() if answer.status_code == 200 else None
        if body and body["stalled"]:
            body["stalled"].pop("overdue_seconds")  # the two lookups run at different instants
        answers[suffix] = body
    return dict(json.loads(json.dumps(answers).replace(oid, "<order>")))


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_any_arrival_order_and_repeats_give_the_same_story(
    live: InProcessNode, delivery: tuple[dict[str, int], list[int], list[int]]
) -> None:
    offsets, arrival, cuts = delivery
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    names = list(offsets)
    shuffled, canonical = f"P-{uuid.uuid4().hex[:12]}", f"P-{uuid.uuid4().hex[:12]}"

    events = [build(shuffled, name, base + timedelta(minutes=offsets[name])) for name in names]
    sent = [events[i] for i in arrival]
    for start, end in zip([0, *cuts], [*cuts, len(sent)], strict=True):
        post(live, sent[start:end])

    in_order = sorted(names, key=lambda name: (offsets[name], name))
    post(live, [build(canonical, name, base + timedelta(minutes=offsets[name])) for name in in_order])

    expected = story(live, canonical)
    assert story(live, shuffled) == expected
    main = expected[""]
    assert main["order_id"] == "<order>"
    times = [m["time"] for m in main["milestones"]]
    assert times == sorted(times)
    assert len({(m["event_id"], m["milestone"]) for m in main["milestones"]}) == len(main["milestones"])
