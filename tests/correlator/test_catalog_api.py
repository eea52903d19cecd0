"""SKUs, promotions and KPIs through the real HTTP endpoints: CloudEvents in with ``POST /v1/events``,
answers out of ``/api/v1/skus``, ``/api/v1/promotions`` and ``/api/v1/kpis``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import InProcessNode, in_process_node

BATCHED = "application/cloudevents-batch+json"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ce(event_type: str, data: dict[str, Any], at: datetime, source: str = "oms/web") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": source,
        "id": uuid.uuid4().hex,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "data": data,
    }


def send(live: InProcessNode, *events: dict[str, Any]) -> None:
    answer = httpx.post(
        f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=json.dumps(events), timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == [], answer.text
    live.flush()


def get(live: InProcessNode, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{live.url}{path}", params=params, timeout=30)


def ok(live: InProcessNode, path: str, **params: Any) -> dict[str, Any]:
    answer = get(live, path, **params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    config = {"writer": {"flush_interval": 0.05}, "promotions": {"lag_threshold": "10m"}}
    with in_process_node(tmp_path_factory.mktemp("catalog") / "data", config) as running:
        yield running


# ------------------------------------------------------------------------------------- SKUs


def snapshot(sku: str, location: str, system: str, on_hand: int, at: datetime) -> dict[str, Any]:
    data = {"sku": sku, "location_id": location, "system": system, "on_hand": on_hand}
    return ce("retail.inventory.snapshot", data, at, source=f"{system}/stock")


def adjusted(sku: str, location: str, system: str, delta: int, at: datetime, reason: str) -> dict[str, Any]:
    data = {"sku": sku, "location_id": location, "system": system, "delta": delta, "reason": reason}
    return ce("retail.inventory.adjusted", data, at, source=f"{system}/stock")


@pytest.fixture(scope="module")
def sku_story(live: InProcessNode) -> dict[str, Any]:
    """One SKU sold, reserved and returned at a store and online, with stock figures from three systems."""
    sku, other, store, web_order, online_order = uid("SKU"), uid("SKU"), uid("S"), uid("W"), uid("W")
    t = now()
    before_snapshot = adjusted(sku, store, "pos", -5, t - timedelta(minutes=40), "shrink")
    after_snapshot = adjusted(sku, store, "pos", -2, t - timedelta(minutes=10), "damage")
    pos_snapshot = snapshot(sku, store, "pos", 7, t - timedelta(minutes=30))
    events = [
        ce(
            "retail.order.accepted",
            {
                "order_id": web_order,
                "channel": "store",
                "store_id": store,
                "fulfillment": "in_store",
                "lines": [{"sku": sku, "qty": 2, "unit_price": 9.5}, {"sku": other, "qty": 1}],
            },
            t - timedelta(hours=3),
        ),
        ce(
            "retail.order.accepted",
            {"order_id": online_order, "channel": "web", "lines": [{"sku": sku, "qty": 1}]},
            t - timedelta(hours=2, minutes=55),
        ),
        ce(
            "retail.inventory.reserved",
            {"order_id": web_order, "sku": sku, "qty": 2, "location_id": store},
            t - timedelta(hours=2, minutes=50),
            source="wms/eu",
        ),
        snapshot(sku, store, "pos", 50, t - timedelta(hours=2)),  # an older pos snapshot, superseded
        ce(
            "retail.order.returned",
            {"order_id": web_order, "store_id": store, "lines": [{"sku": sku, "qty": 1}]},
            t - timedelta(hours=1),
            source="pos/returns",
        ),
        snapshot(sku, "DC-1", "erp", 100, t - timedelta(minutes=20)),
        snapshot(sku, "DC-1", "wms", 100, t - timedelta(minutes=20)),
    ]
    # Arrival out of event-time order: the later adjustment first, the earlier one last.
    send(live, after_snapshot)
    send(live, *events, snapshot(sku, store, "erp", 10, t - timedelta(minutes=30)), pos_snapshot)
    send(live, before_snapshot, after_snapshot, pos_snapshot)  # repeats count once
    return {"sku": sku, "store": store, "now": t, "order": web_order, "online": online_order}


def test_sku_events_are_listed_by_time(live: InProcessNode, sku_story: dict[str, Any]) -> None:
    sku, store = sku_story["sku"], sku_story["store"]
    found = ok(live, f"/api/v1/skus/{sku}")
    assert found["sku"] == sku
    events = found["events"]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events) == 11
    by_kind = Counter((e["kind"], e["location_id"]) for e in events)
    assert by_kind == {
        ("sale", store): 1,
        ("sale", "online"): 1,
        ("reservation", store): 1,
        ("return", store): 1,
        ("snapshot", store): 3,
        ("adjustment", store): 2,
        ("snapshot", "DC-1"): 2,
    }
    sale = next(e for e in events if e["kind"] == "sale" and e["location_id"] == store)
    assert (sale["qty"], sale["order_id"]) == (2, sku_story["order"])
    assert events[0]["kind"] == "sale" and events[0]["time"] == rfc3339(sku_story["now"] - timedelta(hours=3))
    assert events[-1]["kind"] == "adjustment" and events[-1]["delta"] == -2
    assert events[-1]["reason"] == "damage" and events[-1]["system"] == "pos"
    totals = {t["location_id"]: t for t in found["totals"]}
    assert totals[store] == {"sku": sku, "location_id": store, "sold": 2, "returned": 1, "reserved": 2}
    assert totals["online"]["sold"] == 1


def test_stock_variance_uses_each_systems_latest_snapshot(
    live: InProcessNode, sku_story: dict[str, Any]
) -> None:
    sku, store, t = sku_story["sku"], sku_story["store"], sku_story["now"]
    stock = {s["location_id"]: s for s in ok(live, f"/api/v1/skus/{sku}")["stock"]}
    assert set(stock) == {store, "DC-1"}
    at_store = stock[store]
    assert at_store["systems"]["erp"]["on_hand"] == 10
    # pos: snapshot 7, then -2 after it; the -5 before the snapshot is already in it
    assert at_store["systems"]["pos"] == {
        "on_hand": 5,
        "as_of": rfc3339(t - timedelta(minutes=10)),
        "snapshot_at": rfc3339(t - timedelta(minutes=30)),
        "pending_delta": -2,
    }
    assert at_store["spread"] == 5 and at_store["in_agreement"] is False
    assert stock["DC-1"]["spread"] == 0 and stock["DC-1"]["in_agreement"] is True
    assert {name: s["on_hand"] for name, s in stock["DC-1"]["systems"].items()} == {"erp": 100, "wms": 100}


def test_sku_location_filter_and_unknowns(live: InProcessNode, sku_story: dict[str, Any]) -> None:
    sku, store = sku_story["sku"], sku_story["store"]
    found = ok(live, f"/api/v1/skus/{sku}", location_id=store)
    assert [s["location_id"] for s in found["stock"]] == [store]
    assert {e["location_id"] for e in found["events"]} == {store}
    assert len(found["events"]) == 8
    assert ok(live, f"/api/v1/skus/{sku}", location_id="DC-1")["stock"][0]["spread"] == 0
    for path, params in (
        (f"/api/v1/skus/{uid('NOSKU')}", {}),
        (f"/api/v1/skus/{sku}", {"location_id": "nowhere"}),
    ):
        answer = get(live, path, **params)
        assert answer.status_code == 404
        assert set(answer.json()) == {"error", "detail"}


# ------------------------------------------------------------------------------------- promotions


def published(promo: str, at: datetime, targets: list[str] | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"promo_id": promo, "kind": "promotion", "skus": ["884-12"], **extra}
    if targets is not None:
        data["targets"] = targets
    return ce("retail.promotion.published", data, at, source="pim/central")


def activated(promo: str, target: str, at: datetime) -> dict[str, Any]:
    return ce("retail.promotion.activated", {"promo_id": promo, "target": target}, at, source=f"pos/{target}")


@pytest.fixture(scope="module")
def promotions(live: InProcessNode) -> dict[str, Any]:
    spring, flash, everywhere, delayed = uid("SPRING"), uid("FLASH"), uid("ALL"), uid("LATER")
    known, quiet = uid("S"), uid("S")
    t = now()
    start = t - timedelta(minutes=30)
    send(
        live,
        # activations before their publication arrives
        activated(spring, "007", start + timedelta(minutes=25)),
        activated(spring, "042", start + timedelta(minutes=2)),
        activated(spring, "042", start + timedelta(minutes=12)),  # a second activation: the first counts
        activated(spring, "021", start + timedelta(minutes=5)),
    )
    send(
        live,
        published(spring, start, ["042", "007", "013", "021"]),
        published(flash, t - timedelta(minutes=2), ["042", "099"]),
        activated(flash, "042", t - timedelta(minutes=1)),
        # the stores the node knows: from orders and from activations
        ce("retail.order.accepted", {"order_id": uid("W"), "store_id": quiet}, t - timedelta(hours=1)),
        published(everywhere, t - timedelta(minutes=20), None),
        activated(everywhere, known, t - timedelta(minutes=19)),
        # effective 10 minutes after publication: the lag counts from then
        published(delayed, start, ["042"], effective_at=rfc3339(start + timedelta(minutes=10))),
        activated(delayed, "042", start + timedelta(minutes=15)),
    )
    return {
        "spring": spring,
        "flash": flash,
        "everywhere": everywhere,
        "delayed": delayed,
        "known": known,
        "quiet": quiet,
        "now": t,
    }


def test_promotion_statuses_lag_and_stragglers(live: InProcessNode, promotions: dict[str, Any]) -> None:
    t = promotions["now"]
    found = ok(live, f"/api/v1/promotions/{promotions['spring']}")
    assert found["published_at"] == rfc3339(t - timedelta(minutes=30))
    assert found["effective_at"] is None and found["kind"] == "promotion" and found["skus"] == ["884-12"]
    assert found["targets"] == [
        {
            "target": "007",
            "activated_at": rfc3339(t - timedelta(minutes=5)),
            "lag_seconds": 1500.0,
            "status": "late",
        },
        {"target": "013", "activated_at": None, "lag_seconds": None, "status": "missing"},
        {
            "target": "021",
            "activated_at": rfc3339(t - timedelta(minutes=25)),
            "lag_seconds": 300.0,
            "status": "on_time",
        },
        {
            "target": "042",
            "activated_at": rfc3339(t - timedelta(minutes=28)),
            "lag_seconds": 120.0,
            "status": "on_time",
        },
    ]
    assert found["completeness"] == 75.0
    assert (found["lag_p50_seconds"], found["lag_p95_seconds"]) == (300.0, 1500.0)
    assert found["stragglers"] == ["007", "013"]
    curve = found["completeness_curve"]
    assert [p["completeness"] for p in curve] == [0.0, 25.0, 50.0, 75.0]

    flash = ok(live, f"/api/v1/promotions/{promotions['flash']}")
    statuses = {row["target"]: row["status"] for row in flash["targets"]}
    assert statuses == {"042": "on_time", "099": "pending"}
    assert flash["completeness"] == 50.0 and flash["stragglers"] == []

    delayed = ok(live, f"/api/v1/promotions/{promotions['delayed']}")
    assert delayed["effective_at"] == rfc3339(t - timedelta(minutes=20))
    assert delayed["targets"][0]["lag_seconds"] == 300.0 and delayed["targets"][0]["status"] == "on_time"


def test_a_promotion_without_targets_expects_every_known_store(
    live: InProcessNode, promotions: dict[str, Any], sku_story: dict[str, Any]
) -> None:
    found = ok(live, f"/api/v1/promotions/{promotions['everywhere']}")
    rows = {row["target"]: row for row in found["targets"]}
    activated_store = promotions["known"]
    assert [row["target"] for row in found["targets"] if row["activated_at"]] == [activated_store]
    assert rows[activated_store]["status"] == "on_time" and rows[activated_store]["lag_seconds"] == 60.0
    # every store the node has seen: the stores of orders and the targets of activations
    assert {"042", "007", "021", promotions["quiet"], sku_story["store"]} <= set(rows)
    assert "web" not in rows and "online" not in rows
    missing = [target for target, row in rows.items() if row["status"] == "missing"]
    assert sorted(missing) == sorted(set(rows) - {activated_store}) == found["stragglers"]
    assert found["completeness"] == round(100 / len(rows), 1)


def test_promotion_list_and_unknown(live: InProcessNode, promotions: dict[str, Any]) -> None:
    listed = ok(live, "/api/v1/promotions")
    assert listed["total"] == len(listed["items"])
    items = {item["promo_id"]: item for item in listed["items"]}
    spring, flash = items[promotions["spring"]], items[promotions["flash"]]
    assert (spring["completeness"], spring["target_count"], spring["straggler_count"]) == (75.0, 4, 2)
    assert spring["lag_p95_seconds"] == 1500.0
    assert (flash["completeness"], flash["target_count"], flash["straggler_count"]) == (50.0, 2, 0)
    order = [item["promo_id"] for item in listed["items"]]
    assert order.index(promotions["flash"]) < order.index(promotions["spring"])  # newest first
    answer = get(live, f"/api/v1/promotions/{uid('NOPROMO')}")
    assert answer.status_code == 404 and set(answer.json()) == {"error", "detail"}


# ------------------------------------------------------------------------------------- KPIs


@pytest.fixture(scope="module")
def kpi_store(live: InProcessNode) -> dict[str, Any]:
    """Eight orders of one store in the last two days, one in the two days before."""
    store, t = uid("K"), now()
    orders: list[tuple[str, datetime]] = []
    events: list[dict[str, Any]] = []

    def order(channel: str, at: datetime, *steps: tuple[str, timedelta, dict[str, Any]]) -> None:
        oid = uid("O")
        orders.append((channel, at))
        fulfillment = "in_store" if channel == "store" else "bopis"
        data = {"order_id": oid, "channel": channel, "store_id": store, "fulfillment": fulfillment}
        events.append(ce("retail.order.accepted", data, at))
        for event_type, offset, extra in steps:
            events.append(ce(event_type, {"order_id": oid, **extra}, at + offset, source="erp/sap"))

    paid: tuple[str, timedelta, dict[str, Any]] = ("retail.payment.confirmed", timedelta(minutes=1), {})
    order("web", t - timedelta(hours=30), ("retail.order.ready", timedelta(hours=1), {}))
    order("web", t - timedelta(hours=26), ("retail.order.ready", timedelta(hours=2), {}))
    order("app", t - timedelta(hours=5), ("retail.order.ready", timedelta(hours=3), {}))
    order("app", t - timedelta(minutes=20), paid)  # stalled: paid 19 minutes ago, not reserved
    order(
        "store",
        t - timedelta(hours=4),
        paid,
        ("retail.order.fulfilled", timedelta(minutes=5), {}),
        ("retail.finance.posting_failed", timedelta(hours=1), {"kind": "sale", "error": "ERP down"}),
        ("retail.finance.posting_failed", timedelta(hours=2), {"kind": "sale", "error": "ERP down"}),
    )
    order(
        "web",
        t - timedelta(hours=40),
        paid,
        ("retail.order.fulfilled", timedelta(hours=1), {}),
        ("retail.order.returned", timedelta(hours=30), {}),
        ("retail.refund.issued", timedelta(hours=32), {"amount": 10.0}),
        ("retail.finance.reconciled", timedelta(hours=33), {}),
    )
    order("web", t - timedelta(minutes=5))
    order("app", t - timedelta(hours=3), ("retail.order.cancelled", timedelta(minutes=10), {"reason": "x"}))
    order("web", t - timedelta(days=3))  # the previous period
    send(live, *events)
    return {"store": store, "now": t, "orders": orders}


def kpis(live: InProcessNode, story: dict[str, Any], **params: Any) -> dict[str, Any]:
    t = story["now"]
    window = {"since": rfc3339(t - timedelta(days=2)), "until": rfc3339(t), "store_id": story["store"]}
    return ok(live, "/api/v1/kpis", **{**window, **params})


def test_kpi_figures(live: InProcessNode, kpi_store: dict[str, Any]) -> None:
    found = kpis(live, kpi_store)
    assert found["filters"] == {"channel": None, "store_id": kpi_store["store"]}
    assert found["orders"]["total"] == 8
    assert found["orders"]["by_channel"] == {"app": 3, "store": 1, "web": 4}
    assert found["orders"]["by_state"] == {
        "accepted": 1,
        "paid": 1,
        "ready": 3,
        "fulfilled": 1,
        "reconciled": 1,
        "cancelled": 1,
    }
    to_ready = found["durations"]["order_to_ready"]
    assert to_ready["count"] == 3 and to_ready["p50_seconds"] == 7200.0
    assert 10440.0 <= to_ready["p95_seconds"] <= 10800.0  # between the two largest, whatever the method
    assert found["durations"]["return_to_refund"] == {
        "p50_seconds": 7200.0,
        "p95_seconds": 7200.0,
        "count": 1,
    }
    assert found["durations"]["accepted_to_paid"]["count"] == 3
    assert found["durations"]["accepted_to_paid"]["p50_seconds"] == 60.0
    assert found["stalled"] == {"count": 1, "open": 6, "rate": round(1 / 6, 4)}
    assert found["failed_postings"] == {"orders": 1, "failures": 2}
    assert found["top_stalled_stores"] == [
        {"store_id": kpi_store["store"], "stalled": 1, "open": 6, "stalled_rate": round(1 / 6, 4)}
    ]
    previous = found["previous"]
    assert previous["orders"]["total"] == 1 and previous["orders"]["by_channel"] == {"web": 1}


def test_kpi_series_by_day_and_channel(live: InProcessNode, kpi_store: dict[str, Any]) -> None:
    t = kpi_store["now"]
    expected = Counter(
        (at.date().isoformat(), channel) for channel, at in kpi_store["orders"] if at >= t - timedelta(days=2)
    )
    series = kpis(live, kpi_store)["series"]
    assert {(row["day"], row["channel"]): row["orders"] for row in series} == expected
    assert [(row["day"], row["channel"]) for row in series] == sorted(expected)
    assert sum(row["stalled"] for row in series) == 1
    assert sum(row["failed_postings"] for row in series) == 1


def test_kpis_by_channel(live: InProcessNode, kpi_store: dict[str, Any]) -> None:
    app = kpis(live, kpi_store, channel="app")
    assert app["filters"] == {"channel": "app", "store_id": kpi_store["store"]}
    assert app["orders"]["total"] == 3
    assert app["orders"]["by_state"] == {"ready": 1, "paid": 1, "cancelled": 1}
    assert app["durations"]["order_to_ready"]["p50_seconds"] == 10800.0
    assert app["stalled"] == {"count": 1, "open": 2, "rate": 0.5}
    assert app["failed_postings"] == {"orders": 0, "failures": 0}
    assert kpis(live, kpi_store, channel="marketplace")["orders"]["total"] == 0


def test_kpis_follow_orders_that_change_after_a_read(live: InProcessNode) -> None:
    """A read computes the rollup of whole days; later events about those days' orders (one
    reserved, one whose acceptance arrives late and moves it to another day) show at the next."""
    store, t = uid("R"), now()
    midnight = datetime.combine(t.date(), datetime.min.time(), UTC)
    two_days_ago, yesterday = (
        midnight - timedelta(days=2) + timedelta(hours=9),
        midnight - timedelta(hours=15),
    )
    stalled, late = uid("O"), uid("O")
    order = {"channel": "web", "store_id": store, "fulfillment": "bopis"}
    send(
        live,
        ce("retail.order.accepted", {"order_id": stalled, **order}, yesterday),
        ce("retail.payment.confirmed", {"order_id": stalled}, yesterday + timedelta(minutes=1)),
        ce("retail.payment.confirmed", {"order_id": late, **order}, yesterday + timedelta(minutes=3)),
    )
    window = {"since": rfc3339(midnight - timedelta(days=3)), "until": rfc3339(midnight), "store_id": store}
    first = ok(live, "/api/v1/kpis", **window)
    assert first["orders"]["total"] == 2 and first["stalled"]["count"] == 2  # paid, never reserved
    assert {row["day"] for row in first["series"]} == {yesterday.date().isoformat()}
    send(
        live,
        ce(
            "retail.order.cancelled",
            {"order_id": stalled, "reason": "customer"},
            yesterday + timedelta(hours=1),
        ),
        ce("retail.order.accepted", {"order_id": late, **order}, two_days_ago),
    )
    second = ok(live, "/api/v1/kpis", **window)
    assert second["orders"]["total"] == 2 and second["stalled"]["count"] == 1
    assert second["orders"]["by_state"] == {"cancelled": 1, "paid": 1}
    days = {row["day"]: row["orders"] for row in second["series"]}
    assert days == {two_days_ago.date().isoformat(): 1, yesterday.date().isoformat(): 1}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "last week"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "2026-11-27T10:00:00Z", "until": "2026-11-27T09:00:00Z"}, "since"),
        ({"channel": "fax"}, "channel"),
    ],
)
def test_bad_kpi_parameters_are_400(live: InProcessNode, params: dict[str, str], parameter: str) -> None:
    answer = get(live, "/api/v1/kpis", **params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["detail"] == {"parameter": parameter} and f"'{parameter}'" in body["error"]
