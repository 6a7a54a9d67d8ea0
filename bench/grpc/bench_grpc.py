"""The gRPC mock next to the real grpcio server, same run, same unary workload; and the
recording relay's added latency.

1. compile tests/data/grpc/routeguide.proto (grpcio-tools) and start the real grpcio
   server of tests/grpc_server.py (free port, stopped by PID);
2. sequential calls (concurrency 1) straight to the server, then through
   ``devbox record`` (``loadgen.py … {routes}``): the relay's added latency is the
   difference of the medians; that run is also the recording;
3. ``devbox mock`` the profile (on_miss = fail) in its own process and run the same
   concurrent workload against the real server and against the mock, alternating,
   ``--rounds`` times;
4. print one table: calls/s, p50 and p99 per server and round, and the ratio.

    .venv/bin/python bench/grpc/bench_grpc.py                 # -n 5000 -c 16, 3 rounds
    .venv/bin/python bench/grpc/bench_grpc.py -n 20000 -c 32 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TESTS = ROOT / "tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def load(gen: Path, target: str, n: int, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603
        [sys.executable, str(HERE / "loadgen.py"), str(gen), target, str(n), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(gen: Path, target: str, n: int, c: int, pid: int) -> dict[str, Any]:
    """The load's figures plus the server's CPU microseconds per call: what the server
    itself costs, whatever the client (the usual limit on a busy machine) manages."""
    before = cpu_s(pid)
    res = load(gen, target, n, c)
    res["cpu_us"] = (cpu_s(pid) - before) / max(1, res["calls"]) * 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000, help="calls per run (default 5000)")
    ap.add_argument("-c", type=int, default=16, help="calls in flight (default 16)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-calls", type=int, default=2000)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="devbox-bench-grpc-") as tmp:
        work = Path(tmp)
        gen = work / "gen"
        gen.mkdir()
        subprocess.run(  # noqa: S603
            [
                py,
                "-m",
                "grpc_tools.protoc",
                f"-I{TESTS / 'data' / 'grpc'}",
                f"--python_out={gen}",
                f"--grpc_python_out={gen}",
                str(TESTS / "data" / "grpc" / "routeguide.proto"),
            ],
            check=True,
        )
        server_port, mock_port = free_port(), free_port()
        procs: list[subprocess.Popen[str]] = []
        try:
            server = subprocess.Popen(  # noqa: S603
                [py, str(TESTS / "grpc_server.py"), str(gen), str(server_port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            (work / "profiles").mkdir()
            (work / "profiles" / "bench.toml").write_text(
                f'name = "bench"\n\n[service]\ncommand = ["true"]\nport = {free_port()}\n\n'
                f'[[dependency]]\nname = "routes"\nkind = "grpc"\n'
                f'upstream = "http://127.0.0.1:{server_port}"\nport = {mock_port}\n'
            )
            target = f"127.0.0.1:{server_port}"
            direct = load(gen, target, args.latency_calls, 1)
            rec = subprocess.run(  # noqa: S603
                [
                    py,
                    "-m",
                    "devbox",
                    "record",
                    "bench",
                    "--no-service",
                    "--",
                    py,
                    str(HERE / "loadgen.py"),
                    str(gen),
                    "{routes}",
                    str(args.latency_calls),
                    "1",
                ],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            relayed = json.loads(rec.stdout.strip().splitlines()[0])
            mock = subprocess.Popen(  # noqa: S603
                [py, "-m", "devbox", "mock", "bench", "--no-reload"],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            procs.append(mock)
            wait_port(mock_port)
            rows = []
            for r in range(1, args.rounds + 1):
                real = measured(gen, target, args.n, args.c, server.pid)
                mocked = measured(gen, f"127.0.0.1:{mock_port}", args.n, args.c, mock.pid)
                rows.append((r, real, mocked))
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    load1 = os.getloadavg()[0]
    print(f"unary SayHello, -n {args.n} -c {args.c}, load average {load1:.1f}")
    print(
        "| round | server calls/s | mock calls/s | ratio | server p50/p99 ms "
        "| mock p50/p99 ms | server CPU µs/call | mock CPU µs/call | mock errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r, real, mocked in rows:
        print(
            f"| {r} | {real['rps']:,.0f} | {mocked['rps']:,.0f} | "
            f"{mocked['rps'] / real['rps']:.2f}x | {real['p50_ms']}/{real['p99_ms']} | "
            f"{mocked['p50_ms']}/{mocked['p99_ms']} | {real['cpu_us']:.0f} | "
            f"{mocked['cpu_us']:.0f} | {mocked['errors']} |"
        )
    print()
    print(f"relay latency, {args.latency_calls} sequential calls")
    print("| path | p50 ms | p99 ms | calls/s |")
    print("|---|---|---|---|")
    for name, res in (("direct", direct), ("through devbox record", relayed)):
        print(f"| {name} | {res['p50_ms']} | {res['p99_ms']} | {res['rps']:,.0f} |")
    added = relayed["p50_ms"] - direct["p50_ms"]
    print(f"\nadded by the relay: {added * 1000:.0f} µs at the median")


if __name__ == "__main__":
    main()
