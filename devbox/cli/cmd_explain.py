"""``devbox explain PROFILE [PATH...]``: what saving these files would do, without doing it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from devbox.cli import output

_STYLE = {
    "rebuild": "bold red",
    "reload-profile": "bold magenta",
    "sync+restart": "bold green",
    "reload-mocks": "bold cyan",
    "nothing": "dim",
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "explain",
        help="show what changing these files would trigger (sync, rebuild...) and why",
        description=(
            "Plan file changes the way the edit loop does, without running anything: for each "
            "path, the watch rule it matched and the action it leads to (rebuild, "
            "reload-profile, sync+restart, reload-mocks or nothing). Without paths, show what "
            "the watcher covers and which rules apply."
        ),
    )
    p.add_argument("profile", help="profile name (profiles/NAME.toml) or path to a .toml file")
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or directories (a directory stands for the files in it), relative to "
        "the current directory or absolute; a path need not exist (deleted files count)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from devbox.core.plan import Planner, watch_targets
    from devbox.core.profile import load_profile
    from devbox.core.wiring import preview
    from devbox.watch.dockerignore import dockerignore_path, read_dockerignore

    profile = load_profile(args.profile)
    planner = Planner(profile, read_dockerignore(profile))
    if not args.paths:
        targets = watch_targets(profile)
        w = profile.service.watch
        di = dockerignore_path(profile)
        data = {
            "profile": profile.name,
            "targets": targets.as_dict(),
            "sync": list(w.sync),
            "rebuild": list(w.rebuild),
            "ignore": list(w.ignore),
            "dockerignore": str(di) if di is not None and planner.dockerignore else None,
            "quiet_ms": w.quiet_ms,
            "cap_ms": w.cap_ms,
            "environment": preview(profile),
        }
        if args.json:
            output.print_json(data)
        else:
            _print_targets(data)
        return 0
    paths = _expand([Path(p).expanduser().resolve() for p in args.paths])
    plan = planner.plan(paths)
    if args.json:
        output.print_json({"profile": profile.name, **plan.as_dict()})
        return 0
    from rich.table import Table

    con = output.console()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("PATH", overflow="fold")
    table.add_column("ACTION", no_wrap=True)
    table.add_column("WHY", overflow="fold")
    for s in plan.steps:
        why = s.reason.removeprefix(s.path + " ")
        if s.field:
            why += f" [dim]({s.field})[/dim]"
        table.add_row(s.path, f"[{_STYLE[s.action]}]{s.action}[/]", why)
    con.print(table)
    extra = ""
    if len(plan.actions) > 1:
        extra = f" [dim](also: {', '.join(plan.actions[1:])})[/dim]"
    con.print(f"plan: [{_STYLE[plan.action]}]{plan.action}[/]{extra}: {plan.reason}")
    return 0


_DIR_LIMIT = 1000


def _expand(paths: list[Path]) -> list[Path]:
    """A directory stands for the files in it (as saving them would), up to a limit."""
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        files = sorted(f for f in p.rglob("*") if not f.is_dir())
        if len(files) > _DIR_LIMIT:
            output.info(f"{p}: showing the first {_DIR_LIMIT} of {len(files)} files")
        out.extend(files[:_DIR_LIMIT])
    return out


def _print_targets(data: dict[str, Any]) -> None:
    con = output.console()
    t = data["targets"]
    con.print(f"[bold]profile {data['profile']}[/bold]: watching, from {t['root']}")
    for tree in t["trees"]:
        con.print(f"  tree  {tree}")
    for lit in t["literals"]:
        con.print(f"  file  {lit}")
    for key in ("sync", "rebuild", "ignore"):
        rules = ", ".join(repr(r) for r in data[key]) or "[dim]none[/dim]"
        con.print(f"{key:>8}: {rules}")
    if data["dockerignore"]:
        con.print(f"  also ignored: entries of {data['dockerignore']}")
    con.print("  never: .git, __pycache__, .devbox and other tool dirs, editor temp and swap files")
    con.print(f"  batching: quiet {data['quiet_ms']} ms, cap {data['cap_ms']} ms")
    from devbox.cli.cmd_profile import print_environment

    print_environment(data["environment"])
