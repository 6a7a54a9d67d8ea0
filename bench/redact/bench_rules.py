"""CPU per exchange of redaction alone (``Redactor.exchange``), over a mix of exchanges.

    .venv/bin/python bench/redact/bench_rules.py [--rounds R] [--repeat N]

The mix is what a recording sees: small JSON API calls (ids, timestamps, URLs, prose), a
form login, an HTML page, a CSS file and an unminified JavaScript bundle (the npm corpus
under .cache/npm-corpus when scripts/setup installed it, else a generated stand-in), each
with realistic headers; a fresh Redactor per round (its header memo starts empty). It
counts process CPU time, so the figure holds on a busy machine. Compare two trees by
running the same script with PYTHONPATH=TREE, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import time
from pathlib import Path

from devbox.core.model import Exchange, Request, Response
from devbox.core.redact import Redactor

ROOT = Path(__file__).resolve().parents[2]
NPM = ROOT / ".cache" / "npm-corpus" / "node_modules"
HEADERS = (
    ("Host", "api.example.test"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"),
    ("Accept", "application/json, text/plain, */*"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("X-Request-Id", "7f3c1a9e-2b4d-4c1e-9a8f-0d6e5b4a3c21"),
)


def _json_body(rng: random.Random) -> bytes:
    items = [
        {
            "id": f"ord_{rng.randrange(10**9):09d}",
            "created_at": "2026-12-05T13:10:00Z",
            "customer": {"name": "Ada Lovelace", "country": "GB", "tier": "gold"},
            "lines": [{"sku": f"SKU-{j:04d}", "qty": j + 1, "price": 9.99} for j in range(3)],
            "note": "Leave the parcel at the door; ring twice, please.",
            "links": {"self": f"https://api.example.test/v1/orders/{i}"},
            "status": rng.choice(["paid", "pending", "shipped"]),
        }
        for i in range(8)
    ]
    return json.dumps({"data": items, "has_more": True}).encode()


def _file(rel: str, fallback: bytes) -> bytes:
    p = NPM / rel
    return p.read_bytes() if p.is_file() else fallback


def workload() -> list[Exchange]:
    rng = random.Random(13)
    words = " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(400))
    html = f"<html><body><h1>Docs</h1><p>{words}</p></body></html>".encode() * 10
    js = _file("bootstrap/dist/js/bootstrap.js", f"var a = '{words}';\n".encode() * 40)
    css = _file("bootstrap/dist/css/bootstrap.css", b".btn{color:#fff;padding:4px}\n" * 4000)
    out: list[Exchange] = []

    def ex(i: int, req: Request, ctype: str, body: bytes) -> None:
        resp = Response(200, (("Content-Type", ctype), ("Content-Length", str(len(body)))), body)
        out.append(Exchange(f"e{i}", "outbound", "api", req, resp))

    for i in range(200):
        req = Request("GET", f"/v1/orders/{i}", (("page", str(i)), ("limit", "20")), HEADERS)
        ex(i, req, "application/json", _json_body(rng))
    for i in range(20):
        form = b"username=ada&remember=on&next=%2Fhome"
        hdrs = (*HEADERS, ("Content-Type", "application/x-www-form-urlencoded"))
        ex(1000 + i, Request("POST", "/login", (), hdrs, form), "text/html", html)
    ex(2000, Request("GET", "/app.js", (), HEADERS), "application/javascript", js)
    ex(2001, Request("GET", "/app.css", (), HEADERS), "text/css", css)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    exchanges = workload()
    size = sum(len(e.request.body) + len(e.response.body) for e in exchanges if e.response)
    per_kind: dict[str, list[float]] = {"json": [], "html": [], "js": [], "css": [], "all": []}
    for _ in range(args.rounds):
        r = Redactor()
        kinds: dict[str, float] = dict.fromkeys(per_kind, 0.0)
        counts: dict[str, int] = dict.fromkeys(per_kind, 0)
        for _ in range(args.repeat):
            for e in exchanges:
                ct = e.response.headers[0][1] if e.response else ""
                kind = {"application/json": "json", "text/html": "html", "text/css": "css"}.get(
                    ct, "js"
                )
                t = time.process_time()
                r.exchange(e)
                dt = time.process_time() - t
                kinds[kind] += dt
                kinds["all"] += dt
                counts[kind] += 1
                counts["all"] += 1
        for k in per_kind:
            per_kind[k].append(kinds[k] / counts[k] * 1e6)
    print(
        f"redaction only, {len(exchanges)} exchanges ({size / 1e6:.1f} MB of bodies) x "
        f"{args.repeat}, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| exchange | median CPU/exchange | min |\n|---|---:|---:|")
    for k, v in per_kind.items():
        print(f"| {k} | {statistics.median(v):,.1f} µs | {min(v):,.1f} µs |")


if __name__ == "__main__":
    main()
