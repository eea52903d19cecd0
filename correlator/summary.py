"""SQL over ``order_summary`` that several readers share (lists, KPIs, alerts), in one place.

The table is written by ``correlator.sink``; these expressions read one summary row. The one
column that depends on configuration, ``stall_due_us`` (when the order becomes stalled under the
SLA rules), is kept by ``keep_stall_due``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from clickhouse_connect.driver.client import Client

from correlator.model import LIFECYCLE
from correlator.sla import SlaRule, stall_due_sql

# The furthest lifecycle milestone reached, or 'cancelled' once cancelled.
STATE_SQL = (
    "multiIf(first_cancelled IS NOT NULL, 'cancelled', "
    + ", ".join(f"first_{m} IS NOT NULL, '{m}'" for m in reversed(LIFECYCLE))
    + ", '')"
)

# Not cancelled, and not settled: never reconciled, or returned or refunded since its last
# reconciliation (a return reopens a reconciled order until the refund is reconciled too, as the
# returned -> refunded -> reconciled SLA rules expect), so every stalled order is an open one.
OPEN_SQL = (
    "first_cancelled IS NULL AND (last_reconciled IS NULL"
    " OR ifNull(last_returned > last_reconciled, 0) OR ifNull(last_refunded > last_reconciled, 0))"
)

# A posting failed and no posting succeeded at or after it.
FAILED_POSTING_SQL = "posting_failures > 0 AND (last_posting IS NULL OR last_posting < last_posting_failure)"

# When the order was placed (the first thing seen, for orders whose acceptance never arrived).
ORDER_TIME_SQL = "ifNull(first_accepted, first_seen)"


STALL_DUE_COLUMN = "stall_due_us"
_PENDING = "sla rules: recomputing"


def stall_due_comment(client: Client) -> str | None:
    rows = client.query(
        "SELECT comment FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'order_summary' AND name = {name:String}",
        parameters={"name": STALL_DUE_COLUMN},
    ).result_rows
    return str(rows[0][0]) if rows else None


def keep_stall_due(
    client: Client, rules: Sequence[SlaRule], progress: Callable[[str], None] = lambda _line: None
) -> None:
    """Keep ``order_summary.stall_due_us`` equal to ``stall_due_sql(rules)`` on every row.

    It is a MATERIALIZED column: ClickHouse computes it as each summary is written. Its comment
    holds a fingerprint of the rules it was computed with; when the configured rules differ (or
    the column is new), the stored rows are recomputed once, here, before the node serves. The
    fingerprint is written last, so a start interrupted half-way recomputes again.
    """
    expression = stall_due_sql(rules)
    fingerprint = "sla rules " + hashlib.sha256(expression.encode()).hexdigest()[:16]
    found = stall_due_comment(client)
    if found == fingerprint:
        return
    column = f"{STALL_DUE_COLUMN} Nullable(Int64)"
    verb = "MODIFY" if found is not None else "ADD"
    client.command(
        f"ALTER TABLE order_summary {verb} COLUMN {column} MATERIALIZED {expression} COMMENT '{_PENDING}'"
    )
    orders = int(client.query("SELECT count() FROM order_summary").result_rows[0][0])
    if orders:
        why = {None: "new SLA column", _PENDING: "resuming an interrupted recompute"}.get(
            found, "the SLA rules changed"
        )
        progress(f"{why}: computing when each of {orders:,} order summaries is due")
        started = time.monotonic()
        client.command(
            f"ALTER TABLE order_summary MATERIALIZE COLUMN {STALL_DUE_COLUMN}",
            settings={"mutations_sync": 1},
        )
        progress(f"due times of the order summaries computed in {time.monotonic() - started:.1f}s")
    client.command(f"ALTER TABLE order_summary COMMENT COLUMN {STALL_DUE_COLUMN} '{fingerprint}'")
