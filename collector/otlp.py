"""OTLP trace and log export requests, protobuf or OTLP/JSON, decoded into Milepost's rows.

Spans become a ``storage.tables.SPAN_SCHEMA`` table built column by column (one Python list
per column, converted to Arrow once per request): the per-span Python work is the cost of the
whole collector, so the walkers only copy fields and convert attribute values to text.

A span with an unusable id is refused alone (OTLP partial success) and the rest of the request
is kept; a body that cannot be read at all raises ``DecodeError``. OTLP/JSON is walked by hand
in ``collector.otlp_json`` because protobuf's JSON parser reads the hex ids as base64.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import accumulate, chain
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector import otlp_json
from collector.model import DecodeError, RawEvent, Rejection, SpanBatch
from collector.otlp_json import SPAN_KINDS, STATUS_CODES
from collector.privacy import PersonalData
from storage.tables import ATTRS, BUSINESS_KEYS, SPAN_SCHEMA, TS_NS, TS_US

ENCODINGS = ("protobuf", "json")

# Span (or resource) attribute read into each BUSINESS_KEYS column.
BUSINESS_ATTRIBUTES = {
    "order_id": "retail.order.id",
    "milestone": "retail.milestone",
    "sku": "retail.sku",
    "store_id": "retail.store.id",
    "location_id": "retail.location.id",
    "channel": "retail.channel",
    "promotion_id": "retail.promotion.id",
    "alias_kind": "retail.alias.kind",
    "alias_value": "retail.alias.value",
}
_BUSINESS_SOURCES = tuple(BUSINESS_ATTRIBUTES[key] for key in BUSINESS_KEYS)
_BUSINESS_SOURCE_SET = frozenset(_BUSINESS_SOURCES)

_KIND_BY_NUMBER = dict(enumerate(SPAN_KINDS))
_STATUS_BY_NUMBER = dict(enumerate(STATUS_CODES))
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_INT64_MAX = 2**63 - 1
# OTLP clients show error_message to people: a few reasons say enough, and it must stay small.
_MESSAGE_REASONS = 5
_MESSAGE_LIMIT = 1024

Events = tuple[list[int], list[str], list[dict[str, str]]]
Links = tuple[list[str], list[str], list[str], list[dict[str, str]]]
NO_EVENTS: Events = ([], [], [])
NO_LINKS: Links = ([], [], [], [])


class LogsDecoded(NamedTuple):
    """Log records that are integration events, and how many records were not events."""

    events: list[RawEvent]
    ignored: int


class SpanColumns:
    """The span table of one request while it is walked: one list per column, spans in document order.

    Walkers call ``begin_resource``/``begin_scope`` before the spans they contain, then ``add``
    for a usable span or ``reject_id`` for a refused one; both advance ``seen``, the position of
    the next span in the request.
    """

    def __init__(self, privacy: PersonalData) -> None:
        self.privacy = privacy
        self.rejected: list[Rejection] = []
        self.seen = 0
        # Keys already known not to be personal: most spans then skip scrubbing with one set test.
        self._plain_keys: set[str] = set()
        self._resources: list[dict[str, str]] = []
        self._resource_services: list[str] = []
        self._resource_business: tuple[str, ...] = ("",) * len(BUSINESS_KEYS)
        self._scope_name = ""
        self._scope_version = ""
        self.resource_index: list[int] = []
        self.trace_id: list[str] = []
        self.span_id: list[str] = []
        self.parent_span_id: list[str] = []
        self.trace_state: list[str] = []
        self.span_name: list[str] = []
        self.span_kind: list[str] = []
        self.scope_name: list[str] = []
        self.scope_version: list[str] = []
        self.span_attributes: list[dict[str, str]] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self.status_code: list[str] = []
        self.status_message: list[str] = []
        self.events: list[Events] = []
        self.links: list[Links] = []
        self.business: list[tuple[str, ...]] = []

    def scrub(self, attributes: dict[str, str]) -> dict[str, str]:
        """``privacy.scrub_attributes`` for any dict holding a key not yet known to be harmless."""
        if self._plain_keys.issuperset(attributes):
            return attributes
        scrubbed = self.privacy.scrub_attributes(attributes)
        is_personal = self.privacy.is_personal
        self._plain_keys.update(key for key in attributes if not is_personal(key))
        return scrubbed

    def begin_resource(self, attributes: dict[str, str]) -> None:
        resource = self.scrub(attributes)
        self._resources.append(resource)
        self._resource_services.append(resource.get("service.name") or "unknown_service")
        self._resource_business = tuple(resource.get(source, "") for source in _BUSINESS_SOURCES)

    def begin_scope(self, name: str, version: str) -> None:
        self._scope_name = name
        self._scope_version = version

    def reject_id(self, field: str, value: str, size: int) -> None:
        """Refuse the next span because its ``field`` (shown as ``value``) is not a usable id."""
        if len(value) == 2 * size and not value.strip("0"):
            problem = "which is all zeros (an invalid id)"
        else:
            problem = f"which is not {size} bytes of hex"
        reason = f"Span {self.seen} has {field} '{value}' {problem}."
        self.rejected.append(Rejection("traces", self.seen, field, value, reason))
        self.seen += 1

    def add(
        self,
        *,
        ids: tuple[str, str, str],
        trace_state: str,
        name: str,
        kind: str,
        times: tuple[int, int],
        attributes: dict[str, str],
        status: tuple[str, str],
        events: Events,
        links: Links,
    ) -> None:
        """Append one span: ``ids`` lower-case hex (trace, span, parent), ``times`` ns (start, end)."""
        self.seen += 1
        attributes = self.scrub(attributes)
        self.resource_index.append(len(self._resources) - 1)
        self.trace_id.append(ids[0])
        self.span_id.append(ids[1])
        self.parent_span_id.append(ids[2])
        self.trace_state.append(trace_state)
        self.span_name.append(name)
        self.span_kind.append(kind)
        self.scope_name.append(self._scope_name)
        self.scope_version.append(self._scope_version)
        self.span_attributes.append(attributes)
        self.start.append(times[0])
        self.end.append(times[1])
        self.status_code.append(status[0])
        self.status_message.append(status[1])
        if events[2]:
            events = (events[0], events[1], [self.scrub(a) for a in events[2]])
        self.events.append(events)
        if links[3]:
            links = (links[0], links[1], links[2], [self.scrub(a) for a in links[3]])
        self.links.append(links)
        if _BUSINESS_SOURCE_SET.isdisjoint(attributes):
            self.business.append(self._resource_business)
        else:
            fallback = zip(_BUSINESS_SOURCES, self._resource_business, strict=True)
            self.business.append(tuple([attributes.get(source, value) for source, value in fallback]))

    def table(self, received_at_ns: int) -> pa.Table:
        """The spans added so far as a ``SPAN_SCHEMA`` table."""
        count = len(self.trace_id)
        starts = _uint64(self.start)
        ends = _uint64(self.end)
        durations = pc.if_else(pc.greater(ends, starts), pc.subtract(ends, starts), pa.scalar(0, pa.uint64()))
        indices = pa.array(self.resource_index, type=pa.int32())
        business = list(zip(*self.business, strict=True)) or [()] * len(BUSINESS_KEYS)
        columns = [
            _timestamps(starts),
            _strings(self.trace_id),
            _strings(self.span_id),
            _strings(self.parent_span_id),
            _strings(self.trace_state),
            _strings(self.span_name),
            _strings(self.span_kind),
            _strings(self._resource_services).take(indices),
            _map_array(self._resources).take(indices),
            _strings(self.scope_name),
            _strings(self.scope_version),
            _map_array(self.span_attributes),
            durations,
            _strings(self.status_code),
            _strings(self.status_message),
            _list_array([e[0] for e in self.events], lambda flat: _timestamps(_uint64(flat))),
            _list_array([e[1] for e in self.events], _strings),
            _list_array([e[2] for e in self.events], _map_array),
            _list_array([link[0] for link in self.links], _strings),
            _list_array([link[1] for link in self.links], _strings),
            _list_array([link[2] for link in self.links], _strings),
            _list_array([link[3] for link in self.links], _map_array),
            *[_strings(list(values)) for values in business],
            pa.repeat(pa.scalar(received_at_ns // 1000, type=TS_US), count),
        ]
        return pa.Table.from_arrays(columns, schema=SPAN_SCHEMA)


def decode_traces(body: bytes, encoding: str, privacy: PersonalData, received_at_ns: int) -> SpanBatch:
    """Decode an ``ExportTraceServiceRequest`` into span rows and the spans refused.

    ``encoding`` is "protobuf" or "json"; ``body`` is already decompressed. A span whose trace,
    span or parent id is unusable is refused alone, with its position across the whole request.
    Every attribute map passes through ``privacy``. Raises ``DecodeError`` when the body cannot
    be read as such a request at all.
    """
    spans = SpanColumns(privacy)
    if _checked(encoding) == "json":
        document = otlp_json.load(body)
        try:
            otlp_json.walk_traces(document, spans)
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError, RecursionError) as exc:
            raise DecodeError(
                f"Body is not valid OTLP/JSON: a field near span {spans.seen} has the wrong type or value"
                f" ({_plain_sentence(exc)})."
            ) from exc
    else:
        request = ExportTraceServiceRequest()
        _parse_protobuf(request, body)
        _walk_protobuf_traces(request, spans)
    return SpanBatch(spans.table(received_at_ns), spans.rejected)


def encode_trace_response(rejected: list[Rejection], encoding: str) -> bytes:
    """The ``ExportTraceServiceResponse`` body: partial success naming the refused spans, if any."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        response.partial_success.error_message = _summary(rejected)
    return _encode_response(response, "rejectedSpans", rejected, encoding)


