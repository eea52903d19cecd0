"""Plain-language summaries of the API's answers: where an order is, since when, what is late,
what to do next — so a store manager gets the answer without reading a timeline.

Pure functions over the API's JSON and a ``now``; no Streamlit here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

OK = "ok"  # on track
LATE = "late"  # stalled past its SLA
ERROR = "error"  # a system failed, or the systems disagree
DONE = "done"  # nothing more is expected

_PAST = {
    "accepted": "accepted",
    "paid": "paid",
    "reserved": "reserved",
    "ready": "ready",
    "fulfilled": "fulfilled",
    "returned": "returned",
    "refunded": "refunded",
    "reconciled": "reconciled",
    "cancelled": "cancelled",
}
_FULFILLED = {
    "bopis": "picked up",
    "ship": "shipped",
    "ship_from_store": "shipped",
    "in_store": "handed over",
}
_NEXT_STEP = {
    "paid": "Next: check the payment with the payment provider.",
    "reserved": "Next: check the stock reservation in the inventory system.",
    "ready": "Next: ask the store team to pick and pack the order.",
    "refunded": "Next: issue the refund at the till or in the ERP.",
    "reconciled": "Next: ask finance to reconcile the order in the ERP.",
}
_SYSTEMS = {
    "pos": "POS",
    "erp": "ERP",
    "wms": "WMS",
    "oms": "OMS",
    "shop": "Web shop",
    "web": "Web shop",
    "app": "App",
    "payments": "Payments",
    "pricing": "Pricing",
}
# Names a system family in a longer service name too ("erp-finance", "pos-store-008"); the other
# heads are ordinary words there ("web-analytics" is not the web shop).
_FAMILIES = ("pos", "erp", "wms", "oms")
_PAYMENT_FAILED = "retail.payment.failed"
_POSTING_FAILED = "retail.finance.posting_failed"


class Summary(NamedTuple):
    """A short text and how it should look: ``OK``, ``LATE``, ``ERROR`` or ``DONE``."""

    level: str
    text: str


def parse_time(text: str) -> datetime:
    """An RFC 3339 time of the API (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def event_time(item: Mapping[str, Any]) -> datetime:
    """An API item's ``time`` for ordering (earliest if it has none). Never sort the strings: the
    API leaves out microseconds when there are none, so ``10:04:00Z`` sorts after ``10:04:00.5Z``."""
    text = item.get("time")
    return parse_time(str(text)) if text else _NO_TIME


def duration_text(seconds: float) -> str:
    """``47 min``, ``2 h 5 min``, ``3 d 4 h``: the two largest units, the last one rounded."""
    minutes = round(abs(seconds) / 60)
    if minutes < 1:
        return "under a minute" if seconds else "0 min"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(round(minutes / 60), 24)  # past a day, to the nearest hour
    return f"{days} d" + (f" {hours} h" if hours else "")


def ago_text(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    return f"{duration_text(seconds)} ago"


def system_name(source: str) -> str:
    """The system behind an event source or a span's service: ``pos/042`` and ``pos-store-042`` are
    POS, ``inventory-service`` is Inventory service."""
    head = source.strip().strip("/").split("/", 1)[0]
    if not head:
        return "An unnamed system"
    words = head.replace("-", " ").replace("_", " ").strip()
    # "erp-finance" is the ERP and "pos-store-008" a POS, as "erp/sap" and "pos/042" are.
    first = words.split(" ", 1)[0].lower()
    known = _SYSTEMS.get(head.lower()) or (_SYSTEMS[first] if first in _FAMILIES else None)
    if known:
        return known
    return words[:1].upper() + words[1:]


def detail_fields(detail: object) -> dict[str, Any]:
    """The compact JSON ``detail`` of a milestone or linked event, as a dict (empty when absent or bad)."""
    if isinstance(detail, dict):
        return detail
    if not isinstance(detail, str) or not detail:
        return {}
    try:
        value = json.loads(detail)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def milestone_word(milestone: str, fulfillment: str = "") -> str:
    """The past participle for a milestone (``paid``); ``fulfilled`` in the words of the fulfillment."""
    if milestone == "fulfilled":
        return _FULFILLED.get(fulfillment, "fulfilled")
    return _PAST.get(milestone, milestone)


def _first_times(milestones: Sequence[Mapping[str, Any]]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for milestone in milestones:
        moment = parse_time(str(milestone["time"]))
        name = str(milestone["milestone"])
        if name not in first or moment < first[name]:
            first[name] = moment
    return first


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _where(event: Mapping[str, Any]) -> str:
    fields = detail_fields(event.get("detail"))
    place = fields.get("location_id") or event.get("store_id")
    return f" at {place}" if place else ""


def _error_sentences(order: Mapping[str, Any], first: Mapping[str, datetime]) -> list[str]:
    """One sentence per failing system (spans) and per failed payment not followed by a payment."""
    sentences: list[str] = []
    seen: set[str] = set()
    linked = [*order.get("milestones", []), *order.get("events", [])]
    for event in sorted(linked, key=event_time):
        if event.get("status") != "error":
            continue
        name = str(event.get("name") or event.get("milestone") or "")
        if name == _POSTING_FAILED:
            continue  # reported by the posting_failed anomaly while no later posting exists
        if name == _PAYMENT_FAILED:
            paid = first.get("paid")
            if paid is not None and paid >= parse_time(str(event["time"])):
                continue  # a failed attempt that a later payment replaced
            reason = detail_fields(event.get("detail")).get("reason") or detail_fields(
                event.get("detail")
            ).get("error")
            sentence = (
                "Payment failed" + (f": {reason}" if reason else "") + " — ask the customer to pay again."
            )
        else:
            who = f"{system_name(str(event.get('source', '')))}{_where(event)}"
            see = " — see trace." if event.get("trace_id") else " — see its event."
            sentence = f"{who} returned errors{see}"
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences


def _anomaly_sentence(anomaly: Mapping[str, Any]) -> str:
    kind, detail = str(anomaly.get("kind", "")), str(anomaly.get("detail", "")).rstrip(".")
    if kind == "posting_failed":
        return f"{_capital(detail)} — ask finance to repost it in the ERP."
    if kind == "missing_prerequisite":
        return f"State mismatch: {detail} — check that system's feed."
    if kind == "fulfilled_after_cancel":
        return f"{_capital(detail)} — check with the store."
    if kind == "identity":
        return f"Identity conflict: {detail}."
    return f"{_capital(detail)}." if detail else f"{_capital(kind)}."


def _next_step(expected: str, fulfillment: str) -> str:
    if expected == "fulfilled":
        if fulfillment == "bopis":
            return "Next: contact the customer about pickup."
        return "Next: check the handover to the carrier."
    return _NEXT_STEP.get(expected, f"Next: check the step to {milestone_word(expected)}.")


def order_summary(order: Mapping[str, Any], now: datetime) -> Summary:
    """Where the order is and since when, what is late (SLA), what failed, and the next step.

    E.g. "Paid 47 min ago, not reserved: SLA 10 min. Inventory service at DC-2 returned
    errors — see trace."
    """
    milestones = list(order.get("milestones") or [])
    first = _first_times(milestones)
    state = str(order.get("state") or "")
    fulfillment = str(order.get("fulfillment") or "")
    stalled = order.get("stalled")
    sentences: list[str] = []
    head = ""
    if state in first:
        head = (
            f"{_capital(milestone_word(state, fulfillment))} {ago_text((now - first[state]).total_seconds())}"
        )
        if state == "cancelled":
            reasons = [detail_fields(m.get("detail")).get("reason") for m in milestones]
            reason = next((str(r) for r in reasons if r), "")
            head += f" ({reason})" if reason else ""
    elif not milestones:
        head = "No milestone yet: the order is known only from linked events"
    if stalled:
        after, expected = str(stalled["after"]), str(stalled["expected"])
        late = f"not {milestone_word(expected, fulfillment)}"
        if after in first:
            sla = (parse_time(str(stalled["due"])) - first[after]).total_seconds()
            late += f": SLA {duration_text(sla)}"
        if after == state or not head:
            sentences.append(f"{head or _capital(milestone_word(after, fulfillment))}, {late}.")
        else:
            since = ago_text((now - first[after]).total_seconds()) if after in first else ""
            sentences += [f"{head}.", f"{_capital(milestone_word(after, fulfillment))} {since}, {late}."]
    elif head:
        sentences.append(f"{head}.")
    errors = _error_sentences(order, first)
    anomalies = [_anomaly_sentence(a) for a in order.get("anomalies") or []]
    sentences += errors + anomalies
    if stalled and not errors:
        sentences.append(_next_step(str(stalled["expected"]), fulfillment))
    elif not stalled and not errors and not anomalies:
        if state == "cancelled":
            sentences.append("Nothing more is expected.")
        elif state == "reconciled":
            sentences.append("The order is complete.")
        else:
            sentences.append("Nothing is late.")
    if errors or anomalies:
        level = ERROR
    elif stalled:
        level = LATE
    elif state in ("cancelled", "reconciled"):
        level = DONE
    else:
        level = OK
    return Summary(level, " ".join(sentences))


def _units(value: int) -> str:
    return f"{value} unit" + ("" if abs(value) == 1 else "s")


def _stock_list(systems: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{system_name(name)} {figures['on_hand']}"
        for name, figures in systems.items()
        if figures.get("on_hand") is not None
    )


def stock_summary(sku: Mapping[str, Any]) -> Summary:
    """Which locations' systems disagree on the SKU's stock, the widest gap first."""
    locations = [loc for loc in sku.get("stock") or [] if loc.get("systems")]
    name = sku.get("sku", "")
    if not locations:
        return Summary(
            OK, f"No stock snapshot for {name} yet: only sales, reservations and returns are known."
        )
    apart = sorted((loc for loc in locations if loc.get("spread")), key=lambda loc: -int(loc["spread"]))
    if not apart:
        where = "location" if len(locations) == 1 else "locations"
        return Summary(OK, f"Every system agrees on the stock of {name} at {len(locations)} {where}.")
    widest = apart[0]
    text = (
        f"At {widest['location_id']} the systems disagree by {_units(int(widest['spread']))}: "
        f"{_stock_list(widest['systems'])}."
    )
    if len(apart) > 1:
        others = ", ".join(f"{loc['location_id']} ({_units(int(loc['spread']))})" for loc in apart[1:])
        text += f" Also apart: {others}."
    pending = [
        f"{system_name(system)} {figures['pending_delta']:+d}"
        for system, figures in widest["systems"].items()
        if figures.get("pending_delta")
    ]
    if pending:
        text += f" Adjusted since the last count: {', '.join(pending)}."
    return Summary(ERROR, text + " Next: count the shelf and correct the system that is wrong.")


def promotion_summary(promotion: Mapping[str, Any], now: datetime) -> Summary:
    """How far a promotion has propagated and which targets still sell at the old price."""
    promo_id = promotion.get("promo_id", "")
    targets = list(promotion.get("targets") or [])
    active = [t for t in targets if t.get("activated_at")]
    start_text = promotion.get("effective_at") or promotion.get("published_at")
    start = parse_time(str(start_text)) if start_text else None
    went = (
        f"went live {ago_text((now - start).total_seconds())}" if start and start <= now else "is scheduled"
    )
    text = (
        f"{promo_id} {went} and is active at {len(active)} of {len(targets)} targets "
        f"({float(promotion.get('completeness') or 0):g}%)."
    )
    missing = [str(t["target"]) for t in targets if t.get("status") == "missing"]
    pending = [str(t["target"]) for t in targets if t.get("status") == "pending"]
    late = [
        f"{t['target']} ({duration_text(float(t['lag_seconds']))})"
        for t in targets
        if t.get("status") == "late"
    ]
    if missing:
        text += f" Still at the old price: {', '.join(missing)}."
    if pending:
        text += f" Not active yet: {', '.join(pending)}."
    if late:
        text += f" Activated late: {', '.join(late)}."
    if missing:
        return Summary(ERROR, text + " Next: push the promotion to those stores again.")
    return Summary(LATE if late or pending else OK, text)
