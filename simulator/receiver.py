"""The demo's alert inbox: apprise's ``json://`` notifications, appended to a file and shown on the console.

apprise has no plugin that writes to a file, so the demo routes its alerts to
``json://127.0.0.1:PORT/alerts`` and this small server takes them: one JSON line per
notification in the log, and its title on the console.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_MAX_BODY = 1024 * 1024


class NotificationReceiver:
    def __init__(self, log_path: Path, show: Callable[[str], None]) -> None:
        self.log_path = log_path
        self.show = show
        self.received = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The apprise URL that delivers here."""
        assert self._server is not None
        return f"json://127.0.0.1:{self._server.server_address[1]}/alerts"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                body = self.rfile.read(length)
                receiver.take(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="milepost-alert-inbox", daemon=True
        )
        self._thread.start()

    def take(self, body: bytes) -> None:
        try:
            document = json.loads(body)
        except ValueError:
            document = {"message": body.decode("utf-8", "replace")}
        if not isinstance(document, dict):
            document = {"message": str(document)}
        entry = {"received": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **document}
        with self._lock:
            self.received += 1
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        title = str(document.get("title") or "").strip()
        first = str(document.get("message") or "").strip().splitlines()[:1]
        self.show(f"ALERT {title or (first[0] if first else 'notification')}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
