"""misbehaving: a small shop API built to misbehave on demand, for replay tests and demos.

    python3 examples/misbehaving/app.py --port 7300 [--misbehave changed_field,reorder,...]
    MISBEHAVE=all PORT=7300 python3 examples/misbehaving/app.py

Each misbehaviour changes exactly one route, so a replay against a recording of
the well-behaved service should report each one exactly once:

    changed_field  GET /products/KB-101   price 89.0 -> 99.0
    new_field      GET /profile           adds "nickname"
    removed_field  GET /profile           drops "email"
    reorder        GET /products          items in reverse order
    text_change    GET /report            one line of the text report changes
    header_change  GET /report            X-Report-Version 1 -> 2
    status_change  GET /inventory         200 -> 503
    slow           GET /slow              answers after 300 ms
    crash          GET /crash             the handler dies: connection closed, no response

Volatile on purpose (noise, whatever the flags): every JSON response carries a
``request_id`` (UUID) and ``served_at`` (timestamp); POST /cart makes a new
``cart_id``; /products has ``generated_at``; /stats has a ``served`` counter.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ALL = (
    "changed_field",
    "new_field",
    "removed_field",
    "reorder",
    "text_change",
    "header_change",
    "status_change",
    "slow",
    "crash",
)
PRODUCTS = [
    {"sku": "KB-101", "name": "Mechanical keyboard", "price": 89.0},
    {"sku": "MS-202", "name": "Wireless mouse", "price": 24.5},
    {"sku": "MN-303", "name": "27in monitor", "price": 219.99},
]
MISBEHAVE: set[str] = set()
_served = 0
_lock = threading.Lock()


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "misbehaving/1.0"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: dict[str, object]) -> None:
        payload = {**payload, "request_id": str(uuid.uuid4()), "served_at": now()}
        self.send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        global _served
        with _lock:
            _served += 1
            served = _served
        path = urlsplit(self.path).path
        on = MISBEHAVE.__contains__
        if path == "/healthz":
            return self.send(200, b'{"ok": true}', "application/json")
        if path == "/products":
            items = list(reversed(PRODUCTS)) if on("reorder") else PRODUCTS
            return self.send_json(200, {"count": len(items), "items": items, "generated_at": now()})
        if path.startswith("/products/"):
            sku = path.rsplit("/", 1)[1]
            item = next((p for p in PRODUCTS if p["sku"] == sku), None)
            if item is None:
                return self.send_json(404, {"error": f"unknown sku {sku}"})
            if sku == "KB-101" and on("changed_field"):
                item = {**item, "price": 99.0}
            return self.send_json(200, {**item, "in_stock": True})
        if path == "/profile":
            profile: dict[str, object] = {"user": "ada", "email": "ada@example.com", "plan": "pro"}
            if on("new_field"):
                profile["nickname"] = "countess"
            if on("removed_field"):
                del profile["email"]
            return self.send_json(200, profile)
        if path == "/report":
            lines = ["Daily report", "orders: 42", "revenue: 1234.50 EUR", "returns: 1"]
            if on("text_change"):
                lines[2] = "revenue: 1250.00 EUR"
            version = "2" if on("header_change") else "1"
            body = ("\n".join(lines) + "\n").encode()
            return self.send(200, body, "text/plain; charset=utf-8", {"X-Report-Version": version})
        if path == "/inventory":
            if on("status_change"):
                return self.send_json(503, {"error": "inventory offline"})
            return self.send_json(200, {"warehouses": ["north", "south"]})
        if path == "/slow":
            if on("slow"):
                time.sleep(0.3)
            return self.send_json(200, {"ok": True})
        if path == "/crash":
            if on("crash"):
                raise RuntimeError("crash requested by --misbehave crash")
            return self.send_json(200, {"crashed": False})
        if path == "/stats":
            return self.send_json(200, {"served": served})
        return self.send_json(404, {"error": "not found", "path": path})

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        if urlsplit(self.path).path != "/cart":
            return self.send_json(404, {"error": "not found"})
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(400, {"error": "body is not JSON"})
        prices = {p["sku"]: float(p["price"]) for p in PRODUCTS}  # type: ignore[arg-type]
        items = [{"sku": s, "price": prices.get(s, 0.0)} for s in req.get("skus", [])]
        total = round(sum(float(i["price"]) for i in items), 2)  # type: ignore[arg-type]
        self.send_json(201, {"cart_id": "cart_" + uuid.uuid4().hex[:12], "items": items, "total": total})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7300")))
    ap.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1"))
    ap.add_argument("--misbehave", default=os.environ.get("MISBEHAVE", ""), help="comma list, or all")
    args = ap.parse_args()
    wanted = {w.strip() for w in args.misbehave.split(",") if w.strip()}
    if "all" in wanted:
        wanted = set(ALL)
    unknown = wanted - set(ALL)
    if unknown:
        ap.error(f"unknown misbehaviour(s): {', '.join(sorted(unknown))}; known: {', '.join(ALL)}")
    MISBEHAVE.update(wanted)
    # the default listen backlog (5) drops connections when a replay opens several at once
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    print(f"misbehaving listening on {args.bind}:{args.port} misbehave={sorted(wanted)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
