"""Stand-ins for the *real* payments and inventory services the demo's orders service calls.

They exist so that `devbox record` has something real to record: realistic JSON
with volatile fields (timestamps, generated ids). Standard library only.

    python3 upstreams/standins.py payments  --port 7201
    python3 upstreams/standins.py inventory --port 7202
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# socketserver's default listen backlog is 5: a client opening 8 connections at once
# gets SYNs dropped and retransmitted a second later
ThreadingHTTPServer.request_queue_size = 128

ITEMS = [
    {"sku": "KB-101", "name": "Mechanical keyboard", "price": 89.0, "stock": 14},
    {"sku": "MS-202", "name": "Wireless mouse", "price": 24.5, "stock": 52},
    {"sku": "MN-303", "name": "27in monitor", "price": 219.99, "stock": 3},
    {"sku": "CB-404", "name": "USB-C cable", "price": 9.99, "stock": 240},
    {"sku": "DK-505", "name": "Docking station", "price": 149.0, "stock": 0},
]
BY_SKU = {i["sku"]: i for i in ITEMS}


def now() -> str:
    millis = int(time.time() * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{millis:03d}Z"


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(body)


class Inventory(Base):
    server_version = "inventory/2.3"

    def do_GET(self) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if parts == ["items"]:
            return self.send_json(200, {"items": ITEMS, "generated_at": now()})
        if len(parts) == 2 and parts[0] == "items":
            item = BY_SKU.get(parts[1])
            if item is None:
                return self.send_json(404, {"error": f"unknown sku {parts[1]}"})
            return self.send_json(200, {**item, "checked_at": now()})
        self.send_json(404, {"error": "not found"})


class Payments(Base):
    server_version = "payments/5.1"
    charges: dict[str, dict] = {}

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/charges":
            return self.send_json(404, {"error": "not found"})
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            return self.send_json(401, {"error": "missing bearer token"})
        n = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(n) or b"{}")
        declined = str(req.get("card", "")).endswith("0002")
        charge = {
            "id": "ch_" + uuid.uuid4().hex[:16],
            "status": "declined" if declined else "succeeded",
            "amount": req.get("amount"),
            "currency": req.get("currency", "EUR"),
            "created": int(time.time()),
        }
        Payments.charges[charge["id"]] = charge
        self.send_json(402 if declined else 201, charge)

    def do_GET(self) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if len(parts) == 2 and parts[0] == "charges" and parts[1] in Payments.charges:
            return self.send_json(200, Payments.charges[parts[1]])
        self.send_json(404, {"error": "no such charge"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["payments", "inventory"])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    handler = Payments if args.which == "payments" else Inventory
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print(f"{args.which} stand-in listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
