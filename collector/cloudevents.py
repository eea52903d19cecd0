"""CloudEvents 1.0 over HTTP: decoding the three content modes, validating events into rows.

``parse_http`` only decodes (structured, batched and binary mode); ``EventValidator``
checks each event's context attributes and data contract and builds the
``storage.tables.EVENT_SCHEMA`` table, with one ``Rejection`` per invalid event.
The cloudevents SDK is deliberately not used here: its parser fills a missing
``time`` with now and accepts events the specification calls invalid.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import unquote

import pyarrow as pa

from collector.contracts import ContractRegistry, parse_rfc3339, show_value
from collector.model import DecodeError, EventBatch, RawEvent, Rejection, UnsupportedMediaType
from collector.privacy import PersonalData
from storage.tables import BUSINESS_KEYS, EVENT_SCHEMA

STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
MISSING = "<missing>"

_CE_PREFIX = "ce-"
_CONTEXT = frozenset(
    {"id", "source", "specversion", "type", "time", "subject", "dataschema", "datacontenttype"}
)
# CloudEvents 1.0: attribute names MUST be lower-case ASCII letters or digits.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
# ClickHouse DateTime64 holds 1900-01-01 .. 2299-12-31; a time outside would be stored wrapped.
_EARLIEST_US = (datetime(1900, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US
_LATEST_US = (datetime(2300, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US - 1
_NO_KEYS = ("",) * len(BUSINESS_KEYS)
# Business key column -> data field; the milestone stays '' because the correlator maps types to milestones.
_COMMON_KEY_FIELDS = {
    "order_id": "order_id",
    "sku": "sku",
    "store_id": "store_id",
    "location_id": "location_id",
    "channel": "channel",
    "promotion_id": "promo_id",
}
_TYPE_KEY_FIELDS = {
    "retail.promotion.activated": {"store_id": "target"},
    "retail.order.alias": {"alias_kind": "kind", "alias_value": "value"},
}
_KEY_FIELDS: dict[str, tuple[str, ...]] = {}


def parse_http(headers: Mapping[str, str], body: bytes) -> list[RawEvent]:
    """Decode the CloudEvents of one HTTP request (header names lower-case), without validating them.

    Structured and batched mode are chosen by Content-Type, binary mode by a
    ``ce-specversion`` header. Raises UnsupportedMediaType for any other request
    and DecodeError when the body is not JSON of the mode's shape. A batch item
    that is not an object is returned with empty attributes for the validator to
    reject, so the rest of the batch still counts.
    """
    content_type = headers.get("content-type", "")
    media_type = _media_type(content_type)
    try:
        if media_type == STRUCTURED:
            document = _load_json(body)
            if not isinstance(document, dict):
                raise DecodeError(
                    f"A structured CloudEvents body must be one JSON object, not {_json_kind(document)}."
                )
            return [_from_json(document, 0)]
        if media_type == BATCHED:
            document = _load_json(body)
            if not isinstance(document, list):
                raise DecodeError(
                    f"A batched CloudEvents body must be a JSON array of events, not {_json_kind(document)}."
                )
            return [_from_json(item, position) for position, item in enumerate(document)]
        if "ce-specversion" in headers:
            return [_from_binary(headers, content_type, media_type, body)]
    except RecursionError:
        raise DecodeError("The request body is JSON nested too deeply to read.") from None
    raise UnsupportedMediaType(media_type or content_type)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _load_json(body: bytes) -> Any:
    try:
        # NaN and Infinity are not JSON; accepting them would write invalid JSON to the data column.
        return json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise DecodeError("The request body is not UTF-8 encoded JSON.") from None
    except ValueError as error:
        raise DecodeError(f"The request body is not valid JSON ({error}).") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _from_json(item: Any, position: int) -> RawEvent:
    if not isinstance(item, dict):
        return RawEvent({}, None, position, payload=_compact(item), has_data=False)
    attributes = dict(item)
    data = attributes.pop("data", None)
    encoded = attributes.pop("data_base64", None)
    if encoded is not None:
        if data is None:
            data = _decode_base64(encoded, attributes.get("datacontenttype"))
        else:
            # Both at once is invalid; keep it visible so the validator names the field.
            attributes["data_base64"] = encoded
    return RawEvent(attributes, data, position, has_data=data is not None, document=item)


def _decode_base64(encoded: Any, datacontenttype: Any) -> Any:
    """``data_base64`` as text (JSON when declared JSON), or the base64 text itself when not UTF-8."""
    if not isinstance(encoded, str):
        return encoded
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return encoded
    if isinstance(datacontenttype, str) and _is_json(_media_type(datacontenttype)):
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return text
    return text


def _from_binary(headers: Mapping[str, str], content_type: str, media_type: str, body: bytes) -> RawEvent:
    attributes: dict[str, Any] = {
        name[len(_CE_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.startswith(_CE_PREFIX)
    }
    if content_type:
        attributes["datacontenttype"] = content_type
    structured = dict(attributes)
    data: Any = None
    if body:
        if _is_json(media_type):
            data = _load_json(body)
        elif not media_type:
            # No Content-Type: CloudEvents' default data content type is JSON; plain text otherwise.
            try:
                data = json.loads(body, parse_constant=_refuse_constant)
            except ValueError:
                data = None
        if data is None:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                data = base64.b64encode(body).decode("ascii")
                structured["data_base64"] = data
        if "data_base64" not in structured:
            structured["data"] = data
    return RawEvent(attributes, data, 0, payload=_compact(structured), has_data=data is not None)


class _InvalidEventError(Exception):
    """One event's defect: the field, its value as text, and a clause completing "Event N ..."."""

    def __init__(self, field: str, value: str, clause: str, predicate: bool = True) -> None:
        super().__init__(clause)
        self.field = field
        self.value = value
        self.clause = clause
        self.predicate = predicate


