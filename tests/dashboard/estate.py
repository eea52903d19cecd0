"""A real ``milepost serve`` filled through its ingest endpoints with a small, realistic estate.

Times are relative to now, so the stalled order is stalled and the promotion's stragglers are
late whenever the tests run. The estate (ids below) is what every dashboard test looks for.
The node requires tokens, as a production node does: the dashboard reads with ``READ_TOKEN``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support import NodeProcess, wait_until

STALLED = "W-10023"  # paid 47 min ago, never reserved: the inventory service failed at DC-2
STALLED_RECEIPT = "R-042-77812"
STALLED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
READY = "W-10024"  # the whole bopis path up to pickup
PICKUP_CODE = "P-4821"
RETURNED = "W-10025"  # returned at the till by its receipt; the refund posting failed in the ERP
RETURNED_RECEIPT = "R-017-55190"
CANCELLED = "A-20031"
SKU = "884-12"
PROMOTION = "SPRING-10"
PROMOTION_ON_TIME = "PRICE-884"
BATCHED = "application/cloudevents-batch+json"
READ_TOKEN = "dashboard-read-token"
INGEST_ONLY_TOKEN = "pos-fleet-ingest-token"  # may send, may not read: the API answers 403
FEEDER_TOKEN = "feeder-admin-token"
AUTH = {
    "auth": {
        "tokens": [
            {"name": "dashboard", "token": READ_TOKEN, "scopes": ["read"]},
            {"name": "pos-fleet", "token": INGEST_ONLY_TOKEN, "scopes": ["ingest"]},
            {"name": "feeder", "token": FEEDER_TOKEN, "scopes": ["admin"]},
        ]
    }
}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Estate:
    """Builds CloudEvents and OTLP/JSON spans around one ``now`` and sends them to a node."""

    def __init__(self, url: str, now: datetime, token: str = "") -> None:
        self.url = url
        self.now = now
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.events: list[dict[str, Any]] = []
        self.spans: list[tuple[str, dict[str, Any]]] = []

    def ago(self, minutes: float) -> datetime:
        return self.now - timedelta(minutes=minutes)

    def event(self, event_type: str, minutes_ago: float, data: dict[str, Any], source: str) -> None:
        self.events.append(
            {
                "specversion": "1.0",
                "type": event_type,
                "source": source,
                "id": uuid.uuid4().hex,
                "time": _iso(self.ago(minutes_ago)),
                "datacontenttype": "application/json",
                "data": data,
            }
        )

    def span(
        self,
        service: str,
        name: str,
        trace_id: str,
        span_id: str,
        minutes_ago: float,
        offset_ms: int,
        millis: int,
        attributes: dict[str, str],
        parent: str = "",
        error: str = "",
    ) -> None:
        start = int(self.ago(minutes_ago).timestamp() * 1e9) + offset_ms * 1_000_000
        self.spans.append(
            (
                service,
                {
                    "traceId": trace_id,
                    "spanId": span_id,
                    "parentSpanId": parent,
                    "name": name,
                    "kind": 2 if not parent else 3,
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + millis * 1_000_000),
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
                    "status": {"code": 2, "message": error} if error else {"code": 1},
                },
            )
        )

    def send(self) -> None:
        """Spans first, readable before the events follow: each lands in its own storage write.

        (At the time of writing, one write holding both spans and events lost the events' order
        rows; the dashboard's tests should not depend on that being fixed.)
        """
        services: dict[str, list[dict[str, Any]]] = {}
        for service, span in self.spans:
            services.setdefault(service, []).append(span)
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]},
                    "scopeSpans": [{"scope": {"name": "milepost-tests"}, "spans": spans}],
                }
                for s, spans in services.items()
            ]
        }
        answer = httpx.post(f"{self.url}/v1/traces", json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: self._spans_stored(len(self.spans)), 60, "the estate's spans to be stored", 0.2)
        # One event the contract refuses, so that ingest health has something in quarantine.
        bad = {**self.events[0], "id": uuid.uuid4().hex, "data": {"order_id": "W-BAD", "channel": "fax"}}
        headers = {**self.headers, "content-type": BATCHED}
        answer = httpx.post(f"{self.url}/v1/events", headers=headers, content=json.dumps([*self.events, bad]))
        assert answer.status_code == 200, answer.text
        assert [r["field"] for r in answer.json()["rejected"]] == ["data.channel"], answer.text

    def _spans_stored(self, count: int) -> bool:
        answer = httpx.get(f"{self.url}/api/v1/traces/{STALLED_TRACE}", headers=self.headers, timeout=2)
        return answer.status_code == 200 and len(answer.json()["spans"]) == count


def fill(url: str, now: datetime, token: str = "") -> None:
    estate = Estate(url, now, token)
    web, pos, erp, wms, promo = "shop/web", "pos/042", "erp/sap", "wms/dc-2", "pricing/central"
    line = [{"sku": SKU, "qty": 1, "unit_price": 59.9}]

    # The stalled order: paid 47 min ago, the reservation failed in the inventory service at DC-2.
    estate.event(
        "retail.order.accepted",
        52,
        {
            "order_id": STALLED,
            "channel": "web",
            "store_id": "042",
            "fulfillment": "bopis",
            "lines": line,
            "total": 59.9,
            "currency": "EUR",
            "aliases": {"pos_receipt": STALLED_RECEIPT},
        },
        web,
    )
    estate.event(
        "retail.payment.confirmed",
        47,
        {"order_id": STALLED, "amount": 59.9, "currency": "EUR", "payment_ref": "PAY-5531"},
        "payments/adyen",
    )
    attributes = {"retail.order.id": STALLED, "retail.store.id": "042"}
    reserve = 46.9  # minutes ago; the spans nest inside the checkout's request
    estate.span(
        "checkout",
        "POST /orders/{id}/reserve",
        STALLED_TRACE,
        "00f067aa0ba902b7",
        reserve,
        0,
        900,
        attributes,
    )
    estate.span(
        "inventory-service",
        "inventory.reserve",
        STALLED_TRACE,
        "b7ad6b7169203331",
        reserve,
        40,
        780,
        {**attributes, "retail.location.id": "DC-2", "retail.sku": SKU},
        parent="00f067aa0ba902b7",
        error="stock service timeout at DC-2",
    )
    estate.span(
        "inventory-db",
        "SELECT stock",
        STALLED_TRACE,
        "a1b2c3d4e5f60718",
        reserve,
        75,
        700,
        {},
        parent="b7ad6b7169203331",
        error="deadline exceeded",
    )

    # A bopis order that went all the way to pickup.
    estate.event(
        "retail.order.accepted",
        180,
        {"order_id": READY, "channel": "web", "store_id": "042", "fulfillment": "bopis", "lines": line},
        web,
    )
    estate.event("retail.payment.confirmed", 179, {"order_id": READY, "amount": 59.9}, "payments/adyen")
    estate.event(
        "retail.inventory.reserved", 176, {"order_id": READY, "sku": SKU, "qty": 1, "location_id": "042"}, wms
    )
    estate.event(
        "retail.order.ready", 150, {"order_id": READY, "store_id": "042", "pickup_code": PICKUP_CODE}, pos
    )
    estate.event("retail.order.fulfilled", 30, {"order_id": READY}, pos)

    # Returned at the till by its receipt number; the ERP refused the refund posting.
    estate.event(
        "retail.order.accepted",
        3 * 24 * 60,
        {
            "order_id": RETURNED,
            "channel": "store",
            "store_id": "017",
            "fulfillment": "in_store",
            "lines": line,
            "aliases": {"pos_receipt": RETURNED_RECEIPT},
        },
        "pos/017",
    )
    estate.event(
        "retail.payment.confirmed", 3 * 24 * 60 - 1, {"order_id": RETURNED, "amount": 59.9}, "pos/017"
    )
    estate.event("retail.order.fulfilled", 3 * 24 * 60 - 2, {"order_id": RETURNED}, "pos/017")
    estate.event(
        "retail.order.returned",
        120,
        {"order_id": RETURNED_RECEIPT, "return_id": "RT-881", "store_id": "017", "lines": line},
        "pos/017",
    )
    estate.event(
        "retail.refund.issued", 110, {"order_id": "RT-881", "return_id": "RT-881", "amount": 59.9}, "pos/017"
    )
    estate.event(
        "retail.finance.posting_failed",
        100,
        {
            "order_id": RETURNED,
            "erp_doc": "9000412",
            "kind": "refund",
            "amount": 59.9,
            "error": "cost centre 017 locked",
        },
        erp,
    )

    # An app order cancelled before payment, and a fresh one at 017.
    estate.event(
        "retail.order.accepted",
        26 * 60,
        {"order_id": CANCELLED, "channel": "app", "store_id": "017", "fulfillment": "ship"},
        "shop/app",
    )
    estate.event(
        "retail.order.cancelled", 26 * 60 - 5, {"order_id": CANCELLED, "reason": "customer"}, "shop/app"
    )
    estate.event(
        "retail.order.accepted",
        4,
        {"order_id": "W-10031", "channel": "web", "store_id": "017", "fulfillment": "ship"},
        web,
    )
    estate.event(
        "retail.order.accepted",
        40,
        {"order_id": "A-20040", "channel": "app", "store_id": "023", "fulfillment": "bopis"},
        "shop/app",
    )

    # Last week's orders, so that the KPIs have a previous period to compare with.
    for order_id, store, days, ready_after in (("W-09950", "042", 9, 50), ("W-09951", "017", 10, 95)):
        start = days * 24 * 60
        data = {
            "order_id": order_id,
            "channel": "web",
            "store_id": store,
            "fulfillment": "bopis",
            "lines": line,
        }
        estate.event("retail.order.accepted", start, data, web)
        estate.event(
            "retail.payment.confirmed", start - 1, {"order_id": order_id, "amount": 59.9}, "payments/adyen"
        )
        estate.event(
            "retail.inventory.reserved",
            start - 3,
            {"order_id": order_id, "sku": SKU, "qty": 1, "location_id": store},
            wms,
        )
        estate.event(
            "retail.order.ready", start - ready_after, {"order_id": order_id, "store_id": store}, pos
        )
        estate.event("retail.order.fulfilled", start - 24 * 60, {"order_id": order_id}, pos)
        estate.event(
            "retail.finance.reconciled", start - 26 * 60, {"order_id": order_id, "erp_doc": f"9{days}"}, erp
        )

    # SKU 884-12 at store 042: the ERP and the till disagree by three units.
    for minutes, erp_units, pos_units in ((24 * 60, 14, 14), (12 * 60, 12, 11), (60, 12, 9)):
        estate.event(
            "retail.inventory.snapshot",
            minutes,
            {"sku": SKU, "location_id": "042", "system": "erp", "on_hand": erp_units},
            erp,
        )
        estate.event(
            "retail.inventory.snapshot",
            minutes - 1,
            {"sku": SKU, "location_id": "042", "system": "pos", "on_hand": pos_units},
            pos,
        )
    estate.event(
        "retail.inventory.adjusted",
        20,
        {"sku": SKU, "location_id": "042", "system": "pos", "delta": -1, "reason": "damaged"},
        pos,
    )
    estate.event(
        "retail.inventory.snapshot",
        30,
        {"sku": SKU, "location_id": "DC-2", "system": "wms", "on_hand": 240},
        wms,
    )
    estate.event(
        "retail.inventory.snapshot",
        29,
        {"sku": SKU, "location_id": "DC-2", "system": "erp", "on_hand": 240},
        erp,
    )

    # SPRING-10 went live 25 min ago: 017 activated late, 023 never did.
    estate.event(
        "retail.promotion.published",
        30,
        {
            "promo_id": PROMOTION,
            "kind": "promotion",
            "effective_at": _iso(estate.ago(25)),
            "targets": ["042", "017", "023", "web"],
            "skus": [SKU],
        },
        promo,
    )
    for target, minutes in (("042", 24.5), ("web", 24), ("017", 6)):
        estate.event("retail.promotion.activated", minutes, {"promo_id": PROMOTION, "target": target}, promo)
    estate.event(
        "retail.promotion.published",
        90,
        {"promo_id": PROMOTION_ON_TIME, "kind": "price", "targets": ["042", "017", "023"], "skus": [SKU]},
        promo,
    )
    for target, minutes in (("042", 89), ("017", 88), ("023", 86)):
        estate.event(
            "retail.promotion.activated", minutes, {"promo_id": PROMOTION_ON_TIME, "target": target}, promo
        )
    estate.send()


def _settled(url: str, token: str = "") -> bool:
    headers = {"authorization": f"Bearer {token}"} if token else {}

    def get(path: str) -> httpx.Response:
        return httpx.get(f"{url}/api/v1/{path}", headers=headers, timeout=2)

    try:
        order = get(f"orders/{STALLED_RECEIPT}")
        returned = get(f"orders/{RETURNED}")
        promotion = get(f"promotions/{PROMOTION_ON_TIME}")
        trace = get(f"traces/{STALLED_TRACE}")
        last_week = get("orders/W-09951")
    except httpx.HTTPError:
        return False
    return (
        order.status_code == 200
        and order.json()["stalled"] is not None
        and any(e["status"] == "error" for e in order.json()["events"])
        and returned.status_code == 200
        and any(a["kind"] == "posting_failed" for a in returned.json()["anomalies"])
        and promotion.status_code == 200
        and promotion.json()["completeness"] == 100.0
        and trace.status_code == 200
        and len(trace.json()["spans"]) == 3
        and last_week.status_code == 200
        and last_week.json()["state"] == "reconciled"
    )


def filled_node(data_dir: Path) -> NodeProcess:
    """A started node that requires tokens, with the estate in it, correlated."""
    node = NodeProcess(data_dir, AUTH).start()
    try:
        fill(node.url, datetime.now(UTC), FEEDER_TOKEN)
        wait_until(lambda: _settled(node.url, FEEDER_TOKEN), 120, "the estate to be correlated", interval=0.2)
    except BaseException:
        node.stop()
        raise
    return node
