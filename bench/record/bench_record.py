"""Overhead of the recording proxy: latency added and throughput, beside a direct
connection and mitmproxy (reverse mode, saving flows), in one run.

    .venv/bin/python bench/record/bench_record.py [--duration 5] [--connections 16]

Load comes from wrk (keep-alive, bounded by --duration): one connection for latency
(p50/p99 of a lone request, nothing queued) and --connections for throughput, with the
CPU time the proxy's processes spent per request (devbox: proxy + recording worker). The
upstream is bench/record/fast_upstream.py, a fixed answer in another process.
devbox runs as a user runs it (`devbox record PROFILE --no-service`, redacting and
appending every exchange to disk); mitmproxy as `mitmdump --mode reverse:... -w FILE`
from a separate venv (--mitmdump PATH, or /tmp/mitm-venv/bin/mitmdump; create it with
`python3 -m venv /tmp/mitm-venv && /tmp/mitm-venv/bin/pip install mitmproxy`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = "/charges/ch_123?expand=customer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Run:
    rps: float
    p50_us: float
    p99_us: float
    requests: int
    cpu_us: float = 0.0  # CPU time of the proxy's processes per request


def _tree(pid: int) -> list[int]:
    """pid and its children (devbox record's recording worker)."""
    out = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def _us(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, connections: int, duration: float) -> Run:
    out = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if not (p50 and p99 and rps and total):
        raise SystemExit(f"could not read wrk's output:\n{out}")
    return Run(float(rps.group(1)), _us(p50.group(1)), _us(p99.group(1)), int(total.group(1)))


def find_mitmdump(given: str | None) -> str | None:
    tools = str(ROOT / ".tools/mitmproxy/bin/mitmdump")  # scripts/setup's own venv
    for cand in (given, tools, "/tmp/mitm-venv/bin/mitmdump", shutil.which("mitmdump")):
        if cand and Path(cand).exists():
            return cand
    return None


def alternate(
    ours: tuple[int, list[int]], mitm: tuple[int, list[int]], args: argparse.Namespace
) -> list[tuple[Run, Run]]:
    """Throughput rounds, devbox and mitmproxy back to back, the order swapped each round."""
    rounds = []
    for i in range(args.rounds):
        order = [ours, mitm] if i % 2 == 0 else [mitm, ours]
        got: dict[int, Run] = {}
        for port, pids in order:
            before = cpu_seconds(pids)
            run = wrk(f"http://127.0.0.1:{port}{PATH}", args.connections, args.duration)
            run.cpu_us = (cpu_seconds(pids) - before) / max(run.requests, 1) * 1e6
            got[port] = run
        rounds.append((got[ours[0]], got[mitm[0]]))
        print(f"  round {i + 1}", file=sys.stderr)
    return rounds


def print_rounds(rounds: list[tuple[Run, Run]]) -> None:
    import statistics

    print()
    print("| round | devbox req/s | mitmproxy req/s | ratio | CPU/request devbox / mitmproxy |")
    print("|---|---:|---:|---:|---|")
    ratios = []
    for i, (a, b) in enumerate(rounds, 1):
        ratios.append(a.rps / b.rps)
        print(
            f"| {i} | {a.rps:,.0f} | {b.rps:,.0f} | {a.rps / b.rps:.1f}x | "
            f"{a.cpu_us:.0f} / {b.cpu_us:.0f} µs |"
        )
    print(
        f"| median | | | **{statistics.median(ratios):.1f}x** | "
        f"min {min(ratios):.1f}x, max {max(ratios):.1f}x |"
    )
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16, help="connections for throughput")
    ap.add_argument("--mitmdump", help="path to mitmdump (default: /tmp/mitm-venv/bin/mitmdump)")
    ap.add_argument("--no-mitmproxy", action="store_true", help="skip the mitmproxy rows")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="throughput rounds alternating devbox and mitmproxy (each round's ratio is "
        "printed: on a shared machine only ratios from the same moment compare)",
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    mitmdump = None if args.no_mitmproxy else find_mitmdump(args.mitmdump)
    if not args.no_mitmproxy and mitmdump is None:
        print("mitmdump not found: skipping mitmproxy (see --help)", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="devbox-bench-record-"))
    procs: list[subprocess.Popen[bytes]] = []
    up, ours, mitm = free_port(), free_port(), free_port()
    try:
        procs.append(
            subprocess.Popen(  # noqa: S603
                [sys.executable, str(ROOT / "bench/record/fast_upstream.py"), str(up)],
                stdout=subprocess.DEVNULL,
            )
        )
        (tmp / "profiles").mkdir()
        (tmp / "profiles/bench.toml").write_text(
            'name = "bench"\n[service]\nport = 1\ncommand = ["true"]\n'
            f'[[dependency]]\nname = "payments"\nupstream = "http://127.0.0.1:{up}"\n'
            f'env = "PAYMENTS_URL"\nport = {ours}\n'
        )
        devbox = subprocess.Popen(
            [sys.executable, "-m", "devbox", "-q", "record", "bench", "--no-service", "--json"],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        procs.append(devbox)
        if mitmdump:
            procs.append(
                subprocess.Popen(  # noqa: S603
                    [
                        mitmdump,
                        "--mode",
                        f"reverse:http://127.0.0.1:{up}",
                        "--listen-host",
                        "127.0.0.1",
                        "-p",
                        str(mitm),
                        "-q",
                        "-w",
                        str(tmp / "flows.mitm"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in (up, ours) + ((mitm,) if mitmdump else ()):
            wait_port(port)
        targets = [("direct", up, [procs[0].pid]), ("devbox record", ours, _tree(devbox.pid))]
        if mitmdump:
            targets.append(("mitmproxy (mitmdump -w)", mitm, [procs[-1].pid]))
        results: dict[str, tuple[Run, Run]] = {}
        through_devbox = 0
        rounds: list[tuple[Run, Run]] = []
        for name, port, pids in targets:
            url = f"http://127.0.0.1:{port}{PATH}"
            warm = wrk(url, 1, 1.0)  # warm-up (connections, caches, mitmproxy's start)
            lat = wrk(url, 1, args.duration)
            before = cpu_seconds(pids)
            thr = wrk(url, args.connections, args.duration)
            thr.cpu_us = (cpu_seconds(pids) - before) / max(thr.requests, 1) * 1e6
            results[name] = (lat, thr)
            if port == ours:
                through_devbox = warm.requests + lat.requests + thr.requests
            print(f"  measured {name}", file=sys.stderr)
        if mitmdump and args.rounds > 1:
            by_name = {name: (port, pids) for name, port, pids in targets}
            rounds = alternate(by_name["devbox record"], by_name["mitmproxy (mitmdump -w)"], args)
            through_devbox += sum(a.requests for a, _ in rounds)
        devbox.send_signal(signal.SIGINT)
        summary_out, _ = devbox.communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    import json

    recorded_src = json.loads(summary_out)["sources"]["payments"]
    recorded, cut = recorded_src["exchanges"], recorded_src["errors"]
    direct_lat = results["direct"][0]
    print()
    print(
        f"Recording proxy overhead: wrk -t1, latency at 1 connection, throughput at "
        f"{args.connections} connections, {args.duration:g}s each; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print(
        "| target | p50 | p99 | added p50 | added p99 | req/s | p50 @"
        f"{args.connections} | p99 @{args.connections} | CPU/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (lat, thr) in results.items():
        added50 = "-" if name == "direct" else f"{(lat.p50_us - direct_lat.p50_us) / 1000:.3f} ms"
        added99 = "-" if name == "direct" else f"{(lat.p99_us - direct_lat.p99_us) / 1000:.3f} ms"
        print(
            f"| {name} | {lat.p50_us / 1000:.3f} ms | {lat.p99_us / 1000:.3f} ms | {added50} | "
            f"{added99} | {thr.rps:,.0f} | {thr.p50_us / 1000:.2f} ms | "
            f"{thr.p99_us / 1000:.2f} ms | {thr.cpu_us:.0f} µs |"
        )
    print()
    ours_rps = results["devbox record"][1].rps
    mitm_row = next((v for k, v in results.items() if k.startswith("mitmproxy")), None)
    if mitm_row is not None:
        ours_cpu = results["devbox record"][1].cpu_us
        print(
            f"devbox record / mitmproxy: throughput {ours_rps / mitm_row[1].rps:.1f}x, "
            f"CPU per request {mitm_row[1].cpu_us / max(ours_cpu, 1e-9):.1f}x less"
        )
    if rounds:
        print_rounds(rounds)
    print(
        f"exchanges recorded by devbox: {recorded}, of which {cut} cut by wrk stopping "
        f"mid-request (wrk counted {through_devbox} completed requests)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
