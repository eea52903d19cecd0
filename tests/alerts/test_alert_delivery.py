"""Real delivery and business content: apprise posts to a local receiver naming the affected orders,
stores, promotions and SKUs with dashboard deep links; every rule kind over a real node; the
alerts API serving instance history; forwarding to an Alertmanager."""

from __future__ import annotations

from typing import Any

import httpx

from correlator.catalog import PromotionReader
from tests.alerts.harness import Hook, Scenario


def config(hook: Hook, *rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"rules": list(rules), "routes": [{"notify": [hook.url("/ops")]}], **extra}


def test_stalled_orders_name_the_orders_the_store_and_link_to_them(scenario: Scenario, hook: Hook) -> None:
    events = scenario.paid("W-10023", "042", -30)
    for number in range(10024, 10035):
        events += scenario.paid(f"W-{number}", "042", -25)
    scenario.send(*events)
    rule = {"name": "stalled-bopis", "kind": "stalled_orders", "group_by": ["store_id"]}
    scenario.start(config(hook, rule, dashboard_url="http://dash.example:8501"))
    scenario.run(0, 0.5)
    (post,) = hook.received("/ops")
    assert (
        post.title == "FIRING: 12 BOPIS orders at store 042 paid but not reserved for 25+ min; oldest W-10023"
    )
    body = post.message
    assert "Orders (12):" in body
    assert "  - W-10023: http://dash.example:8501/?order=W-10023" in body
    listed = [line for line in body.splitlines() if line.startswith("  - W-")]
    assert len(listed) == 10 and "  and 2 more" in body
    assert "W-10034" not in body  # capped: the last two are counted, not listed
    assert "Dashboard: http://dash.example:8501/?order=W-10023" in body
    assert "Rule stalled-bopis (warning), group store_id=042" in body
    assert post.payload["type"] == "warning"


def test_promotion_lag_names_the_stores_still_missing(scenario: Scenario, hook: Hook) -> None:
    targets = ["001", "002", "003", "004", "005"]
    scenario.send(
        scenario.event(
            "retail.promotion.published", -30, promo_id="SPRING-10", targets=targets, skus=["884-12"]
        ),
        scenario.event("retail.promotion.activated", -28, promo_id="SPRING-10", target="001"),
        scenario.event("retail.promotion.activated", -27, promo_id="SPRING-10", target="002"),
    )
    scenario.start(config(hook, {"name": "promo-lag", "kind": "promotion_lag", "severity": "critical"}))
    scenario.run(0, 0.5)
    (post,) = hook.received("/ops")
    assert post.title == (
        "FIRING: Promotion SPRING-10 not active at 3 of 5 targets 30+ min after its start "
        "(40% complete); missing: 003, 004, 005"
    )
    assert "Stores still missing (3):\n  - 003\n  - 004\n  - 005" in post.message
    assert "Dashboard: http://127.0.0.1:8501/?promotion=SPRING-10" in post.message
    assert post.payload["type"] == "failure"
    scenario.send(
        *(
            scenario.event("retail.promotion.activated", 1, promo_id="SPRING-10", target=t)
            for t in targets[2:]
        )
    )
    scenario.run(1.5, 5.5)
    posts = hook.received("/ops")
    assert [p.minute for p in posts] == [0.5, 5.5]
    assert posts[1].title.startswith("RESOLVED: Promotion SPRING-10")


