"""Alerts benchmark: one evaluation cycle of every rule kind over a large estate.

``python -m bench.alerts --size quick|full`` seeds, straight into a fresh embedded store with
ClickHouse SQL, open orders (a share of them stalled or failing postings), promotions published
to many stores with stragglers, and per-system SKU snapshots; then times ``AlertEngine.evaluate``
(every rule kind, real ClickHouse queries, an in-memory notifier so delivery is not measured)
and reports the cycle time and the memory it takes. Full size is the issue's figure: 1 million
open orders and 1,000 promotions x 500 stores.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.report import Figure, record, show

SIZES = {"quick": (200_000, 200, 500), "full": (1_000_000, 1_000, 500)}

# Open orders: k lifecycle milestones reached (1-4), never reconciled or cancelled; 5% stopped
# at paid long ago (stalled), 1% with a posting failure and no later posting.
_ORDERS = """
INSERT INTO order_summary
SELECT concat('W-', leftPad(toString(number), 9, '0')) AS canonical, [canonical],
    ['web', 'app', 'store', 'marketplace'][number % 4 + 1],
    leftPad(toString(number % {stores:UInt32}), 3, '0'),
    ['bopis', 'ship', 'ship_from_store', 'in_store'][intDiv(number, 4) % 4 + 1],
    base AS first_accepted, base,
    base + toIntervalSecond(60), base + toIntervalSecond(60),
    if(number % 20 = 0, NULL, base + toIntervalSecond(300)),
    if(number % 20 = 0, NULL, base + toIntervalSecond(300)),
    if(number % 20 = 0, NULL, base + toIntervalSecond(600)),
    if(number % 20 = 0, NULL, base + toIntervalSecond(600)),
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    base, base + toIntervalSecond(600),
    0, 0, if(number % 100 = 7, 1, 0), if(number % 100 = 7, base + toIntervalSecond(900), NULL), NULL,
    [], 1, 0
FROM (
    SELECT number,
        -- within the last day, so ready→fulfilled (3d) never fires: only the planted stalls do
        toDateTime64({now:Int64}, 6, 'UTC') - toIntervalSecond(3600 + number % 80000) AS base
    FROM numbers({orders:UInt64})
)
"""

# Each promotion targets every store; 98% of targets activate within the threshold, the rest late or never.
_PROMOTIONS = """
INSERT INTO promotions
SELECT concat('P-', toString(p)), 'published', '', published, NULL,
    arrayMap(s -> leftPad(toString(s), 3, '0'), range({stores:UInt32})), [], 'promotion',
    concat('hq/', toString(p))
FROM (SELECT number AS p, toDateTime64({now:Int64}, 6, 'UTC') - toIntervalSecond(7200) AS published
      FROM numbers({promotions:UInt32}))
"""

_ACTIVATIONS = """
INSERT INTO promotions
SELECT concat('P-', toString(p)), 'activated', leftPad(toString(s), 3, '0'),
    published + toIntervalSecond(if((p + s) % 50 = 1, 3600, 60 + (p * 7 + s) % 300)),
    NULL, [], [], '', concat('pos/', toString(p), '/', toString(s))
FROM (SELECT number AS p, toDateTime64({now:Int64}, 6, 'UTC') - toIntervalSecond(7200) AS published
      FROM numbers({promotions:UInt32}))
ARRAY JOIN range({stores:UInt32}) AS s
WHERE (p + s) % 50 != 0
"""

_STORES = (
    "INSERT INTO stores SELECT leftPad(toString(number), 3, '0'), now64(6) FROM numbers({stores:UInt32})"
)

# Two systems per SKU and store; every 500th pair drifts by 7 units.
_SNAPSHOTS = """
INSERT INTO sku_events
    (sku, location_id, kind, time, event_key, system, qty, on_hand, delta, order_key, reason)
SELECT concat('SKU-', toString(number % 1000)),
    leftPad(toString(intDiv(number, 1000) % {stores:UInt32}), 3, '0'),
    'snapshot', toDateTime64({now:Int64}, 6, 'UTC') - toIntervalSecond(1800),
    concat('snap/', toString(number), '/', sys),
    sys, 0, 20 + if(sys = 'pos' AND number % 500 = 0, 7, 0), 0, '', ''
