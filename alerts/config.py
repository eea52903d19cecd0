"""The ``alerts`` config section, validated once at start.

A bad rule, kind, duration or notification URL fails with one sentence naming the rule or
route and the key. Notification URLs carry tokens and passwords, so they are shown only as
``scheme://***`` in every message, repr and log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import string
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import apprise

from milepost.config import ConfigError, Secret, parse_duration

# apprise's own log lines quote the URLs they could not load (tokens included); Milepost logs
# its own, masked, account of every delivery instead.
_APPRISE_LOG = logging.getLogger("apprise")
_APPRISE_LOG.propagate = False
_APPRISE_LOG.addHandler(logging.NullHandler())


class AlertConfigError(ConfigError):
    """The ``alerts`` config section has a bad key or value."""


KINDS: dict[str, tuple[str, ...]] = {
    "stalled_orders": ("store_id", "channel", "fulfillment", "after", "expected"),
    "promotion_lag": ("promo_id",),
    "state_mismatch": ("store_id", "mismatch"),
    "failed_postings": ("store_id",),
    "inventory_variance": ("sku", "location_id"),
    "ingest_silence": ("source",),
}
"""Each rule kind and the labels its alert instances carry (besides alertname, kind, severity)."""

DEFAULT_GROUP_BY: dict[str, tuple[str, ...]] = {
    "stalled_orders": ("store_id",),
    "promotion_lag": ("promo_id",),
    "state_mismatch": ("store_id",),
    "failed_postings": ("store_id",),
    "inventory_variance": ("location_id",),
    "ingest_silence": ("source",),
}
BASE_LABELS = ("alertname", "kind", "severity")
SEVERITIES = ("critical", "warning", "info")
TEMPLATE_FIELDS = (
    "status",
    "headline",
    "rule",
    "severity",
    "group",
    "firing",
    "resolved",
    "alerts",
    "footer",
    "dashboard_url",
)
"""Fields of ``templates.title`` / ``templates.body`` (``string.Template``: ``$status``, ``${headline}``)."""

DEFAULT_TITLE = "$status: $headline"
DEFAULT_BODY = "$alerts\n\n$footer"
# The labels a default inhibition compares: every kind-specific label plus the kind, so a
# critical stall at store 042 silences the warning about the same stall, and nothing else.
DEFAULT_EQUAL = ("kind", *sorted({label for labels in KINDS.values() for label in labels}))

_TOP_KEYS = {
    "evaluation_interval",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "resolve_timeout",
    "rules",
    "routes",
    "inhibit",
    "templates",
    "dashboard_url",
    "alertmanager_url",
    "retry",
}
_RULE_KEYS = {"name", "kind", "for", "keep_firing_for", "severity", "group_by", "labels", "annotations"}
_ROUTE_KEYS = {"match", "notify", "continue", "group_wait", "group_interval", "repeat_interval"}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def mask_secret_url(url: str) -> str:
    """``scheme://***``: everything after the scheme may be a token, a password or a private path."""
    scheme, sep, _ = str(url).partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return f"{scheme}://***"
    return "***"


def apprise_target(url: str) -> apprise.Apprise | None:
    """An ``apprise.Apprise`` holding only ``url``; None when no apprise plugin can use it."""
    target = apprise.Apprise()
    with warnings.catch_warnings():
        # Loading apprise's plugins imports the standard library's imghdr, deprecated in 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        added = target.add(url)
    return target if added else None