def test_every_kind_finds_its_problem(scenario: Scenario, hook: Hook) -> None:
    quiet = [
        scenario.event("retail.order.accepted", -90 + i * 2, source="pos/042", order_id=f"P-{i}")
        for i in range(12)
    ]
    scenario.send(
        *quiet,
        scenario.event("retail.order.accepted", -30, order_id="W-F1", store_id="042", channel="web"),
        scenario.event("retail.payment.confirmed", -29, order_id="W-F1"),
        scenario.event("retail.finance.posting_failed", -20, order_id="W-F1", kind="sale", error="GL closed"),
        scenario.event("retail.order.accepted", -30, order_id="W-F2", store_id="042", channel="web"),
        scenario.event("retail.payment.confirmed", -29, order_id="W-F2"),
        scenario.event("retail.finance.posting_failed", -20, order_id="W-F2", kind="sale", error="GL closed"),
        scenario.event("retail.finance.posted", -10, order_id="W-F2", kind="sale"),
        scenario.event("retail.finance.reconciled", -120, order_id="W-M1"),
        scenario.event(
            "retail.inventory.snapshot", -40, sku="884-12", location_id="042", system="erp", on_hand=10
        ),
        scenario.event(
            "retail.inventory.snapshot", -40, sku="884-12", location_id="042", system="pos", on_hand=3
        ),
        scenario.event(
            "retail.inventory.adjusted", -30, sku="884-12", location_id="042", system="pos", delta=1
        ),
        scenario.event(
            "retail.inventory.snapshot", -40, sku="884-13", location_id="042", system="erp", on_hand=5
        ),
        scenario.event(
            "retail.inventory.snapshot", -40, sku="884-13", location_id="042", system="pos", on_hand=4
        ),
    )
    rules = [
        {"name": "postings", "kind": "failed_postings"},
        {"name": "mismatch", "kind": "state_mismatch", "grace": "1h"},
        {"name": "stock", "kind": "inventory_variance", "tolerance": 2},
        {"name": "silent", "kind": "ingest_silence", "min_events": 10, "window": "1h", "silence": "15m"},
    ]
    scenario.start(config(hook, *rules))
    scenario.run(0, 0.5)
    titles = sorted(p.title for p in hook.received("/ops"))
    assert titles == [
        "FIRING: 1 order at store 042 with a failed finance posting and no later posting; "
        "oldest W-F1 (20+ min ago)",
        "FIRING: 1 order with no store reconciled without paid; oldest W-M1 (2+ h ago)",
        "FIRING: SKU 884-12 at location 042: systems disagree by 6 units (erp 10, pos 4)",
        f"FIRING: Source pos/042 stopped sending: 12 events in the 1 h before its last at "
        f"{scenario.iso(-68)[:16].replace('T', ' ')} UTC, nothing for 1+ h",
    ]
    bodies = " ".join(p.message for p in hook.received("/ops"))
    assert "http://127.0.0.1:8501/?sku=884-12" in bodies
    assert "http://127.0.0.1:8501/?order=W-F1" in bodies
    assert "W-F2" not in bodies  # its failure was followed by a posting


def test_the_alerts_api_serves_instance_history(scenario: Scenario, hook: Hook) -> None:
    api = f"{scenario.live.url}/api/v1/alerts"
    scenario.send(*scenario.paid("W-API", "042", -15))
    scenario.start(config(hook, {"name": "stalled", "kind": "stalled_orders", "for": "1m"}))
    scenario.run(0, 1, 1.5)
    (item,) = httpx.get(api, params={"state": "firing"}).json()["items"]
    assert item["rule"] == "stalled" and item["state"] == "firing" and item["kind"] == "stalled_orders"
    assert item["labels"]["store_id"] == "042" and item["labels"]["severity"] == "warning"
    assert item["since"] == scenario.iso(1)
    assert item["context"]["orders"] == ["W-API"]
    assert item["annotations"]["summary"].startswith("1 BOPIS order at store 042 paid but not reserved")
    assert [(h["previous"], h["state"]) for h in item["history"]] == [
        ("inactive", "pending"),
        ("pending", "firing"),
    ]
    assert [(n["status"], n["kind"]) for n in item["notifications"]] == [("success", "firing")]
    assert item["notifications"][0]["receiver"].startswith("json://*** (")
    assert httpx.get(api, params={"state": "pending"}).json()["items"] == []

    scenario.send(scenario.reserved("W-API", 2))
    scenario.run(2.5)
    (resolved,) = httpx.get(api, params={"state": "resolved"}).json()["items"]
    assert [h["state"] for h in resolved["history"]] == ["pending", "firing", "resolved"]
    assert resolved["resolved_at"] == scenario.iso(2.5)
    assert httpx.get(api, params={"state": "firing"}).json()["items"] == []
    assert len(httpx.get(api).json()["items"]) == 1
    bad = httpx.get(api, params={"state": "burning"})
    assert bad.status_code == 400 and bad.json()["detail"] == {"parameter": "state"}


