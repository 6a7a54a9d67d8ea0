"""``devbox replay``: send recorded inbound traffic to the running service and show what changed."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output

if TYPE_CHECKING:
    from devbox.core.assertions import Assertion
    from devbox.core.noise import NoiseReport
    from devbox.core.profile import Profile
    from devbox.replay.report import ReplayReport

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def _duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 30s, 2m, 500ms")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return n


def _positive_float(text: str) -> float:
    try:
        v = float(text.rstrip("x/s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be greater than 0")
    return v


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="replay recorded inbound traffic against the service and diff the responses",
        description=(
            "Send the recorded inbound requests (mocks/PROFILE/inbound) to the running service "
            "and compare every response with the recording. Exit 0 when all match, 1 on any "
            "difference, error or --fail-if violation, 2 on a usage or profile error."
        ),
    )
    p.add_argument("profile", help="profile name (profiles/NAME.toml) or path to a .toml file")
    p.add_argument(
        "--target", metavar="URL", help="service URL (default http://127.0.0.1:<service.port>)"
    )
    p.add_argument(
        "--recordings",
        metavar="PATH",
        type=Path,
        help="recording file or directory (default: the profile's inbound recordings)",
    )
    p.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="PATTERN",
        help='replay only these routes, e.g. "GET /orders*" (repeatable; replaces [replay] routes)',
    )
    g = p.add_argument_group("pacing and load")
    g.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="requests in flight at once (default [replay] concurrency)",
    )
    g.add_argument(
        "--speed",
        type=_positive_float,
        metavar="N",
        help="pace as recorded (1) or N times faster; default: as fast as possible",
    )
    g.add_argument(
        "--rate", type=_positive_float, metavar="R", help="fixed rate, requests per second"
    )
    g.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="send N requests, cycling through the recording",
    )
    g.add_argument(
        "--duration", type=_duration, metavar="TIME", help="keep sending for this long (30s, 2m)"
    )
    g.add_argument(
        "--copies", type=_positive_int, default=1, metavar="N", help="send each request N times"
    )
    g.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="per-request timeout (default [replay] timeout_s)",
    )
    c = p.add_argument_group("judging")
    c.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        help='extra ignore rule, "$.path" or "header:name" (repeatable)',
    )
    c.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help='fail the run when true: "p99 > 250ms", "match < 100%%", "errors > 0" '
        "(repeatable; adds to [replay] fail_if)",
    )
    c.add_argument(
        "--check-outbound",
        action="store_true",
        help="compare the calls the service made to the mocks with the recorded ones "
        "(replays one request at a time)",
    )
    c.add_argument(
        "--mock",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="where dependency NAME's mock runs, for --check-outbound and the reset "
        "(default: its profile port)",
    )
    c.add_argument(
        "--no-reset",
        action="store_true",
        help="do not reset the running mocks' sequences and fault draws first, nor run "
        "the profile's [replay] reset command",
    )
    r = p.add_argument_group("reports")
    r.add_argument(
        "--report",
        choices=("terminal", "json", "junit"),
        default="terminal",
        help="report format (default terminal)",
    )
    r.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the json/junit report here (the terminal report still prints)",
    )
    r.add_argument("--json", action="store_true", help="same as --report json")
    r.add_argument(
        "--max-failures",
        type=_positive_int,
        default=30,
        metavar="N",
        help="failures shown in detail (default 30)",
    )
    n = p.add_argument_group("noise")
    n.add_argument(
        "--learn-noise",
        action="store_true",
        help="replay twice, compare the runs, propose ignore rules for values that vary",
    )
    n.add_argument(
        "--write",
        action="store_true",
        help="with --learn-noise: add the proposals to the profile's [replay] ignore",
    )
    n.add_argument(
        "--no-write", action="store_true", help="with --learn-noise: never ask, only print"
    )
    p.set_defaults(func=run_replay_command)


# ---------------------------------------------------------------- handler


def run_replay_command(args: argparse.Namespace) -> int:
    from devbox.core.assertions import parse_fail_if
    from devbox.core.profile import load_profile
    from devbox.errors import ConfigError, NotFoundError, UsageError
    from devbox.replay.inbound import recorded_inbound
    from devbox.replay.lanes import recorded_lanes
    from devbox.replay.runner import ReplayOptions
    from devbox.store import load_dir

    if args.json:
        args.report = "json"
    if args.write and not args.learn_noise:
        raise UsageError("--write only applies to --learn-noise")
    if args.report == "junit" and args.out is None and sys.stdout.isatty():
        raise UsageError(
            "--report junit needs --out FILE", hint="e.g. --report junit --out replay.xml"
        )
    profile = load_profile(args.profile)
    settings = profile.replay
    assertions: list[Assertion] = []
    for expr in settings.fail_if:
        try:
            assertions.append(parse_fail_if(expr, where="expression"))
        except UsageError as exc:
            raise ConfigError(
                exc.message, file=str(profile.path), field="replay.fail_if", hint=exc.hint
            ) from None
    assertions.extend(parse_fail_if(e) for e in args.fail_if)
    from devbox.core.diff import DiffRules

    DiffRules(ignore=tuple(args.ignore))  # validates the rules before anything is sent
    source = args.recordings or profile.inbound_dir
    exchanges, grpc = recorded_inbound(profile, args.recordings)
    if not exchanges:
        raise NotFoundError(
            f"no recorded inbound traffic in {source}",
            hint=f"record some with `devbox record {profile.name}`, or pass --recordings PATH",
        )
    target = args.target or f"http://127.0.0.1:{profile.service.port}"
    options = ReplayOptions(
        concurrency=args.concurrency,
        speed=args.speed,
        rate=args.rate,
        count=args.count,
        duration_s=args.duration,
        copies=args.copies,
        routes=tuple(args.route),
        timeout_s=args.timeout,
        extra_ignore=tuple(args.ignore),
        outbound_rules={d.name: d.match for d in profile.dependencies},
        link_header=profile.record.correlation_header,
        grpc=grpc,
    )
    options.pacing.validate()
    if not options.pacing.is_load:
        # requests whose calls share a recorded sequence go in recorded order, as in the
        # edit loop; a load run goes past the recorded sequences anyway (copies and
        # rounds share one mock), so it keeps its full concurrency
        options = dataclasses.replace(options, ordered_lanes=recorded_lanes(profile))
    if args.learn_noise:
        return _learn(args, profile, exchanges, target, options)
    if not args.no_reset:
        _reset_mocks(profile, args.mock)
        _reset_service(profile)
    outbound: list[Any] = []
    journals: dict[str, str] = {}
    if args.check_outbound:
        journals = _journals(profile, args.mock)
        for name in journals:
            outbound.extend(load_dir(profile.recordings_dir(name)))
    report = _run_with_progress(exchanges, target, settings, options, outbound, journals)
    from devbox.core.assertions import evaluate

    report = report.with_fail_if(evaluate(assertions, report))
    _emit(args, report)
    return 0 if report.ok else 1


def _reset_mocks(profile: Profile, mocks: list[str], quiet: bool = False) -> None:
    """Reset every running mock of the profile first (admin API, with the project's
    token), so recorded sequences start again at the first call; say what happened."""
    from devbox.replay.reset import reset_mocks
    from devbox.wire.admin_token import ensure_token

    given = dict(m.partition("=")[::2] for m in mocks if "=" in m)
    urls = {
        d.name: given.get(d.name) or f"http://127.0.0.1:{d.port}"
        for d in profile.dependencies
        if d.name in given or d.port is not None
    }
    if not urls:
        return
    token = ensure_token(profile.root)
    results = reset_mocks(urls, token)
    if quiet and all(r.ok for r in results):
        return
    done = [r.name for r in results if r.ok]
    parts = []
    if done:
        parts.append(f"reset {', '.join(done)}")
    for r in results:
        if not r.ok:
            parts.append(f"{r.name} {r.detail}")
    output.info(
        "mocks: " + "; ".join(parts) + " (POST /__devbox/reset with the admin token; "
        "state-changing admin calls require it)"
    )


def _reset_service(profile: Profile, quiet: bool = False) -> None:
    """Run the profile's ``[replay] reset`` hook (the service back in its recorded state)."""
    if not profile.replay.reset:
        return
    from devbox.runtime.hooks import run_reset_hook

    took = run_reset_hook(profile.replay.reset, profile.root)
    if not quiet:
        output.info(f"service: reset with {' '.join(profile.replay.reset)} ({took:.1f} s)")


