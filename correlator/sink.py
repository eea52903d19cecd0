"""The correlator's side of every write: stored spans and events become timeline rows, links,
SKU and promotion rows, and the affected orders' identities and summaries are recomputed.

It wraps the collector's sink, so a batch counts as written only when both the raw rows
and everything derived from them are stored; a replayed batch derives the same rows again,
which the tables' keys collapse. The decode workers usually mapped the rows already (their
tables come with the batch, see ``correlator.derived``); the writer maps a batch itself only
when it holds repeats, whose first stored version must win, or rows logged without tables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from collector.sink import RowSink
from correlator.derived import TABLES, Derived, merge, span_tables, tables, touched_keys, unpack
from correlator.identity import Group, Identity, KeyTable
from correlator.mapping import Mapper
from correlator.model import MILESTONES
from correlator.rollup import enter_days, leave_days
from storage.client import StorageUnavailable
from storage.tables import EVENT_IDENTITY, EVENT_SCHEMA, SPAN_IDENTITY, first_of_each


def _first(column: str, expression: str) -> str:
    return f"if(countIf({expression}) > 0, minIf(time, {expression}), NULL) AS first_{column}"


def _last(column: str, expression: str) -> str:
    return f"if(countIf({expression}) > 0, maxIf(time, {expression}), NULL) AS last_{column}"


def _milestone(name: str) -> str:
    condition = f"kind = 'milestone' AND name = '{name}'"
    return f"{_first(name, condition)}, {_last(name, condition)}"


_MILESTONE_AGGREGATES = ",\n".join(_milestone(m) for m in MILESTONES)

# Recomputes the summary of every order in batch_groups from its members' timeline rows.
_SUMMARY_SQL = f"""
INSERT INTO order_summary
SELECT g.canonical, g.members, a.channel, a.store_id, a.fulfillment,
    {", ".join(f"a.first_{m}, a.last_{m}" for m in MILESTONES)},
    a.first_seen, a.last_seen, a.payment_failures, a.postings, a.posting_failures,
    a.last_posting_failure, a.last_posting, g.issues, {{version:UInt64}}, 0
