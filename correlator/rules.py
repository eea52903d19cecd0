"""User mapping rules (config ``mapping:``), validated at start and compiled for the per-row mapper.

A span rule matches on ``name`` (exact) or ``name_regex`` (the whole name must match),
``attributes`` (key -> exact value, ``"*"`` for "present and non-empty"), ``status`` (ok, error,
unset) and ``service``; an event rule on ``type`` and optionally ``match`` (path -> value, same
``"*"``). A rule then says which ``milestone`` it is (optional: without one the span or event is
only linked to its order) and where the business keys are.

Paths are compiled once into small functions:

- spans: ``attributes.<key>`` (span attribute; the key may contain dots), ``resource.<key>``;
- events: ``data.<field>[.<field>...]`` (a digit indexes a list), ``subject``, ``source``, ``id``,
  ``type``, ``extensions.<name>``;
- both: ``=literal`` (``channel: "=web"``), or a list of paths where the first non-empty value wins
  (``order_id: [attributes.demo.order.id, attributes.app.order.id]``).

A key the rule does not name falls back to the built-in place: for spans the ``retail.*`` columns
the collector extracted (``order_id``, ``sku``, ``store_id``, ``location_id``, ``channel``,
``alias_kind``/``alias_value``), for events ``data.<same name>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from correlator.model import MILESTONES
from milepost.config import ConfigError

# (event row, parsed data) -> text, '' when absent.
EventPath = Callable[[Mapping[str, Any], Any], str]
# (span attributes, resource attributes) -> text, '' when absent.
SpanPath = Callable[[Mapping[str, str], Mapping[str, str]], str]

PRESENT = "*"
SPAN_STATUSES = ("ok", "error", "unset")
KEY_FIELDS = ("order_id", "sku", "store_id", "location_id", "channel")
SPAN_KEYS: tuple[str, ...] = (
    *("name", "name_regex", "attributes", "status", "service", "milestone"),
    *(*KEY_FIELDS, "qty", "alias_kind", "alias"),
)
EVENT_KEYS: tuple[str, ...] = ("type", "match", "milestone", *KEY_FIELDS, "fulfillment", "qty", "aliases")
_SPAN_PATHS = "attributes.<key>, resource.<key> or =literal"
_EVENT_PATHS = "data.<field>[.<field>...], subject, source, id, type, extensions.<name> or =literal"
_EVENT_ATTRIBUTES = ("subject", "source", "id", "type")
_MAX_SHOWN = 80


class MappingError(ConfigError):
    """A mapping rule is unusable; the message is one sentence naming the rule, the key and the value."""


def text(value: Any) -> str:
    """A scalar as key text ('' for null, lists and objects): ints as digits, booleans as true/false."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_dict(value: Any) -> Mapping[str, Any]:
    """A pyarrow map value (list of (key, value) pairs), a dict or None as a mapping."""
    if isinstance(value, Mapping):
        return value
    return dict(value) if value else {}


@dataclass(frozen=True)
class SpanRule:
    where: str  # e.g. mapping.spans[2]
    name: str | None
    name_regex: re.Pattern[str] | None
    attributes: tuple[tuple[str, str], ...]  # (key, value); value PRESENT means present and non-empty
    status: str  # '' for any
    service: str | None
    milestone: str  # '' links only
    order_id: SpanPath | None
    sku: SpanPath | None
    store_id: SpanPath | None
    location_id: SpanPath | None
    channel: SpanPath | None
    qty: SpanPath | None
    alias_kind: SpanPath | None
    alias: SpanPath | None

    def matches_name(self, name: str) -> bool:
        if self.name is not None:
            return name == self.name
        return self.name_regex is None or self.name_regex.fullmatch(name) is not None


@dataclass(frozen=True)
class EventRule:
    where: str  # e.g. mapping.events[0]
    type: str
    match: tuple[tuple[EventPath, str], ...]
    milestone: str
    order_id: EventPath | None
    sku: EventPath | None
    store_id: EventPath | None
    location_id: EventPath | None
    channel: EventPath | None
    fulfillment: EventPath | None
    qty: EventPath | None
    aliases: tuple[tuple[str, EventPath], ...]

    def matches(self, row: Mapping[str, Any], data: Any) -> bool:
        for path, expected in self.match:
            value = path(row, data)
            if not value if expected == PRESENT else value != expected:
                return False
        return True


@dataclass(frozen=True)
class MappingRules:
    spans: tuple[SpanRule, ...] = ()
    events: tuple[EventRule, ...] = ()


def parse_mapping(raw: Mapping[str, Any] | None) -> MappingRules:
    """Validate config section ``mapping`` (``spans`` and ``events`` lists); raises ``MappingError``."""
    if raw is None:
        return MappingRules()
    if not isinstance(raw, Mapping):
        raise MappingError(f"Config 'mapping' must be a mapping with spans and events, not {_kind(raw)}.")
    for key, value in raw.items():
        if key not in ("spans", "events"):
            raise MappingError(
                f"Config 'mapping' has unknown key '{key}' with value {_show(value)};"
                " known keys: events, spans."
            )
    return MappingRules(
        spans=tuple(_span_rule(rule, where) for where, rule in _rules(raw, "spans")),
        events=tuple(_event_rule(rule, where) for where, rule in _rules(raw, "events")),
    )