def _journals(profile: Profile, mocks: list[str]) -> dict[str, str]:
    from devbox.errors import UsageError

    given: dict[str, str] = {}
    for spec in mocks:
        name, sep, url = spec.partition("=")
        if not sep or not url:
            raise UsageError(
                f"--mock {spec!r}: expected NAME=URL",
                hint="e.g. --mock payments=http://127.0.0.1:7101",
            )
        profile.dependency(name)  # NotFoundError naming the known ones
        given[name] = url
    from devbox.core.wiring import fixed_endpoints

    # where the mocks run, by the same rule `devbox run` wires the service to them
    fixed = fixed_endpoints(profile)
    out = {}
    for dep in profile.dependencies:
        if dep.name in given:
            out[dep.name] = given[dep.name]
        elif dep.name in fixed:
            out[dep.name] = f"http://{fixed[dep.name].host}:{fixed[dep.name].port}"
        else:
            raise UsageError(
                f"--check-outbound: dependency {dep.name!r} has no fixed port in the profile",
                hint=f"say where its mock runs: --mock {dep.name}=http://127.0.0.1:PORT",
            )
    if not out:
        raise UsageError("--check-outbound: the profile has no dependencies")
    return out


def _run_with_progress(
    exchanges: list[Any],
    target: str,
    settings: Any,
    options: Any,
    outbound: list[Any],
    journals: dict[str, str],
) -> ReplayReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from devbox.replay import aio
    from devbox.replay.runner import run_replay, select

    items, _ = select(exchanges, options.routes or settings.routes)
    total: int | None = len(items) * options.copies
    if options.count is not None:
        total = options.count
    elif options.duration_s is not None:
        total = None
    con = output.err_console()
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[bad]} failing"),
        TimeElapsedColumn(),
        console=con,
        transient=True,
        disable=output.QUIET or not con.is_terminal,
    )
    bad = 0
    with progress:
        task = progress.add_task("replay", total=total, bad=0)

        def on_result(r: Any) -> None:
            nonlocal bad
            if r.verdict != "pass":
                bad += 1
            progress.update(task, advance=1, bad=bad)

        return aio.run(
            run_replay(
                exchanges, target, settings, options=options, on_result=on_result,
                outbound=outbound, journals=journals,
            )
        )  # fmt: skip


