"""Milestone mapping: stored span and event rows -> timeline entries, aliases, SKU entries, promotions.

Rows are ``table.to_pylist()`` rows of ``storage.tables.EVENT_SCHEMA`` / ``SPAN_SCHEMA``. User rules
(config ``mapping:``, see ``correlator.rules``) are tried first and the first matching rule decides;
otherwise the built-in catalogue applies (SPEC "CloudEvents types" and "Span attributes").

Order keys are kept as the producer wrote them (a return may name a POS receipt): identity
resolution happens later, from the ``AliasLink`` rows produced here. Per row the work is one
``json.loads`` (events), dictionary look-ups and the frozen rows themselves; rule regexes are
compiled at start and span-name matches are cached.

Spans under the built-in mapping alone are mapped column by column instead
(``correlator.span_columns``); ``_builtin_span`` here is the same mapping for the spans no user
rule claims, and a test holds the two to each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.contracts import parse_rfc3339
from correlator.model import (
    CHANNELS,
    MILESTONES,
    AliasLink,
    Mapped,
    PromotionEntry,
    SkuEntry,
    TimelineEntry,
)
from correlator.rules import (
    EventRule,
    MappingError,
    MappingRules,
    SpanRule,
    as_dict,
    parse_mapping,
    text,
)

__all__ = ["Mapper", "MappingError", "MappingRules", "parse_mapping"]

MILESTONE_OF_TYPE: dict[str, str] = {
    "retail.order.accepted": "accepted",
    "retail.payment.confirmed": "paid",
    "retail.inventory.reserved": "reserved",
    "retail.order.ready": "ready",
    "retail.order.fulfilled": "fulfilled",
    "retail.order.cancelled": "cancelled",
    "retail.order.returned": "returned",
    "retail.refund.issued": "refunded",
    "retail.finance.reconciled": "reconciled",
}
# Linked to the order's timeline as kind "event"; the value is the entry's status.
LINKED_TYPES: dict[str, str] = {
    "retail.payment.failed": "error",
    "retail.finance.posted": "ok",
    "retail.finance.posting_failed": "error",
    "retail.order.alias": "ok",
}
# Id fields of any event that become aliases of the order it names (kind = field name).
ALIAS_FIELDS = ("pickup_code", "payment_ref", "erp_doc", "return_id")
# Shown in an entry's ``detail`` (compact JSON, sorted keys).
DETAIL_FIELDS = frozenset(
    (
        "amount",
        "currency",
        "reason",
        "error",
        "erp_doc",
        "kind",
        "payment_ref",
        "pickup_code",
        "return_id",
        "total",
        "qty",
        "sku",
        "location_id",
    )
)
_DETAIL_BY_TYPE = {"retail.order.alias": DETAIL_FIELDS | {"value"}}
# One encoder for every row: json.dumps with options builds a new encoder per call.
encode_detail = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode
# What a user rule's explicit ``sku`` becomes on the SKU timeline, by the rule's milestone.
_SKU_KIND_OF_MILESTONE = {"accepted": "sale", "reserved": "reservation", "returned": "return"}
_VALID_MILESTONES = frozenset(MILESTONES)
_CHANNEL_SET = frozenset(CHANNELS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_NAME_CACHE_LIMIT = 10_000
_SPAN_DETAIL = ("location_id", "promotion_id", "sku")

_Handler = Callable[[Mapped, dict[str, Any], int, str], None]


class Mapper:
    """Maps batches of stored rows; holds only the compiled rules and a cache of span-name matches."""

    def __init__(self, rules: MappingRules | None = None) -> None:
        self.rules = rules if rules is not None else MappingRules()
        by_type: dict[str, list[EventRule]] = {}
        for rule in self.rules.events:
            by_type.setdefault(rule.type, []).append(rule)
        self._event_rules = {event_type: tuple(listed) for event_type, listed in by_type.items()}
        self._span_rules = self.rules.spans
        self._by_name: dict[str, tuple[SpanRule, ...]] = {}

    # ----------------------------------------------------------------- events

    def map_events(self, rows: Sequence[Mapping[str, Any]]) -> Mapped:
        out = Mapped([], [], [], [], set())
        user_rules = self._event_rules
        for row in rows:
            event_type = row["type"]
            raw = row.get("data")
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = None
            time_us = _time_us(row["time"], 1)
            source = row["source"]
            event_key = f"{source}/{row['id']}"
            rules = user_rules.get(event_type)
            if rules is not None:
                rule = next((rule for rule in rules if rule.matches(row, data)), None)
                if rule is not None:
                    _apply_event_rule(out, rule, row, data, time_us, source, event_key)
                    continue
            if isinstance(data, dict):
                _builtin_event(out, event_type, data, time_us, source, event_key)
        return out

    # ------------------------------------------------------------------ spans

    def map_spans(self, rows: Sequence[Mapping[str, Any]]) -> Mapped:
        out = Mapped([], [], [], [], set())
        has_rules = bool(self._span_rules)
        for row in rows:
            if has_rules:
                rules = self._rules_for_name(row["span_name"])
                if rules and self._user_span(out, rules, row):
                    continue
            _builtin_span(out, row)
        return out

    def _rules_for_name(self, name: str) -> tuple[SpanRule, ...]:
        rules = self._by_name.get(name)
        if rules is None:
            rules = tuple(rule for rule in self._span_rules if rule.matches_name(name))
            if len(self._by_name) >= _NAME_CACHE_LIMIT:
                self._by_name.clear()
            self._by_name[name] = rules
        return rules

    def _user_span(self, out: Mapped, rules: tuple[SpanRule, ...], row: Mapping[str, Any]) -> bool:
        attributes: Mapping[str, Any] | None = None
        status = row.get("status_code") or ""
        service = row.get("service_name") or ""
        for rule in rules:
            if (rule.status and rule.status != status) or (
                rule.service is not None and rule.service != service
            ):
                continue
            if rule.attributes:
                if attributes is None:
                    attributes = as_dict(row.get("span_attributes"))
                if not all(
                    (attributes.get(key) if expected == "*" else attributes.get(key) == expected)
                    for key, expected in rule.attributes
                ):
                    continue
            if attributes is None:
                attributes = as_dict(row.get("span_attributes"))
            _apply_span_rule(out, rule, row, attributes, as_dict(row.get("resource_attributes")))
            return True
        return False


# --------------------------------------------------------------------- built-in events


def _builtin_event(
    out: Mapped, event_type: str, data: dict[str, Any], time_us: int, source: str, key: str
) -> None:
    handler = _NON_ORDER_HANDLERS.get(event_type)
    if handler is not None:
        handler(out, data, time_us, key)
        return
    order = text(data.get("order_id"))
    if not order:
        return
    milestone = MILESTONE_OF_TYPE.get(event_type)
    store = text(data.get("store_id"))
    out.timeline.append(
        TimelineEntry(
            order,
            "event" if milestone is None else "milestone",
            event_type if milestone is None else milestone,
            time_us,
            source,
            key,
            event_type,
            store_id=store,
            channel=text(data.get("channel")),
            fulfillment=text(data.get("fulfillment")),
            status=LINKED_TYPES.get(event_type, "ok"),
            detail=_detail(data, _DETAIL_BY_TYPE.get(event_type, DETAIL_FIELDS)),
        )
    )
    if store:
        out.stores.add(store)
    links = out.links
    for field in ALIAS_FIELDS:
        value = data.get(field)
        if value:
            _link(links, text(value), order, field, time_us, key)
    if event_type == "retail.order.accepted":
        aliases = data.get("aliases")
        if isinstance(aliases, dict):
            for kind, value in aliases.items():
                _link(links, text(value), order, kind, time_us, key)
        _lines(out, data, "sale", store or "online", order, time_us, key)
    elif event_type == "retail.order.returned":
        _lines(out, data, "return", store or "online", order, time_us, key)
    elif event_type == "retail.inventory.reserved":
        sku = text(data.get("sku"))
        if sku:
            location = text(data.get("location_id"))
            qty = _int(data.get("qty"))
            out.skus.append(SkuEntry(sku, location, "reservation", time_us, key, qty=qty, order_key=order))
    elif event_type == "retail.order.alias":
        _link(links, text(data.get("value")), order, text(data.get("kind")) or "alias", time_us, key)


def _lines(
    out: Mapped, data: dict[str, Any], kind: str, location: str, order: str, time_us: int, key: str
) -> None:
    lines = data.get("lines")
    if not isinstance(lines, list):
        return
    for line in lines:
        if isinstance(line, dict):
            sku = text(line.get("sku"))
            if sku:
                qty = _int(line.get("qty"))
                out.skus.append(SkuEntry(sku, location, kind, time_us, key, qty=qty, order_key=order))


def _snapshot(out: Mapped, data: dict[str, Any], time_us: int, key: str) -> None:
    sku = text(data.get("sku"))
    if sku:
        on_hand = data.get("on_hand")
        out.skus.append(
            SkuEntry(
                sku,
                text(data.get("location_id")),
                "snapshot",
                time_us,
                key,
                system=text(data.get("system")),
                on_hand=_int(on_hand) if on_hand is not None else None,
            )
        )


def _adjusted(out: Mapped, data: dict[str, Any], time_us: int, key: str) -> None:
    sku = text(data.get("sku"))
    if sku:
        out.skus.append(
            SkuEntry(
                sku,
                text(data.get("location_id")),
                "adjustment",
                time_us,
                key,
                system=text(data.get("system")),
                delta=_int(data.get("delta")),
                reason=text(data.get("reason")),
            )
        )


def _published(out: Mapped, data: dict[str, Any], time_us: int, key: str) -> None:
    promo = text(data.get("promo_id"))
    if not promo:
        return
    effective = data.get("effective_at")
    moment = parse_rfc3339(effective) if isinstance(effective, str) else None
    out.promotions.append(
        PromotionEntry(
            promo,
            "published",
            time_us,
            key,
            effective_us=None if moment is None else (moment - _EPOCH) // _ONE_US,
            targets=_texts(data.get("targets")),
            skus=_texts(data.get("skus")),
            promo_kind=text(data.get("kind")) or "promotion",
        )
    )


def _activated(out: Mapped, data: dict[str, Any], time_us: int, key: str) -> None:
    promo = text(data.get("promo_id"))
    target = text(data.get("target"))
    if promo and target:
        out.promotions.append(PromotionEntry(promo, "activated", time_us, key, target=target))
        if target not in _CHANNEL_SET:
            out.stores.add(target)


_NON_ORDER_HANDLERS: dict[str, _Handler] = {
    "retail.inventory.snapshot": _snapshot,
    "retail.inventory.adjusted": _adjusted,
    "retail.promotion.published": _published,
    "retail.promotion.activated": _activated,
}


# --------------------------------------------------------------------- user event rules


def _apply_event_rule(
    out: Mapped, rule: EventRule, row: Mapping[str, Any], data: Any, time_us: int, source: str, key: str
) -> None:
    fields: dict[str, Any] = data if isinstance(data, dict) else {}
    order = rule.order_id(row, data) if rule.order_id else text(fields.get("order_id"))
    store = rule.store_id(row, data) if rule.store_id else text(fields.get("store_id"))
    event_type = row["type"]
    if order:
        out.timeline.append(
            TimelineEntry(
                order,
                "milestone" if rule.milestone else "event",
                rule.milestone or event_type,
                time_us,
                source,
                key,
                event_type,
                store_id=store,
                channel=rule.channel(row, data) if rule.channel else text(fields.get("channel")),
                fulfillment=rule.fulfillment(row, data)
                if rule.fulfillment
                else text(fields.get("fulfillment")),
                detail=_detail(fields, DETAIL_FIELDS),
            )
        )
        for kind, path in rule.aliases:
            _link(out.links, path(row, data), order, kind, time_us, key)
    if store:
        out.stores.add(store)
    if rule.sku:
        sku = rule.sku(row, data)
        if sku:
            location = rule.location_id(row, data) if rule.location_id else text(fields.get("location_id"))
            qty = _int(rule.qty(row, data)) if rule.qty else 1
            out.skus.append(
                _rule_sku(sku, location or store, rule.milestone, "event", time_us, key, qty, order)
            )


# --------------------------------------------------------------------- spans


def _builtin_span(out: Mapped, row: Mapping[str, Any]) -> None:
    # Row by row what ``correlator.span_columns`` does column by column: change both together.
    order = row.get("order_id") or ""
    store = row.get("store_id") or ""
    if store:
        out.stores.add(store)
    if not order:
        return
    key = f"span:{row['trace_id']}:{row['span_id']}"
    time_us = _time_us(row["timestamp"], 1000)
    milestone = (row.get("milestone") or "").strip().lower()
    valid = milestone in _VALID_MILESTONES
    out.timeline.append(
        _span_entry(row, order, milestone if valid else "", store, row.get("channel") or "", time_us, key)
    )
    alias = row.get("alias_value") or ""
    kind = row.get("alias_kind") or ""
    if alias and kind:
        _link(out.links, alias, order, kind, time_us, key)


def _span_entry(
    row: Mapping[str, Any], order: str, milestone: str, store: str, channel: str, time_us: int, key: str
) -> TimelineEntry:
    """A span's timeline entry: a milestone when ``milestone`` is set, else a linked span."""
    name = row["span_name"]
    status = "error" if row.get("status_code") == "error" else "ok"
    return TimelineEntry(
        order,
        "milestone" if milestone else "span",
        milestone or name,
        time_us,
        row.get("service_name") or "",
        key,
        name,
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        store_id=store,
        channel=channel,
        status=status,
        detail=_span_detail(row, status),
    )


