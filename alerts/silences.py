"""Silences: label matchers that mute matching alerts from ``starts_at`` until ``ends_at``.

Matchers are exact label equality, as Alertmanager's ``=`` matchers. An expired or deleted
silence mutes nothing; a muted alert is still evaluated and kept in the history.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

ACTIVE = "active"
PENDING = "pending"
EXPIRED = "expired"

_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEXT_LIMIT = 1000
_RFC3339 = "an RFC 3339 time such as 2026-11-27T18:00:00Z"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""
    created_at: float = 0.0
    deleted: bool = False

    def active(self, now: float) -> bool:
        return not self.deleted and self.starts_at <= now < self.ends_at

    def status(self, now: float) -> str:
        if self.deleted or now >= self.ends_at:
            return EXPIRED
        return ACTIVE if now >= self.starts_at else PENDING

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.matchers.items())


class SilenceError(Exception):
    """A silence request with a bad field; ``field`` names it for the 400 answer."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.field = name


def _time(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SilenceError(name, f"Field '{name}' must be an RFC 3339 time such as 2026-11-27T18:00:00Z.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SilenceError(
            name,
            f"Field '{name}' has value '{value[:80]}'. Must be {_RFC3339}.",
        ) from None
    if moment.tzinfo is None:
        raise SilenceError(
            name, f"Field '{name}' has value '{value[:80]}'. Must carry a timezone, e.g. a trailing Z."
        )
    return moment.timestamp()


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > _TEXT_LIMIT:
        raise SilenceError(name, f"Field '{name}' must be text of at most {_TEXT_LIMIT} characters.")
    return value


def parse_silence(body: Any, now: float) -> Silence:
    """A new silence from a ``POST /api/v1/silences`` body; ``SilenceError`` names a bad field."""
    if not isinstance(body, Mapping):
        raise SilenceError("body", "The body must be a JSON object with matchers and ends_at.")
    for key in body:
        if key not in ("matchers", "starts_at", "ends_at", "comment", "created_by"):
            raise SilenceError(
                str(key),
                f"Field '{key}' is not known; use matchers, starts_at, ends_at, comment, created_by.",
            )
    matchers = body.get("matchers")
    if not isinstance(matchers, Mapping) or not matchers:
        raise SilenceError("matchers", "Field 'matchers' must be a non-empty object of label: value.")
    for name, value in matchers.items():
        if not _LABEL.match(str(name)) or not isinstance(value, str):
            raise SilenceError(
                "matchers", f"Field 'matchers' has '{str(name)[:80]}': a label name and a text value."
            )
    ends_at = _time(body, "ends_at")
    if ends_at is None:
        raise SilenceError(
            "ends_at", "Field 'ends_at' is required: an RFC 3339 time such as 2026-11-27T18:00:00Z."
        )
    starts_at = _time(body, "starts_at")
    starts_at = now if starts_at is None else starts_at
    if ends_at <= max(now, starts_at):
        raise SilenceError(
            "ends_at", f"Field 'ends_at' has value '{body['ends_at']}'. Must be in the future."
        )
    return Silence(
        id=str(uuid.uuid4()),
        matchers=MappingProxyType({str(k): str(v) for k, v in matchers.items()}),
        starts_at=starts_at,
        ends_at=ends_at,
        comment=_text(body, "comment"),
        created_by=_text(body, "created_by"),
        created_at=now,
    )