def decode_logs(body: bytes, encoding: str, received_at_ns: int) -> LogsDecoded:
    """Decode an ``ExportLogsServiceRequest``, keeping the log records that are integration events.

    A record is an event when it has an event name (the ``event_name`` field, else the
    ``event.name`` attribute); it becomes a ``RawEvent`` with CloudEvents context attributes and
    the record's body as ``data``. Other records are only counted. ``received_at_ns`` is not
    needed here: events carry their own time and the validator stamps arrival. Raises
    ``DecodeError`` when the body cannot be read as such a request at all.
    """
    del received_at_ns
    if _checked(encoding) == "json":
        document = otlp_json.load(body)
        try:
            views = otlp_json.log_views(document)
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError, RecursionError) as exc:
            raise DecodeError(
                f"Body is not valid OTLP/JSON: a log record field has the wrong type or value"
                f" ({_plain_sentence(exc)})."
            ) from exc
    else:
        request = ExportLogsServiceRequest()
        _parse_protobuf(request, body)
        views = _protobuf_log_views(request)
    events = []
    for position, view in enumerate(views):
        event = _log_event(view, position)
        if event is not None:
            events.append(event)
    return LogsDecoded(events, len(views) - len(events))


def encode_logs_response(rejected: list[Rejection], encoding: str) -> bytes:
    """The ``ExportLogsServiceResponse`` body: partial success naming the refused records, if any."""
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = len(rejected)
        response.partial_success.error_message = _summary(rejected)
    return _encode_response(response, "rejectedLogRecords", rejected, encoding)


