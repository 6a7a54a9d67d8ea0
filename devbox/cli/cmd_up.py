"""``devbox up`` and ``devbox watch``: bring a sandbox up and live in its edit loop.

``up`` opens the dashboard on a terminal, or runs headless (``--headless``, or when
stdout is not a terminal); ``--once`` is the CI mode: up, replay once, report, tear
down, exit with the replay's verdict. ``watch`` is the headless loop with one
compact block (or, with ``--json``, one JSON object) per iteration.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from devbox.cli import output

if TYPE_CHECKING:
    from devbox.engine.session import Engine


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", help="profile name (profiles/NAME.toml) or path to a .toml file")
    p.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        default="auto",
        help="where the service runs (default: docker when an engine answers, else a process)",
    )
    p.add_argument("--logs", action="store_true", help="print the service's log lines too")
    p.add_argument(
        "--check-outbound",
        action="store_true",
        help="also compare the service's calls to its dependencies with the recorded ones "
        "(replays one request at a time)",
    )


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "up",
        help="start the sandbox: mocks, the service, a first replay, then the edit loop",
        description=(
            "Start every dependency's mock, build and start the service with the mocks' "
            "addresses in its environment, wait until it is ready, replay the recorded inbound "
            "traffic, then watch your files and replay on every change. Opens the dashboard on "
            "a terminal; --headless prints lines instead. Everything is torn down on exit "
            "(Ctrl-C, q), unless --keep."
        ),
    )
    _common(p)
    p.add_argument("--headless", action="store_true", help="no dashboard: print to the terminal")
    p.add_argument(
        "--once",
        action="store_true",
        help="CI mode: up, replay once, report, tear down; exit 0 if all pass, 1 if not",
    )
    p.add_argument("--no-watch", action="store_true", help="do not react to file changes")
    p.add_argument(
        "--report",
        choices=("json", "junit"),
        help="with --once: also write the replay report in this format (to --out)",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="where --report writes")
    p.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help='with --once: fail when this holds, e.g. "p99 > 250ms", "match < 100%%" '
        "(repeatable; adds to [replay] fail_if)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="dashboard: quitting leaves the service and its mocks running (Docker runtime; "
        "devbox down removes them)",
    )
    p.set_defaults(func=run_up)

    w: argparse.ArgumentParser = sub.add_parser(
        "watch",
        help="the headless edit loop: one block per iteration (or --json lines)",
        description=(
            "Like `devbox up --headless`: start the sandbox and replay on every file change. "
            "Prints one compact block per iteration; --json prints one JSON object per "
            "iteration for editors and scripts."
        ),
    )
    _common(w)
    w.add_argument("--json", action="store_true", help="one JSON object per iteration on stdout")
    w.set_defaults(func=run_watch)


class _Terminate(Exception):
    """SIGTERM/SIGHUP, turned into an exception so teardown runs on the main thread."""


def _install_signals() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminate(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)


def _engine(args: argparse.Namespace, *, watch: bool) -> Engine:
    from devbox.core.profile import load_profile
    from devbox.engine.session import Engine, EngineOptions

    profile = load_profile(args.profile)
    return Engine(
        profile,
        EngineOptions(runtime=args.runtime, watch=watch, check_outbound=bool(args.check_outbound)),
    )


def run_up(args: argparse.Namespace) -> int:
    if args.report and not args.out:
        from devbox.errors import UsageError

        raise UsageError("--report needs --out FILE")
    headless = args.headless or args.once or not sys.stdout.isatty()
    engine = _engine(args, watch=not (args.no_watch or args.once))
    if not headless:
        from devbox.tui.app import run_dashboard

        _install_signals()
        try:
            return run_dashboard(engine, keep=args.keep)
        except _Terminate:
            return 143
        finally:
            engine.stop()  # a no-op after a kept quit (detach) or a normal teardown
    if args.headless is False and not args.once:
        output.info("stdout is not a terminal: running headless")
    return _run_headless(engine, args, json_lines=False)


def run_watch(args: argparse.Namespace) -> int:
    engine = _engine(args, watch=True)
    args.once = False
    return _run_headless(engine, args, json_lines=bool(args.json))


def _run_headless(engine: Engine, args: argparse.Namespace, *, json_lines: bool) -> int:
    from devbox.cli.headless import HeadlessPrinter
    from devbox.cli.waiting import wait_until

    printer = HeadlessPrinter(
        output.console(),
        json_lines=json_lines,
        show_logs=bool(args.logs),
        quiet=output.QUIET or bool(getattr(args, "once", False)),
    )
    engine.subscribe(printer)
    _install_signals()
    try:
        engine.start()
        kind = engine.runtime.kind if engine.runtime else "?"
        output.info(f"runtime: {kind} ({engine.runtime_reason})")
        if args.once:
            return _finish_once(engine, args)
        output.info(
            f"[green]sandbox up[/green]: {engine.profile.service.name} on "
            f"http://127.0.0.1:{engine.runtime.port if engine.runtime else 0} · "
            "watching for changes · Ctrl-C to stop"
        )
        wait_until(threading.Event())  # until a signal or Ctrl-C
        return 0
    except (KeyboardInterrupt, _Terminate):
        output.info("stopping: tearing the sandbox down")
        return 130
    finally:
        engine.stop()


def _finish_once(engine: Engine, args: argparse.Namespace) -> int:
    from devbox.core.assertions import evaluate, parse_fail_if
    from devbox.replay import render_terminal, to_json, to_junit
    from devbox.store import atomic_write_bytes

    report = engine.last_report
    if report is None:
        output.err_console().print("[red]no replay result: the sandbox did not get that far[/red]")
        return 1
    exprs = [*engine.profile.replay.fail_if, *args.fail_if]
    violations = evaluate([parse_fail_if(e) for e in exprs], report)
    report = report.with_fail_if(violations)
    render_terminal(report, output.console(), title=f"devbox up {engine.profile.name} --once")
    if args.report and args.out:
        text = to_json(report) if args.report == "json" else to_junit(report)
        atomic_write_bytes(args.out, text.encode("utf-8"))
        output.info(f"wrote {args.report} report to {args.out}")
    return 0 if report.ok else 1
