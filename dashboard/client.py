"""The dashboard's only way to data: the node's HTTP query API, read with short-lived caching.

Every failure (node down, token refused, unknown key, bad parameter) comes back as a ``Problem``
value that a page shows as a banner; nothing here raises into a page. Failures are never
cached, so a node that comes back is seen on the next rerun.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import streamlit as st

from dashboard.settings import API_TOKEN_ENV, API_URL_ENV, DEFAULT_API

TIMEOUT_S = 5.0
TTL_S = 10.0

UNREACHABLE = "unreachable"
REFUSED = "refused"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
UNAVAILABLE = "unavailable"
FAILED = "failed"

JsonObject = dict[str, Any]
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Problem:
    """Why an answer is missing: ``kind`` (one of the constants above) and one sentence to show."""

    kind: str
    message: str
    status: int | None = None


class _ProblemRaised(Exception):
    """Carries a ``Problem`` out of the cached function, so that failures are not cached."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_http: httpx.Client | None = None
_http_lock = threading.Lock()


def _shared_http() -> httpx.Client:
    # One pooled client per process: reruns reuse connections instead of opening new ones.
    global _http
    with _http_lock:
        if _http is None:
            _http = httpx.Client(timeout=TIMEOUT_S, headers={"accept": "application/json"})
        return _http


def _error_text(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip()[:200] or answer.reason_phrase
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return answer.reason_phrase


def problem_of(answer: httpx.Response, base_url: str) -> Problem:
    """The ``Problem`` for a non-2xx answer of the API at ``base_url``."""
    status = answer.status_code
    reason = _error_text(answer).rstrip(".")
    if status in (401, 403):
        what = "refused the dashboard's token" if status == 401 else "did not allow the dashboard's token"
        return Problem(
            REFUSED,
            f"The Milepost API at {base_url} {what} ({status}): {reason}. "
            f"Start the dashboard with a read token: milepost dashboard --token T (or {API_TOKEN_ENV}).",
            status,
        )
    if status == 404:
        return Problem(NOT_FOUND, f"{reason}.", status)
    if status in (429, 503):
        return Problem(
            UNAVAILABLE, f"The node is busy or its storage is unavailable: {reason}. Retry shortly.", status
        )
    if 400 <= status < 500:
        return Problem(BAD_REQUEST, f"The API did not accept the request: {reason}.", status)
    return Problem(FAILED, f"The Milepost API at {base_url} answered {status}: {reason}.", status)


def _request(
    method: str, base_url: str, token: str, path: str, params: Params, body: object = None, text: bool = False
) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        answer = _shared_http().request(
            method, f"{base_url}{path}", params=dict(params), headers=headers, json=body
        )
    except httpx.TimeoutException:
        raise _ProblemRaised(
            Problem(UNREACHABLE, f"The Milepost API at {base_url} did not answer within {TIMEOUT_S:g} s.")
        ) from None
    except httpx.HTTPError as exc:
        raise _ProblemRaised(
            Problem(
                UNREACHABLE,
                f"The Milepost API at {base_url} cannot be reached ({type(exc).__name__}). "
                "Is 'milepost serve' running? Point the dashboard at it with 'milepost dashboard --api URL'.",
            )
        ) from None
    if answer.status_code >= 400:
        raise _ProblemRaised(problem_of(answer, base_url))
    if text:
        return answer.text
    try:
        return answer.json()
    except ValueError:
        raise _ProblemRaised(
            Problem(
                FAILED, f"The Milepost API at {base_url} answered {path} with something that is not JSON."
            )
        ) from None


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=512)
def _cached_get(base_url: str, token: str, path: str, params: Params, text: bool) -> Any:
    return _request("GET", base_url, token, path, params, text=text)


def _params(values: Mapping[str, object]) -> Params:
    return tuple(sorted((name, str(value)) for name, value in values.items() if value not in (None, "")))


