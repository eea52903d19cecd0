"""Delivery: each receiver URL through its own apprise object, retried with backoff; optional forwarding
of alerts to a Prometheus Alertmanager.

Outcomes are values (``Delivery``), never exceptions. apprise's "no service matched" (NOMATCH)
is a configuration error: never counted as a success. Errors are kept with every URL masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import apprise
import requests

from alerts.config import Receiver, apprise_target, mask_secret_url, mask_urls
from alerts.content import Message
from alerts.lifecycle import RESOLVED, AlertInstance

log = logging.getLogger(__name__)

SUCCESS = "success"
FAILURE = "failure"
NOMATCH = "nomatch"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one attempt: ``success``, ``failure`` (worth retrying) or ``nomatch`` (config error)."""

    status: str
    error: str = ""


class Notifier(Protocol):
    """Sends one message to one receiver."""

    def send(self, receiver: Receiver, message: Message, kind: str, severity: str) -> Delivery: ...


class AppriseNotifier:
    """One ``apprise.Apprise`` per receiver URL, so one bad target never hides another's outcome."""

    def __init__(self) -> None:
        self._targets: dict[str, apprise.Apprise] = {}

    def _target(self, receiver: Receiver) -> apprise.Apprise | None:
        if receiver.key not in self._targets:
            target = apprise_target(str(receiver.url))
            if target is None:
                return None
            self._targets[receiver.key] = target
        return self._targets[receiver.key]

    def send(self, receiver: Receiver, message: Message, kind: str, severity: str) -> Delivery:
        target = self._target(receiver)
        if target is None:
            return Delivery(NOMATCH, "apprise cannot load this URL")
        if kind == RESOLVED:
            notify_type = apprise.NotifyType.SUCCESS
        else:
            notify_type = apprise.NotifyType.FAILURE if severity == "critical" else apprise.NotifyType.WARNING
        try:
            result = target.notify(
                body=message.body,
                title=message.title,
                notify_type=notify_type,
                body_format=apprise.NotifyFormat.TEXT,
                log_level=logging.WARNING,
            )
        except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed delivery, not a crash
            return Delivery(FAILURE, mask_urls(f"{type(exc).__name__}: {exc}")[:500])
        try:
            # AppriseResult is falsy on failure; comparing it with True is always False.
            if bool(result):
                return Delivery(SUCCESS)
            status = getattr(result, "status", None)
            if getattr(status, "name", "") == "NOMATCH":
                return Delivery(NOMATCH, "apprise matched no service for this URL")
            details = [mask_urls(str(entry.message)) for entry in result.logs()]
            return Delivery(FAILURE, ("; ".join(details) or getattr(status, "name", "FAILURE"))[:500])
        finally:
            result.close()


@dataclass
class InMemoryNotifier:
    """Records what would be sent; ``failures[receiver_key]`` failed attempts come first (-1: always)."""

    sent: list[tuple[Receiver, Message, str]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    nomatch: set[str] = field(default_factory=set)

    def send(self, receiver: Receiver, message: Message, kind: str, severity: str) -> Delivery:
        if receiver.key in self.nomatch:
            return Delivery(NOMATCH, "apprise matched no service for this URL")
        left = self.failures.get(receiver.key, 0)
        if left != 0:
            self.failures[receiver.key] = left - 1 if left > 0 else left
            return Delivery(FAILURE, "receiver answered 500")
        self.sent.append((receiver, message, kind))
        return Delivery(SUCCESS)


def deliver(
    notifier: Notifier,
    receiver: Receiver,
    message: Message,
    kind: str,
    severity: str,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], Any],
) -> list[Delivery]:
    """Up to ``attempts`` tries, sleeping ``backoff_s`` x 1, 2, 4... between them; stops at the first
    success, and at NOMATCH (retrying a configuration error cannot help)."""
    outcomes: list[Delivery] = []
    for attempt in range(attempts):
        outcome = notifier.send(receiver, message, kind, severity)
        outcomes.append(outcome)
        if outcome.status != FAILURE:
            break
        if attempt + 1 < attempts:
            sleep(backoff_s * 2**attempt)
    return outcomes


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_payload(
    alerts: Sequence[AlertInstance], now: float, resolve_timeout_s: float
) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` items. Firing alerts end ``resolve_timeout`` from now unless sent
    again, so Alertmanager resolves them by itself if this node stops."""
    items = []
    for alert in alerts:
        ends = alert.resolved_at if alert.state == RESOLVED and alert.resolved_at else now + resolve_timeout_s
        items.append(
            {
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "startsAt": _rfc3339(alert.fired_at or alert.active_at),
                "endsAt": _rfc3339(ends),
                "generatorURL": alert.annotations.get("dashboard", ""),
            }
        )
    return items


class AlertmanagerForwarder:
    """Forwards firing and resolved alerts to a Prometheus Alertmanager, which then routes them itself."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.masked = f"alertmanager {mask_secret_url(url)}"
        self.timeout_s = timeout_s

    def forward(self, alerts: Sequence[AlertInstance], now: float, resolve_timeout_s: float) -> Delivery:
        if not alerts:
            return Delivery(SUCCESS)
        payload = alertmanager_payload(alerts, now, resolve_timeout_s)
        try:
            answer = requests.post(f"{self.url}/api/v2/alerts", json=payload, timeout=self.timeout_s)
        except requests.RequestException as exc:
            return Delivery(FAILURE, mask_urls(f"{type(exc).__name__}: {exc}")[:500])
        if answer.status_code >= 300:
            return Delivery(
                FAILURE, f"Alertmanager answered {answer.status_code}: {mask_urls(answer.text[:200])}"
            )
        return Delivery(SUCCESS)
