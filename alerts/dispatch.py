"""From firing and resolved alerts to notices for receivers, with Alertmanager's semantics.

Routes pick receivers by labels (the first match wins unless it says ``continue``); alerts of a
rule are grouped by the rule's ``group_by`` labels. A new group waits ``group_wait`` before its
first notification, then is looked at every ``group_interval``; the notification log decides
whether a receiver needs one (new firing alerts, newly resolved ones, or ``repeat_interval``
passed). Inhibited and silenced alerts are left out; pending alerts never get here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerts.config import AlertSettings, InhibitRule, Receiver, Route
from alerts.lifecycle import FIRING, RESOLVED, AlertInstance
from alerts.silences import Silence


@dataclass(frozen=True)
class LogEntry:
    """The last notification a receiver got for a group (Alertmanager's nflog entry)."""

    receiver_key: str
    group_key: str
    kind: str
    content_hash: str
    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float
    receiver: str = ""  # masked, for people reading the table


class NotificationLog(Protocol):
    """Where sent notifications are remembered, so nothing is sent twice, restarts included."""

    def latest(self, receiver_key: str, group_key: str) -> LogEntry | None: ...

    def record(self, entry: LogEntry) -> None: ...


class InMemoryNotificationLog:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], LogEntry] = {}

    def latest(self, receiver_key: str, group_key: str) -> LogEntry | None:
        return self.entries.get((receiver_key, group_key))

    def record(self, entry: LogEntry) -> None:
        self.entries[(entry.receiver_key, entry.group_key)] = entry


def content_hash(firing: Iterable[str], resolved: Iterable[str]) -> str:
    text = ",".join(sorted(firing)) + "|" + ",".join(sorted(resolved))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Notice:
    """What one receiver should be told about one group now."""

    receiver: Receiver
    route: Route
    group_key: str
    rule: str
    group_labels: Mapping[str, str]
    firing: tuple[AlertInstance, ...]
    resolved: tuple[AlertInstance, ...]

    @property
    def kind(self) -> str:
        return FIRING if self.firing else RESOLVED

    @property
    def content_hash(self) -> str:
        return content_hash(self.fingerprints(FIRING), self.fingerprints(RESOLVED))

    def fingerprints(self, state: str | None = None) -> list[str]:
        if state is None:
            return [a.fingerprint for a in (*self.firing, *self.resolved)]
        return [a.fingerprint for a in (self.firing if state == FIRING else self.resolved)]

    def entry(self, sent_at: float) -> LogEntry:
        return LogEntry(
            self.receiver.key,
            self.group_key,
            self.kind,
            self.content_hash,
            frozenset(self.fingerprints(FIRING)),
            frozenset(self.fingerprints(RESOLVED)),
            sent_at,
            self.receiver.masked,
        )


def needs_update(
    entry: LogEntry | None, firing: set[str], resolved: set[str], repeat_s: float, now: float
) -> bool:
    """Alertmanager's DedupStage (resolved notifications on): whether to notify a receiver."""
    if not firing and not resolved:
        return False
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        # Everything this receiver was told about is resolved now; if it was told nothing firing,
        # the alerts came and went between two looks and there is nothing to say.
        return bool(entry.firing)
    if not resolved <= entry.resolved:
        return True
    return entry.sent_at <= now - repeat_s


@dataclass
class _Group:
    key: str
    route: Route
    rule: str
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, AlertInstance] = field(default_factory=dict)
    flushed_resolved: set[str] = field(default_factory=set)


def group_key(route: Route, rule: str, labels: Mapping[str, str]) -> str:
    return f"{route.key}/{rule}/{json.dumps(dict(sorted(labels.items())), separators=(',', ':'))}"