def _apply_span_rule(
    out: Mapped,
    rule: SpanRule,
    row: Mapping[str, Any],
    attributes: Mapping[str, Any],
    resource: Mapping[str, Any],
) -> None:
    order = rule.order_id(attributes, resource) if rule.order_id else row.get("order_id") or ""
    store = rule.store_id(attributes, resource) if rule.store_id else row.get("store_id") or ""
    if store:
        out.stores.add(store)
    key = f"span:{row['trace_id']}:{row['span_id']}"
    time_us = _time_us(row["timestamp"], 1000)
    if order:
        channel = rule.channel(attributes, resource) if rule.channel else row.get("channel") or ""
        out.timeline.append(_span_entry(row, order, rule.milestone or "", store, channel, time_us, key))
        if rule.alias and rule.alias_kind:
            alias, kind = rule.alias(attributes, resource), rule.alias_kind(attributes, resource)
        else:
            alias, kind = row.get("alias_value") or "", row.get("alias_kind") or ""
        if kind:
            _link(out.links, alias, order, kind, time_us, key)
    if rule.sku:
        sku = rule.sku(attributes, resource)
        if sku:
            location = (
                rule.location_id(attributes, resource) if rule.location_id else row.get("location_id") or ""
            )
            qty = _int(rule.qty(attributes, resource)) if rule.qty else 1
            out.skus.append(
                _rule_sku(sku, location or store, rule.milestone, "span", time_us, key, qty, order)
            )