def _emit(args: argparse.Namespace, report: ReplayReport) -> None:
    from devbox.replay.export import to_json, to_junit
    from devbox.replay.render import render_terminal

    text: str | None = None
    if args.report == "json":
        text = to_json(report)
    elif args.report == "junit":
        text = to_junit(report, name=f"devbox replay {args.profile}")
    if text is not None and args.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if text is not None and args.out is not None:
        from devbox.store import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode("utf-8"))
        output.info(f"wrote {args.report} report to {args.out}")
    render_terminal(report, output.console(), max_failures=args.max_failures)


# ---------------------------------------------------------------- --learn-noise


def _learn(
    args: argparse.Namespace, profile: Profile, exchanges: list[Any], target: str, options: Any
) -> int:
    import asyncio

    from devbox.replay import aio
    from devbox.replay.learn import learn_noise_replay

    output.info(
        "replaying twice, one request at a time, each pass from the same state, 1.1 s apart, "
        "to see which values vary on their own…"
    )

    async def before_pass(n: int) -> None:
        # the same state before each pass: mocks from their first call, the service as
        # the [replay] reset hook leaves it; said once, done twice
        if args.no_reset:
            return
        await asyncio.to_thread(_reset_mocks, profile, args.mock, n == 2)
        await asyncio.to_thread(_reset_service, profile, n == 2)

    report, first, second = aio.run(
        learn_noise_replay(
            exchanges, target, profile.replay, options=options, before_pass=before_pass
        )
    )
    errors = first.errors + second.errors
    if errors:
        output.info(f"[yellow]{errors} request(s) got no response; they give no evidence[/yellow]")
    # observations are replayed pairs plus groups of recorded duplicates: say which
    answered = {r.index for r in second.results if r.actual is not None}
    pairs = sum(1 for r in first.results if r.actual is not None and r.index in answered)
    if args.report == "json":
        output.print_json(_noise_dict(report) | {"replayed": len(first.results), "pairs": pairs})
    else:
        _print_noise(report, len(first.results), report.observations - pairs)
    if not report.proposals:
        return 0
    write = args.write
    if (
        not write
        and not args.no_write
        and args.report != "json"
        and sys.stdin.isatty()
        and sys.stdout.isatty()
    ):
        from rich.prompt import Confirm

        write = Confirm.ask(
            f"add {len(report.proposals)} rule(s) to {profile.path}?", console=output.console()
        )
    if write:
        from devbox.replay.profile_writer import write_ignore_rules

        added = write_ignore_rules(
            profile.path, report.rules, comment="learned by devbox replay --learn-noise"
        )
        text = f"added {len(added)} rule(s) to [replay] ignore in {profile.path}"
        output.info(f"[green]{output.escape(text)}[/green]")
    elif args.report != "json":
        output.info("not written: run again with --write to add them to the profile")
    return 0


def _noise_dict(report: NoiseReport) -> dict[str, Any]:
    return {
        "observations": report.observations,
        "proposals": [
            {"rule": p.rule, "kind": p.kind, "requests": p.requests, "evidence": list(p.evidence)}
            for p in report.proposals
        ],
        "held_back": [{"where": h.where, "reason": h.reason} for h in report.held_back],
    }


def _print_noise(report: NoiseReport, replayed: int, duplicates: int) -> None:
    from rich.text import Text

    con = output.console()
    dups = f" and {duplicates} group(s) of recorded duplicates" if duplicates > 0 else ""
    if not report.proposals:
        con.print(
            Text(f"no noise found in {replayed} request(s) replayed twice{dups}", style="green")
        )
    else:
        con.print(
            Text(
                f"{len(report.proposals)} proposed ignore rule(s), from {replayed} request(s) "
                f"replayed twice{dups}:",
                style="bold",
            )
        )
    for p in report.proposals:
        con.print(
            Text("  + ", style="green")
            + Text(p.rule, style="bold green")
            + Text(f"  {p.kind}, varied in {p.requests} request(s)", style="dim")
        )
        for e in p.evidence:
            con.print(Text(f"      {e}", style="dim"), overflow="ellipsis", no_wrap=True)
    if report.held_back:
        con.print(Text("not proposed:", style="bold"))
        for h in report.held_back:
            con.print(
                Text("  - ", style="yellow")
                + Text(h.where, style="yellow")
                + Text(f"  {h.reason}", style="dim")
            )
