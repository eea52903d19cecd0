"""Values that cross the collector's stages: decoded batches and rejections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa


@dataclass(frozen=True)
class Rejection:
    """One item refused at ingest, with the field and value that made it invalid.

    ``position`` is the item's index in its request (the span's index across the
    whole request for traces, the event's index in a batch for events).
    """

    signal: str
    position: int
    field: str
    value: str
    reason: str
    source: str = ""
    id: str = ""
    type: str = ""
    payload: str = ""

    def describe(self) -> str:
        return f"item {self.position}: {self.reason}"


@dataclass(frozen=True)
class RawEvent:
    """A CloudEvent (or an OTLP log record carrying ``event.name``) before validation.

    ``attributes`` holds the CloudEvents context attributes exactly as received
    (``id``, ``source``, ``type``, ``specversion``, ``time``, extensions...);
    ``data`` is the decoded JSON payload, or None when the event had none.
    """

    attributes: dict[str, Any]
    data: Any
    position: int
    signal: str = "events"
    payload: str = ""
    has_data: bool = field(default=True)
    # The JSON object as received, when ``payload`` is left to be written from it: only a
    # refused event needs its text, and writing it for every event cost ~10% of decoding.
    document: dict[str, Any] | None = None


class SpanBatch(NamedTuple):
    """Spans decoded from one request: rows in ``storage.tables.SPAN_SCHEMA`` and the refused ones."""

    table: pa.Table
    rejected: list[Rejection]


class EventBatch(NamedTuple):
    """Events validated from one request: rows in ``storage.tables.EVENT_SCHEMA`` and the refused ones."""

    table: pa.Table
    rejected: list[Rejection]


class DecodeError(Exception):
    """The request body cannot be decoded at all (answered 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedMediaType(Exception):
    """The request's content type is not one this endpoint reads (answered 415)."""

    def __init__(self, content_type: str) -> None:
        super().__init__(f"Content type '{content_type}' is not supported here.")
        self.content_type = content_type

    def __reduce__(self) -> tuple[type[UnsupportedMediaType], tuple[str]]:
        # Decoding runs in worker processes; the exception must survive pickling intact.
        return (UnsupportedMediaType, (self.content_type,))
