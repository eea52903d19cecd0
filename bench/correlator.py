"""Correlator benchmark: order lookups, stalled lists and KPIs over millions of seeded orders.

``python -m bench.correlator --size quick|full`` seeds orders straight into the embedded store
with ClickHouse SQL (the same rows the correlator writes: timeline, alias links, key owners and
order summaries), then starts a real node on that store and measures through its HTTP API,
beside a bare primary-key SELECT of the same rows measured on the same store just before.

Seeded orders follow a fixed pattern so answers can be checked: 80% run the whole lifecycle, 10%
stop after ``paid`` (stalled: paid→reserved 10m), 5% stop after ``reserved``, 5% are cancelled.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure, record, show

SIZES = {"quick": 1_000_000, "full": 10_000_000}
# Lookups per round, and rounds: a lookup figure is the median of its rounds' percentiles, so one
# burst of the shared machine's noise (or of a background merge) moves one round, not the figure.
LOOKUPS = {"quick": 300, "full": 500}
ROUNDS = {"quick": 1, "full": 3}
CHUNK = 1_000_000
MILESTONES = ("accepted", "paid", "reserved", "ready", "fulfilled", "reconciled")
OFFSETS = (0, 60, 300, 1800, 7200, 86400)

# Per order n: how many lifecycle milestones it reached (k) and whether it was cancelled.
_ORDER = """
SELECT number AS n,
    concat('W-', leftPad(toString(n), 9, '0')) AS canonical,
    multiIf(n % 100 < 80, 6, n % 100 < 90, 2, n % 100 < 95, 3, 1) AS k,
    n % 100 >= 95 AS cancelled,
    toDateTime64({now:Int64}, 6, 'UTC') - toIntervalSecond((n * 2593) % (30 * 86400) + 86400) AS base,
    leftPad(toString(n % 200), 3, '0') AS store_id,
    ['web', 'app', 'store', 'marketplace'][n % 4 + 1] AS channel,
    ['bopis', 'ship', 'ship_from_store', 'in_store'][intDiv(n, 4) % 4 + 1] AS fulfillment
FROM numbers({start:UInt64}, {count:UInt64})
"""

_TIMELINE = f"""
INSERT INTO timeline (order_key, kind, name, time, source, event_key, event_type, store_id, channel,
    fulfillment, status, detail)
SELECT canonical, 'milestone', m.1, base + toIntervalSecond(m.2), 'oms',
    concat('oms/', canonical, '/', m.1), concat('retail.', m.1), store_id, channel, fulfillment, 'ok', ''
FROM ({_ORDER})
ARRAY JOIN arrayConcat(
    arraySlice(arrayZip({list(MILESTONES)}, {list(OFFSETS)}), 1, k),
    if(cancelled, [('cancelled', 120)], [])
) AS m
"""

_LINKS = f"""
INSERT INTO order_links (alias, order_key, kind, time, event_key)
SELECT concat(a.1, substring(canonical, 3)), canonical, a.2, base, concat('oms/', canonical)
FROM ({_ORDER})
ARRAY JOIN [('R-', 'pos_receipt'), ('E-', 'erp_doc'), ('P-', 'pickup_code')] AS a
"""

_OWNERS = f"""
INSERT INTO key_owner (key, canonical, version)
SELECT concat(p, substring(canonical, 3)), canonical, 1
FROM ({_ORDER})
ARRAY JOIN ['W-', 'R-', 'E-', 'P-'] AS p
"""


def _first_last(index: int, name: str) -> str:
    offset = OFFSETS[index]
    value = f"if(k >= {index + 1}, base + toIntervalSecond({offset}), NULL)"
    return f"{value} AS first_{name}, {value} AS last_{name}"


_SUMMARY = f"""
INSERT INTO order_summary
SELECT canonical,
    arrayMap(p -> concat(p, substring(canonical, 3)), ['W-', 'R-', 'E-', 'P-']) AS members,
    channel, store_id, fulfillment,
    {", ".join(_first_last(i, m) for i, m in enumerate(MILESTONES) if m != "reconciled")},
    NULL AS first_returned, NULL AS last_returned, NULL AS first_refunded, NULL AS last_refunded,
    {_first_last(5, "reconciled")},
    if(cancelled, base + toIntervalSecond(120), NULL) AS first_cancelled,
    if(cancelled, base + toIntervalSecond(120), NULL) AS last_cancelled,
    base AS first_seen,
    base + toIntervalSecond(if(cancelled, 120, [0, 60, 300, 1800, 7200, 86400][k])) AS last_seen,
    0, 0, 0, NULL, NULL, [], 1, 0
