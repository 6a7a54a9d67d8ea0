"""The demo's client traffic: 100 requests against the orders service, deterministic.

    python3 examples/demo/traffic.py http://127.0.0.1:7080

Used by `devbox record demo -- python3 examples/demo/traffic.py URL` to produce
mocks/demo/ (see examples/demo/record.sh).
"""

from __future__ import annotations

import json
import random
import sys
import urllib.error
import urllib.request

SKUS = ["KB-101", "MS-202", "MN-303", "CB-404", "DK-505"]
CARDS = ["4242424242424242", "4000000000000002"]


def send(base: str, method: str, path: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


def main() -> int:
    base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:7080"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rng = random.Random(7)
    statuses: dict[int, int] = {}
    for i in range(count):
        kind = i % 5
        sku = rng.choice(SKUS)
        if kind == 0:
            st = send(base, "GET", "/catalog")
        elif kind == 1:
            st = send(base, "GET", f"/items/{sku}")
        elif kind == 2:
            st = send(base, "GET", f"/quote?sku={sku}&qty={rng.randint(1, 6)}")
        elif kind == 3:
            st = send(base, "POST", "/orders", {
                "sku": sku, "qty": rng.randint(1, 3), "customer": f"user{i}@example.com",
                "card": rng.choice(CARDS)})
        else:
            st = send(base, "GET", f"/items/NOPE-{i % 3}")
        statuses[st] = statuses.get(st, 0) + 1
    print(json.dumps({"sent": count, "statuses": statuses}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