FROM numbers(100000) ARRAY JOIN ['erp', 'pos'] AS sys
"""

RULES = [
    {
        "name": "stalled",
        "kind": "stalled_orders",
        "for": "0s",
        "severity": "warning",
        "group_by": ["store_id"],
    },
    {"name": "promotion-lag", "kind": "promotion_lag", "for": "0s", "severity": "warning"},
    {"name": "mismatch", "kind": "state_mismatch", "for": "0s", "severity": "warning"},
    {"name": "postings", "kind": "failed_postings", "for": "0s", "severity": "critical"},
    {"name": "variance", "kind": "inventory_variance", "for": "0s", "severity": "warning"},
    {"name": "silence", "kind": "ingest_silence", "for": "0s", "severity": "warning"},
]


def seed(client: object, orders: int, promotions: int, stores: int, now_s: int) -> float:
    started = time.perf_counter()
    parameters = {"orders": orders, "promotions": promotions, "stores": stores, "now": now_s}
    for statement in (_ORDERS, _PROMOTIONS, _ACTIVATIONS, _STORES, _SNAPSHOTS):
        client.command(statement, parameters=parameters)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def run(size: str) -> list[Figure]:
    from alerts.config import parse_alerts
    from alerts.engine import AlertEngine
    from alerts.notify import InMemoryNotifier
    from correlator.propagation import parse_promotions
    from correlator.sla import DEFAULT_SLA
    from correlator.summary import keep_stall_due
    from milepost.config import StorageConfig
    from storage.client import open_client
    from storage.schema import migrate

    orders, promotions, stores = SIZES[size]
    now_s = int(time.time())
    with tempfile.TemporaryDirectory(prefix="milepost-bench-alerts-", ignore_cleanup_errors=True) as tmp:
        client = open_client("", Path(tmp))
        migrate(client, StorageConfig())
        keep_stall_due(client, DEFAULT_SLA)
        seconds = seed(client, orders, promotions, stores, now_s)
        print(f"seeded {orders:,} open orders, {promotions:,} promotions x {stores} stores in {seconds:.1f}s")
        settings = parse_alerts({"rules": RULES, "routes": [{"notify": ["json://127.0.0.1:9/hook"]}]})
        notifier = InMemoryNotifier()
        promotion_settings = parse_promotions(None)
        engine = AlertEngine(client, settings, DEFAULT_SLA, promotion_settings, notifier=notifier)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # The first cycle creates every instance (pending), the next ones fire them and notify.
        # Timed without the memory tracer, which slowed the cycles by 10-20%.
        timings = []
        for cycle in range(3):
            started = time.perf_counter()
            engine.evaluate(now_s + cycle * 15)
            timings.append(time.perf_counter() - started)
        firing = [a for a in engine.current().values() if a.state == "firing"]
        # The same three cycles again from no alert state, traced for their Python memory.
        for table in ("alert_history", "alert_notifications", "alert_attempts"):
            client.command(f"TRUNCATE TABLE {table} SYNC")
        traced = AlertEngine(client, settings, DEFAULT_SLA, promotion_settings, notifier=InMemoryNotifier())
        peaks = []
        for cycle in range(3):
            tracemalloc.start()
            traced.evaluate(now_s + cycle * 15)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        per_rule = {}
        for rule in settings.rules:
            started = time.perf_counter()
            engine.source.candidates(rule, now_s)
            per_rule[rule.kind] = time.perf_counter() - started
        print("per rule kind:", ", ".join(f"{kind} {seconds:.2f}s" for kind, seconds in per_rule.items()))
        client.close()
    scale = f"{orders:,} open orders, {promotions:,} promotions x {stores} stores"
    return [
        Figure(
            "alerts.cycle_s",
            statistics.median(timings),
            "s",
            "≤ 2",
            f"median of 3 cycles, 6 rule kinds, {scale}; {len(firing)} instances firing",
        ),
        Figure(
            "alerts.cycle_python_peak_mib",
            max(peaks) / 2**20,
            "MiB",
            "report",
            "tracemalloc peak of one cycle, over the same 3 cycles run again from no alert state"
            " (Python objects; ClickHouse works in its own memory)",
        ),
        Figure(
            "alerts.process_rss_growth_mib",
            (rss_after - rss_before) / 1024,
            "MiB",
            "report",
            "growth of the process's peak RSS over the cycles (the embedded engine included)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    args = parser.parse_args()
    figures = run(args.size)
    for figure in figures:
        show(figure)
    record(figures, args.size)


if __name__ == "__main__":
    main()