class Dispatcher:
    """Aggregation groups in memory; what was sent lives in the ``NotificationLog``."""

    def __init__(self, settings: AlertSettings, log: NotificationLog) -> None:
        self.settings = settings
        self.log = log
        self.group_by = {rule.name: rule.group_by for rule in settings.rules}
        self._groups: dict[str, _Group] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._retry_at: dict[tuple[str, str], float] = {}

    def routes(self, labels: Mapping[str, str]) -> list[Route]:
        chosen = []
        for route in self.settings.routes:
            if route.matches(labels):
                chosen.append(route)
                if not route.continue_:
                    break
        return chosen

    def ingest(self, firing: Iterable[AlertInstance], resolved: Iterable[AlertInstance], now: float) -> None:
        """Put this evaluation's firing alerts and newly resolved ones into their groups."""
        current = {a.fingerprint for a in firing} | {a.fingerprint for a in resolved}
        for group in self._groups.values():
            # An alert that is neither firing nor resolved any more (its rule was removed) is dropped.
            group.alerts = {k: a for k, a in group.alerts.items() if k in current or a.state == RESOLVED}
        for alert in [*firing, *resolved]:
            labels = {name: alert.labels.get(name, "") for name in self.group_by.get(alert.rule, ())}
            for route in self.routes(alert.labels):
                key = group_key(route, alert.rule, labels)
                if key not in self._groups:
                    self._groups[key] = _Group(key, route, alert.rule, labels, now + route.group_wait_s)
                self._groups[key].alerts[alert.fingerprint] = alert

    def due(self, now: float, firing: Sequence[AlertInstance], silences: Sequence[Silence]) -> list[Notice]:
        """The notices to send now: groups whose interval is up, and receivers whose retry is due."""
        muted = Muting(self.settings.inhibit, firing, [s for s in silences if s.active(now)])
        notices: list[Notice] = []
        for group in list(self._groups.values()):
            flush = now >= group.next_flush
            retrying = [
                r for r in group.route.receivers if self._retry_at.get((r.key, group.key), now + 1) <= now
            ]
            if not flush and not retrying:
                continue
            alerts = [a for a in group.alerts.values() if muted.reason(a) is None]
            live = tuple(sorted((a for a in alerts if a.state == FIRING), key=lambda a: a.fingerprint))
            gone = tuple(sorted((a for a in alerts if a.state == RESOLVED), key=lambda a: a.fingerprint))
            if flush:
                group.next_flush = now + group.route.group_interval_s
                group.flushed_resolved = {a.fingerprint for a in group.alerts.values() if a.state == RESOLVED}
            live_keys, gone_keys = {a.fingerprint for a in live}, {a.fingerprint for a in gone}
            for receiver in group.route.receivers if flush else retrying:
                entry = self.log.latest(receiver.key, group.key)
                if needs_update(entry, live_keys, gone_keys, group.route.repeat_interval_s, now):
                    notices.append(
                        Notice(receiver, group.route, group.key, group.rule, group.labels, live, gone)
                    )
                else:
                    self._clear(receiver.key, group.key)
        return notices

    def delivered(self, notice: Notice, now: float) -> None:
        self.log.record(notice.entry(now))
        self._clear(notice.receiver.key, notice.group_key)

    def failed(self, notice: Notice, now: float, config_error: bool = False) -> float:
        """Schedule the receiver's next try (exponential from one evaluation interval, capped at the
        group interval; a configuration error waits the group interval); returns when it is."""
        key = (notice.receiver.key, notice.group_key)
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        backoff = self.settings.evaluation_interval_s * 2.0 ** (failures - 1)
        delay = notice.route.group_interval_s if config_error else min(notice.route.group_interval_s, backoff)
        self._retry_at[key] = now + delay
        return now + delay

    def settle(self) -> None:
        """After deliveries: forget resolved alerts every receiver has been told about, and empty groups."""
        for key, group in list(self._groups.items()):
            if any((r.key, key) in self._retry_at for r in group.route.receivers):
                continue
            for fp in group.flushed_resolved:
                if fp in group.alerts and group.alerts[fp].state == RESOLVED:
                    del group.alerts[fp]
            group.flushed_resolved = set()
            if not group.alerts:
                del self._groups[key]

    def _clear(self, receiver_key: str, key: str) -> None:
        self._failures.pop((receiver_key, key), None)
        self._retry_at.pop((receiver_key, key), None)

    def pending_retries(self) -> int:
        return len(self._retry_at)


class Muting:
    """Why an alert is muted now: ``inhibited`` by a firing alert, ``silenced``, or not (None)."""

    def __init__(
        self, rules: Sequence[InhibitRule], firing: Sequence[AlertInstance], silences: Sequence[Silence]
    ) -> None:
        self.rules = rules
        self.silences = silences
        # Per inhibition rule: the equal-label values of firing sources -> their fingerprints.
        self.sources: list[dict[tuple[str, ...], set[str]]] = []
        for rule in rules:
            index: dict[tuple[str, ...], set[str]] = {}
            for alert in firing:
                if _matches(rule.source_match, alert.labels):
                    index.setdefault(_values(alert.labels, rule.equal), set()).add(alert.fingerprint)
            self.sources.append(index)

    def reason(self, alert: AlertInstance) -> str | None:
        for rule, index in zip(self.rules, self.sources, strict=True):
            if not _matches(rule.target_match, alert.labels):
                continue
            # An alert matching both sides never inhibits itself.
            if index.get(_values(alert.labels, rule.equal), set()) - {alert.fingerprint}:
                return "inhibited"
        if any(s.matches(alert.labels) for s in self.silences):
            return "silenced"
        return None


def _matches(match: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(name) == value for name, value in match.items())


def _values(labels: Mapping[str, str], names: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(name, "") for name in names)
