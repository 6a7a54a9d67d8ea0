"""CPU per exchange of the recording worker alone, fed from memory.

    .venv/bin/python bench/record/bench_worker.py [--exchanges N] [--rounds R]
    .venv/bin/python bench/record/bench_worker.py --relayed [--distinct]
    .venv/bin/python bench/record/bench_worker.py --h2 [--distinct]

Runs ``devbox.record.worker.run`` in this process over N frames like the ones the proxy
sends during bench_record.py (GET /, a small JSON answer), with the default redaction rules,
appending to a recording in a temporary directory. ``--relayed``: the frames of 8
intercepted HTTP/1.1 connections the proxy relays verbatim (``devbox.record.tee``: a
chunk per request and per answer, as bench_tls.py's proxy rounds send them), which the
worker reads back into exchanges; ``--distinct`` gives each of 1,000 paths its own body,
so that no chunk repeats within the worker's memories; ``--h2``: the same over 8
intercepted HTTP/2 connections (``devbox.record.h2streams``). It counts process CPU time, not wall
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


def relayed_frames(n: int, distinct: bool) -> bytes:
    """8 connections' chunks, each in its own batch frame as the proxy's loop sends them."""
    item = b'{"id": 1, "name": "widget", "price": 9.99, "tags": ["a", "b"]}'
    buf = bytearray()
    t = 1000.0
    opened = tuple(
        ("o", c, "payments", "outbound", "https", "api.example:443", 1764147000.0, t)
        for c in range(8)
    )
    p = marshal.dumps(("batch", opened))
    buf += FRAME.pack(len(p)) + p
    for i in range(n):
        key = i % 1000 if distinct else 1
        body = item.replace(b"1", str(key).encode(), 1)
        req = f"GET /items/{key} HTTP/1.1\r\nHost: api.example\r\n\r\n".encode()
        resp = (
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        t += 0.0001
        for frame in (("d", i % 8, 0, t, req, None), ("d", i % 8, 1, t + 0.00005, resp, None)):
            p = marshal.dumps(("batch", (frame,)))
            buf += FRAME.pack(len(p)) + p
    p = marshal.dumps(("end", False))
    buf += FRAME.pack(len(p)) + p
    return bytes(buf)


def h2_frames(n: int, distinct: bool) -> bytes:
    """The same traffic over HTTP/2 (``--h2``): 8 connections relayed verbatim, their
    bytes written by the ``h2`` package as a client and a server (curl's and nginx's
    headers), a chunk per request and per answer as the proxy's loop sends them."""
    import h2.config
    import h2.connection
    import h2.events

    item = b'{"id": 1, "name": "widget", "price": 9.99, "tags": ["a", "b"]}'
    buf = bytearray()
    t = 1000.0
    conns = []
    for c in range(8):
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        client.initiate_connection()
        server.initiate_connection()
        hello = client.data_to_send()
        server.receive_data(hello)
        answer = server.data_to_send()
        client.receive_data(answer)
        server.receive_data(client.data_to_send())
        opened = ("o", c, "payments", "outbound", "https", "api.example:443", 1764147000.0, t)
        frames = [(*opened, "h2"), ("d", c, 0, t, hello, None), ("d", c, 1, t, answer, None)]
        p = marshal.dumps(("batch", tuple(frames)))
        buf += FRAME.pack(len(p)) + p
        conns.append((client, server))
    for i in range(n):
        c = i % 8
        client, server = conns[c]
        key = i % 1000 if distinct else 1
        body = item.replace(b"1", str(key).encode(), 1)
        sid = client.get_next_available_stream_id()
        client.send_headers(
            sid,
            [
                (":method", "GET"),
                (":path", f"/items/{key}"),
                (":scheme", "https"),
                (":authority", "api.example"),
                ("user-agent", "curl/7.88.1"),
                ("accept", "*/*"),
            ],
            end_stream=True,
        )
        req = client.data_to_send()
        server.receive_data(req)
        server.send_headers(
            sid,
            [
                (":status", "200"),
                ("server", "nginx/1.22.1"),
                ("date", "Mon, 07 Dec 2026 16:00:00 GMT"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ],
        )
        server.send_data(sid, body, end_stream=True)
        resp = server.data_to_send()
        for ev in client.receive_data(resp):
            if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                # as curl does: its WINDOW_UPDATEs go up with its next request
                client.acknowledge_received_data(ev.flow_controlled_length, sid)
        t += 0.0001
        for frame in (("d", c, 0, t, req, None), ("d", c, 1, t + 0.00005, resp, None)):
            p = marshal.dumps(("batch", (frame,)))
            buf += FRAME.pack(len(p)) + p
    p = marshal.dumps(("end", False))
    buf += FRAME.pack(len(p)) + p
    return bytes(buf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exchanges", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--relayed", action="store_true", help="relayed connections' chunks")
    ap.add_argument("--distinct", action="store_true", help="--relayed, 1,000 distinct paths")
    ap.add_argument("--h2", action="store_true", help="relayed HTTP/2 connections' chunks")
    args = ap.parse_args()
    if args.h2:
        data = h2_frames(args.exchanges, args.distinct)
    elif args.relayed:
        data = relayed_frames(args.exchanges, args.distinct)
    else:
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
            "max_body": 1 << 20,
            "correlation": None,
        }
        for _ in range(args.rounds):
            shutil.rmtree(tmp / "mocks", ignore_errors=True)
            start = time.process_time()
            worker.run(cfg, io.BufferedReader(io.BytesIO(data)), io.BytesIO())
            results.append((time.process_time() - start) / args.exchanges * 1e6)
    finally:
        os.chdir(here)
        shutil.rmtree(tmp, ignore_errors=True)
    kind = "relayed, " + ("distinct" if args.distinct else "repeated")
    if args.h2:
        kind = "HTTP/2 " + kind
    elif not args.relayed:
        kind = "x"
    print(
        f"recording worker ({kind} frames), {args.exchanges} exchanges per round, load average "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print("| round | CPU/exchange |\n|---|---:|")
    for i, us in enumerate(results, 1):
        print(f"| {i} | {us:.1f} µs |")
    print(f"| median | {statistics.median(results):.1f} µs |")


if __name__ == "__main__":
    main()
