"""OTLP log records carrying an event name are integration events, sent by the SDK's own log exporters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as ProtoLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.support import InProcessNode, in_process_node, wait_until

EXPORTERS = {
    "http-protobuf": lambda url: ProtoLogExporter(endpoint=f"{url}/v1/logs"),
    "http-json": lambda url: JsonLogExporter(endpoint=f"{url}/v1/logs"),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    with in_process_node(tmp_path_factory.mktemp("logs") / "data") as running:
        yield running


def emit(exporter: LogRecordExporter, service: str, order_id: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("pickup-desk")
    logger.emit(
        event_name="retail.order.ready",
        body={"order_id": order_id, "store_id": "042", "pickup_code": "P-4411", "email": "jane@example.com"},
        attributes={"event.id": f"ready-{order_id}"},
    )
    logger.emit(body="till 3 opened")  # a plain log line: not an integration event
    logger.emit(event_name="retail.order.ready", body={"store_id": "042"})  # breaks the contract
    provider.shutdown()


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_event_log_records_become_events(live: InProcessNode, name: str) -> None:
    service = f"pos-store-042-{uuid.uuid4().hex[:6]}"
    order_id = f"W-{name}"
    emit(EXPORTERS[name](live.url), service, order_id)

    def stored() -> list[tuple[object, ...]]:
        return live.query(
            "SELECT id, type, order_id, store_id, signal, data FROM events WHERE source = {s:String}",
            s=service,
        )

    wait_until(lambda: bool(stored()), 20, "the event from the log record")
    [(event_id, event_type, stored_order, store, signal, data)] = stored()
    assert (event_id, event_type, stored_order, store, signal) == (
        f"ready-{order_id}",
        "retail.order.ready",
        order_id,
        "042",
        "logs",
    )
    assert "jane@example.com" not in str(data)
    live.flush()
    quarantined = live.query("SELECT field, signal FROM quarantine WHERE source = {s:String}", s=service)
    assert quarantined == [("data.order_id", "logs")]


def test_garbage_logs_body_is_400(live: InProcessNode) -> None:
    answer = httpx.post(f"{live.url}/v1/logs", content=b"{", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["message"]
