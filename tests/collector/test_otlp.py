"""OTLP decoding: both encodings give the same rows, bad ids are refused alone, logs become events."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

from collector.model import DecodeError, Rejection, SpanBatch
from collector.otlp import (
    decode_logs,
    decode_traces,
    encode_logs_response,
    encode_trace_response,
)
from collector.privacy import PersonalData
from storage.tables import SPAN_SCHEMA

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "otlp"
FIXTURES = sorted(DATA.rglob("*.json"))
OFFICIAL_EXAMPLE = DATA / "opentelemetry-proto-example-trace.json"
RECEIVED_AT_NS = 1_795_780_800_123_456_789
TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def hex_ids_to_base64(document: Any) -> Any:
    """The document with OTLP/JSON hex ids rewritten as the base64 that proto3 JSON expects."""
    if isinstance(document, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(value)).decode()
                if key in ID_FIELDS and isinstance(value, str)
                else hex_ids_to_base64(value)
            )
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [hex_ids_to_base64(item) for item in document]
    return document


def trace_protobuf(document: dict[str, Any]) -> bytes:
    request = json_format.ParseDict(hex_ids_to_base64(document), ExportTraceServiceRequest())
    return request.SerializeToString()


def logs_protobuf(document: dict[str, Any]) -> bytes:
    request = json_format.ParseDict(hex_ids_to_base64(document), ExportLogsServiceRequest())
    return request.SerializeToString()


def decode_json(document: Any, privacy: PersonalData | None = None) -> SpanBatch:
    body = json.dumps(document).encode()
    return decode_traces(body, "json", privacy or PersonalData(), RECEIVED_AT_NS)


def decode_both(document: dict[str, Any], privacy: PersonalData | None = None) -> SpanBatch:
    """Decode ``document`` as OTLP/JSON and as protobuf; check they agree and return one."""
    from_json = decode_json(document, privacy)
    from_protobuf = decode_traces(
        trace_protobuf(document), "protobuf", privacy or PersonalData(), RECEIVED_AT_NS
    )
    assert from_json.table.to_pylist() == from_protobuf.table.to_pylist()
    assert from_json.rejected == from_protobuf.rejected
    return from_json


def value(kind: str, content: Any) -> dict[str, Any]:
    return {kind: content}


def attr(key: str, content: Any, kind: str = "stringValue") -> dict[str, Any]:
    return {"key": key, "value": {kind: content}}


def span(span_id: Any, name: str = "op", **fields: Any) -> dict[str, Any]:
    return {
        "traceId": TRACE_ID,
        "spanId": span_id,
        "name": name,
        "startTimeUnixNano": "1795780800000000000",
        "endTimeUnixNano": "1795780800250000000",
        **fields,
    }


def request(*spans: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    resource_attributes = resource if resource is not None else [attr("service.name", "till")]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": resource_attributes},
                "scopeSpans": [{"scope": {"name": "pos", "version": "1.2"}, "spans": list(spans)}],
            }
        ]
    }


def only_row(batch: SpanBatch) -> dict[str, Any]:
    rows = batch.table.to_pylist()
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def nanos(batch: SpanBatch, column: str) -> list[Any]:
    values: list[Any] = batch.table.column(column).cast(pa.int64()).to_pylist()
    return values


def count_spans(document: dict[str, Any]) -> int:
    return sum(
        len(scope.get("spans", []))
        for resource in document.get("resourceSpans", [])
        for scope in resource.get("scopeSpans", [])
    )


# --- fixtures -------------------------------------------------------------------------------


def test_fixtures_are_present() -> None:
    assert OFFICIAL_EXAMPLE in FIXTURES
    assert len(FIXTURES) >= 33


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.name)
def test_fixture_decodes_the_same_from_json_and_protobuf(path: Path) -> None:
    document = json.loads(path.read_text())
    from_json = decode_traces(path.read_bytes(), "json", PersonalData(), RECEIVED_AT_NS)
    from_protobuf = decode_traces(trace_protobuf(document), "protobuf", PersonalData(), RECEIVED_AT_NS)

    assert from_json.table.schema == SPAN_SCHEMA
    assert from_json.table.to_pylist() == from_protobuf.table.to_pylist()
    assert from_json.rejected == from_protobuf.rejected == []
    assert from_json.table.num_rows == count_spans(document)


def test_official_example_ids_are_lower_case_hex_and_fields_are_read() -> None:
    batch = decode_traces(OFFICIAL_EXAMPLE.read_bytes(), "json", PersonalData(), RECEIVED_AT_NS)
    row = only_row(batch)

    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["span_id"] == "eee19b7ec3c1b174"
    assert row["parent_span_id"] == "eee19b7ec3c1b173"
    assert row["span_name"] == "I'm a server span"
    assert row["span_kind"] == "SERVER"
    assert row["service_name"] == "my.service"
    assert row["scope_name"] == "my.library"
    assert row["scope_version"] == "1.0.0"
    assert row["span_attributes"] == [("my.span.attr", "some value")]
    assert row["resource_attributes"] == [("service.name", "my.service")]
    assert row["duration_ns"] == 1_000_000_000
    assert row["status_code"] == "unset"
    assert nanos(batch, "timestamp") == [1_544_712_660_000_000_000]
    assert nanos(batch, "received_at") == [RECEIVED_AT_NS // 1000]


# --- field forms ----------------------------------------------------------------------------


def test_ids_of_any_case_are_lower_cased() -> None:
    batch = decode_both(
        request(
            span("eEe19B7ec3C1b174", parentSpanId="AAAAAAAAAAAAAAAA"),
            span("0123456789abcdef", traceId="0123456789ABCDEFabcdef0123456789"),
        )
    )
    rows = batch.table.to_pylist()
    assert [(r["trace_id"], r["span_id"], r["parent_span_id"]) for r in rows] == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "aaaaaaaaaaaaaaaa"),
        ("0123456789abcdefabcdef0123456789", "0123456789abcdef", ""),
    ]


def test_int64_as_numbers_or_strings_and_enums_as_numbers_or_names() -> None:
    as_strings = request(
        span(
            "0000000000000001",
            startTimeUnixNano="1795780800000000000",
            endTimeUnixNano="1795780800000000500",
            kind="SPAN_KIND_CONSUMER",
            status={"code": "STATUS_CODE_ERROR", "message": "card declined"},
        )
    )
    as_numbers = request(
        span(
            "0000000000000001",
            startTimeUnixNano=1795780800000000000,
            endTimeUnixNano=1795780800000000500,
            kind=5,
            status={"code": 2, "message": "card declined"},
        )
    )
    row = only_row(decode_both(as_strings))
    assert only_row(decode_both(as_numbers)) == row
    assert row["span_kind"] == "CONSUMER"
    assert row["status_code"] == "error"
    assert row["status_message"] == "card declined"
    assert row["duration_ns"] == 500


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        (0, 0, ("UNSPECIFIED", "unset")),
        (1, 1, ("INTERNAL", "ok")),
        ("SPAN_KIND_CLIENT", "STATUS_CODE_OK", ("CLIENT", "ok")),
        ("SPAN_KIND_PRODUCER", "STATUS_CODE_UNSET", ("PRODUCER", "unset")),
    ],
)
def test_span_kinds_and_status_codes(kind: Any, status: Any, expected: tuple[str, str]) -> None:
    row = only_row(decode_both(request(span("0000000000000001", kind=kind, status={"code": status}))))
    assert (row["span_kind"], row["status_code"]) == expected


def test_negative_duration_is_zero() -> None:
    document = request(
        span("0000000000000001", startTimeUnixNano="2000", endTimeUnixNano="1000"),
    )
    assert only_row(decode_both(document))["duration_ns"] == 0


def test_every_any_value_kind_becomes_text() -> None:
    kvlist = {
        "values": [
            {"key": "a", "value": {"intValue": "1"}},
            {"key": "b", "value": {"arrayValue": {"values": [{"boolValue": False}, {"doubleValue": 1.5}]}}},
            {"key": "c", "value": {}},
        ]
    }
    document = request(
        span(
            "0000000000000001",
            attributes=[
                attr("s", "text"),
                attr("empty", ""),
                attr("yes", True, "boolValue"),
                attr("no", False, "boolValue"),
                attr("int_string", "-42", "intValue"),
                attr("int_number", 7, "intValue"),
                attr("half", 0.5, "doubleValue"),
                attr("three", 3, "doubleValue"),
                attr("big", 1e20, "doubleValue"),
                attr("blob", "AAAwOQ==", "bytesValue"),
                attr("list", {"values": [{"stringValue": "x"}, {"intValue": "2"}]}, "arrayValue"),
                attr("map", kvlist, "kvlistValue"),
                attr("empty_list", {}, "arrayValue"),
                {"key": "unset", "value": {}},
            ],
        )
    )
    attributes = dict(only_row(decode_both(document))["span_attributes"])
    assert attributes == {
        "s": "text",
        "empty": "",
        "yes": "true",
        "no": "false",
        "int_string": "-42",
        "int_number": "7",
        "half": "0.5",
        "three": "3.0",
        "big": "1e+20",
        "blob": "00003039",
        "list": '["x",2]',
        "map": '{"a":1,"b":[false,1.5],"c":null}',
        "empty_list": "[]",
        "unset": "",
    }


def test_bytes_in_url_safe_base64_without_padding() -> None:
    document = request(span("0000000000000001", attributes=[attr("blob", "-_8", "bytesValue")]))
    assert dict(only_row(decode_json(document))["span_attributes"]) == {"blob": "fbff"}


def test_events_and_links() -> None:
    document = request(
        span(
            "0000000000000001",
            events=[
                {
                    "timeUnixNano": "1795780800000000100",
                    "name": "paid",
                    "attributes": [attr("amount", 12.5, "doubleValue")],
                },
                {"timeUnixNano": 1795780800000000200, "name": "printed"},
            ],
            links=[
                {
                    "traceId": "ABCDEF0123456789ABCDEF0123456789",
                    "spanId": "ABCDEF0123456789",
                    "traceState": "vendor=1",
                    "attributes": [attr("link.kind", "basket")],
                }
            ],
        )
    )
    batch = decode_both(document)
    row = only_row(batch)
    event_times = batch.table.column("events_timestamp").cast(pa.list_(pa.int64())).to_pylist()
    assert event_times == [[1795780800000000100, 1795780800000000200]]
    assert row["events_name"] == ["paid", "printed"]
    assert row["events_attributes"] == [[("amount", "12.5")], []]
    assert row["links_trace_id"] == ["abcdef0123456789abcdef0123456789"]
    assert row["links_span_id"] == ["abcdef0123456789"]
    assert row["links_trace_state"] == ["vendor=1"]
    assert row["links_attributes"] == [[("link.kind", "basket")]]


def test_missing_service_name_and_empty_request() -> None:
    row = only_row(decode_both(request(span("0000000000000001"), resource=[])))
    assert row["service_name"] == "unknown_service"
    assert row["resource_attributes"] == []

    for body, encoding in ((b"{}", "json"), (b"", "protobuf"), (b'{"resourceSpans": []}', "json")):
        batch = decode_traces(body, encoding, PersonalData(), RECEIVED_AT_NS)
        assert batch.table.num_rows == 0
        assert batch.table.schema == SPAN_SCHEMA


# --- business keys and personal data --------------------------------------------------------


def test_business_keys_from_span_then_resource_attributes() -> None:
    resource = [
        attr("service.name", "till"),
        attr("retail.store.id", "S-12"),
        attr("retail.channel", "store"),
        attr("retail.order.id", "from-resource"),
    ]
    document = request(
        span(
            "0000000000000001",
            attributes=[
                attr("retail.order.id", "O-1"),
                attr("retail.milestone", "paid"),
                attr("retail.sku", "SKU-9"),
                attr("retail.location.id", "L-3"),
                attr("retail.promotion.id", "P-5"),
                attr("retail.alias.kind", "basket"),
                attr("retail.alias.value", "B-77"),
            ],
        ),
        span("0000000000000002"),
        resource=resource,
    )
    rows = decode_both(document).table.to_pylist()
    keys = ("order_id", "milestone", "sku", "store_id", "location_id", "channel", "promotion_id")
    assert [tuple(r[k] for k in (*keys, "alias_kind", "alias_value")) for r in rows] == [
        ("O-1", "paid", "SKU-9", "S-12", "L-3", "store", "P-5", "basket", "B-77"),
        ("from-resource", "", "", "S-12", "", "store", "", "", ""),
    ]


def test_personal_data_is_hashed_everywhere() -> None:
    privacy = PersonalData()
    document = request(
        span(
            "0000000000000001",
            attributes=[attr("customer.email", "ada@example.com"), attr("retail.order.id", "O-1")],
            events=[{"timeUnixNano": "1", "name": "e", "attributes": [attr("phone", "+44 1")]}],
            links=[{"traceId": TRACE_ID, "spanId": SPAN_ID, "attributes": [attr("user.name", "Ada")]}],
        ),
        span("0000000000000002", attributes=[attr("customer.email", "bob@example.com")]),
        resource=[attr("service.name", "till"), attr("customer.first_name", "Ada")],
    )
    first, second = decode_both(document, privacy).table.to_pylist()
    assert dict(first["span_attributes"]) == {
        "customer.email": privacy.hash("ada@example.com"),
        "retail.order.id": "O-1",
    }
    assert dict(second["span_attributes"]) == {"customer.email": privacy.hash("bob@example.com")}
    assert dict(first["resource_attributes"])["customer.first_name"] == privacy.hash("Ada")
    assert first["events_attributes"] == [[("phone", privacy.hash("+44 1"))]]
    assert first["links_attributes"] == [[("user.name", privacy.hash("Ada"))]]


# --- rejections and decode errors -----------------------------------------------------------


def test_spans_with_bad_ids_are_refused_alone_with_their_positions() -> None:
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "till")]},
                "scopeSpans": [
                    {"spans": [span("0000000000000001"), span("0000000000000002", traceId="00ab")]},
                    {"spans": [span("0000000000000000"), span("0000000000000004")]},
                ],
            },
            {
                "scopeSpans": [
                    {
                        "spans": [
                            span("0000000000000005", traceId="0" * 32),
                            span("0000000000000006", parentSpanId="0102"),
                            span("0000000000000007", parentSpanId="0000000000000000"),
                        ]
                    }
                ]
            },
        ]
    }
    batch = decode_both(document)
    rows = batch.table.to_pylist()
    assert [(r["span_id"], r["parent_span_id"]) for r in rows] == [
        ("0000000000000001", ""),
        ("0000000000000004", ""),
        ("0000000000000007", ""),
    ]
    assert [(r.position, r.field, r.value) for r in batch.rejected] == [
        (1, "traceId", "00ab"),
        (2, "spanId", "0000000000000000"),
        (4, "traceId", "0" * 32),
        (5, "parentSpanId", "0102"),
    ]
    assert batch.rejected[0] == Rejection(
        signal="traces",
        position=1,
        field="traceId",
        value="00ab",
        reason="Span 1 has traceId '00ab' which is not 16 bytes of hex.",
    )
    assert (
        batch.rejected[1].reason == "Span 2 has spanId '0000000000000000' which is all zeros (an invalid id)."
    )


def test_non_hex_json_ids_are_refused() -> None:
    document = request(
        span("0000000000000001", traceId="zz" * 16),
        span("not hex at all"),
        span(17),
        {"name": "no ids"},
        span("0000000000000005"),
    )
    batch = decode_json(document)
    assert [r["span_id"] for r in batch.table.to_pylist()] == ["0000000000000005"]
    assert [(r.position, r.field, r.value) for r in batch.rejected] == [
        (0, "traceId", "zz" * 16),
        (1, "spanId", "not hex at all"),
        (2, "spanId", "17"),
        (3, "traceId", ""),
    ]
    assert batch.rejected[1].reason == "Span 1 has spanId 'not hex at all' which is not 8 bytes of hex."


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (b"\xff\xff\xff\xff", "protobuf", "Body is not valid OTLP protobuf: "),
        (b"", "json", "Body is not valid JSON: Expecting value at line 1 column 1."),
        (b"{nope", "json", "Body is not valid JSON: "),
        (b"\xff\xfe\xfd", "json", "Body is not valid JSON: "),
        (b"[]", "json", "Body is not an OTLP/JSON request: it is a JSON list, not an object."),
        (
            b'{"resourceSpans": {}}',
            "json",
            "Body is not valid OTLP/JSON: resourceSpans is not a list of objects.",
        ),
        (
            b'{"resourceSpans": [1]}',
            "json",
            "Body is not valid OTLP/JSON: resourceSpans is not a list of objects.",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}',
            "json",
            "Body is not valid OTLP/JSON: spans ",
        ),
        (b'{"resourceSpans": [{"resource": []}]}', "json", "Body is not valid OTLP/JSON: resource is not"),
    ],
)
def test_undecodable_bodies(body: bytes, encoding: str, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_traces(body, encoding, PersonalData(), RECEIVED_AT_NS)
    assert caught.value.reason.startswith(message)
    assert caught.value.reason.endswith(".")


@pytest.mark.parametrize(
    "fields",
    [
        {"startTimeUnixNano": "soon"},
        {"startTimeUnixNano": -1},
        {"endTimeUnixNano": str(2**64)},
        {"name": 5},
        {"kind": []},
        {"attributes": [{"key": "a", "value": {"intValue": "x"}}]},
        {"attributes": [{"key": "a", "value": {"bytesValue": "!!"}}]},
        {"attributes": [{"key": "a", "value": "plain"}]},
        {"attributes": [{"key": 1, "value": {"stringValue": "a"}}]},
        {"attributes": {"a": "b"}},
        {"events": [{"timeUnixNano": "x"}]},
        {"status": "ok"},
    ],
)
def test_wrongly_typed_json_fields_are_decode_errors(fields: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match=r"^Body is not valid OTLP/JSON: .*\.$"):
        decode_json(request(span("0000000000000001", **fields)))


def test_unknown_encoding_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="xml"):
        decode_traces(b"", "xml", PersonalData(), RECEIVED_AT_NS)


# --- responses ------------------------------------------------------------------------------


def rejections(count: int, reason_length: int = 40) -> list[Rejection]:
    return [
        Rejection("traces", i, "spanId", "00", f"Span {i} is bad {'x' * reason_length}.")
        for i in range(count)
    ]


def test_trace_response_protobuf_round_trip() -> None:
    response = ExportTraceServiceResponse()
    response.ParseFromString(encode_trace_response(rejections(2), "protobuf"))
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == "; ".join(r.reason for r in rejections(2))

    assert encode_trace_response([], "protobuf") == b""


def test_trace_response_json_round_trip() -> None:
    body = encode_trace_response(rejections(3), "json")
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "3"
    response = json_format.Parse(body, ExportTraceServiceResponse())
    assert response.partial_success.rejected_spans == 3
    assert response.partial_success.error_message.startswith("Span 0 is bad")

    assert json.loads(encode_trace_response([], "json")) == {}


def test_response_message_is_capped() -> None:
    many = rejections(500, reason_length=300)
    response = ExportTraceServiceResponse()
    response.ParseFromString(encode_trace_response(many, "protobuf"))
    assert response.partial_success.rejected_spans == 500
    assert 0 < len(response.partial_success.error_message) <= 1024


def test_logs_response_round_trips() -> None:
    response = ExportLogsServiceResponse()
    response.ParseFromString(encode_logs_response(rejections(4), "protobuf"))
    assert response.partial_success.rejected_log_records == 4
    body = encode_logs_response(rejections(4), "json")
    assert json_format.Parse(body, ExportLogsServiceResponse()).partial_success.rejected_log_records == 4
    assert encode_logs_response([], "json") == b"{}"


# --- logs -----------------------------------------------------------------------------------

PAID_AT_NS = int(datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp()) * 1_000_000_000 + 123_456_789

LOGS = {
    "resourceLogs": [
        {
            "resource": {"attributes": [attr("service.name", "till")]},
            "scopeLogs": [
                {
                    "scope": {"name": "pos"},
                    "logRecords": [
                        {
                            "timeUnixNano": str(PAID_AT_NS),
                            "eventName": "retail.order.paid",
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "attributes": [attr("cloudevents.event_subject", "O-1")],
                            "body": {
                                "kvlistValue": {
                                    "values": [
                                        {"key": "order_id", "value": {"stringValue": "O-1"}},
                                        {"key": "amount", "value": {"doubleValue": 12.5}},
                                    ]
                                }
                            },
                        },
                        {
                            "observedTimeUnixNano": PAID_AT_NS - 123_456_789,
                            "severityNumber": "SEVERITY_NUMBER_INFO",
                            "attributes": [
                                attr("event.name", "retail.stock.counted"),
                                attr("event.id", "count-1"),
                                attr("cloudevents.event_source", "//stores/12"),
                                attr("event.dataschema", "https://schemas.example/stock/1"),
                            ],
                            "body": {"stringValue": '{"sku": "SKU-9", "count": 4}'},
                        },
                        {"timeUnixNano": "1", "body": {"stringValue": "plain log line"}, "severityNumber": 9},
                    ],
                }
            ],
        },
        {
            "scopeLogs": [
                {
                    "logRecords": [
                        {"eventName": "retail.ping"},
                        {"eventName": "retail.note", "body": {"stringValue": "[not json"}},
                        {"attributes": [attr("other", "x")]},
                    ]
                }
            ]
        },
    ]
}


def test_log_records_with_an_event_name_become_events() -> None:
    decoded = decode_logs(json.dumps(LOGS).encode(), "json", RECEIVED_AT_NS)
    assert decoded.ignored == 2
    paid, counted, ping, note = decoded.events

    assert paid.attributes == {
        "specversion": "1.0",
        "id": paid.attributes["id"],
        "source": "till",
        "type": "retail.order.paid",
        "time": "2026-11-27T10:00:00.123456Z",
        "subject": "O-1",
    }
    assert len(paid.attributes["id"]) == 32
    assert paid.data == {"order_id": "O-1", "amount": 12.5}
    assert (paid.position, paid.signal, paid.has_data) == (0, "logs", True)
    payload = json.loads(paid.payload)
    assert payload["traceId"] == TRACE_ID.lower()
    assert payload["eventName"] == "retail.order.paid"
    assert payload["body"] == {"order_id": "O-1", "amount": 12.5}

    assert counted.attributes == {
        "specversion": "1.0",
        "id": "count-1",
        "source": "//stores/12",
        "type": "retail.stock.counted",
        "time": "2026-11-27T10:00:00.000000Z",
        "dataschema": "https://schemas.example/stock/1",
    }
    assert counted.data == {"sku": "SKU-9", "count": 4}
    assert counted.position == 1

    assert ping.attributes["source"] == "otlp"
    assert "time" not in ping.attributes
    assert (ping.data, ping.has_data, ping.position) == (None, False, 3)
    assert note.data == "[not json"


def test_log_event_ids_are_deterministic_and_encoding_independent() -> None:
    body = json.dumps(LOGS).encode()
    first = decode_logs(body, "json", RECEIVED_AT_NS)
    again = decode_logs(body, "json", RECEIVED_AT_NS + 5)
    from_protobuf = decode_logs(logs_protobuf(LOGS), "protobuf", RECEIVED_AT_NS)

    assert [e.attributes["id"] for e in first.events] == [e.attributes["id"] for e in again.events]
    assert first == from_protobuf
    ids = [e.attributes["id"] for e in first.events]
    assert len(set(ids)) == len(ids)


def test_log_event_name_attribute_is_used_when_the_field_is_empty() -> None:
    document = {
        "resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [attr("event.name", "x.y")]}]}]}]
    }
    decoded = decode_logs(logs_protobuf(document), "protobuf", RECEIVED_AT_NS)
    assert [e.attributes["type"] for e in decoded.events] == ["x.y"]
    assert decoded.ignored == 0


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\xff\xff\xff\xff", "protobuf"),
        (b"not json", "json"),
        (b'"text"', "json"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": {}}]}]}', "json"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "x"}]}]}]}', "json"),
    ],
)
def test_undecodable_log_bodies(body: bytes, encoding: str) -> None:
    with pytest.raises(DecodeError, match=r"^Body is .*\.$"):
        decode_logs(body, encoding, RECEIVED_AT_NS)


# --- the OpenTelemetry SDK's own encoder ----------------------------------------------------


def test_spans_encoded_by_the_sdk() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "till", "retail.store.id": "S-12"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("pos", "2.0")
    attributes: dict[str, AttributeValue] = {
        "retail.order.id": "O-1",
        "count": 3,
        "ratio": 0.5,
        "paid": True,
        "skus": ["A", "B"],
    }
    with tracer.start_as_current_span("checkout", attributes=attributes) as parent:
        parent.add_event("paid", {"amount": 12.5})
        with tracer.start_as_current_span("print receipt"):
            pass
    provider.shutdown()
    sdk_spans = exporter.get_finished_spans()

    body = encode_spans(sdk_spans).SerializeToString()
    batch = decode_traces(body, "protobuf", PersonalData(), RECEIVED_AT_NS)
    rows = {row["span_name"]: row for row in batch.table.to_pylist()}
    assert batch.rejected == []
    assert set(rows) == {"checkout", "print receipt"}
    starts = dict(zip(batch.table.column("span_name").to_pylist(), nanos(batch, "timestamp"), strict=True))
    for sdk_span in sdk_spans:
        assert sdk_span.context is not None
        assert sdk_span.start_time is not None and sdk_span.end_time is not None
        row = rows[sdk_span.name]
        assert row["trace_id"] == format(sdk_span.context.trace_id, "032x")
        assert row["span_id"] == format(sdk_span.context.span_id, "016x")
        assert row["parent_span_id"] == (format(sdk_span.parent.span_id, "016x") if sdk_span.parent else "")
        assert starts[sdk_span.name] == sdk_span.start_time
        assert row["duration_ns"] == sdk_span.end_time - sdk_span.start_time
        assert row["service_name"] == "till"
        assert (row["scope_name"], row["scope_version"]) == ("pos", "2.0")
        assert row["store_id"] == "S-12"
    checkout = rows["checkout"]
    assert dict(checkout["span_attributes"]) == {
        "retail.order.id": "O-1",
        "count": "3",
        "ratio": "0.5",
        "paid": "true",
        "skus": '["A","B"]',
    }
    assert checkout["order_id"] == "O-1"
    assert checkout["span_kind"] == "INTERNAL"
    assert checkout["events_name"] == ["paid"]
    assert checkout["events_attributes"] == [[("amount", "12.5")]]


# --- throughput (printed, not asserted) -----------------------------------------------------


def large_request(spans: int = 512, attributes: int = 10) -> dict[str, Any]:
    return request(
        *[
            span(
                f"{i + 1:016x}",
                kind=2,
                attributes=[
                    attr(f"attr.{j}", str(i * j), "intValue")
                    if j % 3 == 0
                    else attr(f"attr.{j}", f"value-{i}-{j}")
                    for j in range(attributes)
                ],
            )
            for i in range(spans)
        ]
    )


def test_throughput_is_printed() -> None:
    document = large_request()
    bodies = {"protobuf": trace_protobuf(document), "json": json.dumps(document).encode()}
    privacy = PersonalData()
    for encoding, body in bodies.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            batch = decode_traces(body, encoding, privacy, RECEIVED_AT_NS)
            best = min(best, time.perf_counter() - started)
        assert batch.table.num_rows == 512
        print(f"\n{encoding}: {512 / best:,.0f} spans/s (512 spans x 10 attributes, best of 5)")
