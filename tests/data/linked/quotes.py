"""The service under test: ``GET /quote?item=X`` calls ``RATES_URL/rate`` (always the same
call) and answers ``{"item": X, "rate": <what the call returned>}``. It copies
``X-Request-Id`` from its request onto its call, as services do with a request id.

``GATHER=N`` (set only by the test, never while recording): the first N requests wait
for each other, then make their calls in the reverse order of their ``item``; so a
concurrent replay's calls reach the mock in an order other than the recorded one, every
time, not by chance."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RATES_URL = os.environ["RATES_URL"]
GATHER = int(os.environ.get("GATHER", "0"))
_lock = threading.Condition()
_waiting: list[str] = []
_called: list[str] = []


def _my_turn(item: str) -> None:
    """Block until the gathered requests have all arrived and every later item has called."""
    with _lock:
        _waiting.append(item)
        _lock.notify_all()
        _lock.wait_for(lambda: len(_waiting) >= GATHER, timeout=30)
        _lock.wait_for(lambda: all(w in _called for w in _waiting if w > item), timeout=30)


def _done(item: str) -> None:
    with _lock:
        _called.append(item)
        _lock.notify_all()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._send({"ok": True})
        item = parse_qs(url.query).get("item", ["?"])[0]
        gathered = GATHER and len(_called) < GATHER
        if gathered:
            _my_turn(item)
        req = urllib.request.Request(RATES_URL + "/rate")
        rid = self.headers.get("X-Request-Id")
        if rid:
            req.add_header("X-Request-Id", rid)
        with urllib.request.urlopen(req, timeout=10) as resp:
            rate = json.loads(resp.read())["rate"]
        if gathered:
            _done(item)
        return self._send({"item": item, "rate": rate})

    def _send(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
