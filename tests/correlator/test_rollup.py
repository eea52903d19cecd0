"""The daily KPI rollup gives the figures a direct read of every order summary gives: for whole-day
and partial-day windows, with filters, and after orders change day, gain milestones or are
absorbed into others (the sink's before-and-after dirty marks).

One embedded store for the module (chDB holds one data path per process at a time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from correlator.model import MILESTONES
from correlator.rollup import (
    _AGGREGATES,
    _MERGED,
    DailyRollup,
    Window,
    enter_days,
    keep_kpi_rollup,
    leave_days,
)
from correlator.sla import DEFAULT_SLA
from correlator.summary import ORDER_TIME_SQL, keep_stall_due
from milepost.config import StorageConfig
from storage.client import open_client
from storage.schema import migrate

NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
DAYS = 10
GROUPING: tuple[tuple[str, ...], ...] = ((), ("day", "channel"), ("store_id",))
STORES = ("001", "042", "117")
CHANNELS = ("web", "app", "store")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    opened = open_client("", tmp_path_factory.mktemp("rollup") / "data")
    migrate(opened, StorageConfig())
    keep_stall_due(opened, DEFAULT_SLA)
    yield opened
    opened.close()


def _summary(rng: random.Random, canonical: str, version: int) -> list[Any]:
    placed = NOW - timedelta(days=DAYS) + timedelta(seconds=rng.randrange(DAYS * 86400))
    times: dict[str, datetime] = {}
    at = placed
    for milestone in ("accepted", "paid", "reserved", "ready", "fulfilled", "reconciled"):
        if milestone != "accepted" and rng.random() < 0.2:
            break
        times[milestone] = at
        at += timedelta(minutes=rng.choice((1, 5, 12, 45, 130, 600)))
    if rng.random() < 0.08:
        times["cancelled"] = placed + timedelta(minutes=3)
    if "fulfilled" in times and rng.random() < 0.3:
        times["returned"] = times["fulfilled"] + timedelta(hours=5)
        if rng.random() < 0.6:
            times["refunded"] = times["returned"] + timedelta(hours=rng.choice((1, 30)))
    failures = rng.choice((0, 0, 0, 1, 2))
    last_failure = placed + timedelta(hours=1) if failures else None
    last_posting = placed + timedelta(hours=rng.choice((0, 2))) if rng.random() < 0.5 else None
    row: list[Any] = [canonical, rng.choice(CHANNELS), rng.choice(STORES), "bopis", placed, at, version]
    row += [failures, last_failure, last_posting]
    for milestone in MILESTONES:
        row += [times.get(milestone), times.get(milestone)]
    return row


COLUMNS = [
    "canonical",
    "channel",
    "store_id",
    "fulfillment",
    "first_seen",
    "last_seen",
    "version",
    "posting_failures",
    "last_posting_failure",
    "last_posting",
    *(f"{p}_{m}" for m in MILESTONES for p in ("first", "last")),
]


def _write(client: Client, rows: list[list[Any]], mark: bool = True) -> None:
    """As the sink writes a batch of summaries (one version): the orders leave their days in the
    rollup's copy by day, and enter their new ones, each day marked dirty."""
    canonicals = sorted({str(row[0]) for row in rows})
    (version,) = {int(row[COLUMNS.index("version")]) for row in rows}
    if mark:
        leave_days(client, canonicals, version)
    client.insert("order_summary", rows, column_names=[*COLUMNS, "is_deleted"])
    if mark:
        enter_days(client, canonicals, version)