def _rules(raw: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
    entries = raw.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise MappingError(
            f"Config 'mapping.{key}' has value {_show(entries)}, which is not a list of rules."
        )
    rules = []
    for index, entry in enumerate(entries):
        where = f"mapping.{key}[{index}]"
        if not isinstance(entry, Mapping):
            raise MappingError(
                f"Config '{where}' has value {_show(entry)}, which is not a mapping of rule keys."
            )
        known = SPAN_KEYS if key == "spans" else EVENT_KEYS
        for name, value in entry.items():
            if name not in known:
                raise MappingError(
                    f"Config '{where}' has unknown key '{name}' with value {_show(value)};"
                    f" known keys: {', '.join(sorted(known))}."
                )
        rules.append((where, entry))
    return rules


def _span_rule(rule: Mapping[str, Any], where: str) -> SpanRule:
    name = _optional_text(rule, where, "name")
    name_regex = _regex(rule, where)
    if name is not None and name_regex is not None:
        raise _fail(where, "name_regex", rule["name_regex"], "but the rule has name too; keep one of them")
    attributes = _matches(rule, where, "attributes")
    status = _optional_text(rule, where, "status") or ""
    if status and status not in SPAN_STATUSES:
        raise _fail(where, "status", status, f"which is not one of {', '.join(SPAN_STATUSES)}")
    service = _optional_text(rule, where, "service")
    if name is None and name_regex is None and not attributes and service is None:
        raise MappingError(
            f"Config '{where}' has no name, name_regex, attributes or service, so it would match every span."
        )
    alias_kind = _alias_kind(rule, where)
    alias = _span_path(rule, where, "alias")
    if (alias_kind is None) != (alias is None):
        missing = "alias" if alias is None else "alias_kind"
        present = "alias_kind" if alias is None else "alias"
        raise _fail(where, present, rule[present], f"but '{missing}' is missing; they go together")
    rule_ = SpanRule(
        where=where,
        name=name,
        name_regex=name_regex,
        attributes=tuple((key, text(value)) for key, value in attributes),
        status=status,
        service=service,
        milestone=_milestone(rule, where),
        order_id=_span_path(rule, where, "order_id"),
        sku=_span_path(rule, where, "sku"),
        store_id=_span_path(rule, where, "store_id"),
        location_id=_span_path(rule, where, "location_id"),
        channel=_span_path(rule, where, "channel"),
        qty=_span_path(rule, where, "qty"),
        alias_kind=alias_kind,
        alias=alias,
    )
    if not (rule_.milestone or rule_.order_id or rule_.sku or rule_.alias):
        raise _nothing(where, "sku or alias")
    return rule_


def _event_rule(rule: Mapping[str, Any], where: str) -> EventRule:
    event_type = _optional_text(rule, where, "type")
    if event_type is None:
        raise MappingError(
            f"Config '{where}' has no 'type'; an event rule needs the CloudEvents type it maps."
        )
    match = tuple(
        (_event_path(key, f"{where}.match", str(key)), text(value))
        for key, value in _matches(rule, where, "match")
    )
    aliases_raw = rule.get("aliases", {})
    if not isinstance(aliases_raw, Mapping):
        raise _fail(where, "aliases", aliases_raw, "which is not a mapping of alias kind to path")
    aliases = []
    for kind, path in aliases_raw.items():
        if not isinstance(kind, str) or not kind:
            raise _fail(where, "aliases", aliases_raw, f"whose kind {_show(kind)} is not a non-empty string")
        aliases.append((kind, _event_path(path, f"{where}.aliases", kind)))
    rule_ = EventRule(
        where=where,
        type=event_type,
        match=match,
        milestone=_milestone(rule, where),
        order_id=_optional_event_path(rule, where, "order_id"),
        sku=_optional_event_path(rule, where, "sku"),
        store_id=_optional_event_path(rule, where, "store_id"),
        location_id=_optional_event_path(rule, where, "location_id"),
        channel=_optional_event_path(rule, where, "channel"),
        fulfillment=_optional_event_path(rule, where, "fulfillment"),
        qty=_optional_event_path(rule, where, "qty"),
        aliases=tuple(aliases),
    )
    if not (rule_.milestone or rule_.order_id or rule_.sku or rule_.aliases):
        raise _nothing(where, "sku or aliases")
    return rule_


def _nothing(where: str, others: str) -> MappingError:
    return MappingError(
        f"Config '{where}' has no 'milestone' and no 'order_id' (nor {others}), so it would map nothing;"
        " add a milestone or say where order_id is read."
    )


def _milestone(rule: Mapping[str, Any], where: str) -> str:
    milestone = _optional_text(rule, where, "milestone")
    if milestone is None:
        return ""
    if milestone not in MILESTONES:
        raise _fail(where, "milestone", milestone, f"which is not a milestone ({', '.join(MILESTONES)})")
    return milestone


def _optional_text(rule: Mapping[str, Any], where: str, key: str) -> str | None:
    if key not in rule:
        return None
    value = rule[key]
    if not isinstance(value, str) or not value:
        raise _fail(where, key, value, "which is not a non-empty string")
    return value


def _regex(rule: Mapping[str, Any], where: str) -> re.Pattern[str] | None:
    pattern = _optional_text(rule, where, "name_regex")
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _fail(
            where, "name_regex", pattern, f"which is not a valid regular expression ({exc})"
        ) from None


def _matches(rule: Mapping[str, Any], where: str, key: str) -> list[tuple[str, Any]]:
    """``attributes`` / ``match``: a mapping of key -> scalar expected value."""
    value = rule.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(where, key, value, "which is not a mapping of key to expected value")
    pairs = []
    for name, expected in value.items():
        if not isinstance(name, str) or not name:
            raise _fail(where, key, value, f"whose key {_show(name)} is not a non-empty string")
        if expected is None or isinstance(expected, (dict, list)) or text(expected) == "":
            raise _fail(
                f"{where}.{key}", name, expected, 'which is not a plain value (use "*" for any value)'
            )
        pairs.append((name, expected))
    return pairs


def _alias_kind(rule: Mapping[str, Any], where: str) -> SpanPath | None:
    kind = _optional_text(rule, where, "alias_kind")
    if kind is None:
        return None
    if kind.startswith(("attributes.", "resource.", "=")):
        return _span_path(rule, where, "alias_kind")
    return _span_literal(kind)


def _span_path(rule: Mapping[str, Any], where: str, key: str) -> SpanPath | None:
    if key not in rule:
        return None
    value = rule[key]
    if isinstance(value, list) and value:
        paths = [_one_span_path(item, where, key) for item in value]
        return _first_span(paths) if len(paths) > 1 else paths[0]
    return _one_span_path(value, where, key)


def _one_span_path(value: Any, where: str, key: str) -> SpanPath:
    if isinstance(value, str):
        if value.startswith("="):
            return _span_literal(value[1:])
        head, _, name = value.partition(".")
        if head in ("attributes", "resource") and name:
            if head == "attributes":

                def read_attribute(attributes: Mapping[str, str], resource: Mapping[str, str]) -> str:
                    return attributes.get(name) or ""

                return read_attribute

            def read_resource(attributes: Mapping[str, str], resource: Mapping[str, str]) -> str:
                return resource.get(name) or ""

            return read_resource
    raise _fail(where, key, value, f"which is not a span path ({_SPAN_PATHS}, or a list of them)")


def _span_literal(value: str) -> SpanPath:
    def literal(attributes: Mapping[str, str], resource: Mapping[str, str]) -> str:
        return value

    return literal


def _first_span(paths: list[SpanPath]) -> SpanPath:
    def first(attributes: Mapping[str, str], resource: Mapping[str, str]) -> str:
        for path in paths:
            value = path(attributes, resource)
            if value:
                return value
        return ""

    return first


def _optional_event_path(rule: Mapping[str, Any], where: str, key: str) -> EventPath | None:
    return _event_path(rule[key], where, key) if key in rule else None


def _event_path(value: Any, where: str, key: str) -> EventPath:
    if isinstance(value, list) and value:
        paths = [_one_event_path(item, where, key) for item in value]
        if len(paths) == 1:
            return paths[0]

        def first(row: Mapping[str, Any], data: Any) -> str:
            for path in paths:
                found = path(row, data)
                if found:
                    return found
            return ""

        return first
    return _one_event_path(value, where, key)


def _one_event_path(value: Any, where: str, key: str) -> EventPath:
    if isinstance(value, str):
        if value.startswith("="):
            literal = value[1:]
            return lambda row, data: literal
        if value in _EVENT_ATTRIBUTES:
            return lambda row, data: text(row.get(value))
        head, _, rest = value.partition(".")
        parts = tuple(rest.split(".")) if rest else ()
        if head == "extensions" and rest:
            return lambda row, data: text(as_dict(row.get("extensions")).get(rest))
        if head == "data" and parts and all(parts):
            return _data_path(parts)
    raise _fail(where, key, value, f"which is not an event path ({_EVENT_PATHS}, or a list of them)")


def _data_path(parts: tuple[str, ...]) -> EventPath:
    if len(parts) == 1:
        field = parts[0]
        return lambda row, data: text(data.get(field)) if isinstance(data, dict) else ""

    def read(row: Mapping[str, Any], data: Any) -> str:
        value = data
        for part in parts:
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return ""
        return text(value)

    return read


def _fail(where: str, key: str, value: Any, why: str) -> MappingError:
    return MappingError(f"Config '{where}.{key}' has value {_show(value)}, {why}.")


def _show(value: Any) -> str:
    if isinstance(value, str):
        shown = value
    else:
        try:
            shown = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return f"'{shown}'" if isinstance(value, str) else shown


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else type(value).__name__
