"""SLA rules: config parsing, scope precedence, and their SQL checked against the Python verdict."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from correlator.model import CHANNELS, FULFILLMENTS, MILESTONES, OrderVerdict, TimelineEntry
from correlator.sla import (
    DEFAULT_SLA,
    SlaError,
    SlaRule,
    applicable,
    parse_sla,
    stall_columns_sql,
    stalled_sql,
)
from correlator.verdicts import order_verdict
from milepost.config import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = (NOW - EPOCH) // timedelta(microseconds=1)
MINUTE_US = 60_000_000


def test_defaults_are_the_spec_rules() -> None:
    assert [(r.from_, r.to, r.within_s) for r in DEFAULT_SLA] == [
        ("accepted", "paid", 900),
        ("paid", "reserved", 600),
        ("reserved", "ready", 7200),
        ("ready", "fulfilled", 259200),
        ("returned", "refunded", 86400),
        ("fulfilled", "reconciled", 86400),
        ("refunded", "reconciled", 86400),
    ]
    assert DEFAULT_SLA[1].name == "paid→reserved within 10m"
    assert all(not rule.when for rule in DEFAULT_SLA)


def test_no_sla_config_gives_the_defaults_and_a_list_replaces_them() -> None:
    assert parse_sla(None) == DEFAULT_SLA
    rules = parse_sla([{"from": "reserved", "to": "ready", "within": "2h", "when": {"fulfillment": "bopis"}}])
    assert rules == (SlaRule("reserved", "ready", 7200, {"fulfillment": ("bopis",)}),)
    assert rules[0].name == "reserved→ready within 2h when fulfillment=bopis"
    assert parse_sla([]) == ()


def test_when_takes_a_string_or_a_list() -> None:
    (rule,) = parse_sla(
        [
            {
                "from": "accepted",
                "to": "paid",
                "within": 90,
                "when": {"channel": ["web", "app"], "store_id": "042"},
            }
        ]
    )
    assert rule.when == {"channel": ("web", "app"), "store_id": ("042",)}
    assert rule.within_s == 90.0
    assert rule.name == "accepted→paid within 90s when channel=web|app, store_id=042"
    assert rule.matches("app", "ship", "042")
    assert not rule.matches("store", "ship", "042")
    assert not rule.matches("web", "ship", "043")


@pytest.mark.parametrize(
    ("rule", "key", "value"),
    [
        ({"from": "accepted", "to": "paid", "within": "15m", "by": "x"}, "sla[1].by", "x"),
        ({"from": "shipped", "to": "paid", "within": "15m"}, "sla[1].from", "shipped"),
        ({"from": "accepted", "to": "cancelled", "within": "15m"}, "sla[1].to", "cancelled"),
        ({"from": "ready", "to": "paid", "within": "15m"}, "sla[1].to", "paid"),
        ({"from": "paid", "to": "paid", "within": "15m"}, "sla[1].to", "paid"),
        ({"from": "accepted", "to": "paid", "within": "soon"}, "sla[1].within", "soon"),
        (
            {"from": "accepted", "to": "paid", "within": "15m", "when": {"region": "north"}},
            "sla[1].when.region",
            "north",
        ),
        (
            {"from": "accepted", "to": "paid", "within": "15m", "when": {"channel": "fax"}},
            "sla[1].when.channel",
            "fax",
        ),
        (
            {"from": "accepted", "to": "paid", "within": "15m", "when": {"fulfillment": ["ship", "drone"]}},
            "sla[1].when.fulfillment",
            "drone",
        ),
        (
            {"from": "accepted", "to": "paid", "within": "15m", "when": {"store_id": 42}},
            "sla[1].when.store_id",
            "42",
        ),
        ({"from": "accepted", "to": "paid", "within": "15m", "when": "bopis"}, "sla[1].when", "bopis"),
    ],
)
def test_bad_rules_name_the_key_and_the_value(rule: dict[str, Any], key: str, value: str) -> None:
    good = {"from": "accepted", "to": "paid", "within": "15m"}
    with pytest.raises(SlaError) as caught:
        parse_sla([good, rule])
    message = str(caught.value)
    assert f"'{key}'" in message
    assert f"'{value}'" in message
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("accepted→paid", "sla"),
        (["accepted"], "sla[0]"),
        ([{"to": "paid", "within": "1m"}], "sla[0].from"),
        ([{"from": "accepted", "within": "1m"}], "sla[0].to"),
        ([{"from": "accepted", "to": "paid"}], "sla[0].within"),
    ],
)
def test_malformed_sla_config_names_the_key(raw: Any, key: str) -> None:
    with pytest.raises(SlaError, match=re.escape(f"'{key}'")):
        parse_sla(raw)


def test_a_scoped_rule_overrides_the_general_one_for_its_orders_only() -> None:
    rules = parse_sla(
        [
            {"from": "reserved", "to": "ready", "within": "2h"},
            {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
            {"from": "accepted", "to": "paid", "within": "15m"},
        ]
    )
    assert applicable(rules, "web", "bopis", "042") == [rules[1], rules[2]]
    assert applicable(rules, "web", "ship", "042") == [rules[0], rules[2]]


def test_the_most_specific_rule_wins_even_when_it_is_more_lenient() -> None:
    rules = parse_sla(
        [
            {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
            {
                "from": "reserved",
                "to": "ready",
                "within": "4h",
                "when": {"fulfillment": "bopis", "store_id": "042"},
            },
        ]
    )
    assert applicable(rules, "web", "bopis", "042") == [rules[1]]
    assert applicable(rules, "web", "bopis", "043") == [rules[0]]
    assert applicable(rules, "web", "ship", "042") == []


def test_equally_specific_rules_resolve_to_the_strictest() -> None:
    rules = parse_sla(
        [
            {"from": "accepted", "to": "paid", "within": "20m", "when": {"channel": "web"}},
            {"from": "accepted", "to": "paid", "within": "5m", "when": {"store_id": "042"}},
        ]
    )
    assert applicable(rules, "web", "ship", "042") == [rules[1]]
    assert applicable(rules, "web", "ship", "043") == [rules[0]]


def test_sql_rejects_a_parameter_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ValueError, match="not an identifier"):
        stalled_sql(DEFAULT_SLA, "now}; DROP TABLE x; {")


# --- The SQL against the Python verdict, in real ClickHouse -----------------------------------

SCOPED_RULES = parse_sla(
    [
        *({"from": r.from_, "to": r.to, "within": r.within_s} for r in DEFAULT_SLA),
        {"from": "reserved", "to": "ready", "within": "30m", "when": {"fulfillment": "bopis"}},
        {
            "from": "reserved",
            "to": "ready",
            "within": "45m",
            "when": {"fulfillment": "bopis", "store_id": ["042", "7'x"]},
        },
        {"from": "accepted", "to": "paid", "within": "5m", "when": {"channel": ["web", "app"]}},
        {"from": "accepted", "to": "paid", "within": "3m", "when": {"store_id": "a\\b"}},
        {"from": "accepted", "to": "ready", "within": "10m"},
        {"from": "accepted", "to": "reserved", "within": "10m"},  # same due as →ready: nearest `to` wins
        {"from": "paid", "to": "fulfilled", "within": "25m", "when": {"channel": "store"}},
        {"from": "ready", "to": "fulfilled", "within": "1h", "when": {"store_id": ["001"]}},
    ]
)
STORES = ("042", "7'x", "a\\b", "001", "")
OFFSETS_MIN = (0, 3, 5, 10, 15, 25, 30, 45, 60, 120, 1440, 4320)  # exact SLA boundaries included


def _order(rng: random.Random) -> dict[str, Any]:
    times: dict[str, tuple[int, int]] = {}
    for milestone in MILESTONES:
        if rng.random() < (0.08 if milestone == "cancelled" else 0.4):
            minutes = rng.choice(OFFSETS_MIN) if rng.random() < 0.5 else rng.randint(0, 5000)
            first = NOW_US - minutes * MINUTE_US - (rng.randint(0, 59_999_999) if rng.random() < 0.3 else 0)
            last = first if rng.random() < 0.6 else first + rng.choice((0, 1, 2, 30, 200)) * MINUTE_US
            times[milestone] = (first, last)
    return {
        "channel": rng.choice((*CHANNELS, "")),
        "fulfillment": rng.choice((*FULFILLMENTS, "")),
        "store_id": rng.choice(STORES),
        "times": times,
    }


def _clickhouse_time(time_us: int) -> str:
    return (EPOCH + timedelta(microseconds=time_us)).strftime("%Y-%m-%d %H:%M:%S.%f")


def _summary_row(index: int, order: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {k: order[k] for k in ("channel", "fulfillment", "store_id")}
    row["id"] = index
    for milestone in MILESTONES:
        first, last = order["times"].get(milestone, (None, None))
        row[f"first_{milestone}"] = None if first is None else _clickhouse_time(first)
        row[f"last_{milestone}"] = None if last is None else _clickhouse_time(last)
    return row


def _entries(order: dict[str, Any]) -> list[TimelineEntry]:
    entries = []
    for milestone, (first, last) in order["times"].items():
        for n, time_us in enumerate({first, last}):
            entries.append(
                TimelineEntry("o", "milestone", milestone, time_us, "test", f"{milestone}-{n}", "t")
            )
    return entries


def verdict(order: dict[str, Any], rules: tuple[SlaRule, ...]) -> OrderVerdict:
    """The Python verdict of one generated order at NOW."""
    return order_verdict(
        _entries(order),
        rules,
        NOW_US,
        channel=order["channel"],
        fulfillment=order["fulfillment"],
        store_id=order["store_id"],
    )


CHILD = """
import json, sys
import chdb
request = json.load(sys.stdin)
options = {"max_query_size": "100000000"}  # the orders travel inline in the query
sys.stdout.write(str(chdb.query(request["sql"], "JSONEachRow", params=request["params"], options=options)))
"""


def run_clickhouse(sql: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Run stateless SQL in embedded ClickHouse in a child (this process may hold another chDB path)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps({"sql": sql, "params": params}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _summary_query(rules: tuple[SlaRule, ...], rows: list[dict[str, Any]]) -> str:
    times = ", ".join(
        f"{p}_{m} Nullable(DateTime64(6, 'UTC'))" for m in MILESTONES for p in ("first", "last")
    )
    structure = f"id UInt32, channel String, fulfillment String, store_id String, {times}"
    data = "\n".join(json.dumps(row) for row in rows)
    quoted = structure.replace("'", "\\'")
    return (
        f"SELECT id, {stalled_sql(rules, 'now')} AS stalled, {stall_columns_sql(rules, 'now')}, "
        "toUnixTimestamp64Micro(stalled_due) AS due_us "
        f"FROM format(JSONEachRow, '{quoted}', $$\n{data}\n$$) ORDER BY id"
    )


@pytest.mark.parametrize("rules", [SCOPED_RULES, DEFAULT_SLA], ids=["scoped", "defaults"])
def test_sql_stalls_match_the_python_verdict(rules: tuple[SlaRule, ...]) -> None:
    rng = random.Random(20261127)
    orders = [_order(rng) for _ in range(1500)]
    result = run_clickhouse(
        _summary_query(rules, [_summary_row(i, o) for i, o in enumerate(orders)]),
        {"now": _clickhouse_time(NOW_US)},
    )
    assert len(result) == len(orders)
    stalled = 0
    for row, order in zip(result, orders, strict=True):
        expected = verdict(order, rules).stalled
        got = (row["stalled"], row["stalled_after"], row["stalled_expected"], row["due_us"])
        want = (1, expected.after, expected.expected, expected.due_us) if expected else (0, None, None, None)
        assert got == want, (order, expected)
        stalled += expected is not None
    # The generator must exercise both outcomes, or the comparison proves little.
    assert 100 < stalled < len(orders) - 100


def test_sql_without_rules_never_stalls() -> None:
    rows = [
        _summary_row(
            0,
            {
                "channel": "web",
                "fulfillment": "ship",
                "store_id": "1",
                "times": {"accepted": (NOW_US - 10**12, NOW_US - 10**12)},
            },
        )
    ]
    (row,) = run_clickhouse(_summary_query((), rows), {"now": _clickhouse_time(NOW_US)})
    assert row == {
        "id": 0,
        "stalled": 0,
        "stalled_after": None,
        "stalled_expected": None,
        "stalled_due": None,
        "due_us": None,
    }


ACCEPTED_TO_PAID = parse_sla([{"from": "accepted", "to": "paid", "within": "15m"}])


def test_sql_boundaries_are_strict_and_inclusive_like_python() -> None:
    accepted = NOW_US - 15 * MINUTE_US
    orders: list[dict[str, Any]] = [
        {"times": {"accepted": (accepted, accepted)}},  # exactly 15m: not yet stalled
        {"times": {"accepted": (accepted - 1, accepted - 1)}},  # one µs more: stalled
        {"times": {"accepted": (accepted - 1, accepted - 1), "paid": (accepted - 1, accepted - 1)}},
        {"times": {"accepted": (accepted - 1, accepted - 1), "paid": (accepted - 2, accepted - 2)}},
        {"times": {"accepted": (accepted - 1, accepted - 1), "cancelled": (NOW_US, NOW_US)}},
    ]
    for order in orders:
        order.update(channel="web", fulfillment="ship", store_id="1")
    result = run_clickhouse(
        _summary_query(ACCEPTED_TO_PAID, [_summary_row(i, o) for i, o in enumerate(orders)]),
        {"now": _clickhouse_time(NOW_US)},
    )
    # Strictly more than 15m; paid at the same time counts, paid before accepted does not.
    assert [row["stalled"] for row in result] == [0, 1, 0, 1, 0]
    assert result[1]["stalled_after"] == "accepted" and result[1]["stalled_expected"] == "paid"
    assert result[1]["due_us"] == accepted - 1 + 15 * MINUTE_US
    for order, row in zip(orders, result, strict=True):
        verdict = order_verdict(_entries(order), ACCEPTED_TO_PAID, NOW_US)
        assert row["stalled"] == (verdict.stalled is not None)
