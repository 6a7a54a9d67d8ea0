"""The reviews example's client traffic: product pages, new reviews, pages again.

python3 examples/reviews/traffic.py http://127.0.0.1:7095
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

SKUS = ["KB-101", "MS-202", "MN-303", "CB-404"]
NEW = [
    ("KB-101", {"author": "dana", "stars": 4, "body": "clicky, a bit loud"}),
    ("MN-303", {"author": "eli", "stars": 5, "body": "sharp and bright"}),
    ("MS-202", {"author": "fay", "stars": 9, "body": "out of range"}),
]


def call(method: str, url: str, body: object | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


def main() -> int:
    base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:7095"
    for sku in [*SKUS, "NOPE-1"]:
        call("GET", f"{base}/products/{sku}")
    for sku, review in NEW:
        call("POST", f"{base}/products/{sku}/reviews", review)
    for sku in SKUS:
        call("GET", f"{base}/products/{sku}")
    call("GET", f"{base}/healthz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
