"""reviews: product pages that combine an HTTP dependency (inventory: the item) and a
Postgres dependency (the reviews). Standard library only (runs in the offline base image),
with a small PostgreSQL client of its own (protocol v3, simple queries, trust / cleartext /
md5 authentication); it learns where the database is from DATABASE_URL
(``postgresql://user[:password]@host:port/db``, password also from PGPASSWORD), exactly
as a service using psycopg would.

    GET  /products/<sku>           the item (inventory) and its reviews (Postgres)
    POST /products/<sku>/reviews   {"author", "stars", "body"}: INSERT in a transaction
    GET  /healthz                  SELECT 1
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://reviews@127.0.0.1:7432/reviews")
INVENTORY_URL = os.environ.get("INVENTORY_URL", "http://127.0.0.1:7202").rstrip("/")
TITLE = "Reviews"


class PgError(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "error"))
        self.fields = fields


def literal(value: object) -> str:
    """A SQL literal (standard_conforming_strings is on: only quotes are doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


class Postgres:
    """One connection, one query at a time (a lock), reconnecting when it drops."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.user = unquote(parts.username or "postgres")
        self.password = unquote(parts.password or os.environ.get("PGPASSWORD", ""))
        self.database = parts.path.lstrip("/") or self.user
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.buf = b""

    def _send(self, typ: bytes, body: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(typ + struct.pack("!i", len(body) + 4) + body)

    def _recv(self) -> tuple[bytes, bytes]:
        assert self.sock is not None
        while True:
            if len(self.buf) >= 5:
                length = struct.unpack("!i", self.buf[1:5])[0]
                if len(self.buf) >= 1 + length:
                    typ, body = self.buf[:1], self.buf[5 : 1 + length]
                    self.buf = self.buf[1 + length :]
                    return typ, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("database closed the connection")
            self.buf += chunk

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=10)
        self.buf = b""
        params = f"user\0{self.user}\0database\0{self.database}\0\0".encode()
        body = struct.pack("!i", 196608) + params
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            typ, body = self._recv()
            if typ == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code == 3:
                    self._send(b"p", self.password.encode() + b"\0")
                elif code == 5:
                    inner = hashlib.md5((self.password + self.user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self._send(b"p", b"md5" + outer.encode() + b"\0")
                elif code != 0:
                    raise ConnectionError(f"unsupported authentication method {code}")
            elif typ == b"E":
                raise PgError(_fields(body))
            elif typ == b"Z":
                return

    def query(self, sql: str) -> list[dict[str, str | None]]:
        """Run one simple query; rows as dicts of text values. Retries once on a dropped
        connection."""
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.sock is None:
                        self._connect()
                    return self._query(sql)
                except (ConnectionError, OSError):
                    self.sock = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _query(self, sql: str) -> list[dict[str, str | None]]:
        self._send(b"Q", sql.encode() + b"\0")
        names: list[str] = []
        rows: list[dict[str, str | None]] = []
        error: PgError | None = None
        while True:
            typ, body = self._recv()
            if typ == b"T":
                names = []
                pos = 2
                for _ in range(struct.unpack("!h", body[:2])[0]):
                    end = body.index(b"\0", pos)
                    names.append(body[pos:end].decode())
                    pos = end + 1 + 18
            elif typ == b"D":
                values: list[str | None] = []
                pos = 2
                for _ in range(struct.unpack("!h", body[:2])[0]):
                    n = struct.unpack("!i", body[pos : pos + 4])[0]
                    pos += 4
                    values.append(None if n < 0 else body[pos : pos + n].decode())
                    pos += max(n, 0)
                rows.append(dict(zip(names, values, strict=False)))
            elif typ == b"E":
                error = PgError(_fields(body))
            elif typ == b"Z":
                if error is not None:
                    raise error
                return rows


def _fields(body: bytes) -> dict[str, str]:
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


DB = Postgres(DATABASE_URL)


def inventory(sku: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{INVENTORY_URL}/items/{sku}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, delayed ACKs add 40 ms a request
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        try:
            if parts == ["healthz"]:
                DB.query("SELECT 1")
                return self.send_json(200, {"ok": True})
            if len(parts) == 2 and parts[0] == "products":
                return self.product(parts[1])
            self.send_json(404, {"error": "not found"})
        except PgError as exc:
            self.send_json(500, {"error": str(exc), "sqlstate": exc.fields.get("C")})

    def product(self, sku: str) -> None:
        status, item = inventory(sku)
        if status != 200:
            return self.send_json(404, {"error": f"unknown product {sku}"})
        rows = DB.query(
            "SELECT author, stars, body FROM reviews WHERE sku = " + literal(sku) + " ORDER BY id"
        )
        reviews = [{**r, "stars": int(r["stars"] or 0)} for r in rows]
        average = round(sum(r["stars"] for r in reviews) / len(reviews), 2) if reviews else None
        self.send_json(
            200,
            {
                "title": f"{TITLE}: {item.get('name', sku)}",
                "sku": sku,
                "item": {"name": item.get("name"), "price": item.get("price")},
                "reviews": reviews,
                "average": average,
            },
        )

    def do_POST(self) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        length = int(self.headers.get("Content-Length") or 0)
        if not (len(parts) == 3 and parts[0] == "products" and parts[2] == "reviews"):
            return self.send_json(404, {"error": "not found"})
        try:
            review = json.loads(self.rfile.read(length) or b"{}")
            stars = int(review.get("stars", 0))
        except (ValueError, TypeError):
            return self.send_json(400, {"error": "expected JSON with stars"})
        if not 1 <= stars <= 5:
            return self.send_json(400, {"error": "stars must be 1 to 5"})
        values = ", ".join(
            literal(v)
            for v in (parts[1], review.get("author", "anonymous"), stars, review.get("body", ""))
        )
        try:
            rows = DB.query(
                "BEGIN; INSERT INTO reviews (sku, author, stars, body) VALUES ("
                + values
                + ") RETURNING id; COMMIT"
            )
        except PgError as exc:
            DB.query("ROLLBACK")
            return self.send_json(409, {"error": str(exc), "sqlstate": exc.fields.get("C")})
        self.send_json(201, {"id": int(rows[0]["id"] or 0), "sku": parts[1]})


def main() -> None:
    port = int(os.environ.get("PORT", "7095"))
    server = ThreadingHTTPServer((os.environ.get("BIND", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    print(f"reviews listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
