"""The current problems of each rule kind, as candidate alert instances, queried from ClickHouse in bulk.

One query per rule and evaluation (``promotion_lag`` adds one per lagging promotion, to name its
stragglers): the work stays in ClickHouse, grouped by the instance's labels, so a million open
orders never cross into Python one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from alerts.config import (
    MismatchParams,
    PostingParams,
    PromotionParams,
    Rule,
    SilenceParams,
    StalledParams,
    VarianceParams,
)
from correlator.catalog import PromotionReader
from correlator.model import LIFECYCLE
from correlator.propagation import PromotionSettings
from correlator.sla import SlaRule, stall_columns_sql, stalled_now_sql
from correlator.summary import FAILED_POSTING_SQL
from correlator.verdicts import PREREQUISITES

LISTED = 50
"""How many affected keys (orders, stores) a candidate carries; the count is always exact."""


@dataclass(frozen=True)
class Candidate:
    """One problem as a rule kind sees it: the labels that identify it and its business context
    (counts, affected keys, times in µs) for the message and the API."""

    labels: Mapping[str, str]
    context: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class AlertSource(Protocol):
    """Where a rule's current problems come from."""

    def candidates(self, rule: Rule, now: float) -> list[Candidate]:
        """The problems of ``rule`` at ``now`` (seconds since the epoch); raises when it cannot tell."""
        ...


class StaticSource:
    """In-memory problems per rule name, for unit tests of the pipeline."""

    def __init__(self) -> None:
        self.problems: dict[str, list[Candidate]] = {}

    def set(self, rule: str, *candidates: Candidate) -> None:
        self.problems[rule] = list(candidates)

    def candidates(self, rule: Rule, now: float) -> list[Candidate]:
        return list(self.problems.get(rule.name, []))


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _since_sql() -> str:
    """The time the order reached the milestone it is stalled after."""
    picks = ", ".join(f"stalled_after = '{m}', first_{m}" for m in LIFECYCLE)
    return f"multiIf({picks}, NULL)"


