"""Executive figures over a time window: order counts, milestone-to-milestone durations, stalled
rate, failed postings, promotion propagation, each as a figure, against the previous window, and
as a daily series. Everything is computed in ClickHouse from the order summaries, through their
daily rollup (``correlator.rollup``) and, for days only partly in the window, directly."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from correlator.catalog import PromotionReader
from correlator.propagation import percentile
from correlator.rollup import DURATIONS, DailyRollup, Window


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _iso(us: int) -> str:
    return _dt(us).isoformat().replace("+00:00", "Z")


# Grouping sets: the headline figures (no keys), the daily series and the store ranking.
_HEADLINE: tuple[str, ...] = ()
_SERIES = ("day", "channel")
_STORES = ("store_id",)
_DETAIL = ("orders", "open", "stalled", "failed_postings", "order_to_ready_q", "order_to_ready_n")


class KpiReader:
    def __init__(self, client: Client, promotions: PromotionReader) -> None:
        """``client`` reads order_summary, whose stall dues follow the node's SLA rules."""
        self.client = client
        self.promotions = promotions
        self.rollup = DailyRollup(client)

    def kpis(
        self,
        since_us: int,
        until_us: int,
        now_us: int,
        channel: str | None = None,
        store_id: str | None = None,
        stores: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The figures of orders placed in [since, until), against the equally long window before."""
        scope, parameters = _scope(channel, store_id, stores)
        both = Window(_dt(since_us - (until_us - since_us)), _dt(until_us), split=_dt(since_us))
        self.rollup.refresh()  # the days writes touched since the last read, before either merge
        headline = self.rollup.merged(both, now_us, scope, parameters, [_HEADLINE])[_HEADLINE]
        periods = {bool(row["current"]): _figures(row) for row in headline}
        window = Window(_dt(since_us), _dt(until_us))
        detail = self.rollup.merged(window, now_us, scope, parameters, [_SERIES, _STORES], _DETAIL)
        return {
            "since": _iso(since_us),
            "until": _iso(until_us),
            "filters": {"channel": channel, "store_id": store_id},
            **periods.get(True, _figures(None)),
            "previous": periods.get(False, _figures(None)),
            "series": _series(detail[_SERIES]),
            "top_stalled_stores": _top_stores(detail[_STORES]),
            "promotions": self._promotions(since_us, until_us, now_us),
        }

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


def _scope(
    channel: str | None, store_id: str | None, stores: tuple[str, ...]
) -> tuple[list[str], dict[str, Any]]:
    """WHERE terms over channel and store_id, and their parameters."""
    scope: list[str] = []
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


def _series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.sort(key=lambda row: (row["day"], row["channel"]))
    return [
        {
            "day": row["day"].isoformat(),
            "channel": row["channel"] or "unknown",
            "orders": int(row["orders"]),
            "stalled": int(row["stalled"]),
            "failed_postings": int(row["failed_postings"]),
            "order_to_ready_p50_seconds": _quantile(row, "order_to_ready", 0),
            "order_to_ready_p95_seconds": _quantile(row, "order_to_ready", 1),
        }
        for row in rows
    ]


def _top_stores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ten stores with the highest share of open orders stalled."""
    ranked = [row for row in rows if row["store_id"] and int(row["open"]) > 0]
    ranked.sort(key=lambda r: (-int(r["stalled"]) / int(r["open"]), -int(r["stalled"]), r["store_id"]))
    return [
        {
            "store_id": row["store_id"],
            "stalled": int(row["stalled"]),
            "open": int(row["open"]),
            "stalled_rate": round(int(row["stalled"]) / int(row["open"]), 4),
        }
        for row in ranked[:10]
    ]


def _quantile(row: dict[str, Any], name: str, index: int) -> float | None:
    return _round(row[f"{name}_q"][index]) if row.get(f"{name}_n") else None


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
                "p50_seconds": _quantile(row, name, 0),
                "p95_seconds": _quantile(row, name, 1),
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
