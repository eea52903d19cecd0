"""The alert engine: one evaluation is sources → lifecycle → dispatch → notify, every ``evaluation_interval``.

``evaluate(now)`` runs one cycle at a given time, so tests script time; ``start()`` runs it in a
background thread on the injected clock. A rule whose query fails keeps its alerts as they
were (as Prometheus does) and the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from alerts.config import AlertSettings
from alerts.content import annotator, render
from alerts.dispatch import Dispatcher, Notice, NotificationLog
from alerts.lifecycle import RESOLVED, AlertInstance, Lifecycle, Transition
from alerts.notify import (
    FAILURE,
    NOMATCH,
    SUCCESS,
    AlertmanagerForwarder,
    AppriseNotifier,
    Notifier,
    deliver,
)
from alerts.silences import Silence
from alerts.sources import AlertSource, ClickHouseSource
from alerts.store import AlertStore, Attempt, ClickHouseNotificationLog
from correlator.propagation import PromotionSettings
from correlator.sla import SlaRule

log = logging.getLogger(__name__)

_FORWARD_EVERY_S = 60.0  # Prometheus' resend delay: unchanged alerts are re-sent this often


@dataclass(frozen=True)
class SentNotification:
    """A notification a receiver accepted during an evaluation."""

    receiver: str  # masked
    receiver_key: str
    group_key: str
    rule: str
    kind: str
    title: str
    body: str
    fingerprints: tuple[str, ...]


class AlertEngine:
    """Evaluates every rule, tracks instances, and notifies, against one ClickHouse client.

    ``source``, ``notifier``, ``log`` and ``sleep`` are injectable (tests use in-memory ones);
    by default problems come from ClickHouse, messages go through apprise, and the notification
    log lives in ClickHouse.
    """

    def __init__(
        self,
        client: Client,
        settings: AlertSettings,
        sla_rules: Sequence[SlaRule],
        promotion_settings: PromotionSettings,
        clock: Callable[[], float] = time.time,
        *,
        source: AlertSource | None = None,
        notifier: Notifier | None = None,
        notification_log: NotificationLog | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = AlertStore(client)
        self.source = source or ClickHouseSource(client, sla_rules, promotion_settings)
        self.notifier = notifier or AppriseNotifier()
        self.lifecycle = Lifecycle(annotator(settings))
        self.lifecycle.restore(self.store.active(rule.name for rule in settings.rules))
        self._current = {a.fingerprint: a for a in self.lifecycle.instances()}
        self.dispatcher = Dispatcher(settings, notification_log or ClickHouseNotificationLog(client))
        self.forwarder = (
            AlertmanagerForwarder(settings.alertmanager_url) if settings.alertmanager_url else None
        )
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._forwarded_at = float("-inf")
        self.counts = {"evaluations": 0, "rule_errors": 0, "sent": 0, "failed": 0, "nomatch": 0}

    # -- one cycle -------------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> list[SentNotification]:
        """One evaluation at ``now`` (default: the clock); the notifications receivers accepted."""
        now = self.clock() if now is None else now
        with self._lock:
            transitions = self._evaluate_rules(now)
            self._current = {a.fingerprint: a for a in self.lifecycle.instances()}
            self.store.record(transitions)
            firing = self.lifecycle.firing()
            resolved = [t.instance for t in transitions if t.instance.state == RESOLVED]
            self.dispatcher.ingest(firing, resolved, now)
            notices = self.dispatcher.due(now, firing, self._silences())
            sent = self._notify(notices, now)
            self.dispatcher.settle()
            self._forward(firing, resolved, bool(transitions), now)
            self.counts["evaluations"] += 1
            return sent

    def _evaluate_rules(self, now: float) -> list[Transition]:
        transitions: list[Transition] = []
        for rule in self.settings.rules:
            try:
                candidates = self.source.candidates(rule, now)
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others
                self.counts["rule_errors"] += 1
                log.warning("alert rule '%s' could not be evaluated: %s", rule.name, str(exc)[:300])
                continue
            transitions += self.lifecycle.evaluate(rule, candidates, now)
        for change in transitions:
            log.info(
                "alert %s %s → %s: %s",
                change.instance.rule,
                change.previous,
                change.instance.state,
                change.instance.annotations.get("summary", ""),
            )
        return transitions

    def _silences(self) -> list[Silence]:
        try:
            return self.store.silences()
        except Exception as exc:  # noqa: BLE001 - without silences we still notify, as Alertmanager would
            log.warning("silences could not be read: %s", str(exc)[:300])
            return []

    def _notify(self, notices: Sequence[Notice], now: float) -> list[SentNotification]:
        sent: list[SentNotification] = []
        attempts: list[Attempt] = []
        for notice in notices:
            message = render(self.settings, notice.rule, notice.group_labels, notice.firing, notice.resolved)
            alerts = notice.firing or notice.resolved
            severity = alerts[0].labels.get("severity", "") if alerts else ""
            outcomes = deliver(
                self.notifier,
                notice.receiver,
                message,
                notice.kind,
                severity,
                self.settings.retry_attempts,
                self.settings.retry_backoff_s,
                self.sleep,
            )
            fingerprints = tuple(notice.fingerprints())
            for number, outcome in enumerate(outcomes, 1):
                attempts.append(
                    Attempt(
                        now,
                        notice.receiver.key,
                        notice.receiver.masked,
                        notice.group_key,
                        notice.rule,
                        notice.kind,
                        number,
                        outcome.status,
                        outcome.error,
                        fingerprints,
                        message.title[:500],
                    )
                )
            final = outcomes[-1]
            if final.status == SUCCESS:
                self.dispatcher.delivered(notice, now)
                self.counts["sent"] += 1
                log.info("alert notification sent to %s: %s", notice.receiver.masked, message.title[:200])
                sent.append(
                    SentNotification(
                        notice.receiver.masked,
                        notice.receiver.key,
                        notice.group_key,
                        notice.rule,
                        notice.kind,
                        message.title,
                        message.body,
                        fingerprints,
                    )
                )
                continue
            retry_at = self.dispatcher.failed(notice, now, config_error=final.status == NOMATCH)
            if final.status == NOMATCH:
                self.counts["nomatch"] += 1
                log.error(
                    "alert receiver %s matched no apprise service: a configuration error",
                    notice.receiver.masked,
                )
            elif final.status == FAILURE:
                self.counts["failed"] += 1
                log.warning(
                    "alert notification to %s failed %d times (%s); next try in %.0fs",
                    notice.receiver.masked,
                    len(outcomes),
                    final.error[:200],
                    retry_at - now,
                )
        try:
            self.store.record_attempts(attempts)
        except Exception as exc:  # noqa: BLE001 - the attempts are history; the log above has them too
            log.warning("alert delivery attempts could not be stored: %s", str(exc)[:300])
        return sent

    def _forward(
        self, firing: Sequence[AlertInstance], resolved: Sequence[AlertInstance], changed: bool, now: float
    ) -> None:
        if self.forwarder is None or not (firing or resolved):
            return
        if not changed and now - self._forwarded_at < _FORWARD_EVERY_S:
            return
        outcome = self.forwarder.forward([*firing, *resolved], now, self.settings.resolve_timeout_s)
        self.store.record_attempts(
            [
                Attempt(
                    now,
                    "alertmanager",
                    self.forwarder.masked,
                    "",
                    "",
                    "forward",
                    1,
                    outcome.status,
                    outcome.error,
                    tuple(a.fingerprint for a in [*firing, *resolved]),
                    "",
                )
            ]
        )
        if outcome.status == SUCCESS:
            self._forwarded_at = now
        else:
            log.warning("forwarding alerts to %s failed: %s", self.forwarder.masked, outcome.error[:200])

    # -- reading -----------------------------------------------------------------------------------

    def current(self) -> dict[str, AlertInstance]:
        """The instances of the last evaluation (pending, firing, recently resolved), by fingerprint.

        A snapshot, so the API never waits for an evaluation that is busy retrying a receiver.
        """
        return dict(self._current)

    # -- background --------------------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate every ``evaluation_interval`` in a background thread; nothing to do without rules."""
        if not self.settings.rules or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="milepost-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        interval = self.settings.evaluation_interval_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.evaluate(self.clock())
            except Exception:
                log.exception("alert evaluation failed")
            self._stopping.wait(max(0.0, interval - (time.monotonic() - started)))