FROM ({_ORDER})
"""


def seed(data_dir: Path, orders: int, now_s: int) -> dict[str, Any]:
    """Seed ``orders`` orders into a fresh embedded store (runs in its own process)."""
    from correlator.sla import DEFAULT_SLA
    from correlator.summary import keep_stall_due
    from milepost.config import StorageConfig
    from storage.client import open_client
    from storage.schema import migrate

    client = open_client("", data_dir)
    migrate(client, StorageConfig())
    keep_stall_due(client, DEFAULT_SLA)  # as a node's first start does; summaries then get it on insert
    started = time.perf_counter()
    for start in range(0, orders, CHUNK):
        count = min(CHUNK, orders - start)
        for statement in (_TIMELINE, _LINKS, _OWNERS, _SUMMARY):
            client.command(statement, parameters={"start": start, "count": count, "now": now_s})
        done = start + count
        rate = done / (time.perf_counter() - started)
        print(f"seeded {done:,}/{orders:,} orders ({rate:,.0f} orders/s)", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    rows = sum(
        int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
        for table in ("timeline", "order_links", "order_links_reverse", "key_owner", "order_summary")
    )
    size = "full" if orders >= 5_000_000 else "quick"
    ceiling = [_bare_lookups(client, orders, LOOKUPS[size], round_) for round_ in range(ROUNDS[size])]
    client.close()
    return {"seconds": seconds, "rows": rows, "ceiling_ms": ceiling}


def _bare_lookups(client: Any, orders: int, count: int, round_: int) -> list[float]:
    """The floor under an order lookup: the same three primary-key reads, without HTTP or Python."""
    rng = random.Random(7 + round_)
    timings = []
    for _ in range(count):
        n = rng.randrange(orders)
        started = time.perf_counter()
        client.query("SELECT canonical FROM key_owner WHERE key = {k:String}", parameters={"k": f"R-{n:09d}"})
        client.query(
            "SELECT members FROM order_summary FINAL WHERE canonical = {c:String}",
            parameters={"c": f"W-{n:09d}"},
        )
        client.query(
            "SELECT * FROM timeline WHERE order_key IN {keys:Array(String)}",
            parameters={"keys": [f"{p}{n:09d}" for p in ("W-", "R-", "E-", "P-")]},
        )
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def _median_percentile(rounds: list[list[float]], p: float) -> float:
    return statistics.median(_percentile(timings, p) for timings in rounds)


def _rounds_note(rounds: list[list[float]], p: float) -> str:
    if len(rounds) == 1:
        return f"{len(rounds[0])} lookups"
    each = ", ".join(f"{_percentile(timings, p):.1f}" for timings in rounds)
    return f"median of {len(rounds)} rounds of {len(rounds[0])} lookups (p{p:g} per round: {each} ms)"


def _expected_state(n: int) -> str:
    bucket = n % 100
    if bucket >= 95:
        return "cancelled"
    return "reconciled" if bucket < 80 else ("paid" if bucket < 90 else "reserved")


def _lookups(client: httpx.Client, orders: int, count: int, prefix: str, round_: int = 0) -> list[float]:
    rng = random.Random((11 if prefix == "W-" else 13) + 100 * round_)
    timings = []
    for _ in range(count):
        n = rng.randrange(orders)
        started = time.perf_counter()
        answer = client.get(f"/api/v1/orders/{prefix}{n:09d}")
        timings.append((time.perf_counter() - started) * 1000)
        body = answer.json()
        if (
            answer.status_code != 200
            or body["order_id"] != f"W-{n:09d}"
            or body["state"] != _expected_state(n)
        ):
            raise AssertionError(f"wrong answer for {prefix}{n:09d}: {answer.status_code} {str(body)[:300]}")
    return timings


def _timed(client: httpx.Client, path: str, params: dict[str, str], runs: int = 3) -> tuple[float, Any]:
    timings = []
    body: Any = None
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path, params=params, timeout=120)
        timings.append(time.perf_counter() - started)
        answer.raise_for_status()
        body = answer.json()
    return statistics.median(timings), body


def _after_a_write(client: httpx.Client, at_s: int, days: dict[str, str], before: int) -> float:
    """Seconds of the first KPI read that counts a new order placed on a day of the window: that
    read recomputed the day's rollup first, as every read on a node taking live traffic does."""
    order_id = f"BENCH-{at_s}"
    event = {
        "specversion": "1.0",
        "id": order_id,
        "source": "oms/bench",
        "type": "retail.order.accepted",
        "time": _iso(at_s),
        "datacontenttype": "application/json",
        "data": {"order_id": order_id, "channel": "web", "store_id": "001", "fulfillment": "ship"},
    }
    headers = {"content-type": "application/cloudevents-batch+json"}
    client.post("/v1/events", content=json.dumps([event]), headers=headers).raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seconds, kpis = _timed(client, "/api/v1/kpis", days, runs=1)
        if kpis["orders"]["total"] == before + 1:
            return seconds
        time.sleep(0.05)
    raise RuntimeError(f"order {order_id} was acknowledged but not counted within 60 s")


