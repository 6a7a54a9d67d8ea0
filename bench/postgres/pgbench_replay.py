"""A pgbench read workload against the real server, through the recording relay, and
against the mock replaying that recording, side by side in one run.

1. starts a throwaway PostgreSQL (Debian's binaries, a temp data directory, a free port;
   as the devbox-pg user when run as root) and ``pgbench -i`` loads it;
2. for every client count, records ``pgbench -S`` (select-only: one ``SELECT abalance
   ... WHERE aid = $1`` per transaction, ``--random-seed`` fixed so every run asks the
   same aids) through devbox's recording relay (``devbox.wire.tcp.RelayConnection`` with
   the postgres recorder; the stored objects kept in memory, as the relay hands them to
   its sink), writes it to a recordings directory and serves it with ``WireMock`` (what
   ``devbox up`` and ``devbox mock`` run for a postgres dependency; no server behind it,
   every miss counted) in devbox's process and, for each ``--workers`` count, from that
   many worker processes;
3. runs each mock once unmeasured (its first answer to each turn goes the long way and
   keeps it, as a replay's first iteration does; the server had the recording's run) and
   prints that pass's TPS; a mock with workers gets more unmeasured passes, as each
   worker keeps its own answers and pgbench's clients reach workers in connect order;
4. runs ``--rounds`` rounds, each one pgbench run per target: the real server, the relay,
   the mock, in an order that rotates every round (the machine may be shared: what each
   round's neighbours cost lands on every target alike);
5. prints the median per target of transactions per second and of per-transaction
   latency p50/p99 (from pgbench's ``--log``), of the CPU spent per query (devbox's loop
   thread and worker processes; for the real server, its postmaster and backends), the
   median per-round mock/real ratio and the relay's added p50 latency.

Usage: .venv/bin/python bench/postgres/pgbench_replay.py [--transactions 40000]
       [--clients 1,4] [--rounds 5] [--mode prepared|extended|simple] [--workers 2,4]
       [--floor]
Bounded: at most 100,000 transactions per client; every pgbench run has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from devbox.core.profile import Dependency  # noqa: E402
from devbox.mock.kinds import WireMock  # noqa: E402
from devbox.store import SUFFIX  # noqa: E402
from devbox.wire import files, tcp  # noqa: E402
from devbox.wire.contract import MockOptions, Reply  # noqa: E402
from devbox.wire.postgres.kind import POSTGRES  # noqa: E402

UPSTREAM = "postgresql://devbox@127.0.0.1:5432/app"


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
        self.tid = self.run(self._tid())
        self.stored: list[dict[str, Any]] = []
        # what the relay stores is kept while recording the workload, and dropped in the
        # measured rounds: 160,000 objects more per round in this process made full
        # collections of seconds each, which stopped the loop the one-process mock runs on
        self.keep_stored = True
        self.mocks: list[WireMock] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    def _store(self, objects: list[dict[str, Any]]) -> None:
        if self.keep_stored:
            self.stored.extend(objects)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _tid(self) -> int:
        return threading.get_native_id()

    def cpu_s(self) -> float:
        """CPU time (user + system) the loop's thread and every mock worker process have
        used: devbox's own cost."""
        stats = [f"/proc/self/task/{self.tid}/stat"]
        stats += [f"/proc/{pid}/stat" for m in self.mocks for pid in m.worker_pids]
        total = 0
        for stat in stats:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        for mock in self.mocks:
            self.run(mock.close())

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def relay(self, upstream: tuple[str, int]) -> int:
        def relay() -> tcp.RelayConnection:
            return tcp.RelayConnection(POSTGRES.recorder_connection(), upstream, self._store)

        async def start() -> int:
            server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
            return int(server.sockets[0].getsockname()[1])

        return int(self.run(start()))

    def mock(self, stored: list[dict[str, Any]], workers: int, directory: Path) -> int:
        """The mock ``devbox up`` serves a postgres dependency with (``WireMock``, from a
        recordings directory, counting hits and misses as the fleet does), its
        connections served in this loop (``workers`` 1) or in ``workers`` processes."""
        writer = files.ObjectWriter(directory / f"recording-{workers}{SUFFIX}", "postgres", "db")
        for obj in stored:
            writer.append(obj)
        writer.close()
        dep = Dependency(name="db", kind="postgres", upstream=UPSTREAM, workers=workers)
        mock = WireMock(dep, directory)
        mock.load()
        self.run(mock.start("127.0.0.1", 0))
        self.mocks.append(mock)
        return mock.port

    @property
    def misses(self) -> int:
        return sum(m.misses for m in self.mocks)

    def floor(self, stored: list[dict[str, Any]]) -> int:
        """A mock that answers every turn after start-up with the bytes of the first
        one: no matching, no encoding. What the event loop and the sockets cost alone,
        the most any mock on this loop can reach (its rows are wrong: pgbench does not
        read them)."""
        index = POSTGRES.load([("bench", i, o) for i, o in enumerate(stored)])
        first: list[Reply] = []

        class Floor:
            def __init__(self) -> None:
                self.conn = POSTGRES.mock_connection(index, MockOptions("bench"))

            def data_received(self, data: bytes) -> list[Any]:
                if data[:1] == b"B" and first:
                    return first
                out = self.conn.data_received(data)
                if data[:1] == b"B":
                    first.append(Reply(b"".join(o.data for o in out if isinstance(o, Reply))))
                return out

            def eof_received(self) -> list[Any]:
                return []

            def upstream_data(self, data: bytes) -> list[Any]:
                return []

        async def start() -> int:
            server = await tcp.start_mock_server(Floor)
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


