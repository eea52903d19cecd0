"""Alerts and silences as the Operations page shows them, read tolerantly from ``/api/v1/alerts`` and
``/api/v1/silences`` (``{"matchers": {...}, "ends_at", "comment", "created_by"}``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from dashboard.theme import deep_link

# Labels that name what an alert is about, and the dashboard view that shows it.
_DEEP_LINKS = (
    ("order_id", "order"),
    ("promo_id", "promotion"),
    ("promotion_id", "promotion"),
    ("sku", "sku"),
)
_TIME_FIELDS = ("since", "fired_at", "active_at", "starts_at", "started_at", "updated_at")
_URGENCY = ("critical", "error", "warning", "info")  # most urgent first; any other severity after these


class AlertRow(NamedTuple):
    name: str
    severity: str
    state: str
    summary: str
    labels: dict[str, str]
    since: str
    link: str  # a dashboard deep link ("./?order=..."), or ""


class SilenceRow(NamedTuple):
    silence_id: str
    matchers: dict[str, str]
    ends_at: str
    comment: str
    created_by: str
    state: str


class MatcherError(ValueError):
    """A silence matcher that is not ``label=value``."""


def _labels(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def alert_row(alert: Mapping[str, Any]) -> AlertRow:
    labels = _labels(alert.get("labels"))
    annotations = _labels(alert.get("annotations"))
    name = str(
        alert.get("rule") or alert.get("name") or labels.get("alertname") or alert.get("kind") or "alert"
    )
    summary = (
        annotations.get("summary")
        or str(alert.get("summary") or alert.get("title") or alert.get("message") or "")
        or annotations.get("description", "")
    )
    # A link into this dashboard first; the alert's own (configured base URL) otherwise.
    link = next((deep_link(view, labels[label]) for label, view in _DEEP_LINKS if labels.get(label)), "")
    link = link or annotations.get("dashboard", "") or str(alert.get("url") or "")
    since = next((str(alert[f]) for f in _TIME_FIELDS if alert.get(f)), "")
    return AlertRow(
        name=name,
        severity=str(alert.get("severity") or labels.get("severity") or ""),
        state=str(alert.get("state") or alert.get("status") or ""),
        summary=summary,
        labels=labels,
        since=since,
        link=link,
    )


def by_urgency(rows: Iterable[AlertRow]) -> list[AlertRow]:
    """The most urgent alerts first: by severity, then the one firing longest (no start time: last)."""

    def urgency(row: AlertRow) -> tuple[int, bool, str]:
        severity = row.severity.lower()
        rank = _URGENCY.index(severity) if severity in _URGENCY else len(_URGENCY)
        return rank, not row.since, row.since

    return sorted(rows, key=urgency)


def silence_row(silence: Mapping[str, Any]) -> SilenceRow:
    return SilenceRow(
        silence_id=str(silence.get("id") or silence.get("silence_id") or ""),
        matchers=_labels(silence.get("matchers")),
        ends_at=str(silence.get("ends_at") or ""),
        comment=str(silence.get("comment") or ""),
        created_by=str(silence.get("created_by") or ""),
        state=str(silence.get("state") or silence.get("status") or ""),
    )


def matcher_text(matchers: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(matchers.items()))


def parse_matchers(text: str) -> dict[str, str]:
    """``store_id=042, severity=warning`` as a mapping; ``MatcherError`` naming the bad part."""
    matchers: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        label, sep, value = part.partition("=")
        if not sep or not label.strip() or not value.strip():
            raise MatcherError(f"Matcher '{part}' is not label=value.")
        matchers[label.strip()] = value.strip()
    if not matchers:
        raise MatcherError("A silence needs at least one matcher such as store_id=042.")
    return matchers


def ends_at(now: datetime, hours: float) -> str:
    """RFC 3339 (``...Z``) end of a silence lasting ``hours`` from ``now`` (aware, UTC)."""
    end = now + timedelta(hours=hours)
    return end.isoformat(timespec="seconds").replace("+00:00", "Z")
