"""OTLP/JSON read by hand: hex ids, int64 as strings or numbers, enums as numbers or names.

``google.protobuf.json_format`` is not used on purpose: proto3 JSON reads ``bytes`` as base64,
so the hex ``traceId``/``spanId`` of OTLP/JSON come out as 24-byte garbage without an error.
The walkers here raise ``TypeError``/``ValueError`` on a wrongly shaped field; the caller turns
those into ``DecodeError``. Log records become the same plain views that ``collector.otlp``
builds from protobuf, so both encodings give the same events.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from collector.model import DecodeError

if TYPE_CHECKING:
    from collector.otlp import Events, Links, SpanColumns

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("unset", "ok", "error")
_KINDS: dict[int | str, str] = {
    **dict(enumerate(SPAN_KINDS)),
    **{f"SPAN_KIND_{kind}": kind for kind in SPAN_KINDS},
}
_STATUSES: dict[int | str, str] = {
    **dict(enumerate(STATUS_CODES)),
    **{f"STATUS_CODE_{code.upper()}": code for code in STATUS_CODES},
}
_SEVERITIES: dict[str, int] = dict(SeverityNumber.items())
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_UINT64_LIMIT = 2**64
_COMPACT = (",", ":")
_NO_VALUE: dict[str, Any] = {}


def load(body: bytes) -> dict[str, Any]:
    """The request object; ``DecodeError`` when the body is not JSON or not a JSON object."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"Body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"Body is not valid JSON: {type(exc).__name__}.") from exc
    if not isinstance(document, dict):
        raise DecodeError(
            f"Body is not an OTLP/JSON request: it is a JSON {type(document).__name__}, not an object."
        )
    return document


def walk_traces(document: dict[str, Any], spans: SpanColumns) -> None:
    """Add every span of an ``ExportTraceServiceRequest`` object to ``spans``, in document order."""
    for resource_spans in _objects(document, "resourceSpans"):
        resource = _object(resource_spans, "resource")
        spans.begin_resource(_attributes(resource.get("attributes")))
        for scope_spans in _objects(resource_spans, "scopeSpans"):
            scope = _object(scope_spans, "scope")
            spans.begin_scope(_string(scope, "name"), _string(scope, "version"))
            for span in _objects(scope_spans, "spans"):
                _add_span(span, spans)


def log_views(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A plain view (see ``log_view``) of every record of an ``ExportLogsServiceRequest`` object."""
    views = []
    for resource_logs in _objects(document, "resourceLogs"):
        resource = _plain_attributes(_object(resource_logs, "resource").get("attributes"))
        for scope_logs in _objects(resource_logs, "scopeLogs"):
            scope = _object(scope_logs, "scope")
            for record in _objects(scope_logs, "logRecords"):
                views.append(_log_record_view(record, resource, scope))
    return views


def log_view(
    *,
    resource: dict[str, Any],
    scope: tuple[str, str],
    times: tuple[int, int],
    severity: tuple[int, str],
    event_name: str,
    trace: tuple[str, str, int],
    attributes: dict[str, Any],
    body: tuple[bool, Any],
) -> dict[str, Any]:
    """A log record as plain JSON-ready values, OTLP/JSON field names, defaults left out.

    ``scope`` is (name, version), ``times`` (time, observed time) in ns, ``severity`` (number,
    text), ``trace`` (trace id hex, span id hex, flags), ``body`` (present, plain value). The
    same record gives the same view from either encoding.
    """
    view: dict[str, Any] = {}
    if resource:
        view["resource"] = resource
    scope_view = {key: value for key, value in zip(("name", "version"), scope, strict=True) if value}
    if scope_view:
        view["scope"] = scope_view
    fields = {
        "timeUnixNano": str(times[0]) if times[0] else "",
        "observedTimeUnixNano": str(times[1]) if times[1] else "",
        "severityNumber": severity[0],
        "severityText": severity[1],
        "eventName": event_name,
        "traceId": trace[0],
        "spanId": trace[1],
        "flags": trace[2],
        "attributes": attributes,
    }
    view.update((key, value) for key, value in fields.items() if value)
    # A body set to an empty AnyValue carries nothing: the same as no body.
    if body[0] and body[1] is not None:
        view["body"] = body[1]
    return view


def plain(value: Any) -> Any:
    """An AnyValue object as a plain value: kvlist a dict, array a list, bytes lower-case hex."""
    if type(value) is not dict:
        raise TypeError("an AnyValue is not an object")
    if "stringValue" in value:
        return _str(value["stringValue"])
    if "boolValue" in value:
        return _bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return _bytes(value["bytesValue"]).hex()
    if "arrayValue" in value:
        return [plain(item) for item in _objects(value["arrayValue"], "values")]
    if "kvlistValue" in value:
        pairs = _objects(value["kvlistValue"], "values")
        return {_string(pair, "key"): plain(pair.get("value", _NO_VALUE)) for pair in pairs}
    return None


def plain_text(value: Any) -> str:
    """A plain value as attribute text: bools lower-case, doubles by ``repr``, lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=_COMPACT)


