"""Replay's response reading alone, CPU only: responses per second through the parser,
this tree's against another revision's, interleaved in one process.

    .venv/bin/python bench/replay/bench_parse.py [--against REV] [--rounds 5] [--n 50000]

REV (default ``HEAD``) is any git revision; its ``devbox/replay/http.py`` is loaded
from git as a module of its own, so the two parsers run side by side on the same
bytes, round after round (a shared machine's noise hits both alike). Cases: the
replay benchmark's target response (a 75-byte JSON with Content-Length, one read),
the same split into three reads, and a chunked response.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BODY = b'{"id": 1, "status": "ok", "items": [1, 2, 3], "note": "a fixed test response"}'[:75]
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Date: Sat, 05 Dec 2026 13:00:00 GMT\r\nContent-Length: " + str(len(BODY)).encode()
)
LENGTH = HEAD + b"\r\n\r\n" + BODY
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:30], BODY[30:]))
    + b"0\r\n\r\n"
)
CASES: dict[str, list[bytes]] = {
    "content-length, one read": [LENGTH],
    "content-length, three reads": [LENGTH[:40], LENGTH[40:120], LENGTH[120:]],
    "chunked, one read": [CHUNKED],
}


def load_revision(rev: str) -> ModuleType:
    text = subprocess.run(  # noqa: S603 - git, a fixed argument list, no shell
        ["git", "-C", str(ROOT), "show", f"{rev}:devbox/replay/http.py"],
        check=True,
        capture_output=True,
    ).stdout
    path = Path(f"/tmp/devbox_bench_parse_{abs(hash(rev))}.py")
    path.write_bytes(text)
    name = "devbox_bench_replay_http_other"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def rate(parser_cls: Any, reads: list[bytes], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        p = parser_cls(False)
        resp = None
        for data in reads:
            resp = p.feed(data)
        assert resp is not None and resp.status == 200
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", default="HEAD", help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=50_000, help="responses per case and round")
    args = ap.parse_args()
    from devbox.replay import http as now

    other = load_revision(args.against)
    print(f"{'case':30} {'this tree':>12} {args.against:>12} {'ratio':>7}")
    for name, reads in CASES.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.rounds):
            ours.append(rate(now._Parser, reads, args.n))
            theirs.append(rate(other._Parser, reads, args.n))
        a, b = sorted(ours)[len(ours) // 2], sorted(theirs)[len(theirs) // 2]
        print(f"{name:30} {a:12,.0f} {b:12,.0f} {a / b:7.2f}")
    print("responses per second, median of the rounds; ratio = this tree / the other")


if __name__ == "__main__":
    main()
