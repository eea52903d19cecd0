"""CloudEvents over HTTP, produced by the real cloudevents SDK, decoded and validated into event rows."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from collector.cloudevents import BATCHED, STRUCTURED, EventValidator, parse_http
from collector.contracts import ContractRegistry
from collector.model import DecodeError, EventBatch, UnsupportedMediaType
from collector.privacy import PersonalData
from storage.tables import BUSINESS_KEYS, EVENT_SCHEMA

RECEIVED_US = 1_750_000_000_000_000
EVENT_TIME = datetime(2025, 3, 20, 8, 15, 30, 123456, tzinfo=UTC)
ORDER = {
    "order_id": "W-10023",
    "channel": "web",
    "store_id": "042",
    "fulfillment": "bopis",
    "lines": [{"sku": "884-12", "qty": 2, "unit_price": 19.99}],
    "total": 39.98,
    "currency": "EUR",
}


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _event(event_type: str, data: Any, **attributes: Any) -> CloudEvent:
    return CloudEvent(
        attributes={"type": event_type, "source": "pos/042", "id": "e-1", "time": EVENT_TIME, **attributes},
        data=data,
    )


def _headers(message: HTTPMessage) -> dict[str, str]:
    return {name.lower(): value for name, value in message.headers.items()}


def _batch_body(*events: CloudEvent) -> bytes:
    # The SDK has no batch helper: a batch is the array of the events' structured JSON.
    return json.dumps([json.loads(to_structured_event(event).body) for event in events]).encode()


def _build(headers: dict[str, str], body: bytes, privacy: PersonalData | None = None) -> EventBatch:
    validator = EventValidator(ContractRegistry.builtin(), privacy or PersonalData())
    return validator.build(parse_http(headers, body), RECEIVED_US)


def _rows(batch: EventBatch) -> list[dict[str, Any]]:
    assert batch.table.schema == EVENT_SCHEMA
    rows: list[dict[str, Any]] = batch.table.to_pylist()
    return rows


def test_structured_mode_becomes_one_row() -> None:
    event = _event(
        "retail.order.accepted",
        ORDER,
        subject="W-10023",
        datacontenttype="application/json",
        dataschema="https://schemas.milepost.dev/retail.order.accepted/v1.json",
        storeregion="north",
        attempt=3,
    )
    message = to_structured_event(event)
    batch = _build(_headers(message), message.body)
    assert batch.rejected == []
    [row] = _rows(batch)
    assert row["time"] == EVENT_TIME and row["time_missing"] is False
    assert row["received_at"] == datetime.fromtimestamp(RECEIVED_US / 1e6, UTC)
    assert (row["source"], row["id"], row["type"], row["spec_version"]) == (
        "pos/042",
        "e-1",
        "retail.order.accepted",
        "1.0",
    )
    assert (row["subject"], row["data_content_type"]) == ("W-10023", "application/json")
    assert row["data_schema"] == "https://schemas.milepost.dev/retail.order.accepted/v1.json"
    assert row["data"] == json.dumps(ORDER, separators=(",", ":"))
    assert dict(row["extensions"]) == {"storeregion": "north", "attempt": "3"}
    assert row["contract"] == "retail.order.accepted/v1" and row["signal"] == "events"
    keys = {key: row[key] for key in BUSINESS_KEYS}
    assert keys == {
        "order_id": "W-10023",
        "milestone": "",
        "sku": "",
        "store_id": "042",
        "location_id": "",
        "channel": "web",
        "promotion_id": "",
        "alias_kind": "",
        "alias_value": "",
    }


def test_binary_mode_reads_percent_encoded_headers() -> None:
    event = _event(
        "retail.inventory.reserved",
        {"order_id": "W-1", "sku": "884-12", "qty": 2, "location_id": "DC 1"},
        source="pos/Zürich store",
        datacontenttype="application/json; charset=utf-8",
        storeregion="nord öst",
    )
    message = to_binary_event(event)
    headers = _headers(message)
    assert "%20" in headers["ce-source"], "the SDK percent-encodes header values"
    [raw] = parse_http(headers, message.body)
    assert raw.attributes["source"] == "pos/Zürich store"
    batch = _build(headers, message.body)
    assert batch.rejected == []
    [row] = _rows(batch)
    assert row["source"] == "pos/Zürich store" and row["time"] == EVENT_TIME
    assert row["data_content_type"] == "application/json; charset=utf-8"
    assert dict(row["extensions"]) == {"storeregion": "nord öst"}
    assert (row["order_id"], row["sku"], row["location_id"]) == ("W-1", "884-12", "DC 1")
    assert row["contract"] == "retail.inventory.reserved/v1"


def test_binary_mode_text_data_of_a_type_without_contract() -> None:
    message = to_binary_event(_event("com.acme.pos.heartbeat", "till 3 alive", datacontenttype="text/plain"))
    [raw] = parse_http(_headers(message), message.body)
    assert raw.data == "till 3 alive" and raw.has_data
    assert json.loads(raw.payload)["data"] == "till 3 alive"
    [row] = _rows(_build(_headers(message), message.body))
    assert (row["data"], row["contract"], row["order_id"]) == ('"till 3 alive"', "", "")


def test_binary_mode_without_content_type_reads_json_data() -> None:
    message = to_binary_event(_event("retail.order.fulfilled", {"order_id": "W-1"}))
    assert "content-type" not in _headers(message)
    [row] = _rows(_build(_headers(message), message.body))
    assert (row["order_id"], row["data_content_type"]) == ("W-1", "")


def test_batched_mode_keeps_positions_and_every_key() -> None:
    events = [
        _event("retail.order.alias", {"order_id": "W-1", "kind": "pos_receipt", "value": "R-77"}, id="a"),
        _event("retail.promotion.activated", {"promo_id": "SPRING-10", "target": "042"}, id="b"),
        _event(
            "retail.inventory.snapshot",
            {"sku": "884-12", "location_id": "042", "system": "pos", "on_hand": 7},
            id="c",
        ),
        _event("com.acme.pos.sale", {"order_id": 10023, "store_id": 42}, id="d"),
    ]
    raw = parse_http({"content-type": BATCHED}, _batch_body(*events))
    assert [event.position for event in raw] == [0, 1, 2, 3]
    batch = _build({"content-type": BATCHED + "; charset=utf-8"}, _batch_body(*events))
    assert batch.rejected == []
    alias, activated, snapshot, custom = _rows(batch)
    assert (alias["order_id"], alias["alias_kind"], alias["alias_value"]) == ("W-1", "pos_receipt", "R-77")
    assert (activated["promotion_id"], activated["store_id"]) == ("SPRING-10", "042")
    assert (snapshot["sku"], snapshot["location_id"]) == ("884-12", "042")
    assert (custom["order_id"], custom["store_id"], custom["contract"]) == ("10023", "42", "")
    assert all(row["milestone"] == "" for row in (alias, activated, snapshot, custom))


def test_a_mixed_batch_keeps_the_valid_and_explains_the_invalid() -> None:
    valid = json.loads(to_structured_event(_event("retail.order.accepted", ORDER, id="ok-1")).body)
    items: list[Any] = [
        valid,
        {k: v for k, v in valid.items() if k != "id"},
        {**valid, "id": "e-2", "specversion": "0.3"},
        "not an event",
        {**valid, "id": "e-4", "data": {**ORDER, "channel": "fax"}},
        {**valid, "id": "ok-5"},
    ]
    batch = _build({"content-type": BATCHED}, json.dumps(items).encode())
    assert [row["id"] for row in _rows(batch)] == ["ok-1", "ok-5"]
    got = [(r.position, r.field, r.value) for r in batch.rejected]
    assert got == [
        (1, "id", "<missing>"),
        (2, "specversion", "0.3"),
        (3, "event", "not an event"),
        (4, "data.channel", "fax"),
    ]
    missing, version, not_object, contract = batch.rejected
    assert missing.reason == "Event 1 (source 'pos/042') is missing required attribute 'id'."
    assert version.reason == (
        "Event 2 (source 'pos/042', id 'e-2') "
        "has attribute 'specversion' with value '0.3', which is not '1.0'."
    )
    assert not_object.reason == "Event 3 is 'not an event', which is not a JSON object."
    assert contract.reason == (
        "Event 4 (source 'pos/042', id 'e-4'): "
        "data.channel has value 'fax', which is not one of web, app, store, marketplace."
    )
    assert (contract.source, contract.id, contract.type, contract.signal) == (
        "pos/042",
        "e-4",
        "retail.order.accepted",
        "events",
    )
    assert json.loads(contract.payload)["data"]["channel"] == "fax"
    assert not_object.payload == '"not an event"'


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"source": ""}, "source", ""),
        ({"type": 7}, "type", "7"),
        ({"specversion": None}, "specversion", "<missing>"),
        ({"time": "2025-03-20T08:15:30"}, "time", "2025-03-20T08:15:30"),
        ({"time": "last tuesday"}, "time", "last tuesday"),
        ({"time": "2400-01-01T00:00:00Z"}, "time", "2400-01-01T00:00:00Z"),
        ({"dataschema": ""}, "dataschema", ""),
        ({"dataschema": "v7"}, "dataschema", "v7"),
        ({"subject": 5}, "subject", "5"),
        ({"Store_Region": "north"}, "Store_Region", "north"),
        ({"nested": {"a": 1}}, "nested", '{"a":1}'),
        ({"data_base64": "e30="}, "data_base64", "e30="),
        ({"data": None}, "data", "<missing>"),
    ],
)
def test_invalid_context_attributes_are_refused(change: dict[str, Any], field: str, value: str) -> None:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "pos/042",
        "type": "retail.order.fulfilled",
    }
    event |= {"data": {"order_id": "W-1"}, **change}
    batch = _build({"content-type": STRUCTURED}, json.dumps(event).encode())
    assert batch.table.num_rows == 0 and batch.table.schema == EVENT_SCHEMA
    [rejection] = batch.rejected
    assert (rejection.position, rejection.field, rejection.value) == (0, field, value)
    assert field in rejection.reason and (value in rejection.reason or "missing" in rejection.reason)
    assert rejection.reason.startswith("Event 0") and rejection.reason.endswith(".")


def test_event_time_is_converted_to_utc_microseconds() -> None:
    body = {
        "specversion": "1.0",
        "id": "e",
        "source": "s",
        "type": "x.y",
        "time": "2025-03-20T09:15:30.1234567+01:00",
    }
    [row] = _rows(_build({"content-type": STRUCTURED}, json.dumps(body).encode()))
    assert row["time"] == datetime(2025, 3, 20, 8, 15, 30, 123456, tzinfo=UTC)
    assert row["time_missing"] is False


def test_missing_time_means_arrival_time_flagged() -> None:
    structured = json.loads(to_structured_event(_event("retail.order.fulfilled", {"order_id": "W-1"})).body)
    del structured["time"]  # the SDK always sets one; a producer that omits it must be told apart
    binary = to_binary_event(_event("retail.order.fulfilled", {"order_id": "W-2"}))
    headers = {k: v for k, v in _headers(binary).items() if k != "ce-time"}
    for batch in (
        _build({"content-type": STRUCTURED}, json.dumps(structured).encode()),
        _build(headers, binary.body),
    ):
        [row] = _rows(batch)
        assert row["time_missing"] is True
        assert _us(row["time"]) == _us(row["received_at"]) == RECEIVED_US


def test_personal_data_is_hashed_in_rows_and_quarantine() -> None:
    privacy = PersonalData()
    data = {**ORDER, "email": "ana@example.com", "contact": {"phone": "+41 79 000 00 00"}}
    data["lines"] = [{"sku": "884-12", "qty": 1, "customer.email": "ana@example.com"}]
    accepted = json.loads(to_structured_event(_event("retail.order.accepted", data)).body)
    refused = {**accepted, "id": "e-2", "data": {**data, "channel": "fax"}}
    body = json.dumps([accepted, refused]).encode()
    batch = _build({"content-type": BATCHED}, body, privacy)
    [row] = _rows(batch)
    stored = json.loads(row["data"])
    assert stored["email"] == privacy.hash("ana@example.com")
    assert stored["contact"]["phone"] == privacy.hash("+41 79 000 00 00")
    assert stored["lines"][0]["customer.email"] == privacy.hash("ana@example.com")
    assert stored["order_id"] == "W-10023"
    [rejection] = batch.rejected
    assert "ana@example.com" not in rejection.payload and "+41 79" not in rejection.payload
    assert privacy.hash("ana@example.com") in rejection.payload


def test_scrubbing_copies_only_what_holds_personal_data() -> None:
    privacy = PersonalData()
    clean = {"order_id": "W-1", "lines": [{"sku": "884-12", "qty": 1}], "store": {"id": "042"}}
    assert privacy.scrub_data(clean) is clean
    document = {"order_id": "W-1", "lines": [{"sku": "884-12"}, {"sku": "1", "email": "a@b.c"}], "n": None}
    scrubbed = privacy.scrub_data(document)
    assert scrubbed["lines"][1]["email"] == privacy.hash("a@b.c")
    assert document["lines"][1]["email"] == "a@b.c"  # what was received is left as it was
    assert scrubbed["lines"][0] is document["lines"][0] and scrubbed["n"] is None
    assert privacy.scrub_data({"email": None, "phone": ["+41 79"]}) == {"email": None, "phone": ["+41 79"]}


def test_a_refused_personal_value_is_not_echoed() -> None:
    privacy = PersonalData()
    registry = ContractRegistry.builtin().with_user_contracts(
        [
            {
                "type": "com.acme.signup",
                "schema": {"properties": {"email": {"type": "string", "format": "email"}}},
            }
        ]
    )
    items = [
        {"specversion": "1.0", "id": "e", "source": "s", "type": "com.acme.signup", "data": {"email": 42}},
        {"specversion": "1.0", "id": "f", "source": "s", "type": "com.acme.signup", "data": {"email": ["a"]}},
    ]
    batch = EventValidator(registry, privacy).build(
        parse_http({"content-type": BATCHED}, json.dumps(items).encode()), RECEIVED_US
    )
    number, listed = batch.rejected
    assert number.field == "data.email" and number.value == privacy.hash("42")
    assert (
        number.reason
        == f"Event 0 (source 's', id 'e'): data.email has value {privacy.hash('42')}, which is not a string."
    )
    assert listed.value == privacy.hash('["a"]') and '["a"]' not in listed.reason


def test_data_base64_is_decoded() -> None:
    base = {"specversion": "1.0", "id": "e", "source": "s", "type": "retail.order.fulfilled"}
    as_json = {
        **base,
        "datacontenttype": "application/json",
        "data_base64": base64.b64encode(b'{"order_id":"W-9"}'),
    }
    as_text = {**base, "id": "t", "type": "com.acme.note", "data_base64": base64.b64encode("hé".encode())}
    as_bytes = {**base, "id": "b", "type": "com.acme.blob", "data_base64": base64.b64encode(b"\xff\xfe")}
    items = [
        {k: (v.decode() if isinstance(v, bytes) else v) for k, v in item.items()}
        for item in (as_json, as_text, as_bytes)
    ]
    rows = _rows(_build({"content-type": BATCHED}, json.dumps(items).encode()))
    assert [(row["data"], row["order_id"]) for row in rows] == [
        ('{"order_id":"W-9"}', "W-9"),
        ('"hé"', ""),
        ('"//4="', ""),
    ]


def test_an_event_without_data_is_stored_when_its_type_has_no_contract() -> None:
    message = to_binary_event(_event("com.acme.ping", None))
    [raw] = parse_http(_headers(message), message.body)
    assert raw.has_data is False
    [row] = _rows(_build(_headers(message), message.body))
    assert (row["data"], row["contract"]) == ("", "")


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {"content-type": "text/plain"},
        {},
        {"content-type": "application/cloudevents+xml", "ce-id": "1"},
    ],
)
def test_other_content_types_are_unsupported(headers: dict[str, str]) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_http(headers, b"{}")


@pytest.mark.parametrize(
    ("headers", "body", "words"),
    [
        ({"content-type": STRUCTURED}, b"{not json", "not valid JSON"),
        ({"content-type": STRUCTURED}, b"", "not valid JSON"),
        ({"content-type": STRUCTURED}, b"\xff\xfe\xfa", "not"),
        ({"content-type": STRUCTURED}, b"[]", "one JSON object, not an array"),
        ({"content-type": BATCHED}, b'{"id": "1"}', "JSON array of events, not an object"),
        ({"content-type": BATCHED}, b"[NaN]", "not valid JSON"),
        ({"content-type": BATCHED}, b"[" * 100_000 + b"]" * 100_000, "JSON"),
        ({"ce-specversion": "1.0", "content-type": "application/json"}, b"{oops", "not valid JSON"),
    ],
)
def test_undecodable_bodies_raise_decode_error(headers: dict[str, str], body: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as raised:
        parse_http(headers, body)
    assert words in raised.value.reason and raised.value.reason.endswith(".")


def test_empty_batch_gives_an_empty_table() -> None:
    batch = _build({"content-type": BATCHED}, b"[]")
    assert batch.table.schema == EVENT_SCHEMA and batch.table.num_rows == 0 and batch.rejected == []
    assert isinstance(batch.table, pa.Table)
