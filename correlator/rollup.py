"""Daily KPI rollup: one row per (day, channel, store) of what the executive figures need from the
order summaries of that day, so a KPI window over millions of orders merges thousands of rows.

- ``kpi_daily``: counts, states per lifecycle state, the stall dues still pending (stalled is
  ``due < now``, and now moves), and a quantile state per duration. Several versions of a day
  may be stored; ``kpi_refreshed`` names the one to read.
- ``order_days``: a copy of the order summaries sorted by the day the order was placed, so one
  day is read without a pass over every order. The sink keeps it: ``leave_days`` before it
  rewrites summaries (each order's row on its old day is deleted), ``enter_days`` after (the
  new rows on their days).
- ``kpi_dirty``: every day a row of ``order_days`` lands on, with when (a materialized view), so
  an order moving to another day (its acceptance arrived late, or it was absorbed into another
  order) dirties both.
- Reads first recompute the dirty days (``DailyRollup.refresh``, once per request), so figures
  are never stale;
  days only partly inside a window are aggregated from ``order_days`` in the same query.

The tables are a cache the correlator owns: when their definition or the SLA rules change, they
are rebuilt at start (``keep_kpi_rollup``), with progress.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from correlator.model import MILESTONES
from correlator.summary import (
    FAILED_POSTING_SQL,
    OPEN_SQL,
    ORDER_TIME_SQL,
    STALL_DUE_COLUMN,
    STATE_SQL,
    stall_due_comment,
)

# Durations reported, as (name, from milestone, to milestone).
DURATIONS: tuple[tuple[str, str, str], ...] = (
    ("accepted_to_paid", "accepted", "paid"),
    ("paid_to_reserved", "paid", "reserved"),
    ("reserved_to_ready", "reserved", "ready"),
    ("order_to_ready", "accepted", "ready"),
    ("ready_to_fulfilled", "ready", "fulfilled"),
    ("return_to_refund", "returned", "refunded"),
    ("refund_to_reconciled", "refunded", "reconciled"),
    ("fulfilled_to_reconciled", "fulfilled", "reconciled"),
)
DAY_SQL = f"toDate({ORDER_TIME_SQL})"
KEYS = ("day", "channel", "store_id")


def _seconds(a: str, b: str) -> str:
    return (
        f"(toUnixTimestamp64Micro(assumeNotNull(first_{b})) "
        f"- toUnixTimestamp64Micro(assumeNotNull(first_{a}))) / 1e6"
    )


def _has(a: str, b: str) -> str:
    return f"first_{a} IS NOT NULL AND first_{b} IS NOT NULL AND first_{b} >= first_{a}"


# What one group of order-summary rows contributes, as (column, aggregate over the rows).
_PARTS: tuple[tuple[str, str], ...] = (
    ("orders", "count()"),
    ("open", f"countIf({OPEN_SQL})"),
    ("failed_postings", f"countIf({FAILED_POSTING_SQL})"),
    ("failures_total", "sum(posting_failures)"),
    ("by_state", f"sumMap([{STATE_SQL}], [toUInt64(1)])"),
    ("dues", f"groupArrayIf(assumeNotNull({STALL_DUE_COLUMN}), {STALL_DUE_COLUMN} IS NOT NULL)"),
    *(
        part
        for name, a, b in DURATIONS
        for part in (
            (f"{name}_q", f"quantilesIfState(0.5, 0.95)({_seconds(a, b)}, {_has(a, b)})"),
            (f"{name}_n", f"countIf({_has(a, b)})"),
        )
    ),
)
_PART_COLUMNS = ", ".join(column for column, _ in _PARTS)
_AGGREGATES = ", ".join(f"{aggregate} AS {column}" for column, aggregate in _PARTS)

# The figures of several groups merged, as (column, aggregate over groups); {now} is in µs.
_MERGED: tuple[tuple[str, str], ...] = (
    ("orders", "sum(orders)"),
    ("open", "sum(open)"),
    ("failed_postings", "sum(failed_postings)"),
    ("failures_total", "sum(failures_total)"),
    ("by_channel", "sumMap([channel], [orders])"),
    ("by_state", "sumMap(by_state.1, by_state.2)"),
    ("stalled", "sum(arrayCount(due -> due < {now_us:Int64}, dues))"),
    *(
        part
        for name, _, _ in DURATIONS
        for part in ((f"{name}_q", f"quantilesIfMerge(0.5, 0.95)({name}_q)"), (f"{name}_n", f"sum({name}_n)"))
    ),
)

MERGED_COLUMNS = tuple(column for column, _ in _MERGED)

# The summary columns the figures read, copied to order_days.
_COPIED = ", ".join(
    [
        "canonical",
        "channel",
        "store_id",
        "first_seen",
        "posting_failures",
        "last_posting_failure",
        "last_posting",
        *(f"{p}_{m}" for m in MILESTONES for p in ("first", "last")),
        STALL_DUE_COLUMN,
    ]
)
_ORDER_DAYS = f"""
CREATE TABLE order_days ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (day, canonical)
EMPTY AS SELECT {DAY_SQL} AS day, {_COPIED}, version, is_deleted FROM order_summary
"""


def _copy(version: str, is_deleted: str) -> str:
    """SQL copying order summaries (FINAL) to order_days with these ``version`` and ``is_deleted``."""
    return (
        f"INSERT INTO order_days SELECT {DAY_SQL}, {_COPIED}, {version}, {is_deleted} "
        "FROM order_summary FINAL"
    )


_COPY = _copy("version", "is_deleted")
_OF_ORDERS = " WHERE canonical IN {canonicals:Array(String)}"
_LEAVE = _copy("{version:UInt64} - 1", "1") + _OF_ORDERS
# Each order's latest summary, at the batch's version: it outranks the row leave_days deleted, even
# for an order whose summary this batch left as it was.
_ENTER = _copy("{version:UInt64}", "0") + _OF_ORDERS
_GROUPS = f"SELECT day, channel, store_id, {_AGGREGATES} FROM order_days FINAL"
_DAILY = f"""
CREATE TABLE kpi_daily ENGINE = ReplacingMergeTree(version) ORDER BY ({", ".join(KEYS)})
COMMENT '{{comment}}'
EMPTY AS SELECT *, toUInt64(0) AS version FROM ({_GROUPS} GROUP BY day, channel, store_id)
"""
_REFRESHED = """
CREATE TABLE kpi_refreshed (day Date, version UInt64)
ENGINE = ReplacingMergeTree(version) ORDER BY day
"""
_DIRTY = """
CREATE TABLE IF NOT EXISTS kpi_dirty (day Date, marked_at UInt64)
ENGINE = ReplacingMergeTree(marked_at) ORDER BY day
"""
_MARK = """
CREATE MATERIALIZED VIEW kpi_dirty_marks TO kpi_dirty
AS SELECT DISTINCT day, toUnixTimestamp64Micro(now64(6)) AS marked_at FROM order_days
"""
_DIRTY_DAYS = (
    "SELECT d.day FROM (SELECT day, max(marked_at) AS marked FROM kpi_dirty GROUP BY day) AS d "
    "LEFT JOIN {latest} AS r ON d.day = r.day WHERE d.marked > r.version ORDER BY d.day"
)
_RECOMPUTE = (
    f"INSERT INTO kpi_daily SELECT *, {{version:UInt64}} FROM ({_GROUPS} "
    "WHERE day IN {days:Array(Date)} GROUP BY day, channel, store_id)"
)
_LATEST = "(SELECT day, max(version) AS version FROM kpi_refreshed GROUP BY day)"


def leave_days(client: Client, canonicals: Sequence[str], version: int) -> None:
    """Before the sink rewrites these orders' summaries at ``version``: their rows in order_days
    are deleted (one version earlier, so a row landing on the same day wins)."""
    client.command(_LEAVE, parameters={"canonicals": list(canonicals), "version": version})


def enter_days(client: Client, canonicals: Sequence[str], version: int) -> None:
    """After the sink wrote these orders' summaries at ``version``: copied to their days."""
    client.command(_ENTER, parameters={"canonicals": list(canonicals), "version": version})


