"""Alert state in ClickHouse: instance history, the notification log, delivery attempts, silences.

The tables are created by migration 4 in ``storage/schema.py``. Silences are a
ReplacingMergeTree with a version; readers use FINAL, so nothing waits for a merge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from clickhouse_connect.driver.client import Client

from alerts.dispatch import LogEntry
from alerts.lifecycle import FIRING, PENDING, STATES, AlertInstance, Transition
from alerts.silences import Silence

_HISTORY_COLUMNS = [
    "time",
    "fingerprint",
    "rule",
    "state",
    "previous",
    "labels",
    "annotations",
    "context",
    "active_at",
    "fired_at",
    "resolved_at",
]
_ATTEMPT_COLUMNS = [
    "time",
    "receiver_key",
    "receiver",
    "group_key",
    "rule",
    "kind",
    "attempt",
    "status",
    "error",
    "fingerprints",
    "title",
]
_SILENCE_COLUMNS = [
    "id",
    "matchers",
    "starts_at",
    "ends_at",
    "comment",
    "created_by",
    "created_at",
    "deleted",
    "version",
]


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass(frozen=True)
class Attempt:
    """One try to deliver one notification to one receiver (``receiver`` is masked)."""

    time: float
    receiver_key: str
    receiver: str
    group_key: str
    rule: str
    kind: str
    attempt: int
    status: str
    error: str
    fingerprints: tuple[str, ...]
    title: str


class AlertStore:
    """History, attempts and silences over one clickhouse-connect client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # -- history -----------------------------------------------------------------------------

    def record(self, transitions: Sequence[Transition]) -> None:
        if not transitions:
            return
        rows = [
            [
                _at(t.time),
                t.instance.fingerprint,
                t.instance.rule,
                t.instance.state,
                t.previous,
                dict(t.instance.labels),
                dict(t.instance.annotations),
                json.dumps(dict(t.instance.context), default=str),
                _at(t.instance.active_at),
                _at(t.instance.fired_at),
                _at(t.instance.resolved_at),
            ]
            for t in transitions
        ]
        self.client.insert("alert_history", rows, column_names=_HISTORY_COLUMNS)

    def _latest(self, condition: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        return list(
            self.client.query(
                f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM alert_history FINAL "
                "ORDER BY fingerprint, time DESC, state LIMIT 1 BY fingerprint "
                f"{condition}",
                parameters=parameters,
            ).named_results()
        )

    def active(self, rules: Iterable[str]) -> list[AlertInstance]:
        """The pending and firing instances of these rules as last recorded: a restart resumes them."""
        rows = self._latest("", {})
        names = set(rules)
        return [_instance(row) for row in rows if row["state"] in (PENDING, FIRING) and row["rule"] in names]

    def instances(self, state: str, limit: int) -> list[tuple[AlertInstance, float]]:
        """Instances whose latest state is ``state`` (``all``: any), newest change first, with its time."""
        rows = self._latest("", {})
        if state != "all":
            rows = [row for row in rows if row["state"] == state]
        rows.sort(key=lambda row: row["time"], reverse=True)
        return [(_instance(row), row["time"].timestamp()) for row in rows[:limit]]

    def history(self, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        rows = self.client.query(
            "SELECT fingerprint, time, state, previous FROM alert_history FINAL "
            "WHERE fingerprint IN {fps:Array(String)} ORDER BY fingerprint, time, state",
            parameters={"fps": list(fingerprints)},
        ).result_rows
        out: dict[str, list[dict[str, Any]]] = {}
        for fp, at, state, previous in rows:
            out.setdefault(fp, []).append({"time": at.timestamp(), "state": state, "previous": previous})
        return out

    # -- delivery attempts -------------------------------------------------------------------

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        rows = [
            [
                _at(a.time),
                a.receiver_key,
                a.receiver,
                a.group_key,
                a.rule,
                a.kind,
                a.attempt,
                a.status,
                a.error,
                list(a.fingerprints),
                a.title,
            ]
            for a in attempts
        ]
        self.client.insert("alert_attempts", rows, column_names=_ATTEMPT_COLUMNS)

    def attempts(self, fingerprints: Sequence[str], limit: int = 1000) -> list[Attempt]:
        rows = self.client.query(
            f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM alert_attempts "
            "WHERE hasAny(fingerprints, {fps:Array(String)}) ORDER BY time LIMIT {limit:UInt32}",
            parameters={"fps": list(fingerprints), "limit": limit},
        ).result_rows
        return [
            Attempt(r[0].timestamp(), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], r[8], tuple(r[9]), r[10])
            for r in rows
        ]

    # -- silences ----------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        self._write_silence(silence)

    def silences(self) -> list[Silence]:
        rows = self.client.query(
            f"SELECT {', '.join(_SILENCE_COLUMNS)} FROM alert_silences FINAL ORDER BY created_at, id"
        ).result_rows
        return [
            Silence(
                id=r[0],
                matchers=MappingProxyType(dict(r[1])),
                starts_at=r[2].timestamp(),
                ends_at=r[3].timestamp(),
                comment=r[4],
                created_by=r[5],
                created_at=r[6].timestamp(),
                deleted=bool(r[7]),
            )
            for r in rows
        ]

    def delete_silence(self, silence_id: str) -> bool:
        """Mark the silence deleted; False when there is no such silence (or it was deleted)."""
        found = [s for s in self.silences() if s.id == silence_id and not s.deleted]
        if not found:
            return False
        self._write_silence(found[0], deleted=True)
        return True

    def _write_silence(self, silence: Silence, deleted: bool = False) -> None:
        row = [
            silence.id,
            dict(silence.matchers),
            _at(silence.starts_at),
            _at(silence.ends_at),
            silence.comment,
            silence.created_by,
            _at(silence.created_at),
            1 if deleted else 0,
            time.time_ns(),  # a later write always wins
        ]
        self.client.insert("alert_silences", [row], column_names=_SILENCE_COLUMNS)


class ClickHouseNotificationLog:
    """The notification log in ``alert_notifications``, read once at start and then kept in memory
    (this node is its only writer)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._entries: dict[tuple[str, str], LogEntry] = {}
        rows = client.query(
            "SELECT receiver_key, group_key, argMax(kind, sent_at), argMax(content_hash, sent_at), "
            "argMax(firing, sent_at), argMax(resolved, sent_at), max(sent_at) "
            "FROM alert_notifications FINAL GROUP BY receiver_key, group_key"
        ).result_rows
        for receiver_key, key, kind, digest, firing, resolved, sent_at in rows:
            self._entries[(receiver_key, key)] = LogEntry(
                receiver_key, key, kind, digest, frozenset(firing), frozenset(resolved), sent_at.timestamp()
            )

    def latest(self, receiver_key: str, group_key: str) -> LogEntry | None:
        return self._entries.get((receiver_key, group_key))

    def record(self, entry: LogEntry) -> None:
        # Memory first: once sent, this node never sends it again even if the write below fails.
        self._entries[(entry.receiver_key, entry.group_key)] = entry
        self.client.insert(
            "alert_notifications",
            [
                [
                    entry.receiver_key,
                    entry.receiver,
                    entry.group_key,
                    entry.content_hash,
                    entry.kind,
                    sorted(entry.firing),
                    sorted(entry.resolved),
                    _at(entry.sent_at),
                ]
            ],
            column_names=[
                "receiver_key",
                "receiver",
                "group_key",
                "content_hash",
                "kind",
                "firing",
                "resolved",
                "sent_at",
            ],
        )


def _instance(row: Mapping[str, Any]) -> AlertInstance:
    try:
        context = json.loads(row["context"]) if row["context"] else {}
    except ValueError:
        context = {}
    state = row["state"] if row["state"] in STATES else PENDING
    return AlertInstance(
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        labels=MappingProxyType(dict(row["labels"])),
        state=state,
        active_at=row["active_at"].timestamp(),
        annotations=MappingProxyType(dict(row["annotations"])),
        context=MappingProxyType(context if isinstance(context, dict) else {}),
        fired_at=_seconds(row["fired_at"]),
        resolved_at=_seconds(row["resolved_at"]),
    )