def _checked(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"Encoding '{encoding}' is not one of {', '.join(ENCODINGS)}.")
    return encoding


def _plain_sentence(exc: BaseException) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


def _parse_protobuf(message: Message, body: bytes) -> None:
    try:
        message.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"Body is not valid OTLP protobuf: {_plain_sentence(exc)}.") from exc


def _walk_protobuf_traces(request: ExportTraceServiceRequest, spans: SpanColumns) -> None:
    for resource_spans in request.resource_spans:
        spans.begin_resource(_protobuf_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            spans.begin_scope(scope.name, scope.version)
            for span in scope_spans.spans:
                _add_protobuf_span(span, spans)


def _add_protobuf_span(span: Span, spans: SpanColumns) -> None:
    trace_id = span.trace_id
    span_id = span.span_id
    parent = span.parent_span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        spans.reject_id("traceId", trace_id.hex(), 16)
        return
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        spans.reject_id("spanId", span_id.hex(), 8)
        return
    if parent and len(parent) != 8:
        spans.reject_id("parentSpanId", parent.hex(), 8)
        return
    status = span.status
    spans.add(
        # An all-zero parent is the invalid id some SDKs send for "no parent".
        ids=(trace_id.hex(), span_id.hex(), "" if parent == _ZERO_SPAN_ID else parent.hex()),
        trace_state=span.trace_state,
        name=span.name,
        kind=_KIND_BY_NUMBER.get(span.kind, "UNSPECIFIED"),
        times=(span.start_time_unix_nano, span.end_time_unix_nano),
        attributes=_protobuf_attributes(span.attributes),
        status=(_STATUS_BY_NUMBER.get(status.code, "unset"), status.message),
        events=_protobuf_events(span.events) if span.events else NO_EVENTS,
        links=_protobuf_links(span.links) if span.links else NO_LINKS,
    )


def _protobuf_events(events: Iterable[Span.Event]) -> Events:
    return (
        [event.time_unix_nano for event in events],
        [event.name for event in events],
        [_protobuf_attributes(event.attributes) for event in events],
    )


def _protobuf_links(links: Iterable[Span.Link]) -> Links:
    return (
        [link.trace_id.hex() for link in links],
        [link.span_id.hex() for link in links],
        [link.trace_state for link in links],
        [_protobuf_attributes(link.attributes) for link in links],
    )


def _protobuf_attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    attributes = {}
    for pair in pairs:
        value = pair.value
        # A non-empty string_value can only mean the string case of the oneof: the common one.
        attributes[pair.key] = value.string_value or _protobuf_text(value)
    return attributes


def _protobuf_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind is None:
        return ""
    return json.dumps(_protobuf_plain(value), separators=(",", ":"))


def _protobuf_plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_protobuf_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _protobuf_plain(pair.value) for pair in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None if kind is None else getattr(value, kind)


def _protobuf_log_views(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    views = []
    has_event_name = "event_name" in LogRecord.DESCRIPTOR.fields_by_name
    for resource_logs in request.resource_logs:
        resource = {p.key: _protobuf_plain(p.value) for p in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            for record in scope_logs.log_records:
                views.append(
                    otlp_json.log_view(
                        resource=resource,
                        scope=(scope.name, scope.version),
                        times=(record.time_unix_nano, record.observed_time_unix_nano),
                        severity=(record.severity_number, record.severity_text),
                        event_name=record.event_name if has_event_name else "",
                        trace=(record.trace_id.hex(), record.span_id.hex(), record.flags),
                        attributes={p.key: _protobuf_plain(p.value) for p in record.attributes},
                        body=(record.HasField("body"), _protobuf_plain(record.body)),
                    )
                )
    return views


def _log_event(view: dict[str, Any], position: int) -> RawEvent | None:
    attributes: dict[str, Any] = view.get("attributes", {})
    name = view.get("eventName") or otlp_json.plain_text(attributes.get("event.name"))
    if not name:
        return None
    context: dict[str, Any] = {
        "specversion": "1.0",
        "id": _attribute(attributes, "event.id", "cloudevents.event_id") or _derived_id(view, name),
        "source": (
            _attribute(attributes, "cloudevents.event_source")
            or otlp_json.plain_text(view.get("resource", {}).get("service.name"))
            or "otlp"
        ),
        "type": name,
    }
    time_ns = int(view.get("timeUnixNano", 0)) or int(view.get("observedTimeUnixNano", 0))
    if time_ns:
        context["time"] = _rfc3339(time_ns)
    schema = _attribute(attributes, "event.dataschema", "cloudevents.event_data_schema")
    if schema:
        context["dataschema"] = schema
    subject = _attribute(attributes, "cloudevents.event_subject")
    if subject:
        context["subject"] = subject
    return RawEvent(
        attributes=context,
        data=_event_data(view.get("body")),
        position=position,
        signal="logs",
        payload=json.dumps(view, separators=(",", ":")),
        has_data="body" in view,
    )


def _attribute(attributes: dict[str, Any], *names: str) -> str:
    for name in names:
        text = otlp_json.plain_text(attributes.get(name))
        if text:
            return text
    return ""


def _derived_id(view: dict[str, Any], name: str) -> str:
    """An id that is the same each time the same record is sent again (so retries deduplicate)."""
    body = json.dumps(view["body"], sort_keys=True, separators=(",", ":")) if "body" in view else ""
    identity = [view.get("traceId", ""), view.get("spanId", ""), view.get("timeUnixNano", "0"), name, body]
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:32]


def _rfc3339(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"


def _event_data(body: Any) -> Any:
    if isinstance(body, str) and body.lstrip()[:1] in ("{", "["):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body
        if isinstance(parsed, (dict, list)):
            return parsed
    return body


def _summary(rejected: list[Rejection]) -> str:
    message = "; ".join(rejection.reason for rejection in rejected[:_MESSAGE_REASONS])
    if len(rejected) > _MESSAGE_REASONS:
        message += f" (and {len(rejected) - _MESSAGE_REASONS} more)"
    return message[:_MESSAGE_LIMIT]


def _encode_response(response: Message, count_key: str, rejected: list[Rejection], encoding: str) -> bytes:
    if _checked(encoding) == "protobuf":
        return response.SerializeToString()
    document: dict[str, Any] = {}
    if rejected:
        # OTLP/JSON writes int64 as a string.
        document["partialSuccess"] = {count_key: str(len(rejected)), "errorMessage": _summary(rejected)}
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _strings(values: list[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _uint64(values: list[int]) -> pa.Array:
    return pa.array(values, type=pa.uint64())


def _timestamps(nanos: pa.Array) -> pa.Array:
    # fixed64 times past 2262 do not fit ClickHouse's DateTime64(9): pin them to the last instant.
    clamped = pc.min_element_wise(nanos, pa.scalar(_INT64_MAX, pa.uint64()))
    return clamped.cast(pa.int64()).cast(TS_NS)


def _map_array(maps: list[dict[str, str]]) -> pa.Array:
    """A ``map<string, string>`` array; several times faster than converting the dicts one by one."""
    keys: list[str] = []
    values: list[str] = []
    offsets = [0]
    for attributes in maps:
        keys.extend(attributes)
        values.extend(attributes.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, type=pa.int32()), _strings(keys), _strings(values), type=ATTRS
    )


def _list_array(lists: list[Any], build: Callable[[list[Any]], pa.Array]) -> pa.Array:
    offsets = pa.array(list(accumulate(map(len, lists), initial=0)), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, build(list(chain.from_iterable(lists))))