REAL, RELAY, MOCK = "real server", "recording relay", "mock (no server)"
FLOOR = "floor (constant reply)"


def postmaster_cpu_s(port: int) -> float:
    """CPU time the server on ``port`` has used, its ended backends included: a backend's
    time joins its postmaster's children's (``cutime``, ``cstime``) when it is reaped,
    and pgbench's backends end with its run. The real server's cost per query, next to
    devbox's."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            if Path(args[0].decode()).name != "postgres" or str(port).encode() not in args:
                continue
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, UnicodeDecodeError, IndexError):
            continue  # a process that ended while we looked
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _counts(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # a round must last seconds: at 50,000-100,000 TPS, 10,000 transactions per client
    # took under a second, and which of pgbench's, the server's and devbox's threads got
    # the two cores in that moment decided the round (ratios 0.6x-1.5x within one run)
    ap.add_argument("--transactions", type=int, default=40000, help="per client")
    ap.add_argument("--clients", default="1,4", help="comma-separated client counts")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", choices=["prepared", "extended", "simple"], default="prepared")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument(
        "--workers",
        default="2,4",
        help="comma-separated worker process counts to run the mock with besides one process",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also run a constant-reply mock on the same loop: the loop's own ceiling",
    )
    a = ap.parse_args()
    a.transactions = min(a.transactions, 100_000)
    counts = _counts(a.clients)
    if not glob.glob("/usr/lib/postgresql/*/bin/pgbench"):
        raise SystemExit("pgbench is missing: run scripts/setup (apt postgresql)")
    work = Path(tempfile.mkdtemp(prefix="devbox-pgbench-"))
    os.chmod(work, 0o777)  # pgbench may run as another user in future; logs land here
    console = Console(width=130)
    load_start = os.getloadavg()[0]
    # (clients, target) -> one result per round
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    ratios: dict[tuple[int, str], list[float]] = {}
    workers_of = {MOCK: 1} | {f"mock, {w} workers": w for w in _counts(a.workers) if w > 1}
    mock_targets = list(workers_of)
    recorded: dict[int, int] = {}
    try:
        with running_postgres() as pg:
            env = {**os.environ, "PGPASSWORD": pg.password}
            init = [str(pg_bin() / "pgbench"), "-i", "-q", "-s", str(a.scale)]
            init += ["-h", pg.host, "-p", str(pg.port), "-U", "devbox", "app"]
            subprocess.run(init, env=env, capture_output=True, check=True, timeout=600)  # noqa: S603
            loop = Loop()
            relay_port = loop.relay((pg.host, pg.port))
            runs: dict[int, list[str]] = {}
            ports: dict[tuple[int, str], int] = {}
            cold: dict[tuple[int, str], dict[str, float]] = {}
            for c in counts:
                run = ["-S", "-n", "-M", a.mode, "-c", str(c), "-j", str(c)]
                run += ["-t", str(a.transactions), "--random-seed", "7"]
                runs[c] = run
                # warm the server's caches once, unmeasured; then record the workload
                pgbench(pg.port, pg.password, [*run[:-4], "-t", "200"], work, "warm-up")
                loop.stored.clear()
                pgbench(relay_port, pg.password, run, work, "record")
                time.sleep(0.5)  # the relay stores a connection's last objects at its close
                recorded[c] = sum(1 for o in loop.stored if o.get("type") == "query")
                ports[(c, REAL)], ports[(c, RELAY)] = pg.port, relay_port
                for name in mock_targets:
                    workers = workers_of[name]
                    directory = work / f"recordings-{c}-{workers}"
                    ports[(c, name)] = port = loop.mock(list(loop.stored), workers, directory)
                    # unmeasured passes, as the server had the recording's: the mock's first
                    # answer to each turn goes the long way and keeps it (a replay's first
                    # iteration; docs/benchmarks.md has that cold pass's figure). Each
                    # worker keeps its own, and connections reach workers in the order
                    # pgbench's threads connect: a few passes until each has seen them all
                    cold[(c, name)] = pgbench(port, pg.password, run, work, f"{name}, first")
                    for _ in range(4 * (workers - 1)):
                        pgbench(port, pg.password, run, work, f"{name}, warm-up")
                ports[(c, FLOOR)] = loop.floor(list(loop.stored))
                short = [*run[:-4], "-t", "200", "--random-seed", "7"]
                pgbench(ports[(c, FLOOR)], pg.password, short, work, "floor warm-up")
            targets = [REAL, RELAY, *mock_targets] + ([FLOOR] if a.floor else [])
            loop.keep_stored = False
            # as ``devbox mock`` does once its mocks are loaded: what exists now lives to
            # the end, so the collector need not walk it again
            loop.stored.clear()
            gc.collect()
            gc.freeze()
            for r in range(a.rounds):
                for c in counts:
                    order = targets[r % len(targets) :] + targets[: r % len(targets)]
                    got: dict[str, dict[str, float]] = {}
                    for name in order:
                        # the real server's own CPU, or devbox's (the relay's is devbox's)
                        used = (lambda: postmaster_cpu_s(pg.port)) if name == REAL else loop.cpu_s
                        cpu = used()
                        got[name] = pgbench(ports[(c, name)], pg.password, runs[c], work, name)
                        got[name]["cpu_us"] = (used() - cpu) / got[name]["n"] * 1e6
                        results.setdefault((c, name), []).append(got[name])
                    for name in [*mock_targets] + ([FLOOR] if a.floor else []):
                        ratios.setdefault((c, name), []).append(got[name]["tps"] / got[REAL]["tps"])
            loop.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(
        title=f"pgbench -S -M {a.mode}, {a.transactions} transactions per client, "
        f"median of {a.rounds} rounds (load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end)"
    )
    cols = ("clients", "target", "TPS", "p50 ms", "p99 ms", "mock/real", "CPU/q", "failed")
    for col in cols:
        table.add_column(col, justify="left" if col == "target" else "right")
    for c in counts:
        for name in [REAL, RELAY, *mock_targets, FLOOR]:
            if (c, name) not in results:
                continue
            rows = results[(c, name)]
            table.add_row(
                str(c),
                name,
                f"{_med([r['tps'] for r in rows]):.0f}",
                f"{_med([r['p50'] for r in rows]):.3f}",
                f"{_med([r['p99'] for r in rows]):.3f}",
                f"{_med(ratios[(c, name)]):.2f}x" if (c, name) in ratios else "",
                f"{_med([r['cpu_us'] for r in rows]):.1f} µs",
                str(sum(int(r["failed"]) for r in rows)),
            )
    console.print(table)
    for c in counts:
        real, relay = results[(c, REAL)], results[(c, RELAY)]
        added = [b["p50"] - r["p50"] for r, b in zip(real, relay, strict=True)]
        console.print(
            f"{c} client(s): recorded {recorded[c]} queries; "
            f"relay adds {_med(added):.3f} ms p50 per query (median of rounds)"
        )
        for name in mock_targets:
            per_round = ", ".join(f"{x:.2f}" for x in ratios[(c, name)])
            first = cold[(c, name)]
            console.print(
                f"  {name}: mock/real TPS per round {per_round}; unmeasured first pass "
                f"(every turn the long way) {first['tps']:.0f} TPS, p99 {first['p99']:.3f} ms"
            )
    console.print(f"mock misses: {loop.misses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
