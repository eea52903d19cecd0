"""The query API's routes (``/api/v1/...``): JSON answers, 404 for unknown keys, 400 naming the parameter."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from correlator.catalog import PromotionReader, SkuReader
from correlator.kpis import KpiReader
from correlator.model import CHANNELS, MILESTONES
from correlator.orders import STATUSES, OrderFilter, OrderReader, decode_cursor
from correlator.traces import TRACE_ID, TraceReader
from milepost.auth import Authenticator, AuthError, Principal


class BadParameter(Exception):
    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"Parameter '{name}' has value '{value[:80]}'. {expected}")
        self.name = name


def error(status: int, message: str, detail: object = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status)


def time_parameter(request: Request, name: str) -> int | None:
    """An RFC 3339 query parameter as µs since the epoch (None when absent)."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadParameter(name, text, "Must be an RFC 3339 time such as 2026-11-27T09:00:00Z.") from None
    if moment.tzinfo is None:
        raise BadParameter(name, text, "Must carry a timezone, e.g. a trailing Z.")
    return int(moment.timestamp() * 1_000_000)


def int_parameter(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadParameter(name, text, f"Must be a whole number from {low} to {high}.")
    return int(text)


def choice_parameter(
    request: Request, name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if text not in choices:
        raise BadParameter(name, text, f"Must be one of {', '.join(choices)}.")
    return text


class QueryEndpoints:
    def __init__(
        self,
        traces: TraceReader,
        orders: OrderReader,
        skus: SkuReader,
        promotions: PromotionReader,
        kpis: KpiReader,
        auth: Authenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.traces = traces
        self.orders = orders
        self.skus = skus
        self.promotions = promotions
        self.kpis = kpis
        self.auth = auth
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/traces/{trace_id}", self.trace, methods=["GET"]),
            Route("/api/v1/orders", self.order_list, methods=["GET"]),
            Route("/api/v1/orders/{key:path}", self.order, methods=["GET"]),
            Route("/api/v1/skus/{sku:path}", self.sku, methods=["GET"]),
            Route("/api/v1/promotions", self.promotion_list, methods=["GET"]),
            Route("/api/v1/promotions/{promo_id:path}", self.promotion, methods=["GET"]),
            Route("/api/v1/kpis", self.kpi, methods=["GET"]),
        ]

    def _reader(self, request: Request) -> Principal:
        return self.auth.check(request.headers.get("authorization"), "read")

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    async def trace(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        trace_id = request.path_params["trace_id"]
        if not TRACE_ID.match(trace_id):
            return error(400, f"Parameter 'trace_id' has value '{trace_id[:64]}'. Must be 32 hex characters.")
        spans = await run_in_threadpool(self.traces.spans, trace_id, principal.stores)
        if spans is None:
            return error(404, f"Trace '{trace_id}' is not known.", {"trace_id": trace_id})
        return JSONResponse({"trace_id": trace_id.lower(), "spans": spans})

    async def order(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        key = request.path_params["key"]
        if not key or len(key) > 256:
            return error(400, f"Parameter 'key' has value '{key[:80]}'. Must be 1 to 256 characters.")
        order = await run_in_threadpool(self.orders.lookup, key, self._now_us(), principal.stores)
        if order is None:
            return error(404, f"Order '{key}' is not known.", {"key": key})
        return JSONResponse(order)

    async def order_list(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
            cursor = request.query_params.get("cursor") or None
            if cursor is not None and decode_cursor(cursor) is None:
                raise BadParameter("cursor", cursor, "Use the next_cursor of a previous answer.")
            where = OrderFilter(
                status=choice_parameter(request, "status", STATUSES, "all") or "all",
                store_id=request.query_params.get("store_id") or None,
                milestone=choice_parameter(request, "milestone", MILESTONES, None),
                since_us=time_parameter(request, "since"),
                until_us=time_parameter(request, "until"),
                limit=int_parameter(request, "limit", 50, 1, 1000),
                cursor=cursor,
            )
        except AuthError as exc:
            return error(exc.status, exc.reason)
        except BadParameter as exc:
            return error(400, str(exc), {"parameter": exc.name})
        return JSONResponse(
            await run_in_threadpool(self.orders.search, where, self._now_us(), principal.stores)
        )

    async def sku(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        sku = request.path_params["sku"]
        location = request.query_params.get("location_id") or None
        found = await run_in_threadpool(self.skus.sku, sku, location, self._now_us(), principal.stores)
        if found is None:
            where = f" at location '{location}'" if location else ""
            return error(404, f"SKU '{sku}' is not known{where}.", {"sku": sku, "location_id": location})
        return JSONResponse(found)

    async def promotion_list(self, request: Request) -> Response:
        try:
            self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        items = await run_in_threadpool(self.promotions.promotions, self._now_us())
        return JSONResponse({"total": len(items), "items": items})

    async def promotion(self, request: Request) -> Response:
        try:
            self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        promo_id = request.path_params["promo_id"]
        found = await run_in_threadpool(self.promotions.promotion, promo_id, self._now_us())
        if found is None:
            return error(404, f"Promotion '{promo_id}' is not known.", {"promo_id": promo_id})
        return JSONResponse(found)

    async def kpi(self, request: Request) -> Response:
        now_us = self._now_us()
        try:
            principal = self._reader(request)
            until_us = time_parameter(request, "until") or now_us
            since_us = time_parameter(request, "since") or until_us - 7 * 86_400_000_000
            if since_us >= until_us:
                raise BadParameter("since", request.query_params.get("since", ""), "Must be before 'until'.")
            channel = choice_parameter(request, "channel", CHANNELS, None)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        except BadParameter as exc:
            return error(400, str(exc), {"parameter": exc.name})
        store_id = request.query_params.get("store_id") or None
        figures = await run_in_threadpool(
            self.kpis.kpis, since_us, until_us, now_us, channel, store_id, principal.stores
        )
        return JSONResponse(figures)