class ClickHouseSource:
    """Every rule kind over the correlator's tables (``order_summary``, ``promotions``, ``sku_events``,
    ``events``, ``spans``), with the SLA rules and promotion settings the node runs with."""

    def __init__(
        self, client: Client, sla_rules: Sequence[SlaRule], promotion_settings: PromotionSettings
    ) -> None:
        self.client = client
        self.sla_rules = tuple(sla_rules)
        self.promotion_settings = promotion_settings

    def candidates(self, rule: Rule, now: float) -> list[Candidate]:
        params = rule.params
        if isinstance(params, StalledParams):
            return self.stalled_orders(params, now)
        if isinstance(params, PromotionParams):
            return self.promotion_lag(params, now)
        if isinstance(params, MismatchParams):
            return self.state_mismatch(params, now)
        if isinstance(params, PostingParams):
            return self.failed_postings(params, now)
        if isinstance(params, VarianceParams):
            return self.inventory_variance(params, now)
        return self.ingest_silence(params, now)

    def _rows(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.client.query(sql, parameters=parameters).named_results())

    def stalled_orders(self, params: StalledParams, now: float) -> list[Candidate]:
        if not self.sla_rules:
            return []
        firsts = ", ".join(f"first_{m}" for m in LIFECYCLE)
        # Stall columns in a subquery of their own: ClickHouse then analyses their (long)
        # expression once instead of at every use of stalled_after.
        stalled = (
            f"SELECT canonical, store_id, channel, fulfillment, {firsts}, "
            f"{stall_columns_sql(self.sla_rules, 'now')} FROM order_summary FINAL "
            f"WHERE is_deleted = 0 AND {stalled_now_sql('now')} = 1"
        )
        age = " WHERE since >= {oldest:DateTime64(6, 'UTC')}" if params.max_age_s else ""
        rows = self._rows(
            "SELECT store_id, channel, fulfillment, stalled_after, stalled_expected, count() AS n, "
            "argMin(canonical, since) AS oldest, toUnixTimestamp64Micro(min(since)) AS oldest_us, "
            "toUnixTimestamp64Micro(max(since)) AS newest_us, "
            "toUnixTimestamp64Micro(min(stalled_due)) AS first_due_us, "
            f"arrayMap(x -> x.2, groupArraySorted({LISTED})((since, canonical))) AS orders "
            f"FROM (SELECT *, assumeNotNull({_since_sql()}) AS since FROM ({stalled})){age} "
            "GROUP BY store_id, channel, fulfillment, stalled_after, stalled_expected "
            "HAVING n >= {min_orders:UInt32} ORDER BY store_id, channel, fulfillment, stalled_after",
            {"now": _at(now), "oldest": _at(now - (params.max_age_s or 0)), "min_orders": params.min_orders},
        )
        return [
            Candidate(
                {
                    "store_id": str(r["store_id"]),
                    "channel": str(r["channel"]),
                    "fulfillment": str(r["fulfillment"]),
                    "after": str(r["stalled_after"]),
                    "expected": str(r["stalled_expected"]),
                },
                {
                    "count": int(r["n"]),
                    "orders": list(r["orders"]),
                    "oldest": str(r["oldest"]),
                    "oldest_since_us": int(r["oldest_us"]),
                    "newest_since_us": int(r["newest_us"]),
                    "max_overdue_s": round(now - int(r["first_due_us"]) / 1_000_000, 3),
                    "waiting_s": round(now - int(r["newest_us"]) / 1_000_000, 3),
                },
            )
            for r in rows
        ]

    def state_mismatch(self, params: MismatchParams, now: float) -> list[Candidate]:
        cutoff = "{cutoff:DateTime64(6, 'UTC')}"
        checks = [
            (
                f"first_{m} IS NOT NULL AND first_{needed} IS NULL AND first_{m} < {cutoff}",
                f"{m} without {needed}",
                f"first_{m}",
            )
            for m, needed in PREREQUISITES.items()
        ]
        checks.append(("last_fulfilled >= first_cancelled", "fulfilled after cancelled", "last_fulfilled"))
        items = ", ".join(
            f"(if(ifNull({cond}, 0), '{what}', ''), assumeNotNull({at}))" for cond, what, at in checks
        )
        anywhere = " OR ".join(f"ifNull({cond}, 0)" for cond, _, _ in checks)
        age = " WHERE at >= {oldest:DateTime64(6, 'UTC')}" if params.max_age_s else ""
        rows = self._rows(
            "SELECT store_id, mismatch, count() AS n, argMin(canonical, at) AS oldest, "
            "toUnixTimestamp64Micro(min(at)) AS oldest_us, "
            f"arrayMap(x -> x.2, groupArraySorted({LISTED})((at, canonical))) AS orders "
            "FROM (SELECT canonical, store_id, "
            f"arrayJoin(arrayFilter(x -> x.1 != '', [{items}])) AS item, "
            "tupleElement(item, 1) AS mismatch, tupleElement(item, 2) AS at "
            f"FROM order_summary FINAL WHERE is_deleted = 0 AND ({anywhere})){age} "
            "GROUP BY store_id, mismatch HAVING n >= {min_orders:UInt32} ORDER BY store_id, mismatch",
            {
                "cutoff": _at(now - params.grace_s),
                "oldest": _at(now - (params.max_age_s or 0)),
                "min_orders": params.min_orders,
            },
        )
        return [
            Candidate(
                {"store_id": str(r["store_id"]), "mismatch": str(r["mismatch"])},
                {
                    "count": int(r["n"]),
                    "orders": list(r["orders"]),
                    "oldest": str(r["oldest"]),
                    "oldest_since_us": int(r["oldest_us"]),
                    "age_s": round(now - int(r["oldest_us"]) / 1_000_000, 3),
                },
            )
            for r in rows
        ]

    def failed_postings(self, params: PostingParams, now: float) -> list[Candidate]:
        age = " AND last_posting_failure >= {oldest:DateTime64(6, 'UTC')}" if params.max_age_s else ""
        rows = self._rows(
            "SELECT store_id, count() AS n, argMin(canonical, failed) AS oldest, "
            "toUnixTimestamp64Micro(min(failed)) AS oldest_us, "
            f"arrayMap(x -> x.2, groupArraySorted({LISTED})((failed, canonical))) AS orders "
            "FROM (SELECT canonical, store_id, assumeNotNull(last_posting_failure) AS failed "
            f"FROM order_summary FINAL WHERE is_deleted = 0 AND {FAILED_POSTING_SQL} "
            f"AND last_posting_failure <= {{now:DateTime64(6, 'UTC')}}{age}) "
            "GROUP BY store_id HAVING n >= {min_orders:UInt32} ORDER BY store_id",
            {"now": _at(now), "oldest": _at(now - (params.max_age_s or 0)), "min_orders": params.min_orders},
        )
        return [
            Candidate(
                {"store_id": str(r["store_id"])},
                {
                    "count": int(r["n"]),
                    "orders": list(r["orders"]),
                    "oldest": str(r["oldest"]),
                    "oldest_since_us": int(r["oldest_us"]),
                    "age_s": round(now - int(r["oldest_us"]) / 1_000_000, 3),
                },
            )
            for r in rows
        ]

    def inventory_variance(self, params: VarianceParams, now: float) -> list[Candidate]:
        # A system's stock is its latest snapshot plus its adjustments after it, as in
        # correlator.inventory.variance; systems without a snapshot have no figure yet.
        snapshot = "kind = 'snapshot' AND on_hand IS NOT NULL"
        rows = self._rows(
            "SELECT sku, location_id, arraySort(groupArray((system, stock))) AS systems, "
            "max(stock) - min(stock) AS spread FROM ("
            "SELECT sku, location_id, system, "
            f"argMaxIf(assumeNotNull(on_hand), (time, event_key), {snapshot}) AS snapshot_on_hand, "
            f"maxIf(time, {snapshot}) AS snapshot_at, countIf({snapshot}) AS snapshots, "
            "groupArrayIf((time, delta), kind IN ('adjustment', 'adjusted')) AS adjustments, "
            "snapshot_on_hand + arraySum(arrayMap(x -> x.2, "
            "arrayFilter(x -> x.1 > snapshot_at, adjustments))) AS stock "
            "FROM sku_events FINAL WHERE system != '' AND kind IN ('snapshot', 'adjustment', 'adjusted') "
            "AND time <= {now:DateTime64(6, 'UTC')} "
            "GROUP BY sku, location_id, system HAVING snapshots > 0) "
            "GROUP BY sku, location_id HAVING count() >= 2 AND spread > {tolerance:Int64} "
            "ORDER BY sku, location_id",
            {"now": _at(now), "tolerance": params.tolerance},
        )
        return [
            Candidate(
                {"sku": str(r["sku"]), "location_id": str(r["location_id"])},
                {
                    "spread": int(r["spread"]),
                    "systems": {str(name): int(stock) for name, stock in r["systems"]},
                    "tolerance": params.tolerance,
                },
            )
            for r in rows
        ]

    def ingest_silence(self, params: SilenceParams, now: float) -> list[Candidate]:
        # Event time, as every other verdict: a source replaying only old events is still silent.
        heard = (
            "SELECT source, time AS t FROM events WHERE source != '' "
            "AND time > {since:DateTime64(6, 'UTC')} AND time <= {now:DateTime64(6, 'UTC')} "
            "UNION ALL SELECT service_name AS source, toDateTime64(timestamp, 6, 'UTC') AS t FROM spans "
            "WHERE service_name != '' AND timestamp > {since:DateTime64(6, 'UTC')} "
            "AND timestamp <= {now:DateTime64(6, 'UTC')}"
        )
        rows = self._rows(
            "SELECT h.source AS source, toUnixTimestamp64Micro(any(l.last_at)) AS last_us, count() AS before "
            f"FROM ({heard}) AS h INNER JOIN (SELECT source, max(t) AS last_at FROM ({heard}) "
            "GROUP BY source HAVING last_at <= {quiet:DateTime64(6, 'UTC')}) AS l ON h.source = l.source "
            "WHERE toUnixTimestamp64Micro(h.t) >= toUnixTimestamp64Micro(l.last_at) - {window_us:Int64} "
            "GROUP BY h.source HAVING before >= {min_events:UInt32} ORDER BY source",
            {
                "now": _at(now),
                "since": _at(now - params.lookback_s),
                "quiet": _at(now - params.silence_s),
                "window_us": _us(params.window_s),
                "min_events": params.min_events,
            },
        )
        return [
            Candidate(
                {"source": str(r["source"])},
                {
                    "last_us": int(r["last_us"]),
                    "quiet_s": round(now - int(r["last_us"]) / 1_000_000, 3),
                    "events_before": int(r["before"]),
                    "window_s": params.window_s,
                    "silence_s": params.silence_s,
                },
            )
            for r in rows
        ]

    def promotion_lag(self, params: PromotionParams, now: float) -> list[Candidate]:
        # correlator.propagation's figures, computed per promotion in ClickHouse: start =
        # max(published, effective) of the first publication; targets = the published ones (every
        # known store when it named none) plus any that activated; a target's first activation
        # counts. Promotions never published have no start and are left out.
        threshold_s = (
            params.lag_threshold_s
            if params.lag_threshold_s is not None
            else self.promotion_settings.lag_threshold_s
        )
        known = PromotionReader(self.client, self.promotion_settings).known_stores()
        rows = self._rows(
            # The first publication (earliest time, then event key), as correlator.catalog picks it;
            # a tuple, so a NULL effective time is kept rather than skipped.
            "WITH pub AS (SELECT promo_id, argMin(tuple(effective, targets, promo_kind, skus, time), "
            "(time, event_key)) AS first, tupleElement(first, 5) AS published_at, "
            "tupleElement(first, 2) AS pub_targets, tupleElement(first, 3) AS pub_kind, "
            "tupleElement(first, 4) AS pub_skus, "
            "toUnixTimestamp64Micro(greatest(published_at, ifNull(tupleElement(first, 1), published_at))) "
            "AS start_us FROM promotions FINAL WHERE kind = 'published' GROUP BY promo_id "
            "HAVING start_us >= {oldest_us:Int64} AND start_us <= {now_us:Int64}) "
            "SELECT promo_id, any(p.pub_kind) AS promo_kind, any(p.pub_skus) AS skus, "
            "any(p.start_us) AS start, count() AS total, countIf(t.first_us != 0) AS activated_count, "
            "countIf(t.first_us = 0) AS missing_count, "
            f"groupArraySortedIf({LISTED})(t.target, t.first_us = 0) AS missing_listed, "
            f"groupArraySortedIf({LISTED})(t.target, t.first_us != 0 "
            "AND t.first_us - p.start_us > {threshold_us:Int64}) AS late "
            # One row per (promotion, target): expected targets (first_us 0) and activations.
            "FROM (SELECT promo_id, target, max(first_us) AS first_us FROM ("
            "SELECT promo_id, arrayJoin(arrayDistinct(if(empty(pub_targets), {known:Array(String)}, "
            "pub_targets))) AS target, toInt64(0) AS first_us FROM pub "
            "UNION ALL SELECT promo_id, target, min(toUnixTimestamp64Micro(time)) AS first_us "
            "FROM promotions FINAL WHERE kind = 'activated' AND target != '' GROUP BY promo_id, target) "
            "GROUP BY promo_id, target) AS t INNER JOIN pub AS p ON t.promo_id = p.promo_id "
            "GROUP BY promo_id HAVING missing_count > 0 ORDER BY promo_id",
            {
                "known": known,
                "threshold_us": _us(threshold_s),
                "oldest_us": _us(now - params.max_age_s),
                "now_us": _us(now),
            },
        )
        found = []
        for r in rows:
            age_s = now - int(r["start"]) / 1_000_000
            completeness = round(int(r["activated_count"]) / int(r["total"]) * 100, 1)
            if params.completeness_below is not None:
                after_s = params.after_s if params.after_s is not None else threshold_s
                if age_s < after_s or completeness >= params.completeness_below:
                    continue
            elif age_s <= threshold_s:
                continue  # not activated yet, but still within the threshold: pending, not missing
            found.append(
                Candidate(
                    {"promo_id": str(r["promo_id"])},
                    {
                        "kind": str(r["promo_kind"]),
                        "skus": list(r["skus"])[:LISTED],
                        "start_us": int(r["start"]),
                        "age_s": round(age_s, 3),
                        "completeness": completeness,
                        "target_count": int(r["total"]),
                        "missing_count": int(r["missing_count"]),
                        "missing": list(r["missing_listed"]),
                        "late": list(r["late"]),
                        "lag_threshold_s": threshold_s,
                    },
                )
            )
        return found
