"""Replays of the demo in a row at concurrency 8 against the same mocks:
``.venv/bin/python -m bench.fidelity.replay_runs [RUNS] [CONCURRENCY] [--up]``.

Starts the demo's mocks (a ``MockFleet`` on free ports) and the orders service (the
process the profile's ``command`` names) in a temporary copy of the project — or, with
``--up``, ``devbox up demo --headless --runtime process`` there — then runs ``devbox
replay demo --concurrency 8`` RUNS times (default 20), each resetting the mocks first,
and prints one line per run and a summary. Exit 1 unless every run was 100/100.

A run that is not 100/100 leaves its evidence in ``bench/fidelity/out/replay_runs/``:
the replay's JSON report (each failing request's differences), each mock's misses and
journal (what the service sent, which recording answered), and the service's (or
``devbox up``'s) last lines of output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench/fidelity/out/replay_runs"
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Proc, demo_orders, make_demo_project, wait_port  # noqa: E402

from devbox.core.profile import load_profile  # noqa: E402
from devbox.mock.fleet import MockFleet  # noqa: E402


def demo_project(dest: Path) -> Path:
    """A copy of the demo project whose mocks listen on free ports."""
    (dest / "profiles").mkdir(parents=True)
    text = (ROOT / "profiles/demo.toml").read_text()
    (dest / "profiles/demo.toml").write_text(
        text.replace("port = 7101\n", "").replace("port = 7102\n", "")
    )
    shutil.copytree(ROOT / "mocks/demo", dest / "mocks/demo")
    shutil.copytree(ROOT / "examples", dest / "examples")
    return dest


def replay(cwd: Path, target: str, mocks: list[str], concurrency: int) -> tuple[int, int, str, str]:
    """(passed, total, why not 100/100, the JSON report)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    r = subprocess.run(  # noqa: S603 - our own CLI, argument list
        [
            *(sys.executable, "-m", "devbox", "replay", "demo", "--target", target),
            *("--concurrency", str(concurrency), "--timeout", "30", "--json", *mocks),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rep = json.loads(r.stdout) if r.stdout.startswith("{") else {}
    counts = rep.get("counts", {})
    bad = [
        f"{x.get('method')} {x.get('target')}: {x.get('verdict')} {x.get('error') or ''}"
        for x in rep.get("results", [])
        if x.get("verdict") != "pass"
    ][:3]
    why = "; ".join(bad) or r.stderr[-300:]
    return counts.get("passed", 0), counts.get("total", 0), why, r.stdout or r.stderr


def keep_evidence(run: int, report: str, mocks: list[str], output: str) -> Path:
    """A failing run's report, the mocks' misses and journals and the service's output."""
    where = OUT / f"{time.strftime('%Y%m%dT%H%M%S')}-run{run}"
    where.mkdir(parents=True, exist_ok=True)
    (where / "report.json").write_text(report)
    (where / "service.log").write_text(output)
    for m in mocks:
        name, _, url = m.removeprefix("--mock=").partition("=")
        for what in ("misses?after=0", "journal?after=0&limit=100000"):
            try:
                with urllib.request.urlopen(f"{url}/__devbox/{what}", timeout=5) as resp:
                    data = resp.read()
            except OSError as exc:
                data = f"unreachable: {exc}".encode()
            (where / f"{name}-{what.partition('?')[0]}.json").write_bytes(data)
    return where


def runs_against(
    project: Path, target: str, mocks: list[str], runs: int, conc: int, service: Proc
) -> int:
    perfect = 0
    for i in range(runs):
        t0 = time.monotonic()
        passed, total, why, report = replay(project, target, mocks, conc)
        ok = (passed, total) == (100, 100)
        perfect += ok
        line = f"run {i + 1:2}: {passed}/{total}  {time.monotonic() - t0:5.1f} s"
        if not ok:
            line += f"  {why}  (evidence: {keep_evidence(i + 1, report, mocks, service.output())})"
        print(line, flush=True)
    return perfect


def main_up(runs: int, concurrency: int) -> int:
    """Against ``devbox up demo`` (headless, process runtime), as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        profile_path = make_demo_project(Path(tmp))
        profile = load_profile(profile_path)
        env = {"PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        up = Proc(
            [
                *(sys.executable, "-m", "devbox", "up", "demo", "--headless"),
                *("--runtime", "process", "--no-watch"),
            ],
            env=env,
            cwd=Path(tmp),
        )
        try:
            wait_port(profile.service.port, timeout=60)
            for d in profile.dependencies:
                assert d.port is not None
                wait_port(d.port, timeout=60)
            time.sleep(2)  # up's own first replay
            mocks = [f"--mock={d.name}=http://127.0.0.1:{d.port}" for d in profile.dependencies]
            target = f"http://127.0.0.1:{profile.service.port}"
            perfect = runs_against(Path(tmp), target, mocks, runs, concurrency, up)
        finally:
            up.stop()
    print(f"{perfect}/{runs} runs 100/100 at concurrency {concurrency} against devbox up demo")
    return 0 if perfect == runs else 1


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--up"]
    runs = int(args[0]) if args else 20
    concurrency = int(args[1]) if len(args) > 1 else 8
    if "--up" in sys.argv:
        return main_up(runs, concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        project = demo_project(Path(tmp))
        fleet = MockFleet(load_profile(project / "profiles/demo.toml"))
        ports = fleet.start()
        try:
            proc, port = demo_orders(ports)
            try:
                mocks = [f"--mock={n}=http://127.0.0.1:{p}" for n, p in ports.items()]
                target = f"http://127.0.0.1:{port}"
                perfect = runs_against(project, target, mocks, runs, concurrency, proc)
            finally:
                proc.stop()
        finally:
            fleet.stop()
    print(f"{perfect}/{runs} runs 100/100 at concurrency {concurrency}")
    return 0 if perfect == runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