def _add_span(span: dict[str, Any], spans: SpanColumns) -> None:
    raw_trace_id = span.get("traceId", "")
    trace_id = _hex_id(raw_trace_id, 16)
    if trace_id is None or trace_id == _ZERO_TRACE_ID:
        spans.reject_id("traceId", str(raw_trace_id), 16)
        return
    raw_span_id = span.get("spanId", "")
    span_id = _hex_id(raw_span_id, 8)
    if span_id is None or span_id == _ZERO_SPAN_ID:
        spans.reject_id("spanId", str(raw_span_id), 8)
        return
    raw_parent = span.get("parentSpanId", "")
    parent = _hex_id(raw_parent, 8) if raw_parent else ""
    if parent is None:
        spans.reject_id("parentSpanId", str(raw_parent), 8)
        return
    status = _object(span, "status")
    events = span.get("events")
    links = span.get("links")
    spans.add(
        # An all-zero parent is the invalid id some SDKs send for "no parent".
        ids=(trace_id, span_id, "" if parent == _ZERO_SPAN_ID else parent),
        trace_state=_string(span, "traceState"),
        name=_string(span, "name"),
        kind=_KINDS.get(span.get("kind", 0), "UNSPECIFIED"),
        times=(_uint64(span, "startTimeUnixNano"), _uint64(span, "endTimeUnixNano")),
        attributes=_attributes(span.get("attributes")),
        status=(_STATUSES.get(status.get("code", 0), "unset"), _string(status, "message")),
        events=_events(_objects(span, "events")) if events else ([], [], []),
        links=_links(_objects(span, "links")) if links else ([], [], [], []),
    )


def _log_record_view(
    record: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any]
) -> dict[str, Any]:
    body = record.get("body")
    trace_id = _string(record, "traceId").lower()
    span_id = _string(record, "spanId").lower()
    return log_view(
        resource=resource,
        scope=(_string(scope, "name"), _string(scope, "version")),
        times=(_uint64(record, "timeUnixNano"), _uint64(record, "observedTimeUnixNano")),
        severity=(_severity(record.get("severityNumber", 0)), _string(record, "severityText")),
        event_name=_string(record, "eventName"),
        trace=(trace_id, span_id, _uint64(record, "flags")),
        attributes=_plain_attributes(record.get("attributes")),
        body=(body is not None, plain(body) if body is not None else None),
    )


def _hex_id(value: Any, size: int) -> str | None:
    """Lower-case hex of an id of ``size`` bytes written in hex of any case, else None."""
    if type(value) is not str or len(value) != 2 * size:
        return None
    try:
        bytes.fromhex(value)
    except ValueError:
        return None
    return value.lower()


def _events(events: list[dict[str, Any]]) -> Events:
    return (
        [_uint64(event, "timeUnixNano") for event in events],
        [_string(event, "name") for event in events],
        [_attributes(event.get("attributes")) for event in events],
    )


def _links(links: list[dict[str, Any]]) -> Links:
    return (
        [_string(link, "traceId").lower() for link in links],
        [_string(link, "spanId").lower() for link in links],
        [_string(link, "traceState") for link in links],
        [_attributes(link.get("attributes")) for link in links],
    )


def _attributes(pairs: Any) -> dict[str, str]:
    if not pairs:
        return {}
    if type(pairs) is not list:
        raise TypeError("attributes is not a list")
    attributes = {}
    for pair in pairs:
        key = pair["key"]
        value = pair.get("value", _NO_VALUE)
        if type(key) is not str or type(value) is not dict:
            raise TypeError("an attribute key is not a string or its value not an object")
        # Strings first and inline: most attributes are strings and this loop is the hot path.
        text = value.get("stringValue")
        attributes[key] = text if type(text) is str else _text(value)
    return attributes


def _plain_attributes(pairs: Any) -> dict[str, Any]:
    if not pairs:
        return {}
    if type(pairs) is not list:
        raise TypeError("attributes is not a list")
    return {_string(pair, "key"): plain(pair.get("value", _NO_VALUE)) for pair in pairs}


def _text(value: Any) -> str:
    """An AnyValue object as attribute text (the rules of ``plain_text``), strings first: the common case."""
    if type(value) is not dict:
        raise TypeError("an attribute value is not an object")
    if "stringValue" in value:
        return _str(value["stringValue"])
    if "intValue" in value:
        return str(int(value["intValue"]))
    if "boolValue" in value:
        return "true" if _bool(value["boolValue"]) else "false"
    if "doubleValue" in value:
        return repr(float(value["doubleValue"]))
    if "bytesValue" in value:
        return _bytes(value["bytesValue"]).hex()
    if "arrayValue" in value or "kvlistValue" in value:
        return json.dumps(plain(value), separators=_COMPACT)
    return ""


def _bytes(text: Any) -> bytes:
    # proto3 JSON writers may use the URL-safe alphabet and leave out the padding.
    standard = _str(text).replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not a string")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{value!r} is not a boolean")
    return value


def _string(parent: dict[str, Any], key: str) -> str:
    value = parent.get(key, "")
    if type(value) is not str:
        raise TypeError(f"{key} is not a string")
    return value


def _uint64(parent: dict[str, Any], key: str) -> int:
    value = parent.get(key, 0)
    # JSON writers send int64 as strings, some as numbers; bool is an int to Python but not here.
    number = int(value) if type(value) in (str, int, float) else -1
    if not 0 <= number < _UINT64_LIMIT:
        raise ValueError(f"{key} {value!r} is not a uint64")
    return number


def _severity(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str:
        return _SEVERITIES.get(value, 0)
    raise TypeError("severityNumber is not a number or a name")


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return _NO_VALUE
    if type(value) is not dict:
        raise DecodeError(f"Body is not valid OTLP/JSON: {key} is not an object.")
    return value


def _objects(parent: Any, key: str) -> list[dict[str, Any]]:
    if type(parent) is not dict:
        raise DecodeError(f"Body is not valid OTLP/JSON: the holder of {key} is not an object.")
    value = parent.get(key)
    if value is None:
        return []
    if type(value) is not list or not all(type(item) is dict for item in value):
        raise DecodeError(f"Body is not valid OTLP/JSON: {key} is not a list of objects.")
    return value
