"""The notification pipeline under scripted time: events pushed at times, notifications expected in windows.

Every scenario: a real node fed over HTTP, an engine evaluated at scripted minutes (the moments
where something may or must not happen), apprise posting to a local receiver. Orders are "paid"
at a minute and stall 10 minutes later (the default paid→reserved SLA). Timings unless a test
says otherwise: group_wait 30s, group_interval 5m, repeat_interval 4h, evaluation every 15s.
"""

from __future__ import annotations

from typing import Any

import httpx

from alerts.notify import InMemoryNotifier
from tests.alerts.harness import Hook, Post, Scenario

STALLED: dict[str, Any] = {"name": "stalled", "kind": "stalled_orders", "group_by": ["store_id"]}


def config(hook: Hook, *rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "evaluation_interval": "15s",
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "rules": list(rules) or [STALLED],
        "routes": [{"notify": [hook.url("/ops")]}],
        **extra,
    }


def minutes(posts: list[Post]) -> list[float]:
    return [p.minute for p in posts]


def store(post: Post) -> str:
    return post.title.split("store ")[1][:3]


def test_pending_never_notifies(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-1", "001", -15))  # stalled since minute -5
    engine = scenario.start(config(hook, {**STALLED, "for": "10m"}))
    scenario.run(0, 0.5, 2)
    assert [a.state for a in engine.current().values()] == ["pending"]
    scenario.send(scenario.reserved("W-1", 2.2))  # the milestone arrives before `for` has passed
    scenario.run(2.5, 10.5, 20)
    assert hook.received(ok=False) == []
    states = scenario.live.query("SELECT previous, state FROM alert_history ORDER BY time")
    assert states == [("inactive", "pending"), ("pending", "inactive")]


def test_for_delays_firing_and_group_wait_delays_the_first_message(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-2", "001", -15))
    scenario.start(config(hook, {**STALLED, "for": "5m"}))
    scenario.run(0, 0.5, 4.75, 5, 5.25, 5.5, 6, 10.5)
    # Pending from 0, firing at 5, the group's first message group_wait (30s) after that.
    assert minutes(hook.received("/ops")) == [5.5]
    states = scenario.live.query("SELECT state, toUnixTimestamp(time) FROM alert_history ORDER BY time")
    assert states == [("pending", scenario.t(0)), ("firing", scenario.t(5))]


def test_one_message_per_group_by_value(scenario: Scenario, hook: Hook) -> None:
    scenario.send(
        *scenario.paid("W-31", "001", -15),
        *scenario.paid("W-32", "001", -14, fulfillment="ship"),
        *scenario.paid("W-33", "002", -15),
    )
    scenario.start(config(hook))
    scenario.run(0, 0.25, 0.5, 1)
    posts = {store(p): p for p in hook.received("/ops")}
    assert minutes(hook.received("/ops")) == [0.5, 0.5]
    assert set(posts) == {"001", "002"}
    # Store 001 has two stalled instances (BOPIS and ship): one message names both.
    assert "(+1 more)" in posts["001"].title
    assert "W-31" in posts["001"].message and "W-32" in posts["001"].message
    assert "W-33" in posts["002"].message and "W-31" not in posts["002"].message


def test_group_interval_batches_changes_and_repeat_interval_repeats(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-41", "001", -15))
    scenario.start(config(hook, repeat_interval="1h"))
    scenario.run(0, 0.5, 3)
    assert minutes(hook.received("/ops")) == [0.5]
    # A second problem at the same store joins the group and waits for the next group_interval tick.
    scenario.send(*scenario.paid("W-42", "001", -9, fulfillment="ship"))
    scenario.run(3.5, 5, 5.5, 10.5, 30.5, 60.5, 65, 65.5, 70.5)
    posts = hook.received("/ops")
    assert minutes(posts) == [0.5, 5.5, 65.5]
    assert "W-42" not in posts[0].message and "W-42" in posts[1].message
    # Nothing changed for an hour: the repeat says it again.
    assert posts[2].message.count("[FIRING") == 2


def test_a_resolved_message_once_the_milestone_arrives(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-5", "001", -15))
    scenario.start(config(hook))
    scenario.run(0, 0.5)
    scenario.send(scenario.reserved("W-5", 2.2))
    scenario.run(2.5, 5.5, 10.5, 15.5)
    posts = hook.received("/ops")
    assert minutes(posts) == [0.5, 5.5]
    assert posts[0].title.startswith("FIRING: ")
    assert posts[1].title.startswith("RESOLVED: ")
    assert "[RESOLVED at" in posts[1].message
    assert posts[1].payload["type"] == "success"


def test_silences_mute_until_they_expire_or_are_deleted(scenario: Scenario, hook: Hook) -> None:
    api = f"{scenario.live.url}/api/v1/silences"
    for order, shop in (("W-61", "001"), ("W-62", "002"), ("W-63", "003")):
        scenario.send(*scenario.paid(order, shop, -15))
    until_20 = {"matchers": {"store_id": "001"}, "ends_at": scenario.iso(20), "comment": "stocktake"}
    first = httpx.post(api, json=until_20)
    assert first.status_code == 201
    second = httpx.post(
        api,
        json={
            "matchers": {"alertname": "stalled", "store_id": "003"},
            "ends_at": scenario.iso(60),
            "comment": "till lunch",
            "created_by": "ops",
        },
    )
    assert second.status_code == 201
    listing = httpx.get(api).json()
    assert {s["id"] for s in listing["items"]} == {first.json()["id"], second.json()["id"]}
    assert {s["status"] for s in listing["items"]} == {"active"}

    scenario.start(config(hook))
    scenario.run(0, 0.5)
    assert [store(p) for p in hook.received("/ops")] == ["002"]

    assert httpx.delete(f"{api}/{second.json()['id']}").status_code == 200
    assert httpx.delete(f"{api}/{second.json()['id']}").status_code == 404
    assert [s["id"] for s in httpx.get(api).json()["items"]] == [first.json()["id"]]
    scenario.run(5.5, 10.5, 15.5, 19.5, 20.5, 25.5)
    sent = [(p.minute, store(p)) for p in hook.received("/ops")]
    # 003 at the first group_interval tick after the delete; 001 at the first tick after minute 20.
    assert sent == [(0.5, "002"), (5.5, "003"), (20.5, "001")]


def test_bad_silences_are_refused_naming_the_field(scenario: Scenario) -> None:
    api = f"{scenario.live.url}/api/v1/silences"
    cases = [
        ({"ends_at": scenario.iso(60)}, "matchers"),
        ({"matchers": {"store_id": "001"}}, "ends_at"),
        ({"matchers": {"store_id": "001"}, "ends_at": "tomorrow"}, "ends_at"),
        ({"matchers": {"store_id": "001"}, "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"matchers": {"store_id": 1}, "ends_at": scenario.iso(60)}, "matchers"),
        ({"matchers": {"store_id": "001"}, "ends_at": scenario.iso(60), "owner": "x"}, "owner"),
    ]
    for body, field in cases:
        answer = httpx.post(api, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["detail"] == {"field": field}
        assert f"'{field}'" in answer.json()["error"]
    assert httpx.post(api, content=b"{nope").json()["detail"] == {"field": "body"}
    assert httpx.delete(f"{api}/no-such-silence").status_code == 404
    assert httpx.get(api).json() == {"total": 0, "items": []}


def test_a_critical_alert_inhibits_the_warning_about_the_same_problem(scenario: Scenario, hook: Hook) -> None:
    for order, shop in (("W-71", "001"), ("W-72", "001"), ("W-73", "002")):
        scenario.send(*scenario.paid(order, shop, -15))
    critical = {**STALLED, "name": "stalled-critical", "severity": "critical", "min_orders": 2}
    warning = {**STALLED, "name": "stalled-warning", "severity": "warning"}
    scenario.start(config(hook, critical, warning))
    scenario.run(0, 0.5, 5.5)
    posts = hook.received("/ops")
    assert minutes(posts) == [0.5, 0.5]
    # Store 001: the critical alert only; store 002 has no critical alert, so its warning goes out.
    assert sorted((p.payload["type"], store(p)) for p in posts) == [("failure", "001"), ("warning", "002")]


def test_a_restarted_engine_does_not_send_again(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-8", "001", -15))
    scenario.start(config(hook))
    scenario.run(0, 0.5)
    assert minutes(hook.received("/ops")) == [0.5]
    scenario.start(config(hook))  # a new engine on the same store: what a node restart does
    scenario.run(2.5, 3, 8, 13)
    assert minutes(hook.received("/ops")) == [0.5]
    # It knows what was sent: the resolution still goes out, once.
    scenario.send(scenario.reserved("W-8", 13.2))
    scenario.run(13.5, 18, 23)
    posts = hook.received("/ops")
    assert minutes(posts) == [0.5, 18] and posts[1].title.startswith("RESOLVED")
    scenario.start(config(hook))
    scenario.run(23.5, 24, 29)
    assert len(hook.received("/ops")) == 2


def test_a_failing_receiver_is_retried_while_a_healthy_one_is_notified_once(
    scenario: Scenario, hook: Hook
) -> None:
    scenario.send(*scenario.paid("W-9", "001", -15))
    hook.failing.add("/down")
    routes = [{"notify": [hook.url("/ok"), hook.url("/down")]}]
    scenario.start(config(hook, routes=routes, retry={"attempts": 3, "backoff": "1s"}))
    scenario.run(0, 0.5)
    assert minutes(hook.received("/ok")) == [0.5]
    assert minutes(hook.received("/down", ok=False)) == [0.5, 0.5, 0.5]
    assert scenario.sleeps == [1.0, 2.0]  # backoff between the attempts within one cycle
    scenario.run(0.75, 1.0)  # retried one evaluation interval later, then not before twice that
    assert minutes(hook.received("/down", ok=False)) == [0.5] * 3 + [0.75] * 3
    hook.failing.clear()
    scenario.run(1.25, 1.5, 5.5, 10.5)
    assert minutes(hook.received("/down")) == [1.25]
    assert minutes(hook.received("/ok")) == [0.5]
    attempts = scenario.live.query("SELECT receiver, status FROM alert_attempts")
    assert sorted(status for _, status in attempts) == ["failure"] * 6 + ["success"] * 2
    assert all(receiver.startswith("json://*** (") for receiver, _ in attempts)
    assert str(hook.port) not in " ".join(receiver for receiver, _ in attempts)


def test_nomatch_is_a_configuration_error_never_a_success(scenario: Scenario, hook: Hook) -> None:
    scenario.send(*scenario.paid("W-10", "001", -15))
    engine = scenario.start(config(hook))
    notifier = InMemoryNotifier()
    notifier.nomatch.add(engine.settings.routes[0].receivers[0].key)
    engine.notifier = notifier
    scenario.run(0, 0.5, 0.75, 1)
    assert engine.counts["nomatch"] == 1 and engine.counts["sent"] == 0
    assert scenario.sleeps == []  # retrying a configuration error within the cycle cannot help
    assert scenario.live.query("SELECT status FROM alert_attempts") == [("nomatch",)]
    assert scenario.live.query("SELECT count() FROM alert_notifications") == [(0,)]
    scenario.run(5.5)  # tried again a group interval later
    assert engine.counts["nomatch"] == 2
