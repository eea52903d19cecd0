"""Spans made the way the estate's services make them: the OpenTelemetry SDK, one provider per service.

Each service (``web-shop``, ``oms``, ``pos-store-042``...) has its own ``TracerProvider`` whose
resource names it; all share one seeded id generator, so a run gives the same trace and span ids.
Spans carry explicit start and end times (history is made in the past) and are handed, as they
end, to the delivery stage instead of an SDK batch processor: the simulator decides when and how
they reach the node (late, twice, after a store's outage).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from simulator.ids import SeededIdGenerator

Attributes = Mapping[str, AttributeValue]

SERVER = SpanKind.SERVER
CLIENT = SpanKind.CLIENT
INTERNAL = SpanKind.INTERNAL
CONSUMER = SpanKind.CONSUMER


class _Handover(SpanProcessor):
    """Passes every ended span on; nothing is queued here, so nothing can be dropped here."""

    def __init__(self, deliver: Callable[[ReadableSpan], None]) -> None:
        self.deliver = deliver

    def on_start(self, span: object, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.deliver(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Telemetry:
    def __init__(self, run: int, deliver: Callable[[ReadableSpan], None]) -> None:
        self.run = run
        self._ids = SeededIdGenerator(run)
        self._handover = _Handover(deliver)
        self._tracers: dict[str, Tracer] = {}

    def tracer(self, service: str) -> Tracer:
        tracer = self._tracers.get(service)
        if tracer is None:
            # The SDK would make up a random instance id; the run's own keeps a run's spans identical.
            instance = uuid.UUID(int=random.Random(f"{self.run}/{service}").getrandbits(128), version=4)
            resource = Resource.create(
                {
                    "service.name": service,
                    "service.namespace": "retail",
                    "service.instance.id": str(instance),
                    "deployment.environment": "simulation",
                }
            )
            provider = TracerProvider(resource=resource, id_generator=self._ids, shutdown_on_exit=False)
            provider.add_span_processor(self._handover)
            tracer = provider.get_tracer("milepost.simulator", "1.0")
            self._tracers[service] = tracer
        return tracer

    def span(
        self,
        service: str,
        name: str,
        start_us: int,
        end_us: int,
        attributes: Attributes,
        parent: Span | None = None,
        kind: SpanKind = INTERNAL,
        error: str | None = None,
    ) -> Span:
        """An ended span; ``parent`` (possibly of another service) makes it a child in the same trace."""
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer(service).start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_us * 1000
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=max(end_us, start_us) * 1000)
        return span

    def open_span(
        self,
        service: str,
        name: str,
        start_us: int,
        attributes: Attributes,
        parent: Span | None = None,
        kind: SpanKind = INTERNAL,
    ) -> Span:
        """A span still open: end it with ``close`` once its children are made, like a real server does."""
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer(service).start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_us * 1000
        )

    @staticmethod
    def close(span: Span, end_us: int, error: str | None = None) -> None:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end_us * 1000)
