"""A scripted-time harness for alerts, in the style of Alertmanager's acceptance tests.

A real node runs in this process and takes CloudEvents at given event times through its HTTP
ingest endpoint; an ``AlertEngine`` over the node's store is driven by a fake clock
(``evaluate(now)`` at scripted times); apprise delivers to a local HTTP receiver (``json://``)
that records every post with the scripted time it arrived at, so a test states which
notifications it expects within which windows.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from alerts.config import parse_alerts
from alerts.engine import AlertEngine, SentNotification
from tests.support import InProcessNode

BATCH = {"content-type": "application/cloudevents-batch+json"}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Post:
    """One request the receiver got: its path, JSON body, status answered, and scripted time (minutes)."""

    path: str
    payload: dict[str, Any]
    status: int
    minute: float

    @property
    def title(self) -> str:
        return str(self.payload.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.payload.get("message", ""))


class Hook:
    """A tiny webhook receiver on 127.0.0.1: records JSON posts; paths in ``failing`` answer 500."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.failing: set[str] = set()
        self.minute = 0.0
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = 500 if self.path in hook.failing else 200
                with hook._lock:
                    hook.posts.append(Post(self.path, json.loads(body or b"{}"), status, hook.minute))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def received(self, path: str | None = None, ok: bool = True) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if (path is None or p.path == path) and (not ok or p.status == 200)]

    def within(self, path: str, start: float, end: float) -> list[Post]:
        """Accepted posts to ``path`` that arrived at scripted minutes in [start, end]."""
        return [p for p in self.received(path) if start <= p.minute <= end]

    def clear(self) -> None:
        with self._lock:
            self.posts.clear()
        self.failing.clear()


def truncate_all(live: InProcessNode) -> None:
    """A fresh store for the next test: every data table emptied, the schema kept."""
    live.flush()
    names = live.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine LIKE '%MergeTree%' AND name != 'schema_migrations'"
    )
    for (name,) in names:
        live.node.query_client.command(f"TRUNCATE TABLE {name}")


class Scenario:
    """Events at scripted minutes relative to ``base`` (about now), evaluations at scripted minutes."""

    def __init__(self, live: InProcessNode, hook: Hook) -> None:
        self.live = live
        self.hook = hook
        # Minute 0 is a little ahead of the real clock, so what the API stamps with the real time
        # (a silence's start) is already in effect at scripted minute 0.
        self.base = float((int(time.time()) // 60 + 2) * 60)
        self.now = self.base
        self.sleeps: list[float] = []
        self.engine: AlertEngine | None = None

    def t(self, minute: float) -> float:
        return self.base + minute * 60

    def iso(self, minute: float) -> str:
        return datetime.fromtimestamp(self.t(minute), UTC).isoformat().replace("+00:00", "Z")

    def event(self, event_type: str, minute: float, source: str = "shop", **data: Any) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"ev-{next(_ids)}",
            "source": source,
            "type": event_type,
            "time": self.iso(minute),
            "data": data,
        }

    def send(self, *events: dict[str, Any]) -> None:
        answer = httpx.post(f"{self.live.url}/v1/events", content=json.dumps(list(events)), headers=BATCH)
        assert answer.status_code == 200, answer.text
        self.live.flush()

    def paid(
        self, order_id: str, store: str, minute: float, fulfillment: str = "bopis", channel: str = "web"
    ) -> list[dict[str, Any]]:
        """An order accepted a minute before ``minute`` and paid at it: stalled 10 min later."""
        accepted = {"order_id": order_id, "channel": channel, "store_id": store, "fulfillment": fulfillment}
        return [
            self.event("retail.order.accepted", minute - 1, **accepted),
            self.event("retail.payment.confirmed", minute, order_id=order_id, amount=10),
        ]

    def reserved(self, order_id: str, minute: float, store: str = "001") -> dict[str, Any]:
        return self.event(
            "retail.inventory.reserved", minute, order_id=order_id, sku="884-12", qty=1, location_id=store
        )

    def start(self, alerts: dict[str, Any]) -> AlertEngine:
        """A new engine over the node's store (a restart when one ran before), on the scripted clock."""
        self.engine = AlertEngine(
            self.live.node.query_client,
            parse_alerts(alerts),
            self.live.node.sla,
            self.live.node.promotions,
            clock=lambda: self.now,
            sleep=self.sleeps.append,
        )
        return self.engine

    def at(self, minute: float) -> list[SentNotification]:
        assert self.engine is not None, "start() the engine first"
        self.now = self.t(minute)
        self.hook.minute = minute
        return self.engine.evaluate(self.now)

    def run(self, *minutes: float) -> None:
        """Evaluate at each scripted minute, in order (the times where something may happen)."""
        for minute in minutes:
            self.at(minute)
