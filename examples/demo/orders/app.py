"""orders: the demo service under test. Standard library only (runs in the offline base image).

It answers its own API by calling two other HTTP services, whose addresses it
learns from PAYMENTS_URL and INVENTORY_URL, exactly as a real service would.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# socketserver's default listen backlog is 5: a client opening 8 connections at once
# gets SYNs dropped and retransmitted a second later
ThreadingHTTPServer.request_queue_size = 128

PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:7201")
INVENTORY_URL = os.environ.get("INVENTORY_URL", "http://127.0.0.1:7202")
TAX_RATE = 0.20
SHIPPING_FLAT = 4.95
FREE_SHIPPING_FROM = 100.0


class UpstreamError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def call(base: str, method: str, path: str, body: dict | None = None,
         headers: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise UpstreamError(exc.code, exc.read().decode("utf-8", "replace")[:200]) from None
    except (urllib.error.URLError, OSError) as exc:
        raise UpstreamError(502, f"{base}: {exc}") from None


def price_lines(item: dict, qty: int) -> dict:
    subtotal = round(item["price"] * qty, 2)
    shipping = 0.0 if subtotal >= FREE_SHIPPING_FROM else SHIPPING_FLAT
    tax = round(subtotal * TAX_RATE, 2)
    return {
        "subtotal": subtotal,
        "shipping": shipping,
        "tax": tax,
        "total": round(subtotal + shipping + tax, 2),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "orders/1.0"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle and the
        # client's delayed ACK add 40 ms to every response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)

    def send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_json(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            raise UpstreamError(400, "body is not JSON") from None
        if not isinstance(value, dict):
            raise UpstreamError(400, "body must be a JSON object")
        return value

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if method == "GET" and parts == ["healthz"]:
                return self.send_json(200, {"status": "ok"})
            if method == "GET" and parts == ["catalog"]:
                return self.send_json(200, self.catalog())
            if method == "GET" and len(parts) == 2 and parts[0] == "items":
                return self.send_json(200, call(INVENTORY_URL, "GET", f"/items/{parts[1]}"))
            if method == "GET" and parts == ["quote"]:
                return self.send_json(200, self.quote(query))
            if method == "POST" and parts == ["orders"]:
                return self.send_json(201, self.create_order(self.read_json()))
            if method == "GET" and len(parts) == 2 and parts[0] == "payments":
                return self.send_json(200, call(PAYMENTS_URL, "GET", f"/charges/{parts[1]}"))
            self.send_json(404, {"error": "not found", "path": url.path})
        except UpstreamError as exc:
            status = exc.status if exc.status < 500 else 502
            self.send_json(status, {"error": exc.detail})

    def catalog(self) -> dict:
        items = call(INVENTORY_URL, "GET", "/items")["items"]
        return {
            "count": len(items),
            "items": [
                {"sku": i["sku"], "name": i["name"], "price": i["price"],
                 "in_stock": i["stock"] > 0}
                for i in items
            ],
        }

    def quote(self, query: dict) -> dict:
        sku = query.get("sku", "")
        qty = int(query.get("qty", "1"))
        item = call(INVENTORY_URL, "GET", f"/items/{sku}")
        return {"sku": sku, "qty": qty, "currency": "EUR", **price_lines(item, qty)}

    def create_order(self, order: dict) -> dict:
        sku = str(order.get("sku", ""))
        qty = int(order.get("qty", 1))
        if qty < 1:
            raise UpstreamError(400, "qty must be at least 1")
        item = call(INVENTORY_URL, "GET", f"/items/{sku}")
        if item["stock"] < qty:
            raise UpstreamError(409, f"only {item['stock']} of {sku} in stock")
        lines = price_lines(item, qty)
        charge = call(
            PAYMENTS_URL,
            "POST",
            "/charges",
            {"amount": lines["total"], "currency": "EUR", "customer": order.get("customer"),
             "card": order.get("card")},
            headers={"Authorization": "Bearer " + os.environ.get("PAYMENTS_TOKEN", "sk_test_demo")},
        )
        return {
            "order_id": "ord_" + uuid.uuid4().hex[:12],
            "status": "confirmed" if charge["status"] == "succeeded" else "payment_failed",
            "sku": sku,
            "qty": qty,
            **lines,
            "payment": {"id": charge["id"], "status": charge["status"]},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def main() -> None:
    host = os.environ.get("BIND", "127.0.0.1")
    port = int(os.environ.get("PORT", "7080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"orders listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
