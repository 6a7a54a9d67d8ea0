"""Helpers for the replay tests: a real HTTP server in a thread, and recording real responses."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import urlsplit

from devbox.core.model import Direction, Exchange, Request, Response, Timing, parse_query

# handler(method, path, headers, body) -> (status, headers, body);
# raising ConnectionAbortedError drops the connection without a response
Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, list[tuple[str, str]], bytes]]


@contextmanager
def serve(handler: Handler) -> Iterator[str]:
    """A real HTTP/1.1 server on a free loopback port, running ``handler`` per request."""

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            try:
                status, headers, out = handler(
                    self.command, self.path, dict(self.headers.items()), body
                )
            except ConnectionAbortedError:
                self.close_connection = True
                return
            self.send_response(status)
            names = {k.lower() for k, _ in headers}
            for k, v in headers:
                self.send_header(k, v)
            if "content-length" not in names and "transfer-encoding" not in names:
                self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_ids = count()


def exchange(
    method: str,
    target: str,
    status: int = 200,
    body: bytes = b"",
    *,
    req_body: bytes = b"",
    req_headers: tuple[tuple[str, str], ...] = (),
    resp_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    started_at: float = 0.0,
    id: str | None = None,
) -> Exchange:
    parts = urlsplit(target)
    return Exchange(
        id=id or f"ex-{next(_ids)}",
        direction=Direction.INBOUND,
        source="inbound",
        request=Request(method, parts.path, parse_query(parts.query), req_headers, req_body),
        response=Response(status, resp_headers, body),
        timing=Timing(started_at=started_at),
    )


def record(
    base: str,
    requests: list[tuple[str, str, bytes]],
    headers: tuple[tuple[str, str], ...] = (),
) -> list[Exchange]:
    """Send real requests to a real service and keep what came back, as a recorder would."""
    parts = urlsplit(base)
    out = []
    for i, (method, target, body) in enumerate(requests):
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        req_headers = list(headers)
        if body:
            req_headers.append(("Content-Type", "application/json"))
        conn.request(method, target, body=body or None, headers=dict(req_headers))
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        tparts = urlsplit(target)
        out.append(
            Exchange(
                id=f"rec-{i}",
                direction=Direction.INBOUND,
                source="inbound",
                request=Request(
                    method, tparts.path, parse_query(tparts.query), tuple(req_headers), body
                ),
                response=Response(resp.status, tuple(resp.getheaders()), data, resp.reason),
                timing=Timing(started_at=1_700_000_000.0 + i * 0.01),
            )
        )
    return out
