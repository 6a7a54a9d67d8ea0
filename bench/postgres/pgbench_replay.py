"""A pgbench read workload against the real server, through the recording relay, and
against the mock replaying that recording, side by side in one run.

1. starts a throwaway PostgreSQL (Debian's binaries, a temp data directory, a free port;
   as the devbox-pg user when run as root) and ``pgbench -i`` loads it;
2. ``pgbench -S`` (select-only: one ``SELECT abalance ... WHERE aid = $1`` per
   transaction, ``--random-seed`` fixed so every run asks the same aids) runs
   a) straight at the server,
   b) through devbox's recording relay (``devbox.wire.tcp.relay_connection`` with the
      postgres recorder; the stored objects are kept in memory, as the relay hands
      them to its sink),
   c) at the mock serving what (b) recorded, with no server behind it;
3. prints transactions per second and per-transaction latency p50/p99 (from pgbench's
   ``--log``) for each, and the relay's added p50 latency.

Usage: .venv/bin/python bench/postgres/pgbench_replay.py [--transactions 4000]
       [--clients 4] [--mode prepared|extended|simple]
Bounded: at most 100,000 transactions per client; every pgbench run has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pg_support import pg_bin, running_postgres  # noqa: E402

from devbox.wire import tcp  # noqa: E402
from devbox.wire.contract import MockOptions  # noqa: E402
from devbox.wire.postgres.kind import POSTGRES  # noqa: E402


class Loop:
    """devbox's servers on their own event loop thread (uvloop where installed, as the
    mock fleet uses)."""

    def __init__(self) -> None:
        try:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stored: list[dict[str, Any]] = []

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def relay(self, upstream: tuple[str, int]) -> int:
        async def client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            rec = POSTGRES.recorder_connection()
            await tcp.relay_connection(rec, r, w, upstream, self.stored.extend)

        async def start() -> int:
            server = await asyncio.start_server(client, "127.0.0.1", 0)
            return int(server.sockets[0].getsockname()[1])

        return int(self.run(start()))

    def mock(self) -> int:
        index = POSTGRES.load([("bench", i, o) for i, o in enumerate(self.stored)])

        async def start() -> int:
            server = await tcp.start_mock_server(POSTGRES, index, MockOptions("bench"))
            return int(server.sockets[0].getsockname()[1])

        return int(self.run(start()))


def pgbench(
    port: int, password: str, args: list[str], workdir: Path, label: str
) -> dict[str, float]:
    """One ``pgbench -S`` run; TPS from its summary, latencies from its per-transaction log."""
    for old in workdir.glob("pgbench_log.*"):
        old.unlink()
    env = {**os.environ, "PGPASSWORD": password}
    cmd = [str(pg_bin() / "pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", "devbox"]
    cmd += [*args, "--log", "--log-prefix", "pgbench_log", "app"]
    done = subprocess.run(  # noqa: S603 - pgbench, a fixed argument list, no shell
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pgbench ({label}) failed:\n{done.stdout}\n{done.stderr}")
    tps = 0.0
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
    lat: list[float] = []
    for log in workdir.glob("pgbench_log.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                lat.append(int(fields[2]) / 1000.0)  # microseconds -> ms
    lat.sort()
    failed = "failed" in done.stdout and "number of failed transactions: 0" not in done.stdout
    return {
        "tps": tps,
        "p50": statistics.median(lat) if lat else 0.0,
        "p99": lat[int(len(lat) * 0.99) - 1] if lat else 0.0,
        "n": float(len(lat)),
        "failed": float(failed),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=4000, help="per client")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--mode", choices=["prepared", "extended", "simple"], default="prepared")
    ap.add_argument("--scale", type=int, default=1)
    a = ap.parse_args()
    a.transactions = min(a.transactions, 100_000)
    if not glob.glob("/usr/lib/postgresql/*/bin/pgbench"):
        raise SystemExit("pgbench is missing: run scripts/setup (apt postgresql)")
    work = Path(tempfile.mkdtemp(prefix="devbox-pgbench-"))
    os.chmod(work, 0o777)  # pgbench may run as another user in future; logs land here
    console = Console()
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        with running_postgres() as pg:
            env = {**os.environ, "PGPASSWORD": pg.password}
            init = [str(pg_bin() / "pgbench"), "-i", "-q", "-s", str(a.scale)]
            init += ["-h", pg.host, "-p", str(pg.port), "-U", "devbox", "app"]
            subprocess.run(init, env=env, capture_output=True, check=True, timeout=600)  # noqa: S603
            run = ["-S", "-n", "-M", a.mode, "-c", str(a.clients), "-j", str(a.clients)]
            run += ["-t", str(a.transactions), "--random-seed", "7"]
            loop = Loop()
            # warm the server's caches and the relay path once, unmeasured
            pgbench(pg.port, pg.password, [*run[:-4], "-t", "200"], work, "warm-up")
            rows.append(("real server", pgbench(pg.port, pg.password, run, work, "real")))
            relay_port = loop.relay((pg.host, pg.port))
            t0 = time.monotonic()
            rows.append(("recording relay", pgbench(relay_port, pg.password, run, work, "relay")))
            time.sleep(0.5)  # the relay stores a connection's last objects at its close
            record_s = time.monotonic() - t0
            rows.append(("real server again", pgbench(pg.port, pg.password, run, work, "real")))
        mock_port = loop.mock()
        rows.append(("mock (no server)", pgbench(mock_port, "any", run, work, "mock")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(
        title=f"pgbench -S -M {a.mode}: {a.clients} clients x {a.transactions} transactions"
    )
    for col in ("target", "TPS", "p50 ms", "p99 ms", "transactions", "failed"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for name, r in rows:
        table.add_row(
            name,
            f"{r['tps']:.0f}",
            f"{r['p50']:.3f}",
            f"{r['p99']:.3f}",
            f"{r['n']:.0f}",
            "yes" if r["failed"] else "no",
        )
    console.print(table)
    real = min((r for n, r in rows if n.startswith("real")), key=lambda r: r["p50"])
    best_real_tps = max(r["tps"] for n, r in rows if n.startswith("real"))
    relay, mock = rows[1][1], rows[-1][1]
    queries = sum(1 for o in loop.stored if o.get("type") == "query")
    console.print(
        f"recorded {queries} queries in {record_s:.1f}s; relay adds "
        f"{relay['p50'] - real['p50']:.3f} ms p50 per query; "
        f"mock/real TPS = {mock['tps'] / best_real_tps:.2f}x; mock p99 {mock['p99']:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
