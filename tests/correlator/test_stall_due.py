"""order_summary.stall_due_us: ClickHouse computes it as each summary is written, under the SLA
rules the node starts with, and it is recomputed once when a start brings other rules.

Stalled lists, KPIs and alerts read it, so each check here goes through ``OrderReader.search``
and compares with the Python verdict of every order. One embedded store for the module (chDB
holds one data path per process at a time), closed at the end.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from correlator.model import MILESTONES
from correlator.orders import OrderFilter, OrderReader
from correlator.sla import DEFAULT_SLA, SlaRule, stall_due_sql
from correlator.summary import STALL_DUE_COLUMN, keep_stall_due
from milepost.config import StorageConfig
from storage.client import open_client
from storage.schema import migrate
from tests.correlator.test_sla import EPOCH, NOW_US, SCOPED_RULES, _order, verdict

ORDERS = 1200
CHANGED = "the SLA rules changed: computing when each of 1,200 order summaries is due"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, list[dict[str, Any]]]]:
    """A fresh store whose SLA column was set up (empty) with the defaults, then filled with orders."""
    client = open_client("", tmp_path_factory.mktemp("stall-due") / "data")
    migrate(client, StorageConfig())
    lines: list[str] = []
    keep_stall_due(client, DEFAULT_SLA, lines.append)
    assert lines == []  # nothing stored yet, nothing to recompute
    rng = random.Random(20261128)
    orders = [_order(rng) for _ in range(ORDERS)]
    _insert(client, orders)
    yield client, orders
    client.close()


def _time(time_us: int | None) -> datetime | None:
    return None if time_us is None else EPOCH + timedelta(microseconds=time_us)


def _insert(client: Client, orders: list[dict[str, Any]]) -> None:
    columns = ["canonical", "channel", "store_id", "fulfillment", "first_seen", "last_seen", "version"]
    columns += [f"{p}_{m}" for m in MILESTONES for p in ("first", "last")]
    rows = []
    for index, order in enumerate(orders):
        times = [t for pair in order["times"].values() for t in pair] or [NOW_US]
        row: list[Any] = [f"O-{index:05d}", order["channel"], order["store_id"], order["fulfillment"]]
        row += [_time(min(times)), _time(max(times)), 1]
        for milestone in MILESTONES:
            first, last = order["times"].get(milestone, (None, None))
            row += [_time(first), _time(last)]
        rows.append(row)
    client.insert("order_summary", rows, column_names=columns)


def _listed(client: Client, rules: tuple[SlaRule, ...]) -> set[str]:
    found = OrderReader(client, rules).search(OrderFilter(status="stalled", limit=ORDERS), NOW_US)
    assert found["total"] == len(found["items"])
    return {str(item["order_id"]) for item in found["items"]}


def _expected(orders: list[dict[str, Any]], rules: tuple[SlaRule, ...]) -> set[str]:
    stalled = set()
    for index, order in enumerate(orders):
        if verdict(order, rules).stalled is not None:
            stalled.add(f"O-{index:05d}")
    assert 50 < len(stalled) < len(orders) - 50  # both outcomes are exercised
    return stalled


def _stale_rows(client: Client, rules: tuple[SlaRule, ...]) -> int:
    """Rows whose stored due differs from the rules' expression computed now."""
    return int(
        client.query(
            f"SELECT countIf({STALL_DUE_COLUMN} IS DISTINCT FROM ({stall_due_sql(rules)})) FROM order_summary"
        ).result_rows[0][0]
    )


def test_summaries_get_their_due_as_they_are_written(store: tuple[Client, list[dict[str, Any]]]) -> None:
    client, orders = store
    assert _stale_rows(client, DEFAULT_SLA) == 0
    assert _listed(client, DEFAULT_SLA) == _expected(orders, DEFAULT_SLA)


def test_other_rules_at_a_start_recompute_every_stored_due_once(
    store: tuple[Client, list[dict[str, Any]]],
) -> None:
    client, orders = store
    assert _expected(orders, SCOPED_RULES) != _expected(orders, DEFAULT_SLA)
    lines: list[str] = []
    keep_stall_due(client, SCOPED_RULES, lines.append)
    assert lines[0] == CHANGED and lines[1].startswith("due times of the order summaries computed in")
    assert _stale_rows(client, SCOPED_RULES) == 0
    assert _listed(client, SCOPED_RULES) == _expected(orders, SCOPED_RULES)
    again: list[str] = []
    keep_stall_due(client, SCOPED_RULES, again.append)
    assert again == []  # same rules: nothing to do at the next start
    keep_stall_due(client, DEFAULT_SLA)  # and back, for the other tests of the module
    assert _listed(client, DEFAULT_SLA) == _expected(orders, DEFAULT_SLA)


def test_a_start_interrupted_while_recomputing_recomputes_at_the_next(
    store: tuple[Client, list[dict[str, Any]]],
) -> None:
    client, orders = store
    # As a crash leaves it: the new expression in place, the stored rows still the old rules'.
    client.command(
        f"ALTER TABLE order_summary MODIFY COLUMN {STALL_DUE_COLUMN} Nullable(Int64) "
        f"MATERIALIZED {stall_due_sql(SCOPED_RULES)} COMMENT 'sla rules: recomputing'"
    )
    assert _stale_rows(client, SCOPED_RULES) > 0
    lines: list[str] = []
    keep_stall_due(client, SCOPED_RULES, lines.append)
    assert (
        lines[0] == "resuming an interrupted recompute: computing when each of 1,200 order summaries is due"
    )
    assert _stale_rows(client, SCOPED_RULES) == 0
    assert _listed(client, SCOPED_RULES) == _expected(orders, SCOPED_RULES)


def test_without_rules_nothing_is_ever_due(store: tuple[Client, list[dict[str, Any]]]) -> None:
    client, _ = store
    keep_stall_due(client, ())
    assert _listed(client, ()) == set()
    nulls = client.query(f"SELECT countIf({STALL_DUE_COLUMN} IS NULL), count() FROM order_summary")
    assert nulls.result_rows[0] == (ORDERS, ORDERS)
    keep_stall_due(client, DEFAULT_SLA)
    assert _stale_rows(client, DEFAULT_SLA) == 0


def test_the_due_is_when_the_order_turns_stalled(store: tuple[Client, list[dict[str, Any]]]) -> None:
    """Stalled at now exactly when now is past the stored due: a microsecond either side."""
    client, _ = store
    keep_stall_due(client, DEFAULT_SLA)
    due_us, at_due = client.query(
        f"SELECT {STALL_DUE_COLUMN} AS due, count() FROM order_summary "
        f"WHERE due > {{now:Int64}} GROUP BY due ORDER BY due LIMIT 1",
        parameters={"now": NOW_US},
    ).result_rows[0]
    reader = OrderReader(client, DEFAULT_SLA)
    before = reader.search(OrderFilter(status="stalled", limit=ORDERS), int(due_us))["total"]
    after = reader.search(OrderFilter(status="stalled", limit=ORDERS), int(due_us) + 1)["total"]
    assert after == before + int(at_due)
