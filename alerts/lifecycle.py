"""Alert instances and their lifecycle, with Prometheus' semantics.

inactive → pending (active for less than the rule's ``for``) → firing → resolved. A pending
instance that clears goes back to inactive without ever notifying; a firing one that clears
stays firing for ``keep_firing_for``, then resolves. Instances are keyed by a fingerprint of
their sorted labels; ``now`` always comes from the caller (an injectable clock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from alerts.config import Rule
from alerts.sources import Candidate

INACTIVE = "inactive"
PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"
STATES = (PENDING, FIRING, RESOLVED, INACTIVE)

RESOLVED_RETENTION_S = 15 * 60.0
"""How long a resolved instance stays listed (and can be sent as resolved), as in Prometheus."""


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set: the same labels in any order give the same fingerprint."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_labels(rule: Rule, labels: Mapping[str, str]) -> dict[str, str]:
    """The instance's labels: the problem's own, the rule's static labels, then the rule's identity."""
    return {**labels, **rule.labels, "alertname": rule.name, "kind": rule.kind, "severity": rule.severity}


@dataclass(frozen=True)
class AlertInstance:
    """One alert (a rule and a label set) at one moment. Times are seconds since the epoch."""

    fingerprint: str
    rule: str
    labels: Mapping[str, str]
    state: str
    active_at: float
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    context: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None

    @property
    def since(self) -> float:
        """When the instance entered its current state."""
        if self.state == RESOLVED and self.resolved_at is not None:
            return self.resolved_at
        if self.state == FIRING and self.fired_at is not None:
            return self.fired_at
        return self.active_at


@dataclass(frozen=True)
class Transition:
    """An instance entering a new state (``instance.state``) from ``previous`` at ``time``."""

    instance: AlertInstance
    previous: str
    time: float


Annotate = Callable[[Rule, Mapping[str, str], Mapping[str, Any]], Mapping[str, str]]


class Lifecycle:
    """Every tracked instance, advanced one rule evaluation at a time."""

    def __init__(self, annotate: Annotate) -> None:
        self.annotate = annotate
        self._alerts: dict[str, AlertInstance] = {}

    def restore(self, instances: Iterable[AlertInstance]) -> None:
        """Resume after a restart: pending and firing instances keep their start times."""
        for instance in instances:
            if instance.state in (PENDING, FIRING):
                self._alerts[instance.fingerprint] = instance

    def instances(self) -> list[AlertInstance]:
        return sorted(self._alerts.values(), key=lambda a: (a.rule, a.fingerprint))

    def firing(self) -> list[AlertInstance]:
        return [a for a in self.instances() if a.state == FIRING]

    def evaluate(self, rule: Rule, candidates: Iterable[Candidate], now: float) -> list[Transition]:
        """Advance ``rule``'s instances given its current problems; the state changes, in order."""
        changes: list[Transition] = []
        seen: set[str] = set()
        for candidate in candidates:
            labels = MappingProxyType(alert_labels(rule, candidate.labels))
            key = fingerprint(labels)
            if key in seen:
                continue
            seen.add(key)
            context = MappingProxyType(dict(candidate.context))
            annotations = MappingProxyType(dict(self.annotate(rule, labels, context)))
            current = self._alerts.get(key)
            if current is None or current.state == RESOLVED:
                current = AlertInstance(key, rule.name, labels, PENDING, now, annotations, context)
                if rule.for_s > 0:
                    changes.append(Transition(current, INACTIVE, now))
            else:
                current = replace(current, annotations=annotations, context=context, keep_firing_since=None)
            if current.state == PENDING and now - current.active_at >= rule.for_s:
                previous = INACTIVE if rule.for_s <= 0 and current.active_at == now else PENDING
                current = replace(current, state=FIRING, fired_at=now)
                changes.append(Transition(current, previous, now))
            self._alerts[key] = current
        for key, alert in list(self._alerts.items()):
            if alert.rule != rule.name or key in seen:
                continue
            change = self._cleared(rule, alert, now)
            if change is not None:
                changes.append(change)
        return changes

    def _cleared(self, rule: Rule, alert: AlertInstance, now: float) -> Transition | None:
        key = alert.fingerprint
        if alert.state == PENDING:
            del self._alerts[key]
            return Transition(replace(alert, state=INACTIVE), PENDING, now)
        if alert.state == FIRING:
            since = alert.keep_firing_since if alert.keep_firing_since is not None else now
            if now - since < rule.keep_firing_for_s:
                self._alerts[key] = replace(alert, keep_firing_since=since)
                return None
            resolved = replace(alert, state=RESOLVED, resolved_at=now, keep_firing_since=None)
            self._alerts[key] = resolved
            return Transition(resolved, FIRING, now)
        if alert.resolved_at is not None and now - alert.resolved_at > RESOLVED_RETENTION_S:
            del self._alerts[key]
        return None

    def forget(self, rule_names: Iterable[str]) -> None:
        """Drop the instances of rules no longer configured."""
        keep = set(rule_names)
        self._alerts = {k: a for k, a in self._alerts.items() if a.rule in keep}