def _fingerprint(client: Client) -> str:
    definition = _ORDER_DAYS + _MARK + _DAILY + _REFRESHED + str(stall_due_comment(client))
    return "kpi rollup " + hashlib.sha256(definition.encode()).hexdigest()[:16]


def _table_comment(client: Client, table: str) -> str | None:
    rows = client.query(
        "SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": table},
    ).result_rows
    return str(rows[0][0]) if rows else None


def keep_kpi_rollup(client: Client, progress: Callable[[str], None] = lambda _line: None) -> None:
    """Create the rollup tables, or rebuild them when their definition or the SLA rules changed.

    Run after ``keep_stall_due``; a rebuild computes every day before the node serves.
    """
    client.command(_DIRTY)
    fingerprint = _fingerprint(client)
    if _table_comment(client, "kpi_daily") == fingerprint:
        return
    for table in ("kpi_daily", "kpi_refreshed", "kpi_dirty_marks", "order_days"):
        client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(_ORDER_DAYS)
    client.command(_MARK)
    client.command(_REFRESHED)
    client.command(_DAILY.replace("{comment}", "kpi rollup: building"))
    started = time.monotonic()
    orders = int(client.query("SELECT count() FROM order_summary FINAL").result_rows[0][0])
    if orders:
        progress(f"KPI rollup: copying {orders:,} order summaries by day")
    client.command(_COPY)  # every day with orders lands in kpi_dirty
    days = DailyRollup(client).refresh(progress)
    if days:
        progress(f"KPI rollup built for {days:,} days in {time.monotonic() - started:.1f}s")
    client.command(f"ALTER TABLE kpi_daily MODIFY COMMENT '{fingerprint}'")


