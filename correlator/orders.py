"""Reading orders: one order's whole story by any of its ids, and filtered lists over the summaries.

A lookup is three primary-key reads (owner of the key, the order's summary, its members'
timeline rows); lists read ``order_summary`` only, with the SLA rules compiled to SQL so a
stalled query over millions of orders is one scan, never a Python loop.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from correlator.model import Anomaly, OrderVerdict, TimelineEntry
from correlator.sla import SlaRule, stall_columns_sql, stalled_now_sql
from correlator.summary import OPEN_SQL, STATE_SQL
from correlator.verdicts import order_verdict

STATUSES = ("stalled", "open", "all")


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def _us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


@dataclass(frozen=True)
class OrderFilter:
    """Filters of ``GET /api/v1/orders``, validated at the edge."""

    status: str = "all"
    store_id: str | None = None
    milestone: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    limit: int = 50
    cursor: str | None = None


def encode_cursor(canonical: str) -> str:
    return base64.urlsafe_b64encode(canonical.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The order id a cursor names; None for anything ``encode_cursor`` cannot have produced."""
    try:
        # validate: without it, characters outside the alphabet are skipped and "!!!" decodes to "".
        decoded = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded or None


class OrderReader:
    def __init__(self, client: Client, rules: Sequence[SlaRule], grace_s: float = 3600.0) -> None:
        self.client = client
        self.rules = tuple(rules)
        self.grace_s = grace_s

    # -- one order -------------------------------------------------------------------------

    def canonical(self, key: str) -> str | None:
        rows = self.client.query(
            "SELECT argMax(canonical, version) FROM key_owner WHERE key = {k:String} GROUP BY key",
            parameters={"k": key},
        ).result_rows
        return str(rows[0][0]) if rows else None

    def lookup(self, key: str, now_us: int, stores: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The order ``key`` belongs to (any alias), with verdicts and drill-down; None if unknown."""
        canonical = self.canonical(key)
        if canonical is None:
            return None
        summary = self.client.query(
            "SELECT members, channel, store_id, fulfillment, identity_issues FROM order_summary FINAL "
            "WHERE canonical = {c:String} AND is_deleted = 0",
            parameters={"c": canonical},
        ).result_rows
        if not summary:
            return None
        members, channel, store_id, fulfillment, issues = summary[0]
        if stores and store_id not in stores:
            return None
        entries = self._entries(list(members))
        verdict = order_verdict(entries, self.rules, now_us, self.grace_s, channel, fulfillment, store_id)
        return {
            "order_id": canonical,
            "aliases": self._aliases(canonical, list(members)),
            "channel": channel,
            "store_id": store_id,
            "fulfillment": fulfillment,
            "state": verdict.state,
            "milestones": _milestones(entries),
            "stalled": _stall_json(verdict),
            "anomalies": [
                {"kind": a.kind, "detail": a.detail}
                for a in (*verdict.anomalies, *_identity_anomalies(list(issues)))
            ],
            "events": _linked(entries),
        }

    def _entries(self, members: list[str]) -> list[TimelineEntry]:
        rows = self.client.query(
            "SELECT order_key, kind, name, toUnixTimestamp64Micro(time), source, event_key, event_type, "
            "trace_id, span_id, store_id, channel, fulfillment, status, detail "
            "FROM timeline WHERE order_key IN {keys:Array(String)} "
            "ORDER BY time, event_key LIMIT 1 BY order_key, event_key, kind, name",
            parameters={"keys": members},
        ).result_rows
        return [
            TimelineEntry(
                order_key=r[0],
                kind=r[1],
                name=r[2],
                time_us=int(r[3]),
                source=r[4],
                event_key=r[5],
                event_type=r[6],
                trace_id=r[7],
                span_id=r[8],
                store_id=r[9],
                channel=r[10],
                fulfillment=r[11],
                status=r[12],
                detail=r[13],
            )
            for r in rows
        ]

    def _aliases(self, canonical: str, members: list[str]) -> list[dict[str, str]]:
        rows = self.client.query(
            "SELECT alias, any(kind) FROM order_links WHERE alias IN {keys:Array(String)} "
            "AND alias != {c:String} GROUP BY alias ORDER BY alias",
            parameters={"keys": members, "c": canonical},
        ).result_rows
        return [{"kind": str(kind), "value": str(alias)} for alias, kind in rows]

    # -- lists -----------------------------------------------------------------------------

    def search(self, where: OrderFilter, now_us: int, stores: tuple[str, ...] = ()) -> dict[str, Any]:
        """``{"total", "items", "next_cursor"}``; total counts every match, not just the page."""
        conditions, parameters = self._conditions(where, now_us, stores)
        clause = " AND ".join(conditions)
        total = self.client.query(
            f"SELECT count() FROM order_summary FINAL WHERE {clause}", parameters=parameters
        ).result_rows[0][0]
        page_conditions = list(conditions)
        after = decode_cursor(where.cursor) if where.cursor else None
        if after is not None:
            page_conditions.append("canonical > {after:String}")
            parameters["after"] = after
        rows = self.client.query(
            f"SELECT canonical, {STATE_SQL} AS state, channel, store_id, fulfillment, "
            "toUnixTimestamp64Micro(first_seen) AS first_seen_us, "
            "toUnixTimestamp64Micro(last_seen) AS last_seen_us, "
            f"{stall_columns_sql(self.rules, 'now')} "
            f"FROM order_summary FINAL WHERE {' AND '.join(page_conditions)} "
            "ORDER BY canonical LIMIT {limit:UInt32}",
            parameters={**parameters, "limit": where.limit},
        ).named_results()
        items = [_summary_item(row, now_us) for row in rows]
        next_cursor = encode_cursor(items[-1]["order_id"]) if len(items) == where.limit else None
        return {"total": int(total), "items": items, "next_cursor": next_cursor}

    def _conditions(
        self, where: OrderFilter, now_us: int, stores: tuple[str, ...]
    ) -> tuple[list[str], dict[str, Any]]:
        conditions = ["is_deleted = 0"]
        parameters: dict[str, Any] = {"now": datetime.fromtimestamp(now_us / 1_000_000, UTC)}
        if where.status == "stalled":
            conditions.append(f"{stalled_now_sql('now')} = 1")
        elif where.status == "open":
            conditions.append(OPEN_SQL)
        if where.store_id:
            conditions.append("store_id = {store:String}")
            parameters["store"] = where.store_id
        if stores:
            conditions.append("store_id IN {stores:Array(String)}")
            parameters["stores"] = list(stores)
        if where.milestone:
            conditions.append(f"{STATE_SQL} = {{milestone:String}}")
            parameters["milestone"] = where.milestone
        if where.since_us is not None:
            conditions.append("first_seen >= {since:DateTime64(6, 'UTC')}")
            parameters["since"] = datetime.fromtimestamp(where.since_us / 1_000_000, UTC)
        if where.until_us is not None:
            conditions.append("first_seen < {until:DateTime64(6, 'UTC')}")
            parameters["until"] = datetime.fromtimestamp(where.until_us / 1_000_000, UTC)
        return conditions, parameters


def _milestones(entries: Sequence[TimelineEntry]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for entry in sorted(entries, key=lambda e: (e.time_us, e.event_key)):
        if entry.kind != "milestone" or (entry.event_key, entry.name) in seen:
            continue
        seen.add((entry.event_key, entry.name))
        out.append(
            {
                "milestone": entry.name,
                "time": iso(entry.time_us),
                "source": entry.source,
                "event_id": entry.event_key,
                "trace_id": entry.trace_id or None,
                "span_id": entry.span_id or None,
                "key": entry.order_key,
                "store_id": entry.store_id or None,
                "status": entry.status,
                "detail": entry.detail or None,
            }
        )
    return out


def _linked(entries: Sequence[TimelineEntry]) -> list[dict[str, Any]]:
    """Events and spans linked to the order that are not milestones: the drill-down."""
    seen: set[str] = set()
    out = []
    for entry in sorted(entries, key=lambda e: (e.time_us, e.event_key)):
        if entry.kind == "milestone" or entry.event_key in seen:
            continue
        seen.add(entry.event_key)
        out.append(
            {
                "kind": entry.kind,
                "name": entry.name,
                "time": iso(entry.time_us),
                "source": entry.source,
                "event_id": entry.event_key,
                "trace_id": entry.trace_id or None,
                "span_id": entry.span_id or None,
                "status": entry.status,
                "detail": entry.detail or None,
            }
        )
    return out


def _stall_json(verdict: OrderVerdict) -> dict[str, Any] | None:
    if verdict.stalled is None:
        return None
    stall = verdict.stalled
    return {
        "after": stall.after,
        "expected": stall.expected,
        "due": iso(stall.due_us),
        "overdue_seconds": round(stall.overdue_seconds, 3),
        "rule": stall.rule,
    }


def _identity_anomalies(issues: list[str]) -> list[Anomaly]:
    return [Anomaly("identity", issue) for issue in issues]


def _summary_item(row: dict[str, Any], now_us: int) -> dict[str, Any]:
    stalled = None
    if row.get("stalled_after"):
        due = row["stalled_due"]
        due_us = _us(due) if isinstance(due, datetime) else int(due)
        stalled = {
            "after": row["stalled_after"],
            "expected": row["stalled_expected"],
            "due": iso(due_us),
            "overdue_seconds": round((now_us - due_us) / 1_000_000, 3),
        }
    return {
        "order_id": row["canonical"],
        "state": row["state"],
        "channel": row["channel"],
        "store_id": row["store_id"],
        "fulfillment": row["fulfillment"],
        "first_seen": iso(int(row["first_seen_us"])),
        "last_seen": iso(int(row["last_seen_us"])),
        "stalled": stalled,
    }
