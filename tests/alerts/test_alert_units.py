"""The pipeline's pure parts with in-memory stand-ins: lifecycle states, Alertmanager's dedup rule,
routing, grouping, inhibition, silences, retries and the words of a message."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.config import parse_alerts
from alerts.content import annotator, duration, render, summary
from alerts.dispatch import Dispatcher, InMemoryNotificationLog, LogEntry, Muting, needs_update
from alerts.lifecycle import FIRING, PENDING, RESOLVED, AlertInstance, Lifecycle, fingerprint
from alerts.notify import FAILURE, NOMATCH, SUCCESS, InMemoryNotifier, alertmanager_payload, deliver
from alerts.silences import Silence, SilenceError, parse_silence
from alerts.sources import Candidate

HOOK = "json://127.0.0.1:9/a"
OTHER = "json://127.0.0.1:9/b"


def settings(*rules: dict[str, Any], **extra: Any) -> Any:
    return parse_alerts({"rules": list(rules), "routes": [{"notify": [HOOK]}], **extra})


def stalled(store: str, count: int = 1, fulfillment: str = "bopis") -> Candidate:
    labels = {
        "store_id": store,
        "channel": "web",
        "fulfillment": fulfillment,
        "after": "paid",
        "expected": "reserved",
    }
    orders = [f"W-{store}-{i}" for i in range(count)]
    return Candidate(labels, {"count": count, "orders": orders, "oldest": orders[0], "waiting_s": 1500})


# -- lifecycle -----------------------------------------------------------------------------------


def test_pending_then_firing_after_for_then_resolved() -> None:
    config = settings({"name": "s", "kind": "stalled_orders", "for": "5m"})
    rule = config.rules[0]
    life = Lifecycle(annotator(config))
    changes = life.evaluate(rule, [stalled("001")], 0)
    assert [(c.previous, c.instance.state) for c in changes] == [("inactive", PENDING)]
    assert life.evaluate(rule, [stalled("001")], 299) == []
    (fired,) = life.evaluate(rule, [stalled("001")], 300)
    assert (fired.previous, fired.instance.state, fired.instance.fired_at) == (PENDING, FIRING, 300)
    (resolved,) = life.evaluate(rule, [], 360)
    assert resolved.instance.state == RESOLVED and resolved.instance.resolved_at == 360
    # Back again: a new pending period, not the old firing one.
    (again,) = life.evaluate(rule, [stalled("001")], 400)
    assert again.instance.state == PENDING and again.instance.active_at == 400


def test_for_zero_fires_at_once_and_keep_firing_for_holds_it() -> None:
    config = settings({"name": "s", "kind": "stalled_orders", "keep_firing_for": "2m"})
    rule = config.rules[0]
    life = Lifecycle(annotator(config))
    (fired,) = life.evaluate(rule, [stalled("001")], 0)
    assert (fired.previous, fired.instance.state) == ("inactive", FIRING)
    assert life.evaluate(rule, [], 60) == []  # cleared, but kept firing for 2 minutes
    assert life.evaluate(rule, [stalled("001")], 90) == []  # back: the hold is forgotten
    assert life.evaluate(rule, [], 100) == []
    (resolved,) = life.evaluate(rule, [], 220)
    assert resolved.instance.state == RESOLVED


def test_instances_are_keyed_by_their_labels_and_annotated_in_business_words() -> None:
    config = settings({"name": "s", "kind": "stalled_orders", "labels": {"team": "stores"}})
    life = Lifecycle(annotator(config))
    changes = life.evaluate(config.rules[0], [stalled("001", 3), stalled("002")], 0)
    first = changes[0].instance
    assert first.labels == {
        "store_id": "001",
        "channel": "web",
        "fulfillment": "bopis",
        "after": "paid",
        "expected": "reserved",
        "team": "stores",
        "alertname": "s",
        "kind": "stalled_orders",
        "severity": "warning",
    }
    assert first.fingerprint == fingerprint(dict(reversed(list(first.labels.items()))))
    assert first.annotations["summary"] == (
        "3 BOPIS orders at store 001 paid but not reserved for 25+ min; oldest W-001-0"
    )
    assert first.annotations["dashboard"] == "http://127.0.0.1:8501/?order=W-001-0"


# -- dispatch ------------------------------------------------------------------------------------


def entry(firing: set[str], resolved: frozenset[str] = frozenset(), sent_at: float = 0.0) -> LogEntry:
    return LogEntry("r", "g", "firing", "h", frozenset(firing), frozenset(resolved), sent_at)


@pytest.mark.parametrize(
    ("last", "firing", "resolved", "now", "send"),
    [
        (None, {"a"}, set(), 0, True),  # first time
        (None, set(), {"a"}, 0, False),  # came and went before anyone was told
        (entry({"a"}), {"a", "b"}, set(), 10, True),  # a new firing alert
        (entry({"a", "b"}), {"a"}, {"b"}, 10, True),  # one resolved
        (entry({"a"}), set(), {"a"}, 10, True),  # all resolved
        (entry(set(), {"a"}), set(), {"a"}, 10, False),  # already told it resolved
        (entry({"a"}), {"a"}, set(), 100, False),  # nothing new within repeat_interval
        (entry({"a"}), {"a"}, set(), 3600, True),  # repeat_interval passed
        (entry({"a"}), set(), set(), 3600, False),  # everything muted
    ],
)
def test_the_notification_log_decides_like_alertmanager(
    last: LogEntry | None, firing: set[str], resolved: set[str], now: float, send: bool
) -> None:
    assert needs_update(last, firing, resolved, 3600, now) is send


def alert(name: str, state: str = FIRING, **labels: str) -> AlertInstance:
    full = {"alertname": name, "kind": "stalled_orders", "severity": "warning", **labels}
    return AlertInstance(fingerprint(full), name, full, state, 0.0, fired_at=0.0)


def test_routes_first_match_wins_unless_continue() -> None:
    config = parse_alerts(
        {
            "routes": [
                {"match": {"severity": "critical"}, "notify": [HOOK], "continue": True},
                {"match": {"severity": "critical"}, "notify": [OTHER]},
                {"notify": [HOOK]},
            ]
        }
    )
    dispatcher = Dispatcher(config, InMemoryNotificationLog())
    assert [r.key[:9] for r in dispatcher.routes({"severity": "critical"})] == ["routes[0]", "routes[1]"]
    assert [r.key[:9] for r in dispatcher.routes({"severity": "warning"})] == ["routes[2]"]


def test_groups_wait_then_tick_every_group_interval() -> None:
    config = settings({"name": "s", "kind": "stalled_orders"})
    log = InMemoryNotificationLog()
    dispatcher = Dispatcher(config, log)
    a, b = alert("s", store_id="001", fulfillment="bopis"), alert("s", store_id="001", fulfillment="ship")
    dispatcher.ingest([a], [], 0)
    assert dispatcher.due(29, [a], []) == []
    (first,) = dispatcher.due(30, [a], [])
    dispatcher.delivered(first, 30)
    dispatcher.ingest([a, b], [], 60)
    assert dispatcher.due(60, [a, b], []) == []  # waits for the group interval
    (second,) = dispatcher.due(330, [a, b], [])
    assert {x.fingerprint for x in second.firing} == {a.fingerprint, b.fingerprint}
    assert second.group_labels == {"store_id": "001"}


def test_inhibition_needs_a_firing_source_with_equal_labels_and_never_inhibits_itself() -> None:
    config = settings()
    critical = alert("c", severity="critical", store_id="001")
    warning_same = alert("w", store_id="001")
    warning_other = alert("w", store_id="002")
    muting = Muting(config.inhibit, [critical, warning_same, warning_other], [])
    assert muting.reason(warning_same) == "inhibited"
    assert muting.reason(warning_other) is None
    assert muting.reason(critical) is None
    rule = parse_alerts(
        {
            "inhibit": [
                {"source_match": {"kind": "stalled_orders"}, "target_match": {"kind": "stalled_orders"}}
            ]
        }
    ).inhibit
    assert Muting(rule, [warning_same], []).reason(warning_same) is None  # not by itself


def test_silences_match_exact_labels_while_active() -> None:
    silence = parse_silence({"matchers": {"store_id": "001"}, "ends_at": "2030-01-01T00:00:00Z"}, now=0)
    assert silence.active(1) and silence.matches({"store_id": "001", "kind": "x"})
    assert not silence.matches({"store_id": "0011"})
    assert not silence.active(silence.ends_at)  # expired silences stop silencing
    deleted = Silence("id", {"store_id": "001"}, 0, 10, deleted=True)
    assert not deleted.active(5) and deleted.status(5) == "expired"
    with pytest.raises(SilenceError) as caught:
        parse_silence({"matchers": {}, "ends_at": "2030-01-01T00:00:00Z"}, now=0)
    assert caught.value.field == "matchers"


# -- delivery ------------------------------------------------------------------------------------


def test_retries_back_off_and_stop_at_success_or_nomatch() -> None:
    config = settings()
    receiver = config.routes[0].receivers[0]
    message = render(config, "s", {}, [alert("s", store_id="001")], [])
    notifier = InMemoryNotifier(failures={receiver.key: 2})
    sleeps: list[float] = []
    outcomes = deliver(notifier, receiver, message, FIRING, "warning", 3, 1.0, sleeps.append)
    assert [o.status for o in outcomes] == [FAILURE, FAILURE, SUCCESS] and sleeps == [1.0, 2.0]
    notifier = InMemoryNotifier(failures={receiver.key: -1})
    outcomes = deliver(notifier, receiver, message, FIRING, "warning", 3, 1.0, sleeps.append)
    assert [o.status for o in outcomes] == [FAILURE] * 3
    notifier = InMemoryNotifier(nomatch={receiver.key})
    assert [o.status for o in deliver(notifier, receiver, message, FIRING, "", 3, 1.0, sleeps.append)] == [
        NOMATCH
    ]


def test_alertmanager_items_carry_labels_annotations_and_times() -> None:
    firing = alert("s", store_id="001")
    (item,) = alertmanager_payload([firing], now=60, resolve_timeout_s=300)
    assert item["labels"]["store_id"] == "001"
    assert (item["startsAt"], item["endsAt"]) == ("1970-01-01T00:00:00.000Z", "1970-01-01T00:06:00.000Z")


# -- content -------------------------------------------------------------------------------------


def test_durations_are_floors_in_plain_units() -> None:
    assert [duration(s) for s in (5, 59, 60, 1500, 3600, 7300, 86400 * 3)] == [
        "5+ s",
        "59+ s",
        "1+ min",
        "25+ min",
        "1+ h",
        "2+ h",
        "3+ d",
    ]


def test_templates_override_title_and_body() -> None:
    config = settings(templates={"title": "[$severity] $rule: $headline", "body": "$firing firing\n$alerts"})
    message = render(config, "s", {"store_id": "001"}, [alert("s", store_id="001")], [])
    assert message.title.startswith("[warning] s: ")
    assert message.body.startswith("1 firing\n[FIRING since 1970-01-01 00:00 UTC]")


def test_promotion_sentence_caps_the_stores_it_names() -> None:
    context = {"kind": "price", "missing": [f"{i:03}" for i in range(8)], "missing_count": 8}
    context |= {"target_count": 10, "age_s": 1900, "completeness": 20.0}
    assert summary("promotion_lag", {"promo_id": "P-1"}, context) == (
        "Price change P-1 not active at 8 of 10 targets 31+ min after its start (20% complete); "
        "missing: 000, 001, 002, 003, 004 and 3 more"
    )
