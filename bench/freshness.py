"""Event to visible: how long after an order event is sent its milestone shows in the order's timeline.

Each of ``LANES`` probe threads sends one ``retail.order.accepted`` CloudEvent for a new order at a
time, then asks ``GET /api/v1/orders/{id}`` every ``POLL_S`` until the answer holds the
``accepted`` milestone. The time from the send to that answer is one sample: acknowledgement,
write-ahead log, the storage writer's batch, correlation and the order summary, as a store manager
searching the order sees it.

The lanes start apart, so their sends fall at different points of the storage writer's batch
cycle (one lane alone sends right after its previous order showed, always at the same point of
it), and a 20 s run gives ~90 samples, not ~30. The probe runs beside a load (``bench.ingest``),
so the samples are taken while the node is busy.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

POLL_S = 0.05  # a sample can read up to this much late (faster polling loads the node itself)
GIVE_UP_S = 30.0  # an order not visible by then counts as lost
LANES = 3


class FreshnessProbe:
    """Samples event-to-visible latency against the node at ``url``: each lane sends its next order
    once its last one showed, and at most one every ``interval`` s."""

    def __init__(self, url: str, label: str, interval: float = 0.25, lanes: int = LANES) -> None:
        self.url = url
        self.label = label
        self.interval = interval
        self.samples_ms: list[float] = []  # list.append is atomic: the lanes share these
        self.lost: list[str] = []  # orders acknowledged but never seen, or refused
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(lane, lanes), name=f"probe-{lane}", daemon=True)
            for lane in range(lanes)
        ]

    def __enter__(self) -> FreshnessProbe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(GIVE_UP_S + 10)

    def _run(self, lane: int, lanes: int) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        number = 0
        self._stop.wait(lane * 0.5 / lanes)  # apart across a 0.5 s batch cycle
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                order_id = f"fresh-{self.label}-{lane}-{number:05d}"
                number += 1
                self._sample(connection, order_id)
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            connection.close()

    def _sample(self, connection: http.client.HTTPConnection, order_id: str) -> None:
        sent = time.monotonic()
        status, answer = _request(connection, "POST", "/v1/events", _event(order_id))
        if status != 200:
            self.lost.append(f"{order_id}: HTTP {status} {answer[:200]!r}")
            return
        while time.monotonic() - sent < GIVE_UP_S:
            status, answer = _request(connection, "GET", f"/api/v1/orders/{order_id}")
            if status == 200 and any(m["milestone"] == "accepted" for m in json.loads(answer)["milestones"]):
                self.samples_ms.append((time.monotonic() - sent) * 1000)
                return
            time.sleep(POLL_S)
        self.lost.append(f"{order_id}: acknowledged, not in its timeline after {GIVE_UP_S:.0f}s")


def _request(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/cloudevents+json"} if body is not None else {}
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()  # reconnects on the next request
        return 0, repr(exc).encode()


def _event(order_id: str) -> bytes:
    """One structured-mode CloudEvent: a web order for pickup at a store."""
    return json.dumps(
        {
            "specversion": "1.0",
            "type": "retail.order.accepted",
            "source": "/web/checkout",
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "subject": order_id,
            "datacontenttype": "application/json",
            "data": {
                "order_id": order_id,
                "channel": "web",
                "store_id": "st-0042",
                "fulfillment": "bopis",
                "lines": [{"sku": "SKU-000042", "qty": 1, "unit_price": 19.99}],
                "total": 19.99,
                "currency": "EUR",
            },
        }
    ).encode()