def _segment(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class Api:
    """The node's query API at ``url``, with an optional bearer ``token`` (never shown)."""

    url: str = DEFAULT_API
    token: str = ""

    def __repr__(self) -> str:
        return f"Api(url={self.url!r}, token={'***' if self.token else ''!r})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Api:
        env = os.environ if environ is None else environ
        url = (env.get(API_URL_ENV) or DEFAULT_API).strip().rstrip("/")
        return cls(url, (env.get(API_TOKEN_ENV) or "").strip())

    # -- plumbing ---------------------------------------------------------------------------

    def get(self, path: str, **params: object) -> Any | Problem:
        """The JSON answer of ``GET path`` (cached for a few seconds), or the ``Problem``."""
        try:
            return _cached_get(self.url, self.token, path, _params(params), False)
        except _ProblemRaised as raised:
            return raised.problem

    def get_object(self, path: str, **params: object) -> JsonObject | Problem:
        answer = self.get(path, **params)
        if isinstance(answer, Problem | dict):
            return answer
        return Problem(
            FAILED, f"The Milepost API answered {path} with a {type(answer).__name__}, not an object."
        )

    def send(self, method: str, path: str, body: object = None) -> Any | Problem:
        """A write (never cached); afterwards every cached answer is dropped so pages show the change."""
        try:
            return _request(method, self.url, self.token, path, (), body)
        except _ProblemRaised as raised:
            return raised.problem
        finally:
            _cached_get.clear()

    # -- orders, SKUs, promotions, traces, KPIs ---------------------------------------------

    def order(self, key: str) -> JsonObject | Problem:
        return self.get_object(f"/api/v1/orders/{_segment(key)}")

    def orders(
        self, status: str = "all", store_id: str | None = None, milestone: str | None = None, limit: int = 200
    ) -> JsonObject | Problem:
        return self.get_object(
            "/api/v1/orders", status=status, store_id=store_id, milestone=milestone, limit=limit
        )

    def sku(self, sku: str, location_id: str | None = None) -> JsonObject | Problem:
        return self.get_object(f"/api/v1/skus/{_segment(sku)}", location_id=location_id)

    def promotions(self) -> JsonObject | Problem:
        return self.get_object("/api/v1/promotions")

    def promotion(self, promo_id: str) -> JsonObject | Problem:
        return self.get_object(f"/api/v1/promotions/{_segment(promo_id)}")

    def trace(self, trace_id: str) -> JsonObject | Problem:
        return self.get_object(f"/api/v1/traces/{_segment(trace_id)}")

    def kpis(
        self,
        since: str | None = None,
        until: str | None = None,
        channel: str | None = None,
        store_id: str | None = None,
    ) -> JsonObject | Problem:
        return self.get_object("/api/v1/kpis", since=since, until=until, channel=channel, store_id=store_id)

    # -- operations: ingest health, quarantine, alerts and silences ---------------------------

    def metrics(self) -> str | Problem:
        """The node's Prometheus text from ``/metrics``, never cached: rates come from two reads."""
        try:
            return str(_request("GET", self.url, self.token, "/metrics", (), text=True))
        except _ProblemRaised as raised:
            return raised.problem

    def quarantine(self, limit: int = 20) -> JsonObject | Problem:
        return self.get_object("/api/v1/quarantine", limit=limit)

    def alerts(self, state: str | None = "firing") -> list[JsonObject] | Problem:
        return _items(self.get("/api/v1/alerts", state=state), "alerts")

    def silences(self) -> list[JsonObject] | Problem:
        return _items(self.get("/api/v1/silences"), "silences")

    def create_silence(
        self, matchers: Mapping[str, str], ends_at: str, comment: str, created_by: str
    ) -> Any | Problem:
        body = {"matchers": dict(matchers), "ends_at": ends_at, "comment": comment, "created_by": created_by}
        return self.send("POST", "/api/v1/silences", body)

    def expire_silence(self, silence_id: str) -> Any | Problem:
        return self.send("DELETE", f"/api/v1/silences/{_segment(silence_id)}")


def _items(answer: Any, name: str) -> list[JsonObject] | Problem:
    """A list answer, whether the API sends a bare list or wraps it (``items`` or ``name``)."""
    if isinstance(answer, Problem):
        return answer
    if isinstance(answer, dict):
        answer = answer.get("items", answer.get(name, []))
    if not isinstance(answer, list):
        return Problem(
            FAILED, f"The Milepost API answered the {name} with a {type(answer).__name__}, not a list."
        )
    return [item for item in answer if isinstance(item, dict)]
