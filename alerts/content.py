"""What a notification says: business words, the affected keys (capped, with a count) and deep links.

Each instance gets a one-line ``summary`` and a ``dashboard`` link as annotations when it is
evaluated; a message renders a group's instances through the ``templates`` of the config
(``string.Template`` fields listed in ``alerts.config.TEMPLATE_FIELDS``).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from alerts.config import AlertSettings, Rule
from alerts.lifecycle import FIRING, AlertInstance, Annotate

LISTED = 10
"""Affected keys listed per alert in a message; the rest are counted ("and 2 more")."""

_FULFILLMENT = {
    "bopis": "BOPIS",
    "ship": "ship",
    "ship_from_store": "ship-from-store",
    "in_store": "in-store",
}


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def duration(seconds: float) -> str:
    """``25+ min``, ``2+ h``, ``3+ d``: a floor, so the words never overstate."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}+ {unit}"
    return f"{int(seconds)}+ s"


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def link(base: str, kind: str, key: str) -> str:
    """A dashboard deep link: ``/?order=``, ``/?promotion=``, ``/?sku=``."""
    return f"{base}/?{kind}={quote(key, safe='')}"


def _store(labels: Mapping[str, str]) -> str:
    store = labels.get("store_id", "")
    return f"at store {store}" if store else "with no store"


def _orders(count: int, words: str = "") -> str:
    noun = "order" if count == 1 else "orders"
    return f"{count} {words} {noun}" if words else f"{count} {noun}"