class EventValidator:
    """Turns decoded events into ``EVENT_SCHEMA`` rows and rejections; never raises for a bad event.

    An event is valid when ``id``, ``source`` and ``type`` are non-empty strings,
    ``specversion`` is "1.0", ``time`` (optional) is RFC 3339 with a timezone,
    ``subject``, ``dataschema`` and ``datacontenttype`` (optional) are non-empty
    strings, extension names are lower-case letters and digits with string,
    integer or boolean values, and its data meets the contract of its type.
    """

    def __init__(self, contracts: ContractRegistry, privacy: PersonalData) -> None:
        self._contracts = contracts
        self._privacy = privacy

    def build(self, events: list[RawEvent], received_at_us: int) -> EventBatch:
        """Validate ``events``; a missing ``time`` becomes ``received_at_us`` with ``time_missing`` set."""
        rows: list[tuple[Any, ...]] = []
        rejected: list[Rejection] = []
        for event in events:
            try:
                rows.append(self._row(event, received_at_us))
            except _InvalidEventError as problem:
                rejected.append(self._rejection(event, problem))
            except RecursionError:
                too_deep = _InvalidEventError(
                    "data", "<nested too deeply>", "has data nested too deeply to store"
                )
                rejected.append(self._rejection(event, too_deep))
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_SCHEMA]
        arrays = [
            pa.array(column, type=field.type) for column, field in zip(columns, EVENT_SCHEMA, strict=True)
        ]
        return EventBatch(pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA), rejected)

    def _row(self, event: RawEvent, received_at_us: int) -> tuple[Any, ...]:
        attributes = event.attributes
        if not attributes and event.payload and event.payload[0] != "{":
            item = _received(event.payload)
            raise _InvalidEventError(
                "event", show_value(item), f"is {_quoted(item)}, which is not a JSON object"
            )
        event_id = _required(attributes, "id")
        source = _required(attributes, "source")
        if _required(attributes, "specversion") != "1.0":
            _refuse(attributes, "specversion", "which is not '1.0'")
        event_type = _required(attributes, "type")
        time_us = _event_time(attributes.get("time"))
        subject = _optional(attributes, "subject")
        dataschema = _optional(attributes, "dataschema")
        content_type = _optional(attributes, "datacontenttype")
        extensions = self._privacy.scrub_attributes(_extensions(attributes))
        data = event.data if event.has_data else None
        contract, violation = self._contracts.apply(event_type, dataschema or None, data)
        if violation is not None:
            raise _InvalidEventError(violation.field, violation.value, violation.reason, predicate=False)
        return (
            source,
            event_id,
            event_type,
            "1.0",
            received_at_us if time_us is None else time_us,
            time_us is None,
            received_at_us,
            subject,
            dataschema,
            content_type,
            "" if data is None else _compact(self._privacy.scrub_data(data)),
            list(extensions.items()),
            contract,
            event.signal,
            *_business_keys(event_type, data),
        )

    def _rejection(self, event: RawEvent, problem: _InvalidEventError) -> Rejection:
        attributes = event.attributes
        source, event_id, event_type = (_text(attributes.get(name)) for name in ("source", "id", "type"))
        value, clause = problem.value, problem.clause
        if value != MISSING and self._privacy.is_personal(problem.field.rsplit(".", 1)[-1]):
            value, clause = self._hide(value, clause)
        named = [
            f"{label} '{show_value(text)}'" for label, text in (("source", source), ("id", event_id)) if text
        ]
        subject = f"Event {event.position}" + (f" ({', '.join(named)})" if named else "")
        reason = f"{subject} {clause}." if problem.predicate else f"{subject}: {clause}"
        return Rejection(
            signal=event.signal,
            position=event.position,
            field=problem.field,
            value=value,
            reason=reason,
            source=source,
            id=event_id,
            type=event_type,
            payload=self._scrub_payload(
                event.payload if event.document is None else _compact(event.document)
            ),
        )

    def _hide(self, value: str, clause: str) -> tuple[str, str]:
        """A personal value and the clause quoting it, with the value hashed in both."""
        hashed = self._privacy.hash(value)
        quoted = f"'{value}'"
        if quoted in clause:
            return hashed, clause.replace(quoted, f"'{hashed}'", 1)
        return hashed, clause.replace(f" {value}", f" {hashed}", 1)

    def _scrub_payload(self, payload: str) -> str:
        """The quarantined payload, with personal data hashed like stored events."""
        try:
            return _compact(self._privacy.scrub_data(json.loads(payload)))
        except (ValueError, RecursionError):
            return payload


