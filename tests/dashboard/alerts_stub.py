"""The alerts API as its contract says (``/api/v1/alerts``, ``/api/v1/silences``), in memory, in front
of a real node: the dashboard's alert and silence controls are tested without waiting for rules to fire."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.dashboard.estate import STALLED
from tests.support import free_port, wait_until


class AlertsApi:
    """``GET /api/v1/alerts`` and ``GET/POST/DELETE /api/v1/silences`` as the alerts contract says,
    in memory; every other GET is passed through to the node at ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.alerts: list[dict[str, Any]] = [
            {
                "fingerprint": "f1",
                "rule": "stalled-orders",
                "kind": "stalled_orders",
                "state": "firing",
                "severity": "warning",
                "labels": {
                    "kind": "stalled_orders",
                    "severity": "warning",
                    "store_id": "042",
                    "expected": "reserved",
                    "order_id": STALLED,
                },
                "annotations": {
                    "summary": f"1 BOPIS order at store 042 paid but not reserved; oldest {STALLED}"
                },
                "since": "2026-11-27T09:00:00Z",
            }
        ]
        self.silences: list[dict[str, Any]] = []
        self.received: list[tuple[str, str, Any]] = []
        self.missing = False  # True: answer 404, as a node without the alerts API does
        routes = [
            Route("/api/v1/alerts", self._alerts, methods=["GET"]),
            Route("/api/v1/silences", self._silences, methods=["GET", "POST"]),
            Route("/api/v1/silences/{silence_id}", self._expire, methods=["DELETE"]),
            Route("/{path:path}", self._pass, methods=["GET"]),
        ]
        config = uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> AlertsApi:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "the alerts stub")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def _alerts(self, request: Request) -> Response:
        if self.missing:
            return Response("Not Found", 404)
        self.received.append(("GET", "/api/v1/alerts", dict(request.query_params)))
        return JSONResponse({"total": len(self.alerts), "items": self.alerts})

    async def _silences(self, request: Request) -> Response:
        if self.missing:
            return Response("Not Found", 404)
        if request.method == "GET":
            return JSONResponse({"total": len(self.silences), "items": self.silences})
        body = await request.json()
        self.received.append(("POST", "/api/v1/silences", body))
        silence = {"id": f"s-{len(self.silences) + 1}", "status": "active", **body}
        self.silences.append(silence)
        return JSONResponse(silence, 201)

    async def _expire(self, request: Request) -> Response:
        silence_id = request.path_params["silence_id"]
        self.received.append(("DELETE", f"/api/v1/silences/{silence_id}", None))
        before = len(self.silences)
        self.silences = [s for s in self.silences if s["id"] != silence_id]
        if len(self.silences) == before:
            return JSONResponse({"error": f"Silence '{silence_id}' is not known.", "detail": None}, 404)
        return JSONResponse({"id": silence_id, "deleted": True})

    async def _pass(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k == "authorization"}
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"{self.upstream}{request.url.path}", params=request.query_params, headers=headers
            )
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))