def summary(kind: str, labels: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """One sentence in business words: what is wrong, where, since when, which key first."""
    n = int(context.get("count", 0))
    oldest = context.get("oldest", "")
    if kind == "stalled_orders":
        words = _FULFILLMENT.get(labels.get("fulfillment", ""), "") or labels.get("channel", "")
        return (
            f"{_orders(n, words)} {_store(labels)} {labels.get('after')} but not {labels.get('expected')} "
            f"for {duration(float(context.get('waiting_s', 0)))}; oldest {oldest}"
        )
    if kind == "state_mismatch":
        return (
            f"{_orders(n)} {_store(labels)} {labels.get('mismatch')}; "
            f"oldest {oldest} ({duration(float(context.get('age_s', 0)))} ago)"
        )
    if kind == "failed_postings":
        return (
            f"{_orders(n)} {_store(labels)} with a failed finance posting and no later posting; "
            f"oldest {oldest} ({duration(float(context.get('age_s', 0)))} ago)"
        )
    if kind == "promotion_lag":
        what = "Price change" if context.get("kind") == "price" else "Promotion"
        missing = list(context.get("missing", []))
        count = int(context.get("missing_count", len(missing)))
        shown = ", ".join(missing[:5]) + (f" and {count - 5} more" if count > 5 else "")
        return (
            f"{what} {labels.get('promo_id')} not active at {count} of {context.get('target_count')} "
            f"targets {duration(float(context.get('age_s', 0)))} after its start "
            f"({float(context.get('completeness', 0)):g}% complete); missing: {shown or 'none'}"
        )
    if kind == "inventory_variance":
        systems = ", ".join(f"{name} {stock}" for name, stock in dict(context.get("systems", {})).items())
        return (
            f"SKU {labels.get('sku')} at location {labels.get('location_id')}: systems disagree by "
            f"{context.get('spread')} units ({systems})"
        )
    if kind == "ingest_silence":
        return (
            f"Source {labels.get('source')} stopped sending: {context.get('events_before')} events in the "
            f"{duration(float(context.get('window_s', 0))).replace('+', '')} before its last at "
            f"{clock(int(context.get('last_us', 0)) / 1_000_000)}, nothing for "
            f"{duration(float(context.get('quiet_s', 0)))}"
        )
    return f"{kind} problem {dict(labels)}"


def affected(
    kind: str, labels: Mapping[str, str], context: Mapping[str, Any], base: str
) -> tuple[str, list[tuple[str, str | None]], int]:
    """(heading, [(key, deep link or None)], total count) of the keys an alert is about."""
    if kind in ("stalled_orders", "state_mismatch", "failed_postings"):
        orders = [str(o) for o in context.get("orders", [])]
        return "Orders", [(o, link(base, "order", o)) for o in orders], int(context.get("count", len(orders)))
    if kind == "promotion_lag":
        missing = [str(s) for s in context.get("missing", [])]
        return "Stores still missing", [(s, None) for s in missing], int(context.get("missing_count", 0))
    if kind == "inventory_variance":
        sku = labels.get("sku", "")
        return "SKU", [(sku, link(base, "sku", sku))], 1
    return "Source", [(labels.get("source", ""), None)], 1


def dashboard_link(kind: str, labels: Mapping[str, str], context: Mapping[str, Any], base: str) -> str:
    if kind == "promotion_lag":
        return link(base, "promotion", labels.get("promo_id", ""))
    if kind == "inventory_variance":
        return link(base, "sku", labels.get("sku", ""))
    if context.get("oldest"):
        return link(base, "order", str(context["oldest"]))
    return f"{base}/"


def annotator(settings: AlertSettings) -> Annotate:
    """The ``annotate`` function of the lifecycle: ``summary`` and ``dashboard``, then the rule's own
    annotations (``$label`` and ``$count`` substituted), which may override both."""

    def annotate(rule: Rule, labels: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
        out = {
            "summary": summary(rule.kind, labels, context),
            "dashboard": dashboard_link(rule.kind, labels, context, settings.dashboard_url),
        }
        fields = {**labels, "count": str(context.get("count", ""))}
        for key, text in rule.annotations.items():
            out[key] = string.Template(text).safe_substitute(fields)
        return out

    return annotate


def _block(alert: AlertInstance, base: str) -> str:
    kind = alert.labels.get("kind", "")
    if alert.state == FIRING:
        head = f"[FIRING since {clock(alert.fired_at or alert.active_at)}]"
    else:
        head = f"[RESOLVED at {clock(alert.resolved_at or alert.active_at)}]"
    lines = [f"{head} {alert.annotations.get('summary', '')}"]
    heading, keys, total = affected(kind, alert.labels, alert.context, base)
    if keys and alert.state == FIRING:
        lines.append(f"{heading} ({total}):")
        lines += [f"  - {key}: {url}" if url else f"  - {key}" for key, url in keys[:LISTED]]
        if total > min(len(keys), LISTED):
            lines.append(f"  and {total - min(len(keys), LISTED)} more")
    lines.append(f"Dashboard: {alert.annotations.get('dashboard', base)}")
    for key, value in alert.annotations.items():
        if key not in ("summary", "dashboard"):
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def render(
    settings: AlertSettings,
    rule: str,
    group_labels: Mapping[str, str],
    firing: Sequence[AlertInstance],
    resolved: Sequence[AlertInstance],
) -> Message:
    """The title and body of one notification for a group, through the configured templates."""
    alerts = [*firing, *resolved]
    first = alerts[0] if alerts else None
    headline = first.annotations.get("summary", rule) if first is not None else rule
    if len(alerts) > 1:
        headline += f" (+{len(alerts) - 1} more)"
    severity = first.labels.get("severity", "") if first is not None else ""
    group = ", ".join(f"{k}={v or '(none)'}" for k, v in group_labels.items()) or "all"
    silence = ", ".join(f'"{k}": "{v}"' for k, v in group_labels.items()) or f'"alertname": "{rule}"'
    footer = (
        f"Rule {rule} ({severity}), group {group}: {len(firing)} firing, {len(resolved)} resolved. "
        f'Silence it with POST /api/v1/silences {{"matchers": {{{silence}}}, ...}}.'
    )
    fields = {
        "status": "FIRING" if firing else "RESOLVED",
        "headline": headline,
        "rule": rule,
        "severity": severity,
        "group": group,
        "firing": str(len(firing)),
        "resolved": str(len(resolved)),
        "alerts": "\n\n".join(_block(a, settings.dashboard_url) for a in alerts),
        "footer": footer,
        "dashboard_url": settings.dashboard_url,
    }
    return Message(
        string.Template(settings.title_template).safe_substitute(fields),
        string.Template(settings.body_template).safe_substitute(fields),
    )