def _direct(client: Client, window: Window, scope: list[str], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures read from every order summary in the window, without the rollup."""
    split = window.split or window.since
    filters = "".join(f" AND {term}" for term in scope)
    groups = (
        f"SELECT toUInt8({ORDER_TIME_SQL} >= {{split:DateTime64(6, 'UTC')}}) AS current, "
        f"toDate({ORDER_TIME_SQL}) AS day, "
        f"channel, store_id, {_AGGREGATES} FROM order_summary FINAL WHERE is_deleted = 0{filters} "
        f"AND {ORDER_TIME_SQL} >= {{since:DateTime64(6, 'UTC')}} "
        f"AND {ORDER_TIME_SQL} < {{until:DateTime64(6, 'UTC')}} GROUP BY current, day, channel, store_id"
    )
    sets = ", ".join(f"({', '.join(['current', *keys])})" for keys in GROUPING)
    merged = ", ".join(f"{aggregate} AS {column}" for column, aggregate in _MERGED)
    rows = client.query(
        f"SELECT grouping(day, channel, store_id) AS set, current, day, channel, store_id, {merged} "
        f"FROM ({groups}) GROUP BY GROUPING SETS ({sets})",
        parameters={
            **params,
            "since": window.since,
            "until": window.until,
            "split": split,
            "now_us": _us(NOW),
        },
        settings={"prefer_column_name_to_alias": 1},
    ).named_results()
    return _comparable([row for row in rows])


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    kept = [{k: clean(v) for k, v in row.items() if k != "set"} for row in rows]
    return sorted(kept, key=lambda row: (row["current"], str(row["day"]), row["channel"], row["store_id"]))


def _rolled(client: Client, window: Window, scope: list[str], params: dict[str, Any]) -> list[dict[str, Any]]:
    rollup = DailyRollup(client)
    rollup.refresh()
    found = rollup.merged(window, _us(NOW), scope, params, GROUPING)
    return _comparable([row for rows in found.values() for row in rows])


def _windows() -> list[tuple[str, Window, list[str], dict[str, Any]]]:
    midnight = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    return [
        ("whole days", Window(midnight - timedelta(days=8), midnight, midnight - timedelta(days=4)), [], {}),
        (
            "partial days",
            Window(NOW - timedelta(days=7, hours=5), NOW, NOW - timedelta(days=3, minutes=17)),
            [],
            {},
        ),
        ("no split", Window(NOW - timedelta(days=3, hours=2), NOW - timedelta(hours=7)), [], {}),
        ("within one day", Window(NOW - timedelta(hours=9), NOW - timedelta(hours=2)), [], {}),
        (
            "channel",
            Window(midnight - timedelta(days=6), NOW, midnight - timedelta(days=3)),
            ["channel = {channel:String}"],
            {"channel": "app"},
        ),
        (
            "stores",
            Window(NOW - timedelta(days=9), NOW, NOW - timedelta(days=4, hours=3)),
            ["store_id IN {stores:Array(String)}"],
            {"stores": ["042", "117"]},
        ),
    ]


def _check_every_window(client: Client) -> None:
    for name, window, scope, params in _windows():
        direct = _direct(client, window, scope, params)
        assert direct, name
        assert _rolled(client, window, scope, params) == direct, name


def test_rollup_figures_equal_a_direct_read_before_and_after_orders_change(client: Client) -> None:
    rng = random.Random(1127)
    orders = [[*_summary(rng, f"O-{n:04d}", 10), 0] for n in range(900)]
    _write(client, orders, mark=False)  # a store from before the rollup existed
    lines: list[str] = []
    keep_kpi_rollup(client, lines.append)  # its first start with it: every day computed
    assert lines and lines[-1].startswith(f"KPI rollup built for {DAYS + 1} days")
    _check_every_window(client)

    # Later batches: orders placed on another day (a late acceptance), orders moving on, and
    # orders absorbed into another one (a tombstone, placed at the time of the merge).
    changed = [[*_summary(rng, f"O-{n:04d}", 20), 0] for n in range(0, 900, 7)]
    absorbed = [
        [f"O-{n:04d}", "", "", "", NOW, NOW, 20, 0, None, None, *([None] * 2 * len(MILESTONES)), 1]
        for n in range(3, 900, 11)
    ]
    _write(client, changed + absorbed)
    _check_every_window(client)
    assert DailyRollup(client).refresh() == 0  # the reads recomputed every dirty day already


def test_orders_a_batch_touches_without_a_new_summary_keep_their_day(client: Client) -> None:
    """The sink re-resolves groups whose summary may come out unchanged or not be rewritten at all:
    their rows in the copy by day are deleted and copied back from the latest summary."""
    touched = [f"O-{n:04d}" for n in range(1, 900, 13)]
    leave_days(client, touched, 25)
    enter_days(client, touched, 25)
    _check_every_window(client)


def test_a_write_without_its_dirty_marks_would_be_missed(client: Client) -> None:
    """The negative control: the comparison notices a day the rollup was not told about."""
    rng = random.Random(2026)
    _write(client, [[*_summary(rng, f"P-{n:04d}", 30), 0] for n in range(60)], mark=False)
    _, window, scope, params = _windows()[0]
    assert _rolled(client, window, scope, params) != _direct(client, window, scope, params)
    enter_days(client, [f"P-{n:04d}" for n in range(60)], 30)
    _check_every_window(client)


def test_a_changed_definition_or_sla_rebuilds_the_rollup(client: Client) -> None:
    client.command("ALTER TABLE kpi_daily MODIFY COMMENT 'kpi rollup 0000'")
    lines: list[str] = []
    keep_kpi_rollup(client, lines.append)
    assert lines and lines[-1].startswith("KPI rollup built for")
    again: list[str] = []
    keep_kpi_rollup(client, again.append)
    assert again == []
    _check_every_window(client)