@dataclass(frozen=True)
class Window:
    """Orders placed in [since, until), split into previous and current at ``split`` (if given)."""

    since: datetime
    until: datetime
    split: datetime | None = None


def _midnight(moment: datetime) -> bool:
    return moment == datetime.combine(moment.date(), datetime.min.time(), UTC)


class DailyRollup:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._refreshing = threading.Lock()

    def refresh(self, progress: Callable[[str], None] = lambda _line: None) -> int:
        """Recompute every day marked dirty since it was last computed; the number of days."""
        with self._refreshing:
            version = int(self.client.query("SELECT toUnixTimestamp64Micro(now64(6))").result_rows[0][0])
            days = [row[0] for row in self.client.query(_DIRTY_DAYS.format(latest=_LATEST)).result_rows]
            for start in range(0, len(days), 31):
                chunk = days[start : start + 31]
                self.client.command(_RECOMPUTE, parameters={"version": version, "days": chunk})
                computed = [[day, version] for day in chunk]
                self.client.insert("kpi_refreshed", computed, column_names=["day", "version"])
                if len(days) > 31:  # a rebuild: a line per month of days
                    progress(f"KPI rollup: {start + len(chunk):,}/{len(days):,} days computed")
            return len(days)

    def merged(
        self,
        window: Window,
        now_us: int,
        scope: Sequence[str],
        parameters: dict[str, Any],
        grouping: Sequence[tuple[str, ...]],
        columns: Sequence[str] = MERGED_COLUMNS,
    ) -> dict[tuple[str, ...], list[dict[str, Any]]]:
        """The merged figures (``columns``) of the window's orders within ``scope`` (WHERE terms
        over channel and store_id), per grouping set of ``grouping``, each also split by
        ``current``: 1 for orders placed at or after the window's split (all without a split), else 0.

        Every figure is merged once per grouping set, and a duration's quantiles are the costly
        merge: ask each set only for what it shows. Call ``refresh`` first (once per request)."""
        split = window.split or window.since
        full_from = window.since.date() + timedelta(days=0 if _midnight(window.since) else 1)
        params = {
            **parameters,
            "since": window.since,
            "until": window.until,
            "split": split,
            "now_us": now_us,
            "full_from": full_from,
            "full_until": window.until.date(),
            "partial": [m.date() for m in (window.since, split, window.until) if not _midnight(m)],
        }
        whole = "day >= {full_from:Date} AND day < {full_until:Date} AND day NOT IN {partial:Array(Date)}"
        filters = "".join(f" AND {term}" for term in scope)
        split_sql = "{split:DateTime64(6, 'UTC')}"
        stored = (
            f"SELECT toUInt8(toDateTime64(day, 6, 'UTC') >= {split_sql}) AS current, day, channel, store_id, "
            f"{_PART_COLUMNS} FROM kpi_daily INNER JOIN {_LATEST} AS latest USING (day, version) "
            f"WHERE {whole}{filters}"
        )
        # Days only partly in the window, aggregated from their orders; whole-day windows need none.
        read = (
            f"SELECT toUInt8({ORDER_TIME_SQL} >= {split_sql}) AS current, day, channel, store_id, "
            f"{_AGGREGATES} FROM order_days FINAL WHERE day IN {{partial:Array(Date)}}{filters} "
            f"AND {ORDER_TIME_SQL} >= {{since:DateTime64(6, 'UTC')}} "
            f"AND {ORDER_TIME_SQL} < {{until:DateTime64(6, 'UTC')}} GROUP BY current, day, channel, store_id"
        )
        keys = [key for key in KEYS if any(key in keys for keys in grouping)]
        sets = ", ".join(f"({', '.join(['current', *keys])})" for keys in grouping)
        merged = ", ".join(f"{aggregate} AS {column}" for column, aggregate in _MERGED if column in columns)
        which = f"grouping({', '.join(keys)})" if keys else "0"
        rows = self.client.query(
            f"SELECT {which} AS grouping_set, {', '.join(['current', *keys])}, {merged} "
            f"FROM ({f'{stored} UNION ALL {read}' if params['partial'] else stored}) "
            f"GROUP BY GROUPING SETS ({sets})",
            parameters=params,
            settings={"prefer_column_name_to_alias": 1},  # sum(orders) AS orders, then [orders] is the column
        ).named_results()
        # grouping(): one bit per key, from the left, set when the key is aggregated away.
        masks = {
            sum(1 << (len(keys) - 1 - i) for i, key in enumerate(keys) if key not in wanted): tuple(wanted)
            for wanted in grouping
        }
        found: dict[tuple[str, ...], list[dict[str, Any]]] = {tuple(wanted): [] for wanted in grouping}
        for row in rows:
            found[masks[int(row.pop("grouping_set"))]].append(row)
        return found
