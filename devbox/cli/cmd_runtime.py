"""Runtime commands: ``devbox image base``, ``devbox doctor``, ``devbox down``, ``devbox run``."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

from devbox.cli import output
from devbox.errors import UsageError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "image",
        help="images without a registry: the offline base image, the mock image, imported images",
        description="Build or import the images devbox needs, without a registry.",
    )
    isub = p.add_subparsers(dest="image_command", metavar="IMAGE_COMMAND")
    b = isub.add_parser(
        "base",
        help="build devbox/base:bookworm offline (debootstrap + docker import), once",
        description="Build devbox/base:bookworm (Debian minbase + python3) from this machine's "
        "apt mirror with debootstrap and import it into Docker. Skipped when the tag exists.",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=run_image_base)
    from devbox.cli.cmd_image import register_import

    register_import(isub)

    from devbox.cli.cmd_image_mock import register_mock

    register_mock(isub)

    def image_help(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=image_help)

    d = sub.add_parser(
        "doctor",
        help="check Docker, the base image, ports, inotify limits; say what to fix",
        description="Check what devbox needs on this machine (and for PROFILE, if given).",
    )
    d.add_argument("profile", nargs="?", help="also check this profile's ports and runtime")
    d.add_argument("--json", action="store_true", help="print the checks as JSON")
    d.set_defaults(func=run_doctor)

    dn = sub.add_parser(
        "down",
        help="stop and remove everything devbox started (containers, processes), orphans too",
        description="Stop and remove every container, network, volume and process devbox "
        "started for this project (or for PROFILE), including those of crashed sessions.",
    )
    dn.add_argument("profile", nargs="?", help="only this profile")
    dn.add_argument(
        "--images",
        action="store_true",
        help="also remove the images devbox built (the next start rebuilds them)",
    )
    dn.add_argument("--json", action="store_true", help="print what was removed as JSON")
    dn.set_defaults(func=run_down)

    r = sub.add_parser(
        "run",
        help="start just the service (build, run, wait ready) and stream its logs until Ctrl-C",
        description="Build and start the profile's service with the given env, wait until it is "
        "ready, and stream its logs until Ctrl-C. No mocks, no replay: see `devbox up`.",
    )
    r.add_argument("profile", help="profile name (profiles/NAME.toml) or path")
    r.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        default="auto",
        help="where to run the service (default: docker if an engine answers)",
    )
    r.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable (repeatable)",
    )
    r.add_argument("--port", type=int, help="override [service] port")
    r.add_argument("--session", help="session id (default: a new one)")
    r.set_defaults(func=run_run)


# ---------------------------------------------------------------- image base


def run_image_base(args: argparse.Namespace) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from devbox.runtime.base_image import ensure_base_image

    counts = {"retrieved": 0, "unpacked": 0, "configured": 0}
    if output.QUIET or args.json:
        result = ensure_base_image(force=args.force)
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]devbox/base:bookworm[/bold]"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=output.err_console(),
            transient=True,
        ) as progress:
            task = progress.add_task("checking", total=None)

            def on_line(line: str) -> None:
                for key, prefix in (
                    ("retrieved", "I: Retrieving"),
                    ("unpacked", "I: Unpacking"),
                    ("configured", "I: Configuring"),
                ):
                    if line.startswith(prefix):
                        counts[key] += 1
                text = line[3:] if line.startswith(("I: ", "W: ", "E: ")) else line
                summary = " ".join(f"{v} {k}" for k, v in counts.items() if v)
                progress.update(task, description=f"{summary}  [dim]{text[:60]}[/dim]")
                if line.startswith(("W: ", "E: ")) or output.VERBOSE:
                    progress.console.print(f"[dim]{line}[/dim]")

            result = ensure_base_image(force=args.force, on_line=on_line)
    if args.json:
        output.print_json(asdict(result))
    elif result.built:
        output.console().print(
            f"[green]built[/green] {result.image} {result.image_id[7:19]} "
            f"({result.size_bytes / 1e6:.0f} MB) in {result.seconds:.0f}s from {result.mirror}"
        )
    else:
        output.console().print(
            f"[green]ok[/green] {result.image} {result.image_id[7:19]} exists "
            "(use --force to rebuild)"
        )
    return 0


# ---------------------------------------------------------------- doctor


def run_doctor(args: argparse.Namespace) -> int:
    from devbox.core.profile import load_profile
    from devbox.runtime.doctor import FAIL, WARN, run_checks

    profile = load_profile(args.profile) if args.profile else None
    checks = run_checks(profile)
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        output.print_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
        return 1 if failed else 0
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("check")
    table.add_column("result")
    table.add_column("fix")
    marks = {"ok": "[green]ok[/green]", WARN: "[yellow]warn[/yellow]", FAIL: "[red]FAIL[/red]"}
    for c in checks:
        table.add_row(marks[c.status], c.name, c.detail, f"[cyan]{c.fix}[/cyan]" if c.fix else "")
    output.console().print(table)
    n_warn = sum(c.status == WARN for c in checks)
    n_fail = sum(c.status == FAIL for c in checks)
    if n_fail:
        output.console().print(f"[red]{n_fail} problem(s)[/red], {n_warn} warning(s)")
    else:
        output.console().print(f"[green]ready[/green] ({n_warn} warning(s))")
    return 1 if failed else 0


# ---------------------------------------------------------------- down


def run_down(args: argparse.Namespace) -> int:
    from devbox.core.profile import load_profile
    from devbox.runtime.cleanup import down, find_project_root

    if args.profile:
        profile = load_profile(args.profile)
        removed = down(profile.name, root=profile.root, images=args.images)
    else:
        removed = down(None, root=find_project_root(), images=args.images)
    if args.json:
        output.print_json([asdict(r) for r in removed])
        return 0
    con = output.console()
    for r in removed:
        con.print(f"removed {r}")
    if not removed:
        con.print("nothing to remove")
    return 0


# ---------------------------------------------------------------- run


class _Stop(Exception):
    pass


def _run_env(profile: Any, given: dict[str, str]) -> dict[str, str]:
    """No mocks run under ``devbox run``: a dependency with a fixed ``port`` is wired to
    it (a ``devbox mock`` started beside), by the same rule as ``up`` and ``record``."""
    from rich.markup import escape

    from devbox.core.wiring import fixed_endpoints, wire

    wiring = wire(
        profile,
        fixed_endpoints(profile),
        extra_env=given,
        missing="not set: no fixed port in the profile (set `port` and run `devbox mock`)",
    )
    for w in wiring.wires:
        shown = f"{w.variable}={w.value}" if w.value is not None else f"{w.variable} {w.why}"
        output.info(f"[dim]{w.dependency}: {escape(shown)}[/dim]")
    return {**wiring.env, **given}


def run_run(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.markup import escape

    from devbox.core.events import BuildProgress, Event, Log, ServiceState
    from devbox.core.profile import load_profile
    from devbox.runtime import reap_orphans, select_runtime

    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    profile = load_profile(args.profile)
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: expected 1..65535")
        profile = dataclasses.replace(
            profile, service=dataclasses.replace(profile.service, port=args.port)
        )
    con = output.console()
    for line in reap_orphans(profile.name, root=profile.root):
        output.info(f"[dim]removed leftover {escape(line)}[/dim]")

    progress_lock = threading.Lock()
    build: dict[str, Any] = {"progress": None, "task": None}
    styles = {"error": "red", "warning": "yellow"}

    def on_event(ev: Event) -> None:
        if isinstance(ev, Log):
            ms = int(ev.at * 1000) % 1000
            stamp = time.strftime("%H:%M:%S", time.localtime(ev.at)) + f".{ms:03d}"
            style = styles.get(ev.level)
            text = escape(ev.text)
            con.print(
                f"[dim]{stamp}[/dim] [bold]{escape(ev.source)}[/bold] | "
                + (f"[{style}]{text}[/{style}]" if style else text)
            )
        elif isinstance(ev, BuildProgress):
            with progress_lock:
                prog = build["progress"]
                if prog is not None:
                    if ev.step is not None:
                        prog.update(
                            build["task"],
                            total=ev.total,
                            completed=ev.step - 1,
                            description=escape(ev.line[:70]),
                        )
                    elif output.VERBOSE:
                        prog.console.print(f"[dim]{escape(ev.line)}[/dim]")
        elif isinstance(ev, ServiceState) and ev.state in ("crashed",):
            output.info(f"[red]{ev.name} {escape(ev.detail)}[/red]")

    rt, why = select_runtime(profile, args.runtime, on_event=on_event, session=args.session)
    output.info(f"runtime [bold]{rt.kind}[/bold] ({why}), session {rt.session}")

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if rt.kind == "docker" and not output.QUIET:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("[bold]build[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=output.err_console(),
                transient=True,
            ) as prog:
                with progress_lock:
                    build["progress"], build["task"] = prog, prog.add_task("", total=None)
                try:
                    rt.prepare()
                finally:
                    with progress_lock:
                        build["progress"] = None
        else:
            rt.prepare()
        output.info(f"starting {escape(rt.describe())}")
        rt.start(_run_env(profile, env))
        took = rt.wait_ready()
        output.info(
            f"[green]{profile.service.name} ready[/green] on http://127.0.0.1:{rt.port} "
            f"in {took:.2f}s — Ctrl-C stops it"
        )
        while True:
            why_dead = rt.check_alive()
            if why_dead is not None:
                output.info(f"[red]{profile.service.name} {why_dead}[/red]")
                return 1
            time.sleep(0.3)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        # ignore further Ctrl-C while cleaning up: a half-removed container is the worst outcome
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        try:
            rt.stop()
            output.info(f"stopped {profile.service.name}")
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s, h in old.items():
                signal.signal(s, h)
