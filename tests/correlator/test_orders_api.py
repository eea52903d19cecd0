"""Order timelines through the real HTTP endpoints: events in with ``POST /v1/events`` and
``POST /v1/traces``, answers out of ``/api/v1/orders``. Arrival order, duplicates, aliases learned
late, document chains, cycles, conflicts, stalls, state mismatches, span drill-down, list filters
and store-scoped tokens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.support import InProcessNode, NodeProcess, in_process_node, wait_until

BATCHED = "application/cloudevents-batch+json"
FAST_WRITER = {"writer": {"flush_interval": 0.05}}
INGEST_TOKEN = "ingest-" + uuid.uuid4().hex
READ_042_TOKEN = "read-042-" + uuid.uuid4().hex
ADMIN_TOKEN = "admin-" + uuid.uuid4().hex


# ------------------------------------------------------------------------------------- helpers


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ce(
    event_type: str, data: dict[str, Any], at: datetime, source: str = "oms/web", event_id: str | None = None
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": source,
        "id": event_id or uuid.uuid4().hex,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "data": data,
    }


def event_key(event: dict[str, Any]) -> str:
    return f"{event['source']}/{event['id']}"


def post_events(url: str, events: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    headers = {"content-type": BATCHED}
    if token:
        headers["authorization"] = f"Bearer {token}"
    answer = httpx.post(f"{url}/v1/events", headers=headers, content=json.dumps(events), timeout=30)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["rejected"] == [], result
    return dict(result)


def send(live: InProcessNode, *events: dict[str, Any]) -> None:
    """One request, then wait until the node has written (and correlated) it."""
    post_events(live.url, list(events))
    live.flush()


def attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(
    trace_id: str,
    span_id: str,
    name: str,
    at: datetime,
    attributes: dict[str, str],
    service: str = "checkout",
) -> ResourceSpans:
    start = int(at.timestamp() * 1e9)
    return ResourceSpans(
        resource=Resource(attributes=[attribute("service.name", service)]),
        scope_spans=[
            ScopeSpans(
                spans=[
                    Span(
                        trace_id=bytes.fromhex(trace_id),
                        span_id=bytes.fromhex(span_id),
                        name=name,
                        kind=Span.SPAN_KIND_SERVER,
                        start_time_unix_nano=start,
                        end_time_unix_nano=start + 25_000_000,
                        attributes=[attribute(k, v) for k, v in attributes.items()],
                    )
                ]
            )
        ],
    )


def send_spans(live: InProcessNode, *spans: ResourceSpans) -> None:
    body = ExportTraceServiceRequest(resource_spans=list(spans)).SerializeToString()
    answer = httpx.post(
        f"{live.url}/v1/traces", headers={"content-type": "application/x-protobuf"}, content=body, timeout=30
    )
    assert answer.status_code == 200, answer.text
    live.flush()


def get(url: str, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}{path}", params=params, headers=headers, timeout=30)


def order(url: str, key: str, token: str | None = None) -> dict[str, Any]:
    answer = get(url, f"/api/v1/orders/{key}", token)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def orders(url: str, token: str | None = None, **params: Any) -> dict[str, Any]:
    answer = get(url, "/api/v1/orders", token, **params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def names(found: dict[str, Any]) -> list[str]:
    return [m["milestone"] for m in found["milestones"]]


def accepted(order_id: str, at: datetime, store: str = "042", **extra: Any) -> dict[str, Any]:
    data = {"order_id": order_id, "channel": "web", "store_id": store, "fulfillment": "bopis", **extra}
    return ce("retail.order.accepted", data, at, source="oms/web")


def milestone(
    event_type: str, order_id: str, at: datetime, source: str = "oms/web", **data: Any
) -> dict[str, Any]:
    return ce(event_type, {"order_id": order_id, **data}, at, source=source)


def alias(order_id: str, kind: str, value: str, at: datetime, source: str = "erp/sap") -> dict[str, Any]:
    return ce("retail.order.alias", {"order_id": order_id, "kind": kind, "value": value}, at, source=source)


# ------------------------------------------------------------------------------------- nodes


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    with in_process_node(tmp_path_factory.mktemp("orders") / "data", FAST_WRITER) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A ``milepost serve`` with tokens, whose ``sla`` list replaces the defaults with reserved→ready
    rules: 30 minutes for BOPIS, 4 hours for everything else."""
    config = {
        "writer": {"flush_interval": 0.05},
        "server": {"decode_workers": 1},
        "auth": {
            "tokens": [
                {"name": "pos-fleet", "token": INGEST_TOKEN, "scopes": ["ingest"]},
                {"name": "store-042", "token": READ_042_TOKEN, "scopes": ["read"], "stores": ["042"]},
                {"name": "ops", "token": ADMIN_TOKEN, "scopes": ["admin"]},
            ]
        },
        "sla": [
            {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
            {"from": "reserved", "to": "ready", "within": "4h"},
        ],
    }
    data_dir: Path = tmp_path_factory.mktemp("guarded") / "data"
    running = NodeProcess(data_dir, config=config).start()
    yield running
    running.stop()


# ------------------------------------------------------------------------------------- arrival order


def test_out_of_order_arrival_gives_a_timeline_by_event_time(live: InProcessNode) -> None:
    oid, t = uid("W"), now()
    ev_accepted = accepted(oid, t - timedelta(minutes=60), lines=[{"sku": "884-12", "qty": 1}])
    ev_paid = milestone("retail.payment.confirmed", oid, t - timedelta(minutes=55), source="psp/adyen")
    ev_reserved = milestone(
        "retail.inventory.reserved", oid, t - timedelta(minutes=50), source="wms/eu", sku="884-12", qty=1
    )
    ev_ready = milestone(
        "retail.order.ready", oid, t - timedelta(minutes=20), source="pos/042", store_id="042"
    )
    # ready first, then reserved, then paid and accepted last, each in its own request.
    for event in (ev_ready, ev_reserved, ev_paid, ev_accepted):
        send(live, event)
    found = order(live.url, oid)
    assert found["order_id"] == oid
    assert (found["channel"], found["store_id"], found["fulfillment"]) == ("web", "042", "bopis")
    assert found["state"] == "ready"
    assert found["stalled"] is None
    assert found["anomalies"] == []
    expected = [
        ("accepted", ev_accepted, "oms/web"),
        ("paid", ev_paid, "psp/adyen"),
        ("reserved", ev_reserved, "wms/eu"),
        ("ready", ev_ready, "pos/042"),
    ]
    got = [
        {k: m[k] for k in ("milestone", "time", "source", "event_id", "trace_id", "span_id")}
        for m in found["milestones"]
    ]
    assert got == [
        {
            "milestone": name,
            "time": event["time"],
            "source": source,
            "event_id": event_key(event),
            "trace_id": None,
            "span_id": None,
        }
        for name, event, source in expected
    ]


def test_state_is_the_furthest_milestone_by_rank_not_the_latest_by_time(live: InProcessNode) -> None:
    oid, t = uid("W"), now()
    send(
        live,
        milestone("retail.order.fulfilled", oid, t - timedelta(minutes=40)),
        accepted(oid, t - timedelta(minutes=90)),
        milestone("retail.payment.confirmed", oid, t - timedelta(minutes=80)),
        # the warehouse's clock runs late: its reservation is stamped after the hand-over
        milestone("retail.inventory.reserved", oid, t - timedelta(minutes=30)),
    )
    found = order(live.url, oid)
    assert names(found) == ["accepted", "paid", "fulfilled", "reserved"]
    assert found["state"] == "fulfilled"

    cancelled = uid("W")
    send(
        live,
        milestone("retail.order.ready", cancelled, t - timedelta(minutes=5)),
        milestone("retail.order.cancelled", cancelled, t - timedelta(minutes=10), reason="customer"),
        accepted(cancelled, t - timedelta(minutes=30)),
    )
    assert order(live.url, cancelled)["state"] == "cancelled"


# ------------------------------------------------------------------------------------- duplicates


def test_duplicates_never_add_a_milestone_or_count_twice(live: InProcessNode) -> None:
    oid, store, t = uid("W"), uid("S"), now()
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    ev_accepted = accepted(oid, t - timedelta(minutes=50), store=store)
    ev_paid = milestone("retail.payment.confirmed", oid, t - timedelta(minutes=45), payment_ref=uid("PAY"))
    ev_failed = milestone(
        "retail.finance.posting_failed",
        oid,
        t - timedelta(minutes=40),
        source="erp/sap",
        kind="sale",
        error="x",
    )
    ready_span = span(
        trace_id,
        span_id,
        "pickup ready",
        t - timedelta(minutes=20),
        {"retail.order.id": oid, "retail.milestone": "ready"},
    )
    send(live, ev_accepted, ev_paid, ev_paid, ev_failed, ev_failed)  # repeats inside one batch
    send(live, ev_paid, ev_accepted)  # and across requests
    send_spans(live, ready_span)
    send_spans(live, ready_span, ready_span)  # the same span, twice more
    send(live, ev_failed, ev_accepted, ev_paid)

    found = order(live.url, oid)
    assert names(found) == ["accepted", "paid", "ready"]
    assert [m["event_id"] for m in found["milestones"]] == [
        event_key(ev_accepted),
        event_key(ev_paid),
        f"span:{trace_id}:{span_id}",
    ]
    assert [e["name"] for e in found["events"]] == ["retail.finance.posting_failed"]
    assert len(found["anomalies"]) == 1 and found["anomalies"][0]["kind"] == "posting_failed"

    listed = orders(live.url, store_id=store)
    assert listed["total"] == 1 and [i["order_id"] for i in listed["items"]] == [oid]
    kpis = get(live.url, "/api/v1/kpis", store_id=store).json()
    assert kpis["orders"]["total"] == 1
    assert kpis["orders"]["by_state"] == {"ready": 1}
    assert kpis["durations"]["order_to_ready"]["count"] == 1
    assert kpis["durations"]["order_to_ready"]["p50_seconds"] == 1800.0
    assert kpis["failed_postings"] == {"orders": 1, "failures": 1}


def test_a_repeat_with_changed_content_is_still_the_first_event(live: InProcessNode) -> None:
    """``(source, id)`` is the idempotency key: a retry restamped with another time is the same event."""
    oid, t = uid("W"), now()
    paid = milestone("retail.payment.confirmed", oid, t - timedelta(minutes=2))
    send(live, accepted(oid, t - timedelta(minutes=5)), paid)
    retry = {**paid, "time": rfc3339(t - timedelta(minutes=40)), "data": {"order_id": oid, "amount": 1.0}}
    send(live, retry)
    found = order(live.url, oid)
    assert names(found) == ["accepted", "paid"]
    assert found["milestones"][1]["time"] == paid["time"]
    # paid 2 minutes ago: reserved is not due yet, whatever the retry said
    assert found["stalled"] is None
    assert found["anomalies"] == []


# ------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize("how", ["alias_event", "accepted_aliases"])
def test_a_late_alias_reattaches_an_earlier_return(live: InProcessNode, how: str) -> None:
    web, receipt, return_id, store, t = uid("W"), uid("R"), uid("RET"), uid("S"), now()
    returned = ce(
        "retail.order.returned",
        {
            "order_id": receipt,
            "return_id": return_id,
            "store_id": store,
            "lines": [{"sku": "884-12", "qty": 1}],
        },
        t - timedelta(hours=2),
        source="pos/042",
    )
    refunded = ce(
        "retail.refund.issued",
        {"order_id": return_id, "return_id": return_id, "amount": 19.9},
        t - timedelta(hours=1),
        source="psp/adyen",
    )
    send(live, returned, refunded)
    alone = order(live.url, receipt)
    assert alone["order_id"] == receipt  # before the link, the receipt is an order of its own
    assert names(alone) == ["returned", "refunded"]

    extra = {"aliases": {"pos_receipt": receipt}} if how == "accepted_aliases" else {}
    send(
        live,
        accepted(web, t - timedelta(days=3), store=store, **extra),
        milestone("retail.payment.confirmed", web, t - timedelta(days=3) + timedelta(minutes=2)),
        milestone("retail.order.fulfilled", web, t - timedelta(days=2)),
    )
    if how == "alias_event":
        assert names(order(live.url, web)) == ["accepted", "paid", "fulfilled"]
        send(live, alias(web, "pos_receipt", receipt, t - timedelta(minutes=5), source="pos/042"))

    found = order(live.url, web)
    assert names(found) == ["accepted", "paid", "fulfilled", "returned", "refunded"]
    assert found["state"] == "refunded"
    assert found["milestones"][3]["event_id"] == event_key(returned)
    assert {"kind": "pos_receipt", "value": receipt} in found["aliases"]
    assert {"kind": "return_id", "value": return_id} in found["aliases"]
    for key in (receipt, return_id):
        by_alias = order(live.url, key)
        assert by_alias["order_id"] == web
        assert by_alias["milestones"] == found["milestones"]
    # the receipt's provisional order is gone from lists: one order, under its web id
    listed = orders(live.url, store_id=store)
    assert [i["order_id"] for i in listed["items"]] == [web] and listed["total"] == 1


def test_a_three_hop_document_chain_lands_on_the_original_order(live: InProcessNode) -> None:
    so, delivery, invoice, t = uid("SO"), uid("DEL"), uid("INV"), now()
    erp_doc = uid("FI")
    posted = ce(
        "retail.finance.posted",
        {"order_id": invoice, "erp_doc": erp_doc, "kind": "sale", "amount": 42.0},
        t - timedelta(hours=5),
        source="erp/sap",
    )
    failed = ce(
        "retail.finance.posting_failed",
        {"order_id": invoice, "kind": "refund", "error": "period closed"},
        t - timedelta(hours=4),
        source="erp/sap",
    )
    reconciled = ce(
        "retail.finance.reconciled", {"order_id": erp_doc}, t - timedelta(hours=3), source="erp/sap"
    )
    # SAP style: the invoice is an alias of the delivery, which is an alias of the order.
    send(live, reconciled, posted, failed)
    send(live, alias(delivery, "invoice", invoice, t - timedelta(hours=6)))
    send(live, alias(so, "delivery", delivery, t - timedelta(hours=7)))
    send(
        live,
        accepted(so, t - timedelta(hours=9)),
        milestone("retail.payment.confirmed", so, t - timedelta(hours=8)),
    )
    found = order(live.url, so)
    assert found["order_id"] == so
    assert names(found) == ["accepted", "paid", "reconciled"]
    assert found["state"] == "reconciled"
    events = [e["name"] for e in found["events"]]
    assert events.count("retail.finance.posted") == 1 and events.count("retail.finance.posting_failed") == 1
    assert [a["kind"] for a in found["anomalies"]] == ["posting_failed"]
    assert "period closed" in found["anomalies"][0]["detail"]
    aliases = {(a["kind"], a["value"]) for a in found["aliases"]}
    assert {("delivery", delivery), ("invoice", invoice), ("erp_doc", erp_doc)} <= aliases
    for key in (delivery, invoice, erp_doc):
        by_alias = order(live.url, key)
        assert by_alias["order_id"] == so
        assert by_alias["milestones"] == found["milestones"]


@pytest.mark.parametrize("length", [2, 3])
def test_an_alias_cycle_answers_and_is_reported(live: InProcessNode, length: int) -> None:
    keys = [uid(f"C{i}") for i in range(length)]
    t = now()
    ring = [
        alias(keys[(i + 1) % length], "ref", keys[i], t - timedelta(minutes=30 - i)) for i in range(length)
    ]
    send(live, accepted(keys[0], t - timedelta(minutes=40)), *ring)
    for key in keys:
        found = order(live.url, key)
        assert found["order_id"] == keys[0]
        assert names(found) == ["accepted"]
        identity = [a["detail"] for a in found["anomalies"] if a["kind"] == "identity"]
        assert len(identity) == 1 and "cycle" in identity[0]
        assert all(k in identity[0] for k in keys)


def test_a_conflicting_alias_keeps_both_orders_apart(live: InProcessNode) -> None:
    first, second, receipt, t = uid("W"), uid("W"), uid("R"), now()
    send(
        live,
        accepted(first, t - timedelta(minutes=30), aliases={"pos_receipt": receipt}),
        milestone("retail.payment.confirmed", first, t - timedelta(minutes=29)),
    )
    send(live, accepted(second, t - timedelta(minutes=20), aliases={"pos_receipt": receipt}))
    a, b = order(live.url, first), order(live.url, second)
    assert (a["order_id"], names(a)) == (first, ["accepted", "paid"])
    assert (b["order_id"], names(b)) == (second, ["accepted"])
    for found, other in ((a, second), (b, first)):
        identity = [x["detail"] for x in found["anomalies"] if x["kind"] == "identity"]
        assert len(identity) == 1
        assert receipt in identity[0] and other in identity[0] and "conflict" in identity[0]


# ------------------------------------------------------------------------------------- stalls


def test_a_stalled_order_unstalls_when_the_milestone_arrives(live: InProcessNode) -> None:
    oid, store, t = uid("W"), uid("S"), now()
    paid_at = t - timedelta(minutes=20)
    send(
        live,
        accepted(oid, t - timedelta(minutes=21), store=store),
        milestone("retail.payment.confirmed", oid, paid_at),
    )
    found = order(live.url, oid)
    stalled = found["stalled"]
    assert (stalled["after"], stalled["expected"]) == ("paid", "reserved")
    assert stalled["due"] == rfc3339(paid_at + timedelta(minutes=10))
    assert 595 < stalled["overdue_seconds"] < 900
    listed = orders(live.url, status="stalled", store_id=store)
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert item["order_id"] == oid and item["state"] == "paid"
    assert (item["stalled"]["after"], item["stalled"]["expected"]) == ("paid", "reserved")
    assert item["stalled"]["due"] == stalled["due"]

    send(live, milestone("retail.inventory.reserved", oid, t - timedelta(minutes=1), sku="884-12", qty=1))
    found = order(live.url, oid)
    assert found["stalled"] is None and found["state"] == "reserved"
    assert orders(live.url, status="stalled", store_id=store) == {
        "total": 0,
        "items": [],
        "next_cursor": None,
    }
    assert orders(live.url, status="open", store_id=store)["total"] == 1


def test_cancelled_orders_are_never_stalled(live: InProcessNode) -> None:
    oid, store, t = uid("W"), uid("S"), now()
    send(live, accepted(oid, t - timedelta(hours=5), store=store))
    assert order(live.url, oid)["stalled"]["expected"] == "paid"
    send(live, milestone("retail.order.cancelled", oid, t - timedelta(hours=4), reason="no payment"))
    found = order(live.url, oid)
    assert found["state"] == "cancelled" and found["stalled"] is None
    assert orders(live.url, status="stalled", store_id=store)["total"] == 0
    assert orders(live.url, status="open", store_id=store)["total"] == 0
    assert orders(live.url, status="all", store_id=store)["total"] == 1


def test_a_return_after_reconciliation_reopens_the_order(live: InProcessNode) -> None:
    """Stalled orders are a share of open ones: a reconciled order returned two days ago without a
    refund is stalled (returned -> refunded, 1 day), so it is open again, in the list and the KPIs."""
    oid, store, t = uid("W"), uid("S"), now()
    start = t - timedelta(days=5)
    send(
        live,
        accepted(oid, start, store=store),
        milestone("retail.payment.confirmed", oid, start + timedelta(minutes=1)),
        milestone("retail.order.fulfilled", oid, start + timedelta(hours=2)),
        milestone("retail.finance.reconciled", oid, start + timedelta(hours=3)),
    )
    assert orders(live.url, status="open", store_id=store)["total"] == 0  # settled
    send(live, milestone("retail.order.returned", oid, t - timedelta(days=2), store_id=store))
    found = order(live.url, oid)
    assert (found["stalled"]["after"], found["stalled"]["expected"]) == ("returned", "refunded")
    assert orders(live.url, status="open", store_id=store)["total"] == 1
    kpis = get(live.url, "/api/v1/kpis", store_id=store, since=rfc3339(start - timedelta(days=1))).json()
    stores = {row["store_id"]: row for row in kpis["top_stalled_stores"]}
    assert (stores[store]["stalled"], stores[store]["open"]) == (1, 1)
    send(live, milestone("retail.refund.issued", oid, t - timedelta(hours=1), amount=19.9))
    assert orders(live.url, status="open", store_id=store)["total"] == 1  # the refund is not reconciled yet
    send(live, milestone("retail.finance.reconciled", oid, t - timedelta(minutes=30), source="erp/sap"))
    assert orders(live.url, status="open", store_id=store)["total"] == 0


def test_sla_rules_apply_per_scope(guarded: NodeProcess) -> None:
    bopis, ship, t = uid("B"), uid("SH"), now()
    reserved_at = t - timedelta(hours=1)
    events = []
    for oid, fulfillment in ((bopis, "bopis"), (ship, "ship")):
        data = {"order_id": oid, "channel": "web", "store_id": "021", "fulfillment": fulfillment}
        events += [
            ce("retail.order.accepted", data, reserved_at - timedelta(minutes=10)),
            milestone("retail.payment.confirmed", oid, reserved_at - timedelta(minutes=5)),
            milestone("retail.inventory.reserved", oid, reserved_at, sku="884-12", qty=1),
        ]
    post_events(guarded.url, events, INGEST_TOKEN)

    def visible() -> bool:
        answers = [get(guarded.url, f"/api/v1/orders/{oid}", ADMIN_TOKEN) for oid in (bopis, ship)]
        return all(a.status_code == 200 and a.json()["state"] == "reserved" for a in answers)

    wait_until(visible, 30, "both orders to be correlated")
    stalled = order(guarded.url, bopis, ADMIN_TOKEN)["stalled"]
    assert (stalled["after"], stalled["expected"]) == ("reserved", "ready")
    assert stalled["due"] == rfc3339(reserved_at + timedelta(minutes=30))
    assert 1795 < stalled["overdue_seconds"] < 2400
    assert order(guarded.url, ship, ADMIN_TOKEN)["stalled"] is None  # 4h for everything else
    listed = orders(guarded.url, ADMIN_TOKEN, status="stalled", store_id="021")
    assert [i["order_id"] for i in listed["items"]] == [bopis]
    assert listed["items"][0]["stalled"]["due"] == stalled["due"]


# ------------------------------------------------------------------------------------- mismatches


def test_state_mismatches_are_reported_after_the_grace_period(live: InProcessNode) -> None:
    unpaid, unshipped, recent, t = uid("W"), uid("W"), uid("W"), now()
    send(
        live,
        accepted(unpaid, t - timedelta(hours=2, minutes=5)),
        milestone("retail.finance.reconciled", unpaid, t - timedelta(hours=2), source="erp/sap"),
        accepted(unshipped, t - timedelta(hours=3)),
        milestone("retail.payment.confirmed", unshipped, t - timedelta(hours=3) + timedelta(minutes=1)),
        milestone("retail.order.returned", unshipped, t - timedelta(hours=2), source="pos/042"),
        accepted(recent, t - timedelta(minutes=30)),
        milestone("retail.payment.confirmed", recent, t - timedelta(minutes=29)),
        milestone("retail.order.returned", recent, t - timedelta(minutes=20), source="pos/042"),
    )
    a = order(live.url, unpaid)["anomalies"]
    assert [x["kind"] for x in a] == ["missing_prerequisite"]
    assert "reconciled" in a[0]["detail"] and "without paid" in a[0]["detail"]
    b = order(live.url, unshipped)["anomalies"]
    assert [x["kind"] for x in b] == ["missing_prerequisite"]
    assert "returned" in b[0]["detail"] and "without fulfilled" in b[0]["detail"]
    assert order(live.url, recent)["anomalies"] == []  # still inside the 1h grace period

    # the missing payment arrives late: the mismatch is gone
    send(live, milestone("retail.payment.confirmed", unpaid, t - timedelta(hours=2, minutes=3)))
    assert order(live.url, unpaid)["anomalies"] == []


def test_a_failed_posting_without_a_later_posting_is_an_anomaly(live: InProcessNode) -> None:
    failed, retried, t = uid("W"), uid("W"), now()
    send(
        live,
        accepted(failed, t - timedelta(hours=3)),
        milestone("retail.payment.confirmed", failed, t - timedelta(hours=3)),
        milestone(
            "retail.finance.posting_failed",
            failed,
            t - timedelta(hours=2),
            source="erp/sap",
            kind="sale",
            error="ERP timeout",
        ),
        accepted(retried, t - timedelta(hours=3)),
        milestone("retail.payment.confirmed", retried, t - timedelta(hours=3)),
        milestone(
            "retail.finance.posting_failed",
            retried,
            t - timedelta(hours=2),
            source="erp/sap",
            kind="sale",
            error="x",
        ),
        milestone(
            "retail.finance.posted",
            retried,
            t - timedelta(hours=1),
            source="erp/sap",
            kind="sale",
            erp_doc=uid("FI"),
        ),
    )
    anomalies = order(live.url, failed)["anomalies"]
    assert [a["kind"] for a in anomalies] == ["posting_failed"]
    assert "ERP timeout" in anomalies[0]["detail"] and "sale" in anomalies[0]["detail"]
    assert order(live.url, retried)["anomalies"] == []


# ------------------------------------------------------------------------------------- spans


def test_span_milestones_and_linked_spans(live: InProcessNode) -> None:
    oid, pickup, t = uid("W"), uid("PC"), now()
    trace_id = uuid.uuid4().hex
    ready_id, lookup_id, alias_id = (uuid.uuid4().hex[:16] for _ in range(3))
    send(live, accepted(oid, t - timedelta(minutes=40)))
    send_spans(
        live,
        span(
            trace_id,
            ready_id,
            "POST /pickup/ready",
            t - timedelta(minutes=10),
            {"retail.order.id": oid, "retail.milestone": "ready", "retail.store.id": "042"},
            service="store-app",
        ),
        span(trace_id, lookup_id, "GET /orders/{id}", t - timedelta(minutes=9), {"retail.order.id": oid}),
        span(
            trace_id,
            alias_id,
            "issue pickup code",
            t - timedelta(minutes=11),
            {"retail.order.id": oid, "retail.alias.kind": "pickup_code", "retail.alias.value": pickup},
        ),
    )
    found = order(live.url, oid)
    assert names(found) == ["accepted", "ready"]
    ready = found["milestones"][1]
    assert (ready["trace_id"], ready["span_id"], ready["source"]) == (trace_id, ready_id, "store-app")
    assert ready["time"] == rfc3339(t - timedelta(minutes=10))
    linked = {e["span_id"]: e for e in found["events"]}
    assert set(linked) == {lookup_id, alias_id}
    assert linked[lookup_id]["kind"] == "span" and linked[lookup_id]["name"] == "GET /orders/{id}"
    assert linked[lookup_id]["trace_id"] == trace_id
    assert order(live.url, pickup)["order_id"] == oid
    assert {"kind": "pickup_code", "value": pickup} in found["aliases"]

    trace = get(live.url, f"/api/v1/traces/{trace_id}")
    assert trace.status_code == 200
    assert {s["span_id"] for s in trace.json()["spans"]} == {ready_id, lookup_id, alias_id}


# ------------------------------------------------------------------------------------- lists


@pytest.fixture(scope="module")
def estate(live: InProcessNode) -> dict[str, Any]:
    """25 orders of one store: 10 just accepted, 5 stalled after paid, 5 cancelled, 5 done 3 days ago."""
    store, t = uid("L"), now()
    events: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {"new": [], "stalled": [], "cancelled": [], "done": []}
    for i in range(25):
        oid = f"{store}-{i:02d}"
        if i < 10:
            groups["new"].append(oid)
            events.append(accepted(oid, t - timedelta(minutes=5), store=store))
        elif i < 15:
            groups["stalled"].append(oid)
            events += [
                accepted(oid, t - timedelta(minutes=25), store=store),
                milestone("retail.payment.confirmed", oid, t - timedelta(minutes=24)),
            ]
        elif i < 20:
            groups["cancelled"].append(oid)
            events += [
                accepted(oid, t - timedelta(minutes=25), store=store),
                milestone("retail.order.cancelled", oid, t - timedelta(minutes=20)),
            ]
        else:
            groups["done"].append(oid)
            start = t - timedelta(days=3)
            events += [
                accepted(oid, start, store=store),
                milestone("retail.payment.confirmed", oid, start + timedelta(minutes=1)),
                milestone("retail.inventory.reserved", oid, start + timedelta(minutes=2)),
                milestone("retail.order.ready", oid, start + timedelta(minutes=30)),
                milestone("retail.order.fulfilled", oid, start + timedelta(hours=2)),
                milestone("retail.finance.reconciled", oid, start + timedelta(hours=3)),
            ]
    send(live, *events)
    return {"store": store, "now": t, **groups}


def walk(url: str, **params: Any) -> tuple[list[str], list[int]]:
    """Every order id of a list, page by page, and each page's total."""
    ids: list[str] = []
    totals: list[int] = []
    cursor = None
    for _ in range(50):
        page = orders(url, **params, **({"cursor": cursor} if cursor else {}))
        ids += [item["order_id"] for item in page["items"]]
        totals.append(page["total"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, totals
    raise AssertionError("pagination did not end")


def test_list_filters_and_total(live: InProcessNode, estate: dict[str, Any]) -> None:
    store, t = estate["store"], estate["now"]

    def listed(**params: Any) -> set[str]:
        answer = orders(live.url, store_id=store, limit=1000, **params)
        assert answer["total"] == len(answer["items"])
        return {item["order_id"] for item in answer["items"]}

    everything = set(estate["new"] + estate["stalled"] + estate["cancelled"] + estate["done"])
    assert listed() == everything == listed(status="all")
    assert listed(status="stalled") == set(estate["stalled"])
    assert listed(status="open") == set(estate["new"] + estate["stalled"])
    assert listed(milestone="paid") == set(estate["stalled"])
    assert listed(milestone="cancelled") == set(estate["cancelled"])
    assert listed(milestone="reconciled") == set(estate["done"])
    assert listed(milestone="accepted") == set(estate["new"])
    hour_ago = rfc3339(t - timedelta(hours=1))
    assert listed(since=hour_ago) == everything - set(estate["done"])
    assert listed(until=hour_ago) == set(estate["done"])
    assert listed(since=rfc3339(t - timedelta(minutes=10)), until=rfc3339(t + timedelta(minutes=1))) == set(
        estate["new"]
    )
    assert listed(status="open", since=rfc3339(t - timedelta(minutes=10))) == set(estate["new"])
    assert orders(live.url, store_id=uid("nowhere")) == {"total": 0, "items": [], "next_cursor": None}

    page = orders(live.url, store_id=store, limit=10)
    assert page["total"] == 25 and len(page["items"]) == 10 and page["next_cursor"]
    item = orders(live.url, store_id=store, status="stalled", limit=1)["items"][0]
    assert item["state"] == "paid" and item["stalled"]["expected"] == "reserved"
    assert item["store_id"] == store and item["channel"] == "web"


def test_cursor_pagination_walks_every_page_once(live: InProcessNode, estate: dict[str, Any]) -> None:
    ids, totals = walk(live.url, store_id=estate["store"], limit=10)
    assert len(ids) == 25 and len(set(ids)) == 25
    assert ids == sorted(ids)
    assert totals == [25, 25, 25]
    stalled, totals = walk(live.url, store_id=estate["store"], status="stalled", limit=2)
    assert stalled == sorted(estate["stalled"]) and totals == [5, 5, 5]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("status", "stuck"),
        ("milestone", "shipped"),
        ("since", "yesterday"),
        ("since", "2026-11-27T09:00:00"),
        ("until", "2026-13-40T00:00:00Z"),
        ("limit", "0"),
        ("limit", "ten"),
        ("limit", "100000"),
        ("cursor", "zzzz"),
        ("cursor", "!!!"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    live: InProcessNode, parameter: str, value: str
) -> None:
    answer = get(live.url, "/api/v1/orders", **{parameter: value})
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}
    assert f"'{parameter}'" in body["error"]
    assert body["detail"] == {"parameter": parameter}


def test_an_unknown_order_is_404_json(live: InProcessNode) -> None:
    key = uid("NOPE")
    answer = get(live.url, f"/api/v1/orders/{key}")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error", "detail"} and key in body["error"]


# ------------------------------------------------------------------------------------- tokens


def test_a_store_scoped_read_token_sees_only_its_stores(guarded: NodeProcess) -> None:
    mine, theirs, sku, t = uid("W"), uid("W"), uid("SKU"), now()
    events = [
        accepted(mine, t - timedelta(hours=1), store="042", lines=[{"sku": sku, "qty": 2}]),
        milestone("retail.payment.confirmed", mine, t - timedelta(minutes=55)),
        accepted(theirs, t - timedelta(hours=1), store="007", lines=[{"sku": sku, "qty": 1}]),
    ]
    for location, on_hand in (("042", 5), ("007", 9)):
        events.append(
            ce(
                "retail.inventory.snapshot",
                {"sku": sku, "location_id": location, "system": "erp", "on_hand": on_hand},
                t - timedelta(minutes=30),
                source="erp/sap",
            )
        )
    assert get(guarded.url, "/api/v1/orders").status_code == 401
    denied = httpx.post(
        f"{guarded.url}/v1/events",
        headers={"content-type": BATCHED, "authorization": f"Bearer {READ_042_TOKEN}"},
        content=json.dumps(events),
    )
    assert denied.status_code == 403
    post_events(guarded.url, events, INGEST_TOKEN)
    assert get(guarded.url, f"/api/v1/orders/{mine}", INGEST_TOKEN).status_code == 403

    def visible() -> bool:
        stock = get(guarded.url, f"/api/v1/skus/{sku}", ADMIN_TOKEN)
        states = [get(guarded.url, f"/api/v1/orders/{oid}", ADMIN_TOKEN) for oid in (mine, theirs)]
        return (
            stock.status_code == 200
            and len(stock.json()["stock"]) == 2
            and [a.json().get("state") for a in states] == ["paid", "accepted"]
        )

    wait_until(visible, 30, "the orders and SKU snapshots to be correlated")
    assert order(guarded.url, theirs, ADMIN_TOKEN)["store_id"] == "007"
    assert order(guarded.url, mine, READ_042_TOKEN)["state"] == "paid"
    hidden = get(guarded.url, f"/api/v1/orders/{theirs}", READ_042_TOKEN)
    assert hidden.status_code == 404 and set(hidden.json()) == {"error", "detail"}

    listed = orders(guarded.url, READ_042_TOKEN)
    assert [i["order_id"] for i in listed["items"]] == [mine] and listed["total"] == 1
    assert orders(guarded.url, READ_042_TOKEN, store_id="007")["total"] == 0
    assert {mine, theirs} <= {i["order_id"] for i in orders(guarded.url, ADMIN_TOKEN)["items"]}

    scoped_kpis = get(guarded.url, "/api/v1/kpis", READ_042_TOKEN).json()
    assert scoped_kpis["orders"]["total"] == 1 and scoped_kpis["orders"]["by_state"] == {"paid": 1}
    everywhere = get(guarded.url, "/api/v1/kpis", ADMIN_TOKEN).json()["orders"]
    assert everywhere["total"] >= 2 and everywhere["total"] == sum(everywhere["by_state"].values())
    assert get(guarded.url, "/api/v1/kpis", ADMIN_TOKEN, store_id="007").json()["orders"]["total"] == 1

    stock = get(guarded.url, f"/api/v1/skus/{sku}", READ_042_TOKEN).json()
    assert [s["location_id"] for s in stock["stock"]] == ["042"]
    assert {e["location_id"] for e in stock["events"]} == {"042"}
    assert get(guarded.url, f"/api/v1/skus/{sku}", READ_042_TOKEN, location_id="007").status_code == 404
