"""SQL over ``order_summary`` that several readers share (lists, KPIs, alerts), in one place.

The table is written by ``correlator.sink``; these expressions read one summary row.
"""

from __future__ import annotations

from correlator.model import LIFECYCLE

# The furthest lifecycle milestone reached, or 'cancelled' once cancelled.
STATE_SQL = (
    "multiIf(first_cancelled IS NOT NULL, 'cancelled', "
    + ", ".join(f"first_{m} IS NOT NULL, '{m}'" for m in reversed(LIFECYCLE))
    + ", '')"
)

# Neither cancelled nor reconciled: the order still has a step ahead of it.
OPEN_SQL = "first_cancelled IS NULL AND first_reconciled IS NULL"

# A posting failed and no posting succeeded at or after it.
FAILED_POSTING_SQL = "posting_failures > 0 AND (last_posting IS NULL OR last_posting < last_posting_failure)"

# When the order was placed (the first thing seen, for orders whose acceptance never arrived).
ORDER_TIME_SQL = "ifNull(first_accepted, first_seen)"
