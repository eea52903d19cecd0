"""The plain-language summaries: what a store manager reads first, from the API's JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.sentences import (
    DONE,
    ERROR,
    LATE,
    OK,
    ago_text,
    detail_fields,
    duration_text,
    milestone_word,
    order_summary,
    parse_time,
    promotion_summary,
    stock_summary,
    system_name,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def milestone(name: str, minutes_ago: float, source: str = "shop/web", **extra: Any) -> dict[str, Any]:
    return {"milestone": name, "time": at(minutes_ago), "source": source, "status": "ok", **extra}


def span(source: str, minutes_ago: float, status: str = "error", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "span",
        "name": "inventory.reserve",
        "time": at(minutes_ago),
        "source": source,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "status": status,
        **extra,
    }


def order(
    *milestones: dict[str, Any],
    state: str,
    stalled: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    anomalies: list[dict[str, str]] | None = None,
    fulfillment: str = "bopis",
) -> dict[str, Any]:
    return {
        "order_id": "W-10023",
        "state": state,
        "fulfillment": fulfillment,
        "milestones": list(milestones),
        "stalled": stalled,
        "events": events or [],
        "anomalies": anomalies or [],
    }


def stall(after: str, expected: str, due_minutes_ago: float) -> dict[str, Any]:
    return {
        "after": after,
        "expected": expected,
        "due": at(due_minutes_ago),
        "overdue_seconds": due_minutes_ago * 60,
    }


# -- words and numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 min"),
        (20, "under a minute"),
        (59, "1 min"),
        (600, "10 min"),
        (2820, "47 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400, "1 d"),
        (97200, "1 d 3 h"),
        (259_080, "3 d"),  # 2 d 23 h 58 min: past a day, to the nearest hour
        (-600, "10 min"),
    ],
)
def test_duration_text_keeps_the_two_largest_units(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_ago_text_says_just_now_under_a_minute() -> None:
    assert ago_text(30) == "just now"
    assert ago_text(2820) == "47 min ago"


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("pos/042", "POS"),
        ("POS/042", "POS"),
        ("erp/sap", "ERP"),
        ("shop/web", "Web shop"),
        ("payments/adyen", "Payments"),
        ("inventory-service", "Inventory service"),
        ("erp-finance/s4", "ERP"),
        ("pos-store-008", "POS"),
        ("oms/eu-west-1", "OMS"),
        ("order_router", "Order router"),
        ("web-shop/catalog", "Web shop"),
        ("web-analytics", "Web analytics"),  # a word, not the web shop
        ("app-gateway/eu", "App gateway"),
        ("", "An unnamed system"),
    ],
)
def test_system_name_is_what_a_store_manager_calls_it(source: str, name: str) -> None:
    assert system_name(source) == name


def test_fulfilled_is_said_in_the_words_of_the_fulfillment() -> None:
    assert milestone_word("fulfilled", "bopis") == "picked up"
    assert milestone_word("fulfilled", "ship") == "shipped"
    assert milestone_word("fulfilled", "in_store") == "handed over"
    assert milestone_word("fulfilled") == "fulfilled"
    assert milestone_word("paid", "bopis") == "paid"


def test_detail_fields_reads_the_compact_json_and_tolerates_anything_else() -> None:
    assert detail_fields('{"error":"timeout","location_id":"DC-2"}') == {
        "error": "timeout",
        "location_id": "DC-2",
    }
    assert detail_fields({"a": 1}) == {"a": 1}
    assert detail_fields(None) == {} and detail_fields("") == {} and detail_fields("not json") == {}
    assert detail_fields("[1, 2]") == {}


def test_parse_time_reads_rfc3339_with_z() -> None:
    assert parse_time("2026-11-27T12:00:00Z") == NOW
    assert parse_time("2026-11-27T12:00:00.5+00:00") == NOW + timedelta(milliseconds=500)


# -- orders --------------------------------------------------------------------------------------


def test_the_store_managers_example() -> None:
    failing = span(
        "inventory-service",
        46,
        detail=json.dumps({"error": "timeout", "location_id": "DC-2", "sku": "884-12"}),
    )
    summary = order_summary(
        order(
            milestone("accepted", 52),
            milestone("paid", 47, "payments/adyen"),
            state="paid",
            stalled=stall("paid", "reserved", 37),
            events=[span("checkout", 46.1, status="ok"), failing],
        ),
        NOW,
    )
    assert summary == (
        ERROR,
        "Paid 47 min ago, not reserved: SLA 10 min. Inventory service at DC-2 returned errors — see trace.",
    )


def test_a_stall_without_a_known_cause_gets_the_next_step() -> None:
    summary = order_summary(
        order(
            milestone("accepted", 52),
            milestone("paid", 47),
            state="paid",
            stalled=stall("paid", "reserved", 37),
        ),
        NOW,
    )
    assert summary == (
        LATE,
        "Paid 47 min ago, not reserved: SLA 10 min. "
        "Next: check the stock reservation in the inventory system.",
    )


@pytest.mark.parametrize(
    ("after", "expected", "fulfillment", "words", "step"),
    [
        ("accepted", "paid", "bopis", "not paid: SLA 15 min", "check the payment with the payment provider"),
        (
            "reserved",
            "ready",
            "bopis",
            "not ready: SLA 15 min",
            "ask the store team to pick and pack the order",
        ),
        ("ready", "fulfilled", "bopis", "not picked up: SLA 15 min", "contact the customer about pickup"),
        ("ready", "fulfilled", "ship", "not shipped: SLA 15 min", "check the handover to the carrier"),
        (
            "returned",
            "refunded",
            "bopis",
            "not refunded: SLA 15 min",
            "issue the refund at the till or in the ERP",
        ),
    ],
)
def test_each_kind_of_stall_names_what_is_missing_and_who_acts(
    after: str, expected: str, fulfillment: str, words: str, step: str
) -> None:
    summary = order_summary(
        order(milestone(after, 30), state=after, stalled=stall(after, expected, 15), fulfillment=fulfillment),
        NOW,
    )
    assert summary.level == LATE
    assert words in summary.text and summary.text.endswith(f"Next: {step}.")


def test_a_stall_behind_the_current_state_gets_its_own_sentence() -> None:
    summary = order_summary(
        order(
            milestone("accepted", 3 * 1440, "pos/017"),
            milestone("paid", 3 * 1440 - 1, "pos/017"),
            milestone("fulfilled", 3 * 1440 - 2, "pos/017"),
            milestone("returned", 120, "pos/017"),
            milestone("refunded", 110, "pos/017"),
            state="refunded",
            stalled=stall("fulfilled", "reconciled", 2 * 1440 - 2),
            anomalies=[
                {
                    "kind": "posting_failed",
                    "detail": "refund posting failed at 2026-11-27 10:20 UTC with no later posting: "
                    "cost centre locked",
                }
            ],
            events=[
                {"kind": "event", "name": "retail.finance.posting_failed", "time": at(100), "status": "error"}
            ],
            fulfillment="in_store",
        ),
        NOW,
    )
    assert summary == (
        ERROR,
        "Refunded 1 h 50 min ago. Handed over 3 d ago, not reconciled: SLA 1 d. "
        "Refund posting failed at 2026-11-27 10:20 UTC with no later posting: cost centre locked — "
        "ask finance to repost it in the ERP. Next: ask finance to reconcile the order in the ERP.",
    )


def test_an_order_on_track_says_nothing_is_late() -> None:
    summary = order_summary(order(milestone("accepted", 30), milestone("ready", 10), state="ready"), NOW)
    assert summary == (OK, "Ready 10 min ago. Nothing is late.")
    picked = order_summary(order(milestone("fulfilled", 5), state="fulfilled"), NOW)
    assert picked == (OK, "Picked up 5 min ago. Nothing is late.")


def test_cancelled_and_reconciled_orders_expect_nothing_more() -> None:
    cancelled = order(
        milestone("accepted", 180),
        milestone("cancelled", 120, detail='{"reason":"customer"}'),
        state="cancelled",
    )
    assert order_summary(cancelled, NOW) == (DONE, "Cancelled 2 h ago (customer). Nothing more is expected.")
    reconciled = order(milestone("reconciled", 1440), state="reconciled")
    assert order_summary(reconciled, NOW) == (DONE, "Reconciled 1 d ago. The order is complete.")


def test_a_failed_payment_matters_only_until_a_payment_arrives() -> None:
    failed = {
        "kind": "event",
        "name": "retail.payment.failed",
        "time": at(20),
        "source": "payments/adyen",
        "status": "error",
        "detail": '{"reason":"card declined"}',
    }
    unpaid = order_summary(order(milestone("accepted", 25), state="accepted", events=[failed]), NOW)
    assert unpaid == (
        ERROR,
        "Accepted 25 min ago. Payment failed: card declined — ask the customer to pay again.",
    )
    retried = order_summary(
        order(milestone("accepted", 25), milestone("paid", 15), state="paid", events=[failed]), NOW
    )
    assert retried == (OK, "Paid 15 min ago. Nothing is late.")


def test_failing_systems_are_named_once_each_and_without_a_trace_point_to_the_event() -> None:
    events = [
        span("inventory-service", 20, detail='{"location_id":"DC-2"}'),
        span("inventory-service", 19, detail='{"location_id":"DC-2"}'),
        {
            "kind": "event",
            "name": "com.acme.wms.pick_failed",
            "time": at(18),
            "source": "wms/dc-2",
            "status": "error",
        },
    ]
    summary = order_summary(order(milestone("paid", 25), state="paid", events=events), NOW)
    assert summary.text == (
        "Paid 25 min ago. Inventory service at DC-2 returned errors — see trace. "
        "WMS returned errors — see its event."
    )


def test_state_mismatch_and_identity_anomalies_are_explained() -> None:
    summary = order_summary(
        order(
            milestone("reconciled", 90, "erp/sap"),
            state="reconciled",
            anomalies=[
                {"kind": "missing_prerequisite", "detail": "reconciled at 2026-11-27 10:30 UTC without paid"},
                {"kind": "identity", "detail": "alias R-1 names two orders"},
            ],
        ),
        NOW,
    )
    assert summary == (
        ERROR,
        "Reconciled 1 h 30 min ago. State mismatch: reconciled at 2026-11-27 10:30 UTC without paid — "
        "check that system's feed. Identity conflict: alias R-1 names two orders.",
    )


def test_an_order_known_only_from_linked_events() -> None:
    summary = order_summary(order(state="", events=[span("checkout", 5, status="ok")]), NOW)
    assert summary == (OK, "No milestone yet: the order is known only from linked events. Nothing is late.")


# -- SKUs and promotions -------------------------------------------------------------------------


def location(name: str, spread: int, **systems: tuple[int | None, int]) -> dict[str, Any]:
    return {
        "location_id": name,
        "spread": spread,
        "in_agreement": spread == 0,
        "systems": {s: {"on_hand": v, "pending_delta": d, "as_of": at(5)} for s, (v, d) in systems.items()},
    }


def test_stock_summary_names_the_widest_gap_first() -> None:
    sku = {
        "sku": "884-12",
        "stock": [
            location("017", 1, erp=(5, 0), pos=(4, 0)),
            location("042", 4, erp=(12, 0), pos=(8, -1)),
            location("DC-2", 0, wms=(240, 0), erp=(240, 0)),
        ],
    }
    assert stock_summary(sku) == (
        ERROR,
        "At 042 the systems disagree by 4 units: ERP 12, POS 8. Also apart: 017 (1 unit). "
        "Adjusted since the last count: POS -1. Next: count the shelf and correct the system that is wrong.",
    )


def test_stock_summary_when_systems_agree_or_never_counted() -> None:
    agreeing = {"sku": "884-12", "stock": [location("DC-2", 0, wms=(240, 0), erp=(240, 0))]}
    assert stock_summary(agreeing) == (OK, "Every system agrees on the stock of 884-12 at 1 location.")
    uncounted = {"sku": "884-12", "stock": []}
    assert stock_summary(uncounted).text.startswith("No stock snapshot for 884-12 yet")


def promotion(*targets: tuple[str, str, float | None]) -> dict[str, Any]:
    rows = [
        {"target": t, "status": s, "lag_seconds": lag, "activated_at": at(1) if lag is not None else None}
        for t, s, lag in targets
    ]
    active = sum(1 for row in rows if row["activated_at"])
    return {
        "promo_id": "SPRING-10",
        "published_at": at(30),
        "effective_at": at(25),
        "targets": rows,
        "completeness": round(active / len(rows) * 100, 1),
    }


def test_promotion_summary_names_the_stores_still_at_the_old_price() -> None:
    summary = promotion_summary(
        promotion(("017", "late", 1140.0), ("023", "missing", None), ("042", "on_time", 30.0)), NOW
    )
    assert summary == (
        ERROR,
        "SPRING-10 went live 25 min ago and is active at 2 of 3 targets (66.7%). "
        "Still at the old price: 023. Activated late: 017 (19 min). "
        "Next: push the promotion to those stores again.",
    )


def test_promotion_summary_when_on_time_or_still_propagating() -> None:
    assert promotion_summary(promotion(("042", "on_time", 30.0)), NOW).level == OK
    pending = promotion_summary(promotion(("042", "on_time", 30.0), ("web", "pending", None)), NOW)
    assert pending.level == LATE and "Not active yet: web." in pending.text
    scheduled = {**promotion(("042", "pending", None)), "effective_at": at(-60)}
    assert promotion_summary(scheduled, NOW).text.startswith("SPRING-10 is scheduled")
