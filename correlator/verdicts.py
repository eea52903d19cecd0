"""An order's verdict from its timeline: state, stall and state-mismatch anomalies.

Pure functions over ``TimelineEntry`` values, by event time. Every result is built from
minima, maxima and existence, so neither arrival order nor duplicated entries change it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from correlator.model import (
    CANCELLED,
    LIFECYCLE,
    MILESTONES,
    RANK,
    Anomaly,
    OrderVerdict,
    Stall,
    TimelineEntry,
)
from correlator.sla import SlaRule, applicable

# The milestone each milestone cannot happen without. ready and fulfilled need only accepted:
# pay-at-pickup and in-store sales reach them unpaid or unreserved. reconciled needs paid because
# finance reconciles a payment, whatever happened to the goods.
PREREQUISITES: dict[str, str] = {
    "paid": "accepted",
    "reserved": "paid",
    "ready": "accepted",
    "fulfilled": "accepted",
    "returned": "fulfilled",
    "refunded": "returned",
    "reconciled": "paid",
}

POSTING_FAILED = "retail.finance.posting_failed"
POSTED = "retail.finance.posted"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _minute(time_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=time_us)).strftime("%Y-%m-%d %H:%M UTC")


def milestone_times(entries: Sequence[TimelineEntry]) -> dict[str, tuple[int, int]]:
    """First and last event time (µs) of every milestone the entries reach; others are absent."""
    times: dict[str, tuple[int, int]] = {}
    for entry in entries:
        if entry.kind != "milestone" or entry.name not in MILESTONES:
            continue
        first, last = times.get(entry.name, (entry.time_us, entry.time_us))
        times[entry.name] = (min(first, entry.time_us), max(last, entry.time_us))
    return times


def state(times: Mapping[str, tuple[int, int]]) -> str:
    """``cancelled`` once cancelled, else the furthest lifecycle milestone by rank, else ``""``."""
    if CANCELLED in times:
        return CANCELLED
    reached = [m for m in LIFECYCLE if m in times]
    return reached[-1] if reached else ""


def stall(
    times: Mapping[str, tuple[int, int]],
    rules: Sequence[SlaRule],
    now_us: int,
    channel: str = "",
    fulfillment: str = "",
    store_id: str = "",
) -> Stall | None:
    """The stall of an order with these milestone times, or None.

    A rule flags the order when ``from`` is reached (its first time F), no milestone ranked at
    or after ``to`` occurs at or after F, the order is not cancelled and now > F + within. Of the
    flagged rules the one with the furthest ``from`` wins, then the earliest due, then the
    nearest ``to`` — the same choice as ``correlator.sla.stall_columns_sql``.
    """
    if CANCELLED in times:
        return None
    flagged: list[tuple[int, int, int, SlaRule]] = []
    for rule in applicable(rules, channel, fulfillment, store_id):
        if rule.from_ not in times:
            continue
        start = times[rule.from_][0]
        due = start + rule.within_us
        moved_on = any(times[m][1] >= start for m in LIFECYCLE if RANK[m] >= RANK[rule.to] and m in times)
        if not moved_on and now_us > due:
            flagged.append((-RANK[rule.from_], due, RANK[rule.to], rule))
    if not flagged:
        return None
    _, due, _, rule = min(flagged, key=lambda item: item[:3])
    return Stall(rule.from_, rule.to, due, (now_us - due) / 1_000_000, rule.name)


def _missing_prerequisites(
    times: Mapping[str, tuple[int, int]], now_us: int, grace_us: int
) -> list[tuple[int, Anomaly]]:
    found = []
    for milestone, needed in PREREQUISITES.items():
        if milestone in times and needed not in times and now_us - times[milestone][0] > grace_us:
            at = times[milestone][0]
            found.append(
                (at, Anomaly("missing_prerequisite", f"{milestone} at {_minute(at)} without {needed}"))
            )
    return found


def _fields(entry: TimelineEntry) -> dict[str, object]:
    try:
        value = json.loads(entry.detail) if entry.detail else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _failed_postings(entries: Sequence[TimelineEntry]) -> list[tuple[int, Anomaly]]:
    """Failed postings with no posting of the same kind (sale, refund) at or after them."""
    events = [e for e in entries if e.kind == "event" and e.name in (POSTING_FAILED, POSTED)]
    posted = [(e.time_us, _fields(e).get("kind")) for e in events if e.name == POSTED]
    found = []
    for failure in (e for e in events if e.name == POSTING_FAILED):
        fields = _fields(failure)
        kind = fields.get("kind")
        if any(
            time >= failure.time_us and (not kind or not other or other == kind) for time, other in posted
        ):
            continue
        what = f"{kind} posting" if kind else "finance posting"
        detail = f"{what} failed at {_minute(failure.time_us)} with no later posting"
        if fields.get("error"):
            detail += f": {fields['error']}"
        found.append((failure.time_us, Anomaly("posting_failed", detail)))
    return found


def _fulfilled_after_cancel(
    entries: Sequence[TimelineEntry], times: Mapping[str, tuple[int, int]]
) -> list[tuple[int, Anomaly]]:
    if CANCELLED not in times or "fulfilled" not in times:
        return []
    cancelled = times[CANCELLED][0]
    after = [
        e.time_us
        for e in entries
        if e.kind == "milestone" and e.name == "fulfilled" and e.time_us >= cancelled
    ]
    if not after:
        return []
    detail = f"fulfilled at {_minute(min(after))} after cancelled at {_minute(cancelled)}"
    return [(min(after), Anomaly("fulfilled_after_cancel", detail))]


def anomalies(entries: Sequence[TimelineEntry], now_us: int, grace_s: float = 3600) -> tuple[Anomaly, ...]:
    """State mismatches of an order, each once, in timeline order (then by kind and detail).

    ``missing_prerequisite`` once ``grace_s`` has passed since a milestone whose prerequisite
    (``PREREQUISITES``) never arrived; ``posting_failed`` for a failed finance posting not
    followed by a posting; ``fulfilled_after_cancel`` for goods handed over at or after a
    cancellation. A failed payment later confirmed is a retry, not an anomaly.
    """
    times = milestone_times(entries)
    found = [
        *_missing_prerequisites(times, now_us, round(grace_s * 1_000_000)),
        *_failed_postings(entries),
        *_fulfilled_after_cancel(entries, times),
    ]
    return tuple(
        anomaly for _, anomaly in sorted(set(found), key=lambda item: (item[0], item[1].kind, item[1].detail))
    )


def _attribute(entries: Sequence[TimelineEntry], name: str) -> str:
    """The order's channel / fulfillment / store as its entries say: the accepted milestone first."""
    candidates = [
        (entry.name != "accepted", entry.time_us, entry.event_key, value)
        for entry in entries
        if entry.kind == "milestone" and (value := str(getattr(entry, name)))
    ]
    return min(candidates)[3] if candidates else ""


def order_verdict(
    entries: Sequence[TimelineEntry],
    rules: Sequence[SlaRule],
    now_us: int,
    grace_s: float = 3600,
    channel: str = "",
    fulfillment: str = "",
    store_id: str = "",
) -> OrderVerdict:
    """State, stall and anomalies of one order's timeline at ``now_us`` (event time against the clock).

    ``entries`` may come in any order and hold duplicates. An empty ``channel``, ``fulfillment``
    or ``store_id`` is taken from the entries (the accepted milestone's value first), so SLA
    scopes apply even when the caller does not know them.
    """
    times = milestone_times(entries)
    channel = channel or _attribute(entries, "channel")
    fulfillment = fulfillment or _attribute(entries, "fulfillment")
    store_id = store_id or _attribute(entries, "store_id")
    return OrderVerdict(
        state=state(times),
        stalled=stall(times, rules, now_us, channel, fulfillment, store_id),
        anomalies=anomalies(entries, now_us, grace_s),
    )
