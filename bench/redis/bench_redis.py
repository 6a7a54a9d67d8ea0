"""The Redis mock next to the real redis-server, same run, same redis-benchmark workload.

1. start a throwaway redis-server (free port, temp dir, no persistence);
2. ``devbox record`` the workload through the recording relay:
   ``redis-benchmark -u {cache} -t get,set,incr -n N -c 50``;
3. ``devbox mock`` the profile (on_miss = fail: every command must come from the
   recording) and run the same workload against the real server and against the mock,
   without pipelining and with ``-P 16``, alternating (who goes first changes every
   round: the machine may be shared), ``--rounds`` times;
4. print one table of medians: ops/s, p50 and p99 per server, the ratio; then the mock's
   CPU time per command (load-independent) and its misses.

    .venv/bin/python bench/redis/bench_redis.py               # -n 20000, 3 rounds
    .venv/bin/python bench/redis/bench_redis.py -n 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ("SET", "GET", "INCR")


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


def benchmark(port: int, n: int, pipeline: int) -> dict[str, dict[str, float]]:
    out = subprocess.run(  # noqa: S603
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            "get,set,incr",
            "-n",
            str(n),
            "-c",
            "50",
            "-P",
            str(pipeline),
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    rows: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(out)):
        name = row["test"].split(" ")[0]
        rows[name] = {
            "rps": float(row["rps"]),
            "p50": float(row["p50_latency_ms"]),
            "p99": float(row["p99_latency_ms"]),
        }
    return rows


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="requests per test (redis-benchmark -n)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: bash scripts/setup installs it")
    py = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="devbox-bench-redis-"))
    real_port, mock_port = free_port(), free_port()
    (work / "profiles").mkdir()
    (work / "profiles/bench.toml").write_text(
        'name = "bench"\n[service]\ncommand = ["true"]\nport = 1\n'
        f'[[dependency]]\nname = "cache"\nkind = "redis"\n'
        f'upstream = "redis://127.0.0.1:{real_port}/0"\nport = {mock_port}\n'
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen(  # noqa: S603
            [
                "redis-server",
                "--port",
                str(real_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work),
            ],
            stdout=subprocess.DEVNULL,
        )
        procs.append(server)
        wait_port(real_port)
        t0 = time.monotonic()
        rec = subprocess.run(  # noqa: S603
            [
                py,
                "-m",
                "devbox",
                "record",
                "bench",
                "--no-service",
                "--",
                "redis-benchmark",
                "-u",
                "{cache}",
                "-t",
                "get,set,incr",
                "-n",
                str(args.n),
                "-c",
                "50",
                "-q",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if rec.returncode != 0:
            raise SystemExit(f"devbox record failed:\n{rec.stdout}\n{rec.stderr}")
        recorded = sum(f.stat().st_size for f in (work / "mocks/bench/cache").glob("*.json"))
        print(
            f"recorded {3 * args.n} commands through the relay in "
            f"{time.monotonic() - t0:.1f}s ({recorded / 1e6:.1f} MB of JSON)"
        )
        mock = subprocess.Popen(  # noqa: S603
            [py, "-m", "devbox", "mock", "bench", "--no-reload"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(mock)
        t0 = time.monotonic()
        wait_port(mock_port, timeout=300)
        print(f"mock loaded and listening in {time.monotonic() - t0:.1f}s")
        results: dict[tuple[str, int, str], list[dict[str, float]]] = {}
        cpu: dict[int, list[float]] = {}
        targets = [("redis-server", real_port), ("devbox mock", mock_port)]
        for r in range(args.rounds):
            for pipeline in (1, 16):
                # who goes first alternates every round: a busy neighbour hits both alike
                for who, port in targets if r % 2 == 0 else targets[::-1]:
                    before = cpu_s(mock.pid)
                    for test, row in benchmark(port, args.n, pipeline).items():
                        results.setdefault((test, pipeline, who), []).append(row)
                    if who == "devbox mock":
                        used = cpu_s(mock.pid) - before
                        cpu.setdefault(pipeline, []).append(used / (3 * args.n) * 1e6)
        mock.terminate()
        _out, err = mock.communicate(timeout=30)
        stats = re.findall(r"cache: (\d+) hits, (\d+) misses", err.decode())
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    report(args, load, results, cpu, stats)
    return 0


def report(
    args: argparse.Namespace,
    load: float,
    results: dict[tuple[str, int, str], list[dict[str, float]]],
    cpu: dict[int, list[float]],
    stats: list[tuple[str, str]],
) -> None:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    print(
        f"\nredis-benchmark -t get,set,incr -n {args.n} -c 50, median of {args.rounds} rounds,"
        f" load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{'test':<6} {'-P':>3} {'redis ops/s':>12} {'mock ops/s':>11} {'ratio':>6} "
        f"{'redis p50':>9} {'mock p50':>9} {'redis p99':>9} {'mock p99':>9}  ratio per round"
    )
    for pipeline in (1, 16):
        for test in TESTS:
            real = results.get((test, pipeline, "redis-server"), [])
            fake = results.get((test, pipeline, "devbox mock"), [])
            if not real or not fake:
                continue
            r_rps, m_rps = med(real, "rps"), med(fake, "rps")
            pairs = zip(real, fake, strict=True)
            rounds = ", ".join(f"{f['rps'] / r['rps']:.2f}" for r, f in pairs)
            print(
                f"{test:<6} {pipeline:>3} {r_rps:>12,.0f} {m_rps:>11,.0f} "
                f"{m_rps / r_rps:>5.2f}x {med(real, 'p50'):>8.3f}ms {med(fake, 'p50'):>7.3f}ms "
                f"{med(real, 'p99'):>8.3f}ms {med(fake, 'p99'):>7.3f}ms  {rounds}"
            )
    for pipeline, per_op in sorted(cpu.items()):
        print(f"mock CPU per command, -P {pipeline}: {statistics.median(per_op):.1f} µs (median)")
    if stats:
        hits, misses = stats[-1]
        print(f"\nmock: {hits} hits, {misses} misses")


if __name__ == "__main__":
    sys.exit(main())