def mask_urls(text: str) -> str:
    """``text`` with every URL in it masked, for error messages that quote one."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", lambda m: mask_secret_url(m.group(0)), text)


# -- kind-specific parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class StalledParams:
    """``min_orders``: fire only for groups of at least this many stalled orders; ``max_age``: ignore
    orders that reached their last milestone longer ago (None: no limit)."""

    min_orders: int = 1
    max_age_s: float | None = None


@dataclass(frozen=True)
class PromotionParams:
    """Fire when targets are still missing past ``lag_threshold`` (default ``promotions.lag_threshold``)
    or, with ``completeness_below`` (%), when completeness is below it ``after`` the start (default:
    the lag threshold). Promotions that started more than ``max_age`` ago are left alone."""

    lag_threshold_s: float | None = None
    completeness_below: float | None = None
    after_s: float | None = None
    max_age_s: float = 7 * 86400.0


@dataclass(frozen=True)
class MismatchParams:
    """A milestone without its prerequisite after ``grace``; ``min_orders`` per store and mismatch."""

    grace_s: float = 3600.0
    min_orders: int = 1
    max_age_s: float | None = None


@dataclass(frozen=True)
class PostingParams:
    min_orders: int = 1
    max_age_s: float | None = None


@dataclass(frozen=True)
class VarianceParams:
    """Fire when the systems' on_hand for a SKU at a location differ by more than ``tolerance`` units."""

    tolerance: int = 0


@dataclass(frozen=True)
class SilenceParams:
    """A source that sent ``min_events`` in the ``window`` before its last event, then nothing for
    ``silence``. Sources silent for longer than ``lookback`` are forgotten (the alert resolves)."""

    min_events: int = 10
    window_s: float = 3600.0
    silence_s: float = 900.0
    lookback_s: float = 7 * 86400.0


KindParams = StalledParams | PromotionParams | MismatchParams | PostingParams | VarianceParams | SilenceParams


@dataclass(frozen=True)
class Rule:
    """One alerting rule: what problem (``kind`` + ``params``), how long before firing (``for_s``),
    how long to keep firing after it clears (``keep_firing_for_s``), and how to label and group it."""

    name: str
    kind: str
    params: KindParams
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: str = "warning"
    group_by: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Receiver:
    """One apprise URL. ``key`` (a digest of the URL) identifies it in the notification log."""

    url: str = field(repr=False)
    key: str
    masked: str

    @staticmethod
    def of(url: str) -> Receiver:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return Receiver(Secret(url), digest, f"{mask_secret_url(url)} ({digest[:6]})")


