"""CPU per exchange of the recording worker alone, fed from memory.

    .venv/bin/python bench/record/bench_worker.py [--exchanges N] [--rounds R]

Runs ``devbox.record.worker.run`` in this process over N frames like the ones the proxy
sends during bench_record.py (GET /, a small JSON answer), with the default redaction rules,
appending to a recording in a temporary directory. It counts process CPU time, not wall
time: the figure holds on a busy machine, where the end-to-end benchmark does not.
Compare two trees with PYTHONPATH=TREE.
"""

from __future__ import annotations

import argparse
import gc
import io
import marshal
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from devbox.record import worker
from devbox.record.frames import FRAME

BODY = b'{"id": "ch_123", "status": "succeeded", "amount": 42.5, "currency": "EUR"}'
PROFILE = (
    'name = "bench"\n[service]\nport = 1\ncommand = ["true"]\n'
    '[[dependency]]\nname = "payments"\nupstream = "http://127.0.0.1:9"\n'
    'env = "PAYMENTS_URL"\nport = 2\n'
)


def frames(n: int) -> bytes:
    buf = bytearray()
    t0 = 1764147000.0
    for i in range(n):
        msg = (
            "x",
            "payments",
            "outbound",
            f"ex{i:08d}",
            None,
            "http",
            "127.0.0.1:7201",
            "GET",
            "/charges/ch_123?expand=customer",  # as bench_record.py requests
            "HTTP/1.1",
            [("Host", "127.0.0.1:7101")],
            b"",
            False,
            (
                200,
                "OK",
                "HTTP/1.1",
                [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))],
            ),
            BODY,
            False,
            t0 + i * 0.0001,
            0.0851,
            0.07,
            None,
        )
        p = marshal.dumps(msg)
        buf += FRAME.pack(len(p)) + p
    p = marshal.dumps(("end", False))
    buf += FRAME.pack(len(p)) + p
    return bytes(buf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exchanges", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = frames(args.exchanges)
    gc.set_threshold(100_000, 50, 100)  # as worker.main() sets it
    tmp = Path(tempfile.mkdtemp(prefix="devbox-bench-worker-"))
    here = Path.cwd()
    results = []
    try:
        (tmp / "profiles").mkdir()
        (tmp / "profiles/bench.toml").write_text(PROFILE)
        os.chdir(tmp)
        cfg = {
            "profile": str(tmp / "profiles/bench.toml"),
            "append": False,
            "fsync": False,
            "stamp": "x",
            "sources": {"payments": "outbound"},
        }
        for _ in range(args.rounds):
            shutil.rmtree(tmp / "mocks", ignore_errors=True)
            start = time.process_time()
            worker.run(cfg, io.BufferedReader(io.BytesIO(data)), io.BytesIO())
            results.append((time.process_time() - start) / args.exchanges * 1e6)
    finally:
        os.chdir(here)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"recording worker, {args.exchanges} exchanges per round, load average "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print("| round | CPU/exchange |\n|---|---:|")
    for i, us in enumerate(results, 1):
        print(f"| {i} | {us:.1f} µs |")
    print(f"| median | {statistics.median(results):.1f} µs |")


if __name__ == "__main__":
    main()
