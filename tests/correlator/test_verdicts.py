"""Order verdicts: state, stalls by SLA rule, state-mismatch anomalies; order- and duplicate-independence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.model import MILESTONES, Anomaly, Stall, TimelineEntry
from correlator.sla import DEFAULT_SLA, parse_sla
from correlator.verdicts import PREREQUISITES, milestone_times, order_verdict

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = (NOW - EPOCH) // timedelta(microseconds=1)
MIN = 60_000_000


def ago(minutes: float) -> int:
    return NOW_US - round(minutes * MIN)


def milestone(name: str, time_us: int, key: str | None = None, **extra: str) -> TimelineEntry:
    return TimelineEntry(
        "W-1", "milestone", name, time_us, "test", key or f"{name}@{time_us}", f"t.{name}", **extra
    )


def event(name: str, time_us: int, key: str, **detail: str) -> TimelineEntry:
    return TimelineEntry(
        "W-1", "event", name, time_us, "test", key, name, detail=json.dumps(detail) if detail else ""
    )


def test_state_is_the_furthest_milestone_by_rank_not_by_time() -> None:
    entries = [milestone("accepted", ago(60)), milestone("ready", ago(50)), milestone("paid", ago(10))]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).state == "ready"


def test_cancelled_is_the_state_once_cancelled_and_the_order_never_stalls() -> None:
    entries = [milestone("accepted", ago(600)), milestone("cancelled", ago(599))]
    verdict = order_verdict(entries, DEFAULT_SLA, NOW_US)
    assert verdict.state == "cancelled"
    assert verdict.stalled is None


def test_only_linked_events_and_spans_give_no_state() -> None:
    entries = [
        event("retail.payment.failed", ago(5), "e1"),
        TimelineEntry("W-1", "span", "POST /checkout", ago(5), "otel", "s1", ""),
    ]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US) == order_verdict([], DEFAULT_SLA, NOW_US)
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).state == ""


def test_an_order_waiting_past_its_sla_is_stalled_with_due_and_overdue() -> None:
    verdict = order_verdict([milestone("accepted", ago(20))], DEFAULT_SLA, NOW_US)
    assert verdict.stalled == Stall("accepted", "paid", ago(5), 300.0, "accepted→paid within 15m")


def test_exactly_at_the_deadline_is_not_yet_stalled() -> None:
    assert order_verdict([milestone("accepted", ago(15))], DEFAULT_SLA, NOW_US).stalled is None
    assert order_verdict([milestone("accepted", ago(15) - 1)], DEFAULT_SLA, NOW_US).stalled is not None


def test_a_stalled_order_unstalls_when_the_expected_milestone_arrives() -> None:
    entries = [milestone("accepted", ago(30))]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).stalled is not None
    entries.append(milestone("paid", ago(1)))
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).stalled is None


def test_a_milestone_ranked_after_the_expected_one_also_clears_the_rule() -> None:
    rules = parse_sla([{"from": "accepted", "to": "paid", "within": "15m"}])
    entries = [milestone("accepted", ago(30)), milestone("reconciled", ago(29))]
    assert order_verdict(entries, rules, NOW_US).stalled is None


def test_the_expected_milestone_before_from_does_not_count() -> None:
    rules = parse_sla([{"from": "returned", "to": "refunded", "within": "1d"}])
    entries = [milestone("refunded", ago(3000)), milestone("returned", ago(2000))]
    assert order_verdict(entries, rules, NOW_US).stalled == Stall(
        "returned", "refunded", ago(2000 - 1440), 560 * 60.0, "returned→refunded within 1d"
    )


def test_the_first_time_of_from_starts_the_clock() -> None:
    entries = [milestone("accepted", ago(20), "a1"), milestone("accepted", ago(5), "a2")]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).stalled is not None


def test_the_stall_is_taken_at_the_orders_current_stage() -> None:
    rules = parse_sla(
        [
            {"from": "accepted", "to": "ready", "within": "30m"},
            {"from": "paid", "to": "reserved", "within": "10m"},
        ]
    )
    entries = [milestone("accepted", ago(120)), milestone("paid", ago(60))]
    stalled = order_verdict(entries, rules, NOW_US).stalled
    assert stalled is not None and (stalled.after, stalled.expected) == ("paid", "reserved")


def test_between_rules_from_the_same_stage_the_earliest_due_wins() -> None:
    rules = parse_sla(
        [
            {"from": "accepted", "to": "paid", "within": "15m"},
            {"from": "accepted", "to": "ready", "within": "10m"},
        ]
    )
    stalled = order_verdict([milestone("accepted", ago(60))], rules, NOW_US).stalled
    assert stalled is not None and stalled.expected == "ready" and stalled.overdue_seconds == 50 * 60


def test_a_milestone_without_its_predecessor_is_an_anomaly_not_a_stall() -> None:
    verdict = order_verdict([milestone("reconciled", ago(24 * 60))], DEFAULT_SLA, NOW_US)
    assert verdict.stalled is None
    assert verdict.state == "reconciled"
    assert verdict.anomalies == (
        Anomaly("missing_prerequisite", "reconciled at 2026-11-26 12:00 UTC without paid"),
    )


def test_scoped_rules_follow_the_orders_attributes() -> None:
    rules = parse_sla(
        [
            {"from": "reserved", "to": "ready", "within": "2h"},
            {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
        ]
    )
    entries = [milestone("reserved", ago(45))]
    assert order_verdict(entries, rules, NOW_US, fulfillment="ship").stalled is None
    stalled = order_verdict(entries, rules, NOW_US, fulfillment="bopis").stalled
    assert stalled is not None and stalled.rule == "reserved→ready within 30m when fulfillment=bopis"


def test_attributes_not_given_come_from_the_accepted_milestone() -> None:
    rules = parse_sla(
        [{"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}}]
    )
    entries = [
        milestone("reserved", ago(45), fulfillment="ship"),
        milestone("accepted", ago(50), channel="web", fulfillment="bopis", store_id="042"),
    ]
    assert order_verdict(entries, rules, NOW_US).stalled is not None
    assert order_verdict(entries, rules, NOW_US, fulfillment="ship").stalled is None


def test_missing_prerequisites_wait_for_the_grace_period() -> None:
    entries = [milestone("accepted", ago(200)), milestone("returned", ago(59))]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).anomalies == ()
    later = order_verdict(entries, DEFAULT_SLA, ago(-2))
    assert later.anomalies == (
        Anomaly("missing_prerequisite", "returned at 2026-11-27 11:01 UTC without fulfilled"),
    )
    assert order_verdict(entries, DEFAULT_SLA, ago(-2), grace_s=7200).anomalies == ()


def test_every_prerequisite_is_checked_and_anomalies_follow_the_timeline() -> None:
    entries = [milestone(name, ago(500 - 10 * i)) for i, name in enumerate(PREREQUISITES)]
    assert [a.detail for a in order_verdict(entries, DEFAULT_SLA, NOW_US).anomalies] == [
        "paid at 2026-11-27 03:40 UTC without accepted",
        "ready at 2026-11-27 04:00 UTC without accepted",
        "fulfilled at 2026-11-27 04:10 UTC without accepted",
    ]


def test_a_failed_posting_is_an_anomaly_until_a_later_posting() -> None:
    failed = event("retail.finance.posting_failed", ago(30), "f1", kind="sale", error="period closed")
    entries = [milestone("accepted", ago(40)), milestone("paid", ago(39)), failed]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).anomalies == (
        Anomaly(
            "posting_failed",
            "sale posting failed at 2026-11-27 11:30 UTC with no later posting: period closed",
        ),
    )
    earlier = event("retail.finance.posted", ago(35), "p0", kind="sale")
    other_kind = event("retail.finance.posted", ago(20), "p1", kind="refund")
    assert len(order_verdict([*entries, earlier, other_kind], DEFAULT_SLA, NOW_US).anomalies) == 1
    posted = event("retail.finance.posted", ago(20), "p2", kind="sale")
    assert order_verdict([*entries, posted], DEFAULT_SLA, NOW_US).anomalies == ()


def test_a_failed_payment_then_paid_is_a_retry_not_an_anomaly() -> None:
    entries = [
        milestone("accepted", ago(40)),
        event("retail.payment.failed", ago(39), "pf"),
        milestone("paid", ago(38)),
    ]
    assert order_verdict(entries, DEFAULT_SLA, NOW_US).anomalies == ()


def test_fulfilled_after_cancelled_is_an_anomaly() -> None:
    entries = [
        milestone("accepted", ago(100)),
        milestone("cancelled", ago(90)),
        milestone("fulfilled", ago(80)),
    ]
    verdict = order_verdict(entries, DEFAULT_SLA, NOW_US)
    assert verdict.state == "cancelled"
    assert verdict.anomalies == (
        Anomaly(
            "fulfilled_after_cancel",
            "fulfilled at 2026-11-27 10:40 UTC after cancelled at 2026-11-27 10:30 UTC",
        ),
    )
    before = [
        milestone("accepted", ago(100)),
        milestone("fulfilled", ago(95)),
        milestone("cancelled", ago(90)),
    ]
    assert order_verdict(before, DEFAULT_SLA, NOW_US).anomalies == ()


def test_milestone_times_are_first_and_last_per_milestone() -> None:
    entries = [
        milestone("paid", ago(10), "p2"),
        milestone("paid", ago(30), "p1"),
        milestone("paid", ago(30), "p1"),
        event("retail.finance.posted", ago(1), "x"),
    ]
    assert milestone_times(entries) == {"paid": (ago(30), ago(10))}


# --- Properties: arrival order and duplication never change a verdict --------------------------

LINKED = ("retail.finance.posting_failed", "retail.finance.posted", "retail.payment.failed")


@st.composite
def timelines(draw: st.DrawFn) -> list[TimelineEntry]:
    count = draw(st.integers(min_value=0, max_value=12))
    entries = []
    for index in range(count):
        time_us = ago(draw(st.integers(min_value=0, max_value=3 * 1440)))
        if draw(st.booleans()):
            name = draw(st.sampled_from(MILESTONES))
            channel = draw(st.sampled_from(("", "web", "store")))
            fulfillment = draw(st.sampled_from(("", "bopis", "ship")))
            entries.append(milestone(name, time_us, f"k{index}", channel=channel, fulfillment=fulfillment))
        else:
            kind = draw(st.sampled_from(("", "sale", "refund")))
            entries.append(event(draw(st.sampled_from(LINKED)), time_us, f"k{index}", kind=kind))
    return entries


SCOPED = parse_sla(
    [
        *({"from": r.from_, "to": r.to, "within": r.within_s} for r in DEFAULT_SLA),
        {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
        {"from": "accepted", "to": "paid", "within": "5m", "when": {"channel": "web"}},
    ]
)


@settings(max_examples=150, deadline=None)
@given(entries=timelines(), data=st.data())
def test_any_permutation_and_duplication_gives_the_same_verdict(
    entries: list[TimelineEntry], data: st.DataObject
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(entries), max_size=6)) if entries else []
    shuffled = data.draw(st.permutations([*entries, *duplicates]))
    for rules in (DEFAULT_SLA, SCOPED):
        assert order_verdict(shuffled, rules, NOW_US) == order_verdict(entries, rules, NOW_US)
        assert order_verdict(shuffled, rules, NOW_US, 60, "web", "bopis", "042") == order_verdict(
            entries, rules, NOW_US, 60, "web", "bopis", "042"
        )
