"""visits: a page-visit counter kept in Redis. Standard library only (runs in the offline base
image), with a small RESP client of its own; it learns where Redis is from REDIS_URL
(``redis://[user:password@]host:port/db``), exactly as a service using redis-py would.

    GET /visit?page=home   INCR visits:<page>, remember the page, answer the new count
    GET /stats             every page's count (SMEMBERS pages, then MGET)
    GET /healthz           PING
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ThreadingHTTPServer.request_queue_size = 128

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
GREETING = "Total visits"


class Redis:
    """One connection, one command at a time (a lock), reconnecting when it drops."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.password = unquote(parts.password) if parts.password else None
        self.db = int(parts.path.strip("/") or 0)
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=5)
        self.buf = b""
        if self.password:
            self._roundtrip([b"AUTH", self.password.encode()])
        if self.db:
            self._roundtrip([b"SELECT", str(self.db).encode()])

    def command(self, *args: str | int) -> object:
        raw = [str(a).encode() for a in args]
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.sock is None:
                        self._connect()
                    return self._roundtrip(raw)
                except OSError:
                    self.sock = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _roundtrip(self, args: list[bytes]) -> object:
        assert self.sock is not None
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        self.sock.sendall(out)
        return self._read()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            assert self.sock is not None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _read(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                assert self.sock is not None
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")


redis = Redis(REDIS_URL)


class Handler(BaseHTTPRequestHandler):
    server_version = "visits/1.0"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        try:
            if url.path == "/healthz":
                self._send(200, {"redis": redis.command("PING")})
            elif url.path == "/visit":
                page = parse_qs(url.query).get("page", ["home"])[0]
                count = redis.command("INCR", f"visits:{page}")
                redis.command("SADD", "pages", page)
                self._send(200, {"page": page, "message": f"{GREETING}: {count}"})
            elif url.path == "/stats":
                pages = sorted(redis.command("SMEMBERS", "pages") or [])
                counts = redis.command("MGET", *[f"visits:{p}" for p in pages]) if pages else []
                self._send(200, {"pages": {p: int(c or 0) for p, c in zip(pages, counts)}})
            else:
                self._send(404, {"error": "not found"})
        except (OSError, RuntimeError) as exc:
            self._send(502, {"error": f"redis: {exc}"})


def main() -> None:
    host = os.environ.get("BIND", "127.0.0.1")
    port = int(os.environ.get("PORT", "7090"))
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"visits listening on {host}:{port}, redis at {REDIS_URL}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