def _span_detail(row: Mapping[str, Any], status: str) -> str:
    shown = {name: row[name] for name in _SPAN_DETAIL if row.get(name)}
    if status == "error" and row.get("status_message"):
        shown["error"] = row["status_message"]
    return encode_detail(shown) if shown else ""


# --------------------------------------------------------------------- helpers


def _rule_sku(
    sku: str, location: str, milestone: str, other: str, time_us: int, key: str, qty: int, order: str
) -> SkuEntry:
    kind = _SKU_KIND_OF_MILESTONE.get(milestone, other)
    if not location and kind == "sale":
        location = "online"
    return SkuEntry(sku, location, kind, time_us, key, qty=qty, order_key=order)


def _link(links: list[AliasLink], alias: str, order: str, kind: str, time_us: int, key: str) -> None:
    if alias and alias != order:
        links.append(AliasLink(alias, order, kind, time_us, key))


def _detail(data: Mapping[str, Any], fields: frozenset[str]) -> str:
    shown = {
        name: value
        for name, value in data.items()
        if name in fields and value is not None and not isinstance(value, (dict, list))
    }
    return encode_detail(shown) if shown else ""


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in (text(entry) for entry in value) if item)


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return 0
    return 0


def _time_us(value: Any, ints_per_us: int) -> int:
    """A stored timestamp in µs: datetimes (pandas Timestamps for ns columns) or ints in the column's unit."""
    if value.__class__ is datetime and value.tzinfo is not None:
        micros: int = (value - _EPOCH) // _ONE_US
        return micros
    if isinstance(value, int):
        return value // ints_per_us
    nanos = getattr(value, "value", None)  # pandas.Timestamp: ns since the epoch
    if isinstance(nanos, int):
        return nanos // 1000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        aware: int = (value - _EPOCH) // _ONE_US
        return aware
    raise TypeError(f"Timestamp {value!r} is neither a datetime nor an integer.")