def _received(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _refuse(attributes: Mapping[str, Any], name: str, why: str) -> NoReturn:
    value = attributes[name]
    raise _InvalidEventError(
        name, show_value(value), f"has attribute '{name}' with value {_quoted(value)}, {why}"
    )


def _quoted(value: Any) -> str:
    return f"'{show_value(value)}'" if isinstance(value, str) else show_value(value)


def _required(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    if value is None:
        raise _InvalidEventError(name, MISSING, f"is missing required attribute '{name}'")
    if not isinstance(value, str) or not value:
        _refuse(attributes, name, "which is not a non-empty string")
    return value


def _optional(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or not value:
        _refuse(attributes, name, "which is not a non-empty string")
    return value


def _event_time(value: Any) -> int | None:
    """Event time in microseconds since the epoch, or None when the event has none."""
    if value is None:
        return None
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        _refuse({"time": value}, "time", "which is not an RFC 3339 timestamp with a timezone")
    micros = (parsed - _EPOCH) // _ONE_US
    if not _EARLIEST_US <= micros <= _LATEST_US:
        _refuse({"time": value}, "time", "which is outside the years 1900 to 2299")
    return micros


def _extensions(attributes: Mapping[str, Any]) -> dict[str, str]:
    extensions: dict[str, str] = {}
    for name, value in attributes.items():
        if name in _CONTEXT or value is None:
            continue
        if name == "data_base64":
            _refuse(attributes, name, "which an event must not carry together with data")
        if not _ATTRIBUTE_NAME.fullmatch(name):
            _refuse(attributes, name, "whose name is not lower-case ASCII letters and digits")
        if isinstance(value, str):
            extensions[name] = value
        elif isinstance(value, bool):
            extensions[name] = "true" if value else "false"
        elif isinstance(value, int):
            extensions[name] = str(value)
        else:
            _refuse(attributes, name, "which is not a string, integer or boolean")
    return extensions


def _key(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else _compact(value)


def _key_fields(event_type: str) -> tuple[str, ...]:
    """The data field feeding each ``BUSINESS_KEYS`` column for ``event_type`` ('' for none)."""
    fields = _KEY_FIELDS.get(event_type)
    if fields is None:
        mapping = {**_COMMON_KEY_FIELDS, **_TYPE_KEY_FIELDS.get(event_type, {})}
        fields = tuple(mapping.get(key, "") for key in BUSINESS_KEYS)
        if len(_KEY_FIELDS) < 4096:
            _KEY_FIELDS[event_type] = fields
    return fields


def _business_keys(event_type: str, data: Any) -> tuple[str, ...]:
    """``BUSINESS_KEYS`` values read from catalogue fields of ``data`` ('' when absent)."""
    if not isinstance(data, dict):
        return _NO_KEYS
    return tuple(_key(data, field) if field else "" for field in _key_fields(event_type))