@dataclass(frozen=True)
class Route:
    """Alerts whose labels include every ``match`` pair go to ``receivers``; the first matching route
    wins unless it has ``continue_``. An empty ``match`` matches every alert."""

    key: str
    match: Mapping[str, str]
    receivers: tuple[Receiver, ...]
    continue_: bool
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.match.items())


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert matching ``source_match`` mutes alerts matching ``target_match`` whose ``equal``
    labels have the same values (a label absent on both sides counts as equal)."""

    source_match: Mapping[str, str]
    target_match: Mapping[str, str]
    equal: tuple[str, ...]


DEFAULT_INHIBIT = (
    InhibitRule(
        MappingProxyType({"severity": "critical"}), MappingProxyType({"severity": "warning"}), DEFAULT_EQUAL
    ),
)


@dataclass(frozen=True)
class AlertSettings:
    evaluation_interval_s: float = 15.0
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 4 * 3600.0
    resolve_timeout_s: float = 300.0
    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT
    title_template: str = DEFAULT_TITLE
    body_template: str = DEFAULT_BODY
    dashboard_url: str = "http://127.0.0.1:8501"
    alertmanager_url: str | None = field(default=None, repr=False)
    retry_attempts: int = 3
    retry_backoff_s: float = 1.0


# -- parsing -------------------------------------------------------------------------------------


def _fail(key: str, value: Any, expected: str, who: str = "") -> AlertConfigError:
    shown = str(value)
    if "://" in shown:
        shown = mask_urls(shown)
    return AlertConfigError(f"Config 'alerts.{key}'{who} has value '{shown[:120]}'. {expected}")


def _must(key: str, expected: str, who: str = "") -> AlertConfigError:
    """For values that may hold a secret: the sentence names the key but not the value."""
    return AlertConfigError(f"Config 'alerts.{key}'{who} {expected}")


def _duration(raw: Mapping[str, Any], key: str, where: str, default: float, who: str = "") -> float:
    if key not in raw:
        return default
    try:
        return parse_duration(f"alerts.{where}{key}", raw[key])
    except ConfigError:
        raise _fail(f"{where}{key}", raw[key], "Not a duration such as 15s, 5m or 2h.", who) from None


def _count(raw: Mapping[str, Any], key: str, where: str, default: int, low: int, who: str = "") -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(f"{where}{key}", value, f"Must be a whole number of at least {low}.", who)
    return value


def _labels(raw: Any, key: str, who: str = "", check_names: bool = True) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(key, raw, "Must be a mapping of label names to values.", who)
    out: dict[str, str] = {}
    for name, value in raw.items():
        if check_names and not _LABEL.match(str(name)):
            raise _fail(
                f"{key}.{name}", value, "The label name must be letters, digits and underscores.", who
            )
        if isinstance(value, (Mapping, list)):
            raise _fail(f"{key}.{name}", value, "Must be a plain value.", who)
        out[str(name)] = (
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
    return out


def _unknown(raw: Mapping[str, Any], known: set[str], where: str, who: str = "") -> None:
    for key in raw:
        if key not in known:
            raise AlertConfigError(
                f"Config 'alerts.{where}{key}'{who} is not a known key. "
                f"Known keys: {', '.join(sorted(known))}."
            )


_ParamParser = Callable[[Mapping[str, Any], str, str], KindParams]


def _max_age(raw: Mapping[str, Any], where: str, who: str) -> float | None:
    if "max_age" not in raw:
        return None
    return _duration(raw, "max_age", where, 0.0, who) or None


def _stalled(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    return StalledParams(_count(raw, "min_orders", where, 1, 1, who), _max_age(raw, where, who))


def _promotion(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    below = raw.get("completeness_below")
    if below is not None and (
        isinstance(below, bool) or not isinstance(below, (int, float)) or not 0 < below <= 100
    ):
        raise _fail(f"{where}completeness_below", below, "Must be a percentage above 0, at most 100.", who)
    return PromotionParams(
        lag_threshold_s=_duration(raw, "lag_threshold", where, 0.0, who) if "lag_threshold" in raw else None,
        completeness_below=None if below is None else float(below),
        after_s=_duration(raw, "after", where, 0.0, who) if "after" in raw else None,
        max_age_s=_duration(raw, "max_age", where, 7 * 86400.0, who),
    )


def _mismatch(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    return MismatchParams(
        _duration(raw, "grace", where, 3600.0, who),
        _count(raw, "min_orders", where, 1, 1, who),
        _max_age(raw, where, who),
    )


def _postings(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    return PostingParams(_count(raw, "min_orders", where, 1, 1, who), _max_age(raw, where, who))


def _variance(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    return VarianceParams(_count(raw, "tolerance", where, 0, 0, who))


def _silence(raw: Mapping[str, Any], where: str, who: str) -> KindParams:
    params = SilenceParams(
        _count(raw, "min_events", where, 10, 1, who),
        _duration(raw, "window", where, 3600.0, who),
        _duration(raw, "silence", where, 900.0, who),
        _duration(raw, "lookback", where, 7 * 86400.0, who),
    )
    if params.silence_s <= 0 or params.window_s <= 0:
        raise _fail(f"{where}silence", raw.get("silence"), "Window and silence must be longer than 0s.", who)
    return params


_PARAMS: dict[str, tuple[set[str], _ParamParser]] = {
    "stalled_orders": ({"min_orders", "max_age"}, _stalled),
    "promotion_lag": ({"lag_threshold", "completeness_below", "after", "max_age"}, _promotion),
    "state_mismatch": ({"grace", "min_orders", "max_age"}, _mismatch),
    "failed_postings": ({"min_orders", "max_age"}, _postings),
    "inventory_variance": ({"tolerance"}, _variance),
    "ingest_silence": ({"min_events", "window", "silence", "lookback"}, _silence),
}


def _rule(index: int, raw: Any, names: set[str]) -> Rule:
    where = f"rules[{index}]."
    if not isinstance(raw, Mapping):
        raise _fail(f"rules[{index}]", raw, "Must be a mapping with name and kind.")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{where}name", name, "Every rule needs a name.")
    who = f" (rule '{name}')"
    if name in names:
        raise _fail(f"{where}name", name, "Rule names must be unique.")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(f"{where}kind", kind, f"Must be one of {', '.join(KINDS)}.", who)
    known, parse = _PARAMS[kind]
    _unknown(raw, _RULE_KEYS | known, where, who)
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        raise _fail(f"{where}severity", severity, f"Must be one of {', '.join(SEVERITIES)}.", who)
    labels = _labels(raw.get("labels"), f"{where}labels", who)
    for reserved in BASE_LABELS:
        if reserved in labels:
            raise _fail(f"{where}labels.{reserved}", labels[reserved], "This label is set by Milepost.", who)
    group_by = raw.get("group_by", list(DEFAULT_GROUP_BY[kind]))
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise _fail(f"{where}group_by", group_by, "Must be a list of label names.", who)
    allowed = {*BASE_LABELS, *KINDS[kind], *labels}
    for label in group_by:
        if label not in allowed:
            expected = f"Not a label of {kind} alerts; use {', '.join(sorted(allowed))}."
            raise _fail(f"{where}group_by", label, expected, who)
    annotations = _labels(raw.get("annotations"), f"{where}annotations", who)
    for key, text in annotations.items():
        if not string.Template(text).is_valid():
            raise _fail(f"{where}annotations.{key}", text, "Not a valid $label template.", who)
    return Rule(
        name=name,
        kind=kind,
        params=parse(raw, where, who),
        for_s=_duration(raw, "for", where, 0.0, who),
        keep_firing_for_s=_duration(raw, "keep_firing_for", where, 0.0, who),
        severity=severity,
        group_by=tuple(dict.fromkeys(group_by)),
        labels=MappingProxyType(labels),
        annotations=MappingProxyType(annotations),
    )


def _receiver(url: Any, key: str) -> Receiver:
    if not isinstance(url, str) or not url.strip():
        raise _must(key, "must be an apprise URL such as mailto://, slack:// or json://.")
    # A fresh Apprise object per URL: add() is False when no plugin can parse it.
    if apprise_target(url) is None:
        raise _fail(
            key, mask_secret_url(url), "Apprise cannot use this URL; check its scheme and required parts."
        )
    return Receiver.of(url)


def _route(index: int, raw: Any, defaults: AlertSettings) -> Route:
    where = f"routes[{index}]."
    if not isinstance(raw, Mapping):
        raise _must(f"routes[{index}]", "must be a mapping with notify and an optional match.")
    _unknown(raw, _ROUTE_KEYS, where)
    match = _labels(raw.get("match"), f"{where}match")
    notify = raw.get("notify")
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list) or not notify:
        raise _must(f"{where}notify", "must be a list of one or more apprise URLs.")
    receivers = tuple(_receiver(url, f"{where}notify[{i}]") for i, url in enumerate(notify))
    proceed = raw.get("continue", False)
    if not isinstance(proceed, bool):
        raise _fail(f"{where}continue", proceed, "Must be true or false.")
    return Route(
        key=f"routes[{index}]{json.dumps(match, sort_keys=True)}",
        match=MappingProxyType(match),
        receivers=receivers,
        continue_=proceed,
        group_wait_s=_duration(raw, "group_wait", where, defaults.group_wait_s),
        group_interval_s=_duration(raw, "group_interval", where, defaults.group_interval_s),
        repeat_interval_s=_duration(raw, "repeat_interval", where, defaults.repeat_interval_s),
    )


def _inhibit(index: int, raw: Any) -> InhibitRule:
    where = f"inhibit[{index}]."
    if not isinstance(raw, Mapping):
        raise _fail(f"inhibit[{index}]", raw, "Must be a mapping with source_match, target_match and equal.")
    _unknown(raw, {"source_match", "target_match", "equal"}, where)
    source = _labels(raw.get("source_match"), f"{where}source_match")
    target = _labels(raw.get("target_match"), f"{where}target_match")
    if not source or not target:
        missing = "source_match" if not source else "target_match"
        raise _fail(f"{where}{missing}", raw.get(missing), "Must name at least one label.")
    equal = raw.get("equal", [])
    if not isinstance(equal, list) or not all(isinstance(e, str) and _LABEL.match(e) for e in equal):
        raise _fail(f"{where}equal", equal, "Must be a list of label names.")
    return InhibitRule(MappingProxyType(source), MappingProxyType(target), tuple(equal))


def _template(raw: Mapping[str, Any], key: str, default: str) -> str:
    text = raw.get(key, default)
    if not isinstance(text, str) or not string.Template(text).is_valid():
        raise _fail(f"templates.{key}", text, "Must be a string.Template text such as '$status: $headline'.")
    for name in string.Template(text).get_identifiers():
        if name not in TEMPLATE_FIELDS:
            raise _fail(
                f"templates.{key}", f"${name}", f"Not a template field; use {', '.join(TEMPLATE_FIELDS)}."
            )
    return text


def _http_url(raw: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise _fail(key, mask_secret_url(str(value)), "Must be an http(s):// URL.")
    return value.rstrip("/")


def parse_alerts(raw: Mapping[str, Any] | None) -> AlertSettings:
    """``AlertSettings`` from the ``alerts`` section; raises ``AlertConfigError`` naming the bad key."""
    if not raw:
        return AlertSettings()
    if not isinstance(raw, Mapping):
        raise AlertConfigError(f"Config 'alerts' must be a mapping, not {type(raw).__name__}.")
    _unknown(raw, _TOP_KEYS, "")
    base = AlertSettings(
        evaluation_interval_s=_duration(raw, "evaluation_interval", "", 15.0),
        group_wait_s=_duration(raw, "group_wait", "", 30.0),
        group_interval_s=_duration(raw, "group_interval", "", 300.0),
        repeat_interval_s=_duration(raw, "repeat_interval", "", 4 * 3600.0),
        resolve_timeout_s=_duration(raw, "resolve_timeout", "", 300.0),
    )
    if base.evaluation_interval_s <= 0:
        raise _fail("evaluation_interval", raw.get("evaluation_interval"), "Must be longer than 0s.")
    sections: dict[str, list[Any]] = {}
    for key in ("rules", "routes", "inhibit"):
        value = raw.get(key, [])
        if not isinstance(value, list):
            raise _must(key, "must be a list.")
        sections[key] = value
    names: set[str] = set()
    rules = []
    for index, item in enumerate(sections["rules"]):
        rule = _rule(index, item, names)
        names.add(rule.name)
        rules.append(rule)
    templates = raw.get("templates") or {}
    if not isinstance(templates, Mapping):
        raise _fail("templates", templates, "Must be a mapping with title and body.")
    _unknown(templates, {"title", "body"}, "templates.")
    retry = raw.get("retry") or {}
    if not isinstance(retry, Mapping):
        raise _fail("retry", retry, "Must be a mapping with attempts and backoff.")
    _unknown(retry, {"attempts", "backoff"}, "retry.")
    return AlertSettings(
        evaluation_interval_s=base.evaluation_interval_s,
        group_wait_s=base.group_wait_s,
        group_interval_s=base.group_interval_s,
        repeat_interval_s=base.repeat_interval_s,
        resolve_timeout_s=base.resolve_timeout_s,
        rules=tuple(rules),
        routes=tuple(_route(i, item, base) for i, item in enumerate(sections["routes"])),
        inhibit=(
            tuple(_inhibit(i, item) for i, item in enumerate(sections["inhibit"]))
            if "inhibit" in raw
            else DEFAULT_INHIBIT
        ),
        title_template=_template(templates, "title", DEFAULT_TITLE),
        body_template=_template(templates, "body", DEFAULT_BODY),
        dashboard_url=_http_url(raw, "dashboard_url", "http://127.0.0.1:8501") or "",
        alertmanager_url=_http_url(raw, "alertmanager_url", None),
        retry_attempts=_count(retry, "attempts", "retry.", 3, 1),
        retry_backoff_s=_duration(retry, "backoff", "retry.", 1.0),
    )