def run(size: str) -> list[Figure]:
    from tests.support import NodeProcess

    orders = SIZES[size]
    count, rounds = LOOKUPS[size], ROUNDS[size]
    now_s = int(time.time())
    with tempfile.TemporaryDirectory(prefix="milepost-bench-correlator-") as tmp:
        data_dir = Path(tmp) / "data"
        seeded = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.correlator",
                "--seed-into",
                str(data_dir),
                "--orders",
                str(orders),
                "--now",
                str(now_s),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        sys.stderr.write(seeded.stderr)
        facts = json.loads(seeded.stdout.strip().splitlines()[-1])
        node = NodeProcess(data_dir).start(timeout=300)
        try:
            with httpx.Client(base_url=node.url, timeout=30) as client:
                _lookups(client, orders, 20, "W-")  # warm the caches the way a running node has them
                by_id: list[list[float]] = []
                by_alias: list[list[float]] = []
                for round_ in range(rounds):
                    by_id.append(_lookups(client, orders, count, "W-", round_))
                    by_alias.append(_lookups(client, orders, count, "R-", round_))
                stalled_s, stalled = _timed(client, "/api/v1/orders", {"status": "stalled", "limit": "50"})
                kpi_s, kpis = _timed(client, "/api/v1/kpis", {"since": _iso(now_s - 30 * 86400)})
                midnight = now_s - now_s % 86400  # the dashboard asks for whole UTC days
                days = {"since": _iso(midnight - 30 * 86400), "until": _iso(midnight)}
                days_s, by_days = _timed(client, "/api/v1/kpis", days)
                # Three writes, each to another day of the window, each timed by its first read.
                before = by_days["orders"]["total"]
                written = [
                    _after_a_write(client, midnight - (2 + n) * 86400 + 3600, days, before + n)
                    for n in range(3)
                ]
        finally:
            node.stop()
    # paid but never reserved (paid→reserved 10m) and reserved but never ready (reserved→ready 2h)
    expected_stalled = sum(1 for n in range(orders) if 80 <= n % 100 < 95)
    ceiling = facts["ceiling_ms"]
    figures = [
        Figure(
            "correlator.seed.rows_per_s",
            facts["rows"] / facts["seconds"],
            "rows/s",
            "report",
            f"{orders:,} orders, {facts['rows']:,} rows (timeline, links, owners, summaries) by SQL",
        ),
        Figure(
            "correlator.lookup.canonical_p50_ms",
            _median_percentile(by_id, 50),
            "ms",
            "report",
            f"GET /api/v1/orders/{{id}} at {orders:,} orders; {_rounds_note(by_id, 50)}",
            _median_percentile(by_id, 50) / _median_percentile(ceiling, 50),
        ),
        Figure(
            "correlator.lookup.canonical_p99_ms",
            _median_percentile(by_id, 99),
            "ms",
            "≤ 50",
            f"keep-alive client; {_rounds_note(by_id, 99)}",
            _median_percentile(by_id, 99) / _median_percentile(ceiling, 99),
        ),
        Figure(
            "correlator.lookup.alias_p50_ms",
            _median_percentile(by_alias, 50),
            "ms",
            "report",
            f"GET /api/v1/orders/{{pos receipt}}; {_rounds_note(by_alias, 50)}",
            _median_percentile(by_alias, 50) / _median_percentile(ceiling, 50),
        ),
        Figure(
            "correlator.lookup.alias_p99_ms",
            _median_percentile(by_alias, 99),
            "ms",
            "≤ 50",
            _rounds_note(by_alias, 99),
            _median_percentile(by_alias, 99) / _median_percentile(ceiling, 99),
        ),
        Figure(
            "correlator.lookup.bare_pk_p50_ms",
            _median_percentile(ceiling, 50),
            "ms",
            "report",
            "the same three primary-key SELECTs in-process, no HTTP (the ceiling); "
            + _rounds_note(ceiling, 50),
        ),
        Figure(
            "correlator.lookup.bare_pk_p99_ms",
            _median_percentile(ceiling, 99),
            "ms",
            "report",
            _rounds_note(ceiling, 99),
        ),
        Figure(
            "correlator.orders.stalled_list_s",
            stalled_s,
            "s",
            "≤ 1",
            f"status=stalled limit=50 with total ({stalled['total']:,}; expected {expected_stalled:,})",
        ),
        Figure(
            "correlator.kpis.30_days_s",
            kpi_s,
            "s",
            "≤ 1",
            f"{kpis['orders']['total']:,} orders in window; since now - 30 days, until now: three days "
            "only partly in the window (and the previous one) are read from order_days",
        ),
        Figure(
            "correlator.kpis.30_whole_days_s",
            days_s,
            "s",
            "≤ 1",
            f"{by_days['orders']['total']:,} orders; 30 whole UTC days, as the dashboard asks",
        ),
        Figure(
            "correlator.kpis.30_whole_days_after_a_write_s",
            statistics.median(written),
            "s",
            "≤ 1",
            "the same, first read after one order of the window was written: the read recomputes "
            "that day of the rollup from the order summaries copied by day; median of 3 such writes"
            f" to 3 days ({', '.join(f'{seconds:.2f}' for seconds in written)} s)",
        ),
    ]
    if stalled["total"] != expected_stalled:
        figures[7] = Figure(
            figures[7].name, None, "s", "≤ 1", f"wrong total {stalled['total']} (expected {expected_stalled})"
        )
    return figures


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--seed-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--orders", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--now", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_into is not None:
        print(json.dumps(seed(args.seed_into, args.orders, args.now)))
        return
    figures = run(args.size)
    for figure in figures:
        show(figure)
    record(figures, args.size)


if __name__ == "__main__":
    main()
