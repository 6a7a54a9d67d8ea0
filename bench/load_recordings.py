"""How long loading a large recording takes.

Generates N realistic exchanges (JSON bodies, a dozen headers, query strings) into a
temporary directory with store.write_recording, then times:

* ``store.load_dir``: the real loader (read, split, parse, decode to Exchange objects);
* ``orjson parse only``: the JSON parsing part of that, for scale;
* ``stdlib json parse``: the same objects parsed with the standard library's decoder;
* ``redact``: running the default Redactor over every exchange (what an import pays).

Usage: .venv/bin/python bench/load_recordings.py [--count 100000] [--repeat 3]
Bounded: at most 1,000,000 exchanges, each timing repeated at most 10 times.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devbox.core.model import Direction, Exchange, Request, Response, Timing  # noqa: E402
from devbox.core.recording import _chunks  # noqa: E402
from devbox.core.redact import Redactor  # noqa: E402
from devbox.store import load_dir, write_recording  # noqa: E402

SKUS = ["KB-101", "MS-220", "HD-330", "CB-440", "DK-550", "LT-660"]


def make_exchange(i: int, rng: random.Random) -> Exchange:
    sku = rng.choice(SKUS)
    if i % 3 == 0:
        body = json.dumps(
            {
                "sku": sku,
                "qty": rng.randint(1, 5),
                "customer": f"c-{rng.randint(1, 999)}",
                "card": "4242424242424242",
            }
        ).encode()
        req = Request(
            "POST",
            "/charges",
            (),
            (
                ("Host", "payments:8081"),
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer sk_test_demo"),
                ("Accept", "application/json"),
                ("User-Agent", "orders/1.0"),
                ("X-Request-Id", f"req-{i:08d}"),
            ),
            body,
            host="payments:8081",
        )
        resp_body = json.dumps(
            {
                "id": f"ch_{i:08d}",
                "status": "succeeded",
                "amount": rng.randint(100, 99999),
                "currency": "eur",
                "created_at": "2024-03-01T09:15:02Z",
                "sku": sku,
            }
        ).encode()
        status = 201
    else:
        req = Request(
            "GET",
            f"/items/{sku}",
            (("fields", "price,stock"), ("lang", "en")),
            (
                ("Host", "inventory:8082"),
                ("Accept", "application/json"),
                ("User-Agent", "orders/1.0"),
                ("X-Request-Id", f"req-{i:08d}"),
            ),
            host="inventory:8082",
        )
        resp_body = json.dumps(
            {
                "sku": sku,
                "name": "Mechanical keyboard",
                "price": 89.0,
                "stock": rng.randint(0, 50),
                "checked_at": "2024-03-01T09:15:02Z",
                "tags": ["peripherals", "input"],
            }
        ).encode()
        status = 200
    resp = Response(
        status,
        (
            ("Content-Type", "application/json"),
            ("Date", "Fri, 01 Mar 2024 09:15:02 GMT"),
            ("Server", "standin/1.0"),
            ("Content-Length", str(len(resp_body))),
        ),
        resp_body,
        reason="OK",
    )
    return Exchange(
        id=f"ex-{i:08d}",
        direction=Direction.OUTBOUND,
        source="payments",
        request=req,
        response=resp,
        timing=Timing(
            started_at=1709284502.0 + i * 0.01,
            duration_ms=round(rng.uniform(1, 30), 3),
            wait_ms=round(rng.uniform(0.5, 1), 3),
        ),
        parent=f"in-{i // 3:08d}",
    )


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    count = max(1, min(args.count, 1_000_000))
    repeat = max(1, min(args.repeat, 10))
    rng = random.Random(7)
    exchanges = [make_exchange(i, rng) for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="devbox-bench-") as tmp:
        d = Path(tmp) / "payments"
        t0 = time.perf_counter()
        path = write_recording(d / "bench.json", "payments", Direction.OUTBOUND, exchanges)
        t_write = time.perf_counter() - t0
        data = path.read_bytes()
        size_mb = len(data) / 1e6

        loaded: list[Exchange] = []

        def load() -> None:
            loaded[:] = load_dir(d)

        t_load = best_of(repeat, load)
        assert len(loaded) == count and loaded[-1] == exchanges[-1], "round trip failed"

        def parse_orjson() -> None:
            for _line, chunk in _chunks(data):
                orjson.loads(chunk)

        def parse_stdlib() -> None:
            text = data.decode("utf-8")
            dec = json.JSONDecoder()
            i, n = 0, len(text)
            while i < n:
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    break
                _, i = dec.raw_decode(text, i)

        t_orjson = best_of(repeat, parse_orjson)
        t_stdlib = best_of(repeat, parse_stdlib)
        redactor = Redactor()
        sample = exchanges[: min(count, 20_000)]
        t_redact = best_of(1, lambda: [redactor.exchange(e) for e in sample]) * count / len(sample)

    table = Table(title=f"Loading {count:,} recorded exchanges ({size_mb:.1f} MB on disk)")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("exchanges/s", justify="right")
    for name, secs in (
        ("write_recording (encode + atomic write)", t_write),
        ("store.load_dir (devbox, full decode)", t_load),
        ("orjson parse only (no Exchange objects)", t_orjson),
        ("stdlib json parse only", t_stdlib),
        ("Redactor.exchange, default rules", t_redact),
    ):
        table.add_row(name, f"{secs:.2f}", f"{count / secs:,.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