FROM (
    SELECT o.canonical AS canonical,
        argMinIf(t.channel, t.time, t.channel != '') AS channel,
        argMinIf(t.store_id, t.time, t.store_id != '') AS store_id,
        argMinIf(t.fulfillment, t.time, t.fulfillment != '') AS fulfillment,
        {_MILESTONE_AGGREGATES},
        min(t.time) AS first_seen,
        max(t.time) AS last_seen,
        uniqExactIf(t.event_key, t.name = 'retail.payment.failed') AS payment_failures,
        uniqExactIf(t.event_key, t.name = 'retail.finance.posted') AS postings,
        uniqExactIf(t.event_key, t.name = 'retail.finance.posting_failed') AS posting_failures,
        {_last("posting_failure", "name = 'retail.finance.posting_failed'")},
        {_last("posting", "name = 'retail.finance.posted'")}
    FROM timeline AS t
    INNER JOIN batch_owner AS o ON t.order_key = o.key
    WHERE t.order_key IN (SELECT key FROM batch_owner)
    GROUP BY o.canonical
) AS a
INNER JOIN batch_groups AS g ON a.canonical = g.canonical
"""


class CorrelatingSink:
    """A ``RowSink`` that stores raw rows through ``inner``, then everything derived from them."""

    def __init__(self, inner: RowSink, client: Client, mapper: Mapper) -> None:
        self.inner = inner
        self.client = client
        self.mapper = mapper
        self._pending: dict[str, Derived] = {}  # per write token, until the batch settles
        self._seen_stores: set[str] = set()
        self.keys = KeyTable(client, "batch_keys")
        self.identity = Identity(client, self.keys)
        client.command("DROP TABLE IF EXISTS batch_owner")
        client.command("CREATE TABLE batch_owner (key String, canonical String) ENGINE = Memory")
        client.command("DROP TABLE IF EXISTS batch_event_ids")
        client.command("CREATE TABLE batch_event_ids (source String, id String) ENGINE = Memory")
        client.command("DROP TABLE IF EXISTS batch_groups")
        client.command(
            "CREATE TABLE batch_groups (canonical String, members Array(String), issues Array(String)) "
            "ENGINE = Memory"
        )

    def write_spans(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        duplicates = self.inner.write_spans(table, token)
        if derived is not None and not duplicates:
            self._pending[token] = merge(unpack(payload) for payload in derived)
        else:
            # A repeat inside the batch is mapped once: mapped twice, its SKU lines would count twice.
            self._pending[token] = span_tables(self.mapper, first_of_each(table, SPAN_IDENTITY))
        return duplicates

    def write_events(self, table: pa.Table, token: str, derived: Sequence[bytes] | None = None) -> int:
        duplicates = self.inner.write_events(table, token)
        if derived is not None and not duplicates:
            # No repeat, in this batch or stored before: the workers mapped exactly these events.
            self._pending[token] = merge(unpack(payload) for payload in derived)
            return duplicates
        # A repeat inside the batch is mapped once: mapped twice, its SKU lines would count twice.
        unique = first_of_each(table, EVENT_IDENTITY)
        rows = unique.to_pylist()
        if rows and duplicates > table.num_rows - unique.num_rows:  # some were stored by an earlier batch
            rows = self._as_stored(unique, rows)
        self._pending[token] = tables(self.mapper.map_events(rows))
        return duplicates

    def settle(self, token: str) -> None:
        """Store what the batch's spans and events derive and re-resolve the orders they touch, once:
        a batch of both costs one correlation, not two."""
        pending, self._pending = self._pending, {}
        try:
            # Keyed by each write's token: a batch retried after a failure replaces what it had put here.
            self._store(
                merge(d for kind_token, d in pending.items() if kind_token.startswith(f"{token}:")), token
            )
        finally:
            # The raw rows may still be going in beside: the batch is written, or retried, after them.
            self.inner.settle(token)

    def _as_stored(self, table: pa.Table, rows: list[dict[str, object]]) -> list[dict[str, object]]:
        """``rows`` as the events table holds them: ``(source, id)`` is the idempotency key, so a
        repeat whose producer changed its time or data is still the first event, never a new one."""
        try:
            self.client.command("TRUNCATE TABLE batch_event_ids")
            self.client.insert_arrow("batch_event_ids", table.select(EVENT_IDENTITY))
            stored = self.client.query_arrow(
                f"SELECT {', '.join(EVENT_SCHEMA.names)} FROM events "
                "WHERE (source, id) IN (SELECT source, id FROM batch_event_ids) LIMIT 1 BY source, id",
                use_strings=True,
            ).to_pylist()
        except Exception as exc:
            raise StorageUnavailable(f"ClickHouse refused the stored-events read: {exc}") from exc
        first = {(row["source"], row["id"]): row for row in stored}
        return [first.get((row["source"], row["id"]), row) for row in rows]

    def write_quarantine(self, table: pa.Table, token: str) -> None:
        self.inner.write_quarantine(table, token)

    def ping(self) -> bool:
        return self.inner.ping()

    def _store(self, derived: Derived, token: str) -> None:
        try:
            for name in TABLES:
                table = derived.get(name)
                if name == "stores" and table is not None:
                    table = self._unseen_stores(table)
                if table is not None and table.num_rows:
                    self.client.insert_arrow(
                        name, table, settings={"insert_deduplication_token": f"{token}:{name}"}
                    )
            if "stores" in derived:
                self._seen_stores.update(derived["stores"].column("store_id").to_pylist())
            touched = touched_keys(derived)
            if touched:
                self.refresh(touched)
        except StorageUnavailable:
            raise
        except Exception as exc:
            raise StorageUnavailable(f"ClickHouse refused a correlator write: {exc}") from exc

    def _unseen_stores(self, stores: pa.Table) -> pa.Table:
        """The stores this node has not stored since it started, one row each: nearly every batch
        names stores seen before, and only their ids are ever read."""
        known = pa.array(sorted(self._seen_stores), pa.string())
        fresh = stores.filter(pc.invert(pc.is_in(stores.column("store_id"), value_set=known)))
        return first_of_each(fresh, ["store_id"])

    def refresh(self, keys: set[str]) -> list[Group]:
        """Re-resolve the groups of ``keys`` and rewrite their owners and summaries."""
        groups = self.identity.groups(keys)
        version = time.time_ns()
        members = [m for group in groups for m in group.members]
        # A contested alias belongs to no order: its owner is cleared, whatever it was before.
        unowned = [key for group in groups for key in group.unowned]
        self.keys.fill(members + unowned)
        previous = self.client.query(
            "SELECT key, argMax(canonical, version) FROM key_owner "
            f"WHERE key IN {self.keys.subquery} GROUP BY key"
        ).result_rows
        canonicals = {group.canonical for group in groups}
        owner = {m: group.canonical for group in groups for m in group.members}
        changed = [[m, owner[m], version] for m in members] + [[key, "", version] for key in unowned]
        self.client.insert("key_owner", changed, column_names=["key", "canonical", "version"])
        retired = sorted({str(old) for _, old in previous} - canonicals)
        self.client.command("TRUNCATE TABLE batch_owner")
        self.client.insert("batch_owner", [[m, owner[m]] for m in members], column_names=["key", "canonical"])
        self.client.command("TRUNCATE TABLE batch_groups")
        self.client.insert(
            "batch_groups",
            [[g.canonical, list(g.members), list(g.issues)] for g in groups],
            column_names=["canonical", "members", "issues"],
        )
        # The KPI rollup's copy by day: these orders leave the days they were on, enter their new ones.
        rewritten = sorted(canonicals.union(retired))
        leave_days(self.client, rewritten, version)
        self.client.command(_SUMMARY_SQL, parameters={"version": version})
        if retired:
            # An order absorbed into another (a late alias) leaves no summary of its own.
            self.client.command(
                "INSERT INTO order_summary (canonical, first_seen, last_seen, version, is_deleted) "
                "SELECT arrayJoin({retired:Array(String)}), now64(6), now64(6), {version:UInt64}, 1",
                parameters={"retired": retired, "version": version},
            )
        enter_days(self.client, rewritten, version)
        return groups
