"""Alert routes: ``GET /api/v1/alerts?state=``, ``GET/POST /api/v1/silences``, ``DELETE .../{id}``.

``GET /api/v1/alerts?state=pending|firing|resolved|all&limit=`` (default all, 100): the instances
whose latest state matches, newest change first, each with labels, annotations, state, since,
context (the business figures of the last evaluation), history (every state change) and
notifications (every delivery attempt that named it). A token limited to stores sees alerts
about those stores only.

``POST /api/v1/silences`` takes ``{"matchers": {"label": "value"}, "ends_at": RFC 3339,
"starts_at"?, "comment"?, "created_by"?}`` and answers 201 with the silence and its ``id``;
``DELETE /api/v1/silences/{id}`` ends it (404 if unknown); ``GET`` lists the others with their
``status`` (active, pending, expired).

Reading needs the ``read`` scope, changing silences ``admin``. Errors are ``{"error", "detail"}``
with a 4xx status; a bad silence field is named in both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.engine import AlertEngine
from alerts.lifecycle import AlertInstance
from alerts.silences import Silence, SilenceError, parse_silence
from alerts.store import Attempt
from correlator.api import BadParameter, choice_parameter, error, int_parameter
from milepost.auth import Authenticator, AuthError, Principal

ALERT_STATES = ("pending", "firing", "resolved", "all")
_BODY_LIMIT = 64 * 1024


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _visible(labels: Mapping[str, str], principal: Principal) -> bool:
    """A token limited to stores sees the alerts about those stores only."""
    if not principal.stores:
        return True
    return any(labels.get(name) in principal.stores for name in ("store_id", "location_id"))


def _fresher(stored: AlertInstance, live: AlertInstance | None) -> AlertInstance:
    return live if live is not None and live.state == stored.state else stored


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": dict(silence.matchers),
        "starts_at": rfc3339(silence.starts_at),
        "ends_at": rfc3339(silence.ends_at),
        "comment": silence.comment,
        "created_by": silence.created_by,
        "created_at": rfc3339(silence.created_at),
        "status": silence.status(now),
    }


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "time": rfc3339(attempt.time),
        "receiver": attempt.receiver,
        "kind": attempt.kind,
        "attempt": attempt.attempt,
        "status": attempt.status,
        "error": attempt.error or None,
        "title": attempt.title,
    }


def alert_json(
    alert: AlertInstance, changed_at: float, history: list[dict[str, Any]], attempts: list[Attempt]
) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule,
        "kind": alert.labels.get("kind"),
        "severity": alert.labels.get("severity"),
        "state": alert.state,
        "since": rfc3339(changed_at),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "active_at": rfc3339(alert.active_at),
        "fired_at": rfc3339(alert.fired_at),
        "resolved_at": rfc3339(alert.resolved_at),
        "context": dict(alert.context),
        "history": [{**h, "time": rfc3339(h["time"])} for h in history],
        "notifications": [_attempt_json(a) for a in attempts if alert.fingerprint in a.fingerprints],
    }


class AlertEndpoints:
    def __init__(
        self, engine: AlertEngine, auth: Authenticator, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.auth = auth
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/alerts", self.alerts, methods=["GET"]),
            Route("/api/v1/silences", self.silences, methods=["GET"]),
            Route("/api/v1/silences", self.add_silence, methods=["POST"]),
            Route("/api/v1/silences/{silence_id}", self.delete_silence, methods=["DELETE"]),
        ]

    def _listing(self, state: str, limit: int, principal: Principal) -> dict[str, Any]:
        found = [(a, t) for a, t in self.store.instances(state, limit * 4) if _visible(a.labels, principal)]
        found = found[:limit]
        current = self.engine.current()
        # The stored row holds the context of the last state change; memory holds this evaluation's.
        fresh = [(_fresher(a, current.get(a.fingerprint)), t) for a, t in found]
        fingerprints = [a.fingerprint for a, _ in fresh]
        history = self.store.history(fingerprints) if fingerprints else {}
        attempts = self.store.attempts(fingerprints) if fingerprints else []
        items = [alert_json(a, t, history.get(a.fingerprint, []), attempts) for a, t in fresh]
        return {"total": len(items), "items": items}

    async def alerts(self, request: Request) -> Response:
        try:
            principal = self.auth.check(request.headers.get("authorization"), "read")
            state = choice_parameter(request, "state", ALERT_STATES, "all") or "all"
            limit = int_parameter(request, "limit", 100, 1, 1000)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        except BadParameter as exc:
            return error(400, str(exc), {"parameter": exc.name})
        return JSONResponse(await run_in_threadpool(self._listing, state, limit, principal))

    async def silences(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"), "read")
        except AuthError as exc:
            return error(exc.status, exc.reason)
        now = self.clock()
        found = await run_in_threadpool(self.store.silences)
        items = [silence_json(s, now) for s in found if not s.deleted]
        return JSONResponse({"total": len(items), "items": items})

    async def add_silence(self, request: Request) -> Response:
        try:
            principal = self.auth.check(request.headers.get("authorization"), "admin")
        except AuthError as exc:
            return error(exc.status, exc.reason)
        raw = await request.body()
        if len(raw) > _BODY_LIMIT:
            return error(413, f"The body is over {_BODY_LIMIT} bytes.", {"field": "body"})
        now = self.clock()
        try:
            body = json.loads(raw or b"null")
            silence = parse_silence(body, now)
        except ValueError:
            return error(400, "The body is not valid JSON.", {"field": "body"})
        except SilenceError as exc:
            return error(400, str(exc), {"field": exc.field})
        if not silence.created_by and principal.name != "anonymous":
            silence = replace(silence, created_by=principal.name)
        await run_in_threadpool(self.store.add_silence, silence)
        return JSONResponse(silence_json(silence, now), 201)

    async def delete_silence(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"), "admin")
        except AuthError as exc:
            return error(exc.status, exc.reason)
        silence_id = request.path_params["silence_id"]
        if not await run_in_threadpool(self.store.delete_silence, silence_id):
            return error(404, f"Silence '{silence_id[:80]}' is not known.", {"id": silence_id[:80]})
        return JSONResponse({"id": silence_id, "deleted": True})
