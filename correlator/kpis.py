"""Executive figures over a time window: order counts, milestone-to-milestone durations, stalled
rate, failed postings, promotion propagation, each as a figure, against the previous window, and
as a daily series. Everything is computed in ClickHouse from the order summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from correlator.catalog import PromotionReader
from correlator.propagation import percentile
from correlator.sla import SlaRule, stalled_now_sql
from correlator.summary import FAILED_POSTING_SQL, OPEN_SQL, ORDER_TIME_SQL, STATE_SQL

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


def _seconds(a: str, b: str) -> str:
    return (
        f"(toUnixTimestamp64Micro(assumeNotNull(first_{b})) "
        f"- toUnixTimestamp64Micro(assumeNotNull(first_{a}))) / 1e6"
    )


def _has(a: str, b: str) -> str:
    return f"first_{a} IS NOT NULL AND first_{b} IS NOT NULL AND first_{b} >= first_{a}"


def _duration_columns() -> str:
    return ", ".join(
        f"quantilesIf(0.5, 0.95)({_seconds(a, b)}, {_has(a, b)}) AS {name}_q, "
        f"countIf({_has(a, b)}) AS {name}_n"
        for name, a, b in DURATIONS
    )


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _iso(us: int) -> str:
    return _dt(us).isoformat().replace("+00:00", "Z")


class KpiReader:
    def __init__(self, client: Client, rules: Sequence[SlaRule], promotions: PromotionReader) -> None:
        self.client = client
        self.rules = tuple(rules)
        self.promotions = promotions
        self.stalled = stalled_now_sql("now")  # order_summary keeps each order's due under the rules

    def kpis(
        self,
        since_us: int,
        until_us: int,
        now_us: int,
        channel: str | None = None,
        store_id: str | None = None,
        stores: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        scope, parameters = self._scope(channel, store_id, stores)
        parameters["now"] = _dt(now_us)
        current, previous = self._periods(since_us, until_us, scope, parameters)
        return {
            "since": _iso(since_us),
            "until": _iso(until_us),
            "filters": {"channel": channel, "store_id": store_id},
            **current,
            "previous": previous,
            "series": self._series(since_us, until_us, scope, parameters),
            "top_stalled_stores": self._top_stores(since_us, until_us, scope, parameters),
            "promotions": self._promotions(since_us, until_us, now_us),
        }

    def _scope(
        self, channel: str | None, store_id: str | None, stores: tuple[str, ...]
    ) -> tuple[list[str], dict[str, Any]]:
        scope = ["is_deleted = 0"]
        parameters: dict[str, Any] = {}
        if channel:
            scope.append("channel = {channel:String}")
            parameters["channel"] = channel
        if store_id:
            scope.append("store_id = {store:String}")
            parameters["store"] = store_id
        if stores:
            scope.append("store_id IN {stores:Array(String)}")
            parameters["stores"] = list(stores)
        return scope, parameters

    def _window(
        self, since_us: int, until_us: int, scope: list[str], parameters: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """The query parameters and WHERE clause of orders placed in [since, until) within ``scope``."""
        params = {**parameters, "since": _dt(since_us), "until": _dt(until_us)}
        since = f"{ORDER_TIME_SQL} >= {{since:DateTime64(6, 'UTC')}}"
        until = f"{ORDER_TIME_SQL} < {{until:DateTime64(6, 'UTC')}}"
        return params, " AND ".join([*scope, since, until])

    def _periods(
        self, since_us: int, until_us: int, scope: list[str], parameters: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Headline figures of the window and of the equally long window before it, in one scan."""
        params, where = self._window(since_us - (until_us - since_us), until_us, scope, parameters)
        params["split"] = _dt(since_us)
        stalled = self.stalled
        rows = self.client.query(
            f"SELECT {ORDER_TIME_SQL} >= {{split:DateTime64(6, 'UTC')}} AS current, "
            f"count() AS orders, countIf({OPEN_SQL}) AS open, countIf(({stalled}) = 1) AS stalled, "
            f"countIf({FAILED_POSTING_SQL}) AS failed_postings, sum(posting_failures) AS failures_total, "
            "sumMap([channel], [toUInt64(1)]) AS by_channel, "
            f"sumMap([{STATE_SQL}], [toUInt64(1)]) AS by_state, "
            f"{_duration_columns()} FROM order_summary FINAL WHERE {where} GROUP BY current",
            parameters=params,
        ).named_results()
        found = {bool(row["current"]): _figures(row) for row in rows}
        return found.get(True, _figures(None)), found.get(False, _figures(None))

    def _series(
        self, since_us: int, until_us: int, scope: list[str], parameters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        params, where = self._window(since_us, until_us, scope, parameters)
        stalled = self.stalled
        rows = self.client.query(
            f"SELECT toDate({ORDER_TIME_SQL}) AS day, channel, count() AS orders, "
            f"countIf(({stalled}) = 1) AS stalled, "
            f"countIf({FAILED_POSTING_SQL}) AS failed_postings, "
            f"quantilesIf(0.5, 0.95)({_seconds('accepted', 'ready')}, {_has('accepted', 'ready')}) "
            "AS ready_q, "
            f"countIf({_has('accepted', 'ready')}) AS ready_n "
            f"FROM order_summary FINAL WHERE {where} GROUP BY day, channel ORDER BY day, channel",
            parameters=params,
        ).named_results()
        return [
            {
                "day": row["day"].isoformat(),
                "channel": row["channel"] or "unknown",
                "orders": int(row["orders"]),
                "stalled": int(row["stalled"]),
                "failed_postings": int(row["failed_postings"]),
                "order_to_ready_p50_seconds": _round(row["ready_q"][0]) if row["ready_n"] else None,
                "order_to_ready_p95_seconds": _round(row["ready_q"][1]) if row["ready_n"] else None,
            }
            for row in rows
        ]

    def _top_stores(
        self, since_us: int, until_us: int, scope: list[str], parameters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        params, where = self._window(since_us, until_us, scope, parameters)
        stalled = self.stalled
        rows = self.client.query(
            f"SELECT store_id, countIf(({stalled}) = 1) AS stalled, countIf({OPEN_SQL}) AS open "
            f"FROM order_summary FINAL WHERE {where} AND store_id != '' GROUP BY store_id "
            "HAVING open > 0 ORDER BY stalled / open DESC, stalled DESC, store_id LIMIT 10",
            parameters=params,
        ).result_rows
        return [
            {"store_id": s, "stalled": int(n), "open": int(o), "stalled_rate": round(int(n) / int(o), 4)}
            for s, n, o in rows
        ]

    def _promotions(self, since_us: int, until_us: int, now_us: int) -> dict[str, Any]:
        summaries = [
            s
            for s in self.promotions.promotions(now_us)
            if s["published_at"] is None or _iso(since_us) <= s["published_at"] < _iso(until_us)
        ]
        completeness = [float(s["completeness"]) for s in summaries]
        lags = [float(s["lag_p95_seconds"]) for s in summaries if s["lag_p95_seconds"] is not None]
        return {
            "count": len(summaries),
            "completeness_avg": round(sum(completeness) / len(completeness), 1) if completeness else None,
            "lag_p95_seconds_median": percentile(lags, 50),
            "with_stragglers": sum(1 for s in summaries if s["straggler_count"]),
        }


def _figures(row: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON of one period's headline figures (all zero for a period without orders)."""
    row = row or {"orders": 0, "open": 0, "stalled": 0, "failed_postings": 0, "failures_total": 0}
    open_orders = int(row["open"])
    channels = row.get("by_channel", ([], []))
    states = row.get("by_state", ([], []))
    return {
        "orders": {
            "total": int(row["orders"]),
            "by_channel": {str(c or "unknown"): int(n) for c, n in zip(*channels, strict=True)},
            "by_state": {str(s or "unknown"): int(n) for s, n in zip(*states, strict=True)},
        },
        "durations": {
            name: {
                "p50_seconds": _round(row[f"{name}_q"][0]) if row.get(f"{name}_n") else None,
                "p95_seconds": _round(row[f"{name}_q"][1]) if row.get(f"{name}_n") else None,
                "count": int(row.get(f"{name}_n", 0)),
            }
            for name, _, _ in DURATIONS
        },
        "stalled": {
            "count": int(row["stalled"]),
            "open": open_orders,
            "rate": round(int(row["stalled"]) / open_orders, 4) if open_orders else 0.0,
        },
        "failed_postings": {"orders": int(row["failed_postings"]), "failures": int(row["failures_total"])},
    }


def _round(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 3)