def test_alerts_are_forwarded_to_an_alertmanager(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-AM", "042", -15))
    alertmanager = f"http://127.0.0.1:{hook.port}/am"
    scenario.start(config(hook, {"name": "stalled", "kind": "stalled_orders"}, alertmanager_url=alertmanager))
    scenario.run(0)
    (post,) = hook.received("/am/api/v2/alerts")
    (alert,) = post.payload
    assert alert["labels"]["alertname"] == "stalled" and alert["labels"]["store_id"] == "042"
    assert alert["startsAt"] == scenario.iso(0).replace("Z", ".000Z")
    assert alert["endsAt"] == scenario.iso(5).replace("Z", ".000Z")  # resolve_timeout 5m
    assert alert["generatorURL"] == "http://127.0.0.1:8501/?order=W-AM"
    assert "paid but not reserved" in alert["annotations"]["summary"]


def test_promotion_lag_agrees_with_the_promotions_api(scenario: Scenario) -> None:
    ev = scenario.event
    published, activated = "retail.promotion.published", "retail.promotion.activated"
    scenario.send(
        scenario.event("retail.order.accepted", -60, order_id="W-S", store_id="007"),  # a known store
        # Effective after publication; one on time, one late, two missing, one unexpected target.
        ev(
            published, -40, promo_id="A", targets=["001", "002", "003", "004"], effective_at=scenario.iso(-20)
        ),
        ev(activated, -19, promo_id="A", target="001"),
        ev(activated, -5, promo_id="A", target="002"),
        ev(activated, -18, promo_id="A", target="005"),
        ev(activated, -17, promo_id="A", target="001"),  # a repeat: the first activation counts
        # No targets: every known store is expected.
        ev(published, -30, promo_id="B", kind="price"),
        ev(activated, -29, promo_id="B", target="001"),
        ev(published, -5, promo_id="C", targets=["001", "002"]),  # still within the threshold
        ev(published, -30, promo_id="D", targets=["001"]),
        ev(activated, -29, promo_id="D", target="001"),
        # Published twice: the first publication counts.
        ev(published, -50, promo_id="E", targets=["001", "002"]),
        ev(published, -10, promo_id="E", targets=["001"], effective_at=scenario.iso(-9)),
        ev(activated, -49, promo_id="E", target="001"),
    )
    engine = scenario.start({"rules": [{"name": "lag", "kind": "promotion_lag"}]})
    source = engine.source
    found = {
        c.labels["promo_id"]: c.context for c in source.candidates(engine.settings.rules[0], scenario.t(0))
    }
    reader = PromotionReader(scenario.live.node.query_client, scenario.live.node.promotions)
    now_us = round(scenario.t(0) * 1_000_000)
    expected = {}
    for promo in ("A", "B", "C", "D", "E"):
        detail = reader.promotion(promo, now_us)
        assert detail is not None
        statuses = {t["target"]: t["status"] for t in detail["targets"]}
        if "missing" in statuses.values():
            expected[promo] = {
                "missing": sorted(t for t, s in statuses.items() if s == "missing"),
                "late": sorted(t for t, s in statuses.items() if s == "late"),
                "completeness": detail["completeness"],
                "target_count": len(statuses),
            }
    assert set(expected) == {"A", "B", "E"}
    assert {promo: {key: found[promo][key] for key in expected[promo]} for promo in found} == expected
    assert found["A"]["missing"] == ["003", "004"] and found["A"]["late"] == ["002"]
