"""``devbox record``: capture real traffic into mocks/<profile>/, redacted and crash-safe."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import UsageError

if TYPE_CHECKING:
    from devbox.core.events import Event
    from devbox.engine.record_session import RecordOutcome, RecordSession
    from devbox.record import Captured, RecordSummary

EPILOG = """\
examples:
  devbox record demo                       record until Ctrl-C; clients call the printed URL
  devbox record demo -- python3 examples/demo/traffic.py {inbound}
                                           run a client against the inbound proxy, then stop
  devbox record demo --no-service          record in front of a service you run yourself
  devbox record demo --append              add to the existing recordings

{inbound} (and {NAME} for each dependency) in COMMAND becomes that proxy's URL.
See docs/recording.md.
"""


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {n}")
    return n


def _positive(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {value}")
    return n


def _kb(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of KiB: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (KiB)")
    return n


def _dep_port(value: str) -> tuple[str, int]:
    name, sep, port = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {value!r}")
    return name, _port(port)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "record",
        help="record real traffic (inbound and every dependency) into mocks/<profile>/",
        description=(
            "Start a recording proxy in front of each dependency (forwarding to its real "
            "upstream) and in front of the service, start the service pointed at them, and "
            "write every exchange, redacted, to mocks/<profile>/. A new recording set replaces "
            "the old one only when the run completes (Ctrl-C or the end of COMMAND)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("profile", help="profile name (profiles/NAME.toml) or path to a .toml file")
    p.add_argument(
        "--listen",
        type=_port,
        metavar="PORT",
        help="port of the inbound proxy clients call (default: a free port)",
    )
    p.add_argument(
        "--no-service",
        action="store_true",
        help="do not start the service: record in front of one you run yourself",
    )
    p.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        default="auto",
        help="how to run the service (default: the profile's, else auto)",
    )
    p.add_argument(
        "--service-port",
        type=_port,
        metavar="PORT",
        help="port the service listens on (default: the profile's service.port)",
    )
    p.add_argument(
        "--port",
        type=_dep_port,
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="port of a dependency's recording proxy (default: its port, or free)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add to the existing recordings instead of starting a new set",
    )
    p.add_argument(
        "--max-body-kb",
        type=_kb,
        metavar="N",
        help="store at most N KiB of each body, marked truncated (default 1024); "
        "bodies are always relayed whole",
    )
    p.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="FILE",
        help="PEM file of extra CA certificates to trust for https upstreams",
    )
    p.add_argument(
        "--forward-proxy",
        type=_port,
        metavar="PORT",
        help="run an HTTP forward proxy (HTTP_PROXY/HTTPS_PROXY) instead of one reverse "
        "proxy per dependency, for services whose dependency URLs are fixed; CONNECTs to "
        "a dependency's https:// upstream are intercepted with devbox's CA and recorded",
    )
    p.add_argument(
        "--no-intercept",
        action="store_true",
        help="never terminate TLS: tunnel CONNECTs unrecorded, reverse proxies take plain "
        "HTTP only (the service then needs no trust in devbox's CA)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="seconds to wait for an upstream connection (default 10)",
    )
    p.add_argument(
        "--response-timeout",
        type=_positive,
        default=60.0,
        metavar="S",
        help="seconds to wait for an upstream's response to start (default 60)",
    )
    p.add_argument(
        "--fsync",
        action="store_true",
        help="fsync after every exchange (survives power loss, not just a crash)",
    )
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="keep the recording even when requests got no answer from their "
        "upstream (connection refused, DNS, timeout); by default it is not "
        "committed and devbox exits 1",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    # REMAINDER keeps COMMAND's own options (--count 5) away from us; it also swallows our
    # options written after PROFILE, which run_record parses again (see _split_command)
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="a client to run against the recording; stops when it ends",
    )
    p.set_defaults(func=run_record, record_parser=p)


def _split_command(args: argparse.Namespace) -> list[str]:
    """``PROFILE [OPTIONS] [--] COMMAND ARGS``: parse OPTIONS, return COMMAND ARGS.

    argparse drops a ``--`` that directly follows PROFILE but keeps one that follows
    options, so: a leading option means "our options up to the first --"."""
    rest = list(args.command or [])
    if not rest:
        return []
    if rest[0] == "--":
        return rest[1:]
    if not rest[0].startswith("-"):
        return rest
    if "--" in rest:
        cut = rest.index("--")
        own, command = rest[:cut], rest[cut + 1 :]
    else:
        own, command = rest, []
    parser: argparse.ArgumentParser = args.record_parser
    parser.parse_args([*own, args.profile], namespace=args)
    if args.command:
        raise UsageError(
            f"unexpected arguments: {' '.join(own)}",
            hint="put the client command after --: devbox record PROFILE [OPTIONS] -- COMMAND",
        )
    return command


def run_record(args: argparse.Namespace) -> int:
    from devbox.core.profile import load_profile
    from devbox.engine.record_session import RecordPlan, record
    from devbox.record import RecordOptions, unfinished

    command = _split_command(args)
    profile = load_profile(args.profile)
    known = {d.name for d in profile.dependencies}
    for name, _port_n in args.port:
        if name not in known:
            raise UsageError(
                f"--port {name}=...: profile {profile.name!r} has no dependency {name!r}",
                hint="known: " + (", ".join(sorted(known)) or "none"),
            )
    options = RecordOptions(
        inbound_port=args.listen,
        service_port=args.service_port,
        ports=dict(args.port),
        forward_proxy_port=args.forward_proxy,
        append=args.append,
        max_body_kb=args.max_body_kb,
        ca_bundle=args.ca_bundle,
        connect_timeout_s=args.connect_timeout,
        response_timeout_s=args.response_timeout,
        fsync=args.fsync,
        intercept=not args.no_intercept,
    )
    plan = RecordPlan(
        options=options,
        service=not args.no_service,
        runtime=args.runtime,
        command=tuple(command),
        allow_errors=args.allow_errors,
    )
    leftovers = unfinished(profile, ["inbound", *sorted(known)])
    for f in leftovers:
        output.info(
            f"[yellow]note:[/yellow] {_rel(f)} is left from an interrupted recording "
            "(kept for inspection; delete it when done)"
        )
    view = _LiveView(verbose=output.VERBOSE, live=not command and not args.json)
    outcome = record(
        profile,
        plan,
        on_event=view.event,
        on_captured=view.captured,
        on_listening=view.listening,
        on_started=view.started,
    )
    view.stop()
    if args.json:
        data = outcome.summary.to_json()
        data["exit_code"] = outcome.exit_code
        data["interrupted"] = outcome.interrupted
        data["withheld"] = outcome.withheld
        for name, src in data["sources"].items():
            tally = outcome.tally.get(name)
            src["no_answer"] = tally.no_answer if tally else 0
            src["http_4xx"] = tally.client_errors if tally else 0
            src["http_5xx"] = tally.server_errors if tally else 0
        output.print_json(data)
    else:
        _print_summary(outcome.summary, outcome)
    return outcome.exit_code


def _red(n: int) -> str:
    return f"[red]{n}[/red]" if n else "0"


def _rel(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


class _LiveView:
    """Start-up lines, a live count while recording, one line per exchange with -v."""

    def __init__(self, *, verbose: bool, live: bool) -> None:
        self.verbose = verbose
        self.live = live
        self.count: dict[str, int] = {}
        self._lock = threading.Lock()
        self._status: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def event(self, ev: Event) -> None:
        from devbox.core.events import Log, Problem, ServiceState

        if isinstance(ev, Log):
            if ev.source == "devbox":
                output.info(f"[yellow]{ev.text}[/yellow]" if ev.level != "info" else ev.text)
            elif self.verbose:
                output.info(f"[dim]{ev.source}: {ev.text}[/dim]")
        elif isinstance(ev, ServiceState) and ev.state in ("crashed",):
            output.info(f"[red]{ev.name} {ev.state}[/red] {ev.detail}")
        elif isinstance(ev, Problem):
            output.info(f"[red]{ev.message}[/red]")
            if ev.hint:
                output.info(f"[yellow]hint:[/yellow] {ev.hint}")
            for line in ev.logs[-10:]:
                output.info(f"[dim]  {line}[/dim]")

    def captured(self, c: Captured) -> None:
        with self._lock:
            self.count[c.source] = self.count.get(c.source, 0) + 1
        if self.verbose:
            # the path only: query strings may hold secrets, and this line is not redacted
            status = c.status if c.status is not None else c.error
            output.info(
                f"[dim]{c.source:>10}[/dim] {c.method} {c.path} -> {status} {c.duration_ms:.1f}ms"
            )

    def listening(self, session: RecordSession) -> None:
        prof = session.profile
        mode = "appending to" if session.plan.options.append else "new recording set in"
        output.info(f"recording [bold]{prof.name}[/bold]: {mode} {_rel(prof.mocks_dir)}/")
        wiring = session.wiring()
        for li in session.listeners:
            what = "clients call" if li.source == "inbound" else "proxy"
            url = li.url
            w = wiring.wire(li.source)
            if w is not None:
                # what the service is given, by the rule of devbox.core.wiring
                what = w.variable if w.value is not None else f"{w.variable}: {w.why}"
                url = w.value or url
            if li.source == "forward":
                what = "HTTP_PROXY"
            output.info(f"  {li.source:<10} {url} -> {li.upstream} [dim]({what})[/dim]")
        rec = session.recorder
        if rec is not None and rec.skipped:
            output.info(
                "[yellow]not recorded (no upstream in the profile):[/yellow] "
                + ", ".join(rec.skipped)
            )
        if not session.plan.service and rec is not None:
            env = session.service_env()
            if env:
                output.info(
                    "start your service with: " + " ".join(f"{k}={v}" for k, v in env.items())
                )

    def started(self, session: RecordSession) -> None:
        con = output.err_console()
        if self.live and not output.QUIET and con.is_terminal:
            self._status = con.status(self._text(), spinner="dots")
            self._status.start()
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        elif self.live:
            output.info("recording; press Ctrl-C to stop")

    def _text(self) -> str:
        with self._lock:
            counts = " · ".join(f"{k} {v}" for k, v in self.count.items()) or "no traffic yet"
        return f"recording: {counts}  [dim](Ctrl-C to stop)[/dim]"

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            if self._status is not None:
                self._status.update(self._text())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        if self._status is not None:
            self._status.stop()
            self._status = None


def _print_summary(s: RecordSummary, outcome: RecordOutcome) -> None:
    from rich.markup import escape
    from rich.table import Table

    from devbox.engine.record_session import SourceTally

    con = output.console()
    verb = "recorded" if s.committed or s.mode == "append" else "captured"
    con.print(
        f"{verb} [bold]{s.exchanges}[/bold] exchanges ({_size(s.bytes)}) in {s.duration_s:.1f}s"
    )
    if s.sources:
        t = Table(box=None, pad_edge=False, show_edge=False)
        t.add_column("source")
        for col in ("exchanges", "no answer", "4xx", "5xx", "truncated", "stored"):
            t.add_column(col, justify="right")
        for src in s.sources:
            ta = outcome.tally.get(src.source, SourceTally())
            t.add_row(
                src.source,
                str(src.exchanges),
                _red(max(src.errors, ta.no_answer)),
                _red(ta.client_errors),
                _red(ta.server_errors),
                str(src.truncated),
                _size(src.bytes),
            )
        con.print(t)
        for src in s.sources:
            if src.file:
                con.print(f"  {_rel(src.file)}", soft_wrap=True)
        for src in s.sources:
            ta = outcome.tally.get(src.source, SourceTally())
            if not ta.failures:
                continue
            what = []
            if ta.no_answer:
                what.append(f"{ta.no_answer} got no answer ({escape(ta.first_error)})")
            bad = sorted((st, n) for st, n in ta.statuses.items() if st >= 400)
            if bad:
                what.append("answered " + ", ".join(f"{st} x{n}" for st, n in bad))
            where = f" in {_rel(src.file)}" if src.file else ""
            con.print(
                f"[red]{src.source}:[/red] {ta.failures} of {ta.exchanges} failed: "
                f"{'; '.join(what)}{where}",
                soft_wrap=True,
            )
    if outcome.withheld:
        con.print(
            "[red]not committed:[/red] requests got no answer from their upstream, so "
            "this recording would replay errors; previous recordings left as they were. "
            "Fix the upstream and record again, or pass --allow-errors to keep it.",
            soft_wrap=True,
        )
    if s.redactions:
        con.print("redactions: " + ", ".join(f"{k} {v}" for k, v in sorted(s.redactions.items())))
    else:
        con.print("redactions: none")
    dropped = sum(src.dropped for src in s.sources)
    if dropped:
        con.print(f"[red]{dropped} exchanges dropped: redaction failed (never written)[/red]")
    if s.lost:
        con.print(f"[red]{s.lost} exchanges lost: the recording worker stopped[/red]")
    for failure in s.failures[:5]:
        con.print(f"[red]recording error:[/red] {failure}")
    if s.failed and not s.committed and s.mode == "new":
        con.print("what was written stays in *.json.partial files; previous recordings untouched")
    if s.unread:
        con.print(
            f"[yellow]{s.unread} intercepted connections stopped being read[/yellow] "
            "(relayed on, unrecorded from there): " + "; ".join(s.unread_first[:3])
        )
    if s.unlinked:
        con.print(
            f"[yellow]{s.unlinked} outbound calls have no parent[/yellow]: several inbound "
            "requests were in flight; set [record] correlation_header to link them"
        )
    if s.unrecorded:
        con.print(
            "relayed, not recorded (not a dependency's upstream): "
            + ", ".join(f"{k} ({v})" for k, v in s.unrecorded.items())
        )
    if s.intercepted:
        con.print(
            "HTTPS intercepted and recorded (CONNECT): "
            + ", ".join(f"{k} ({v})" for k, v in s.intercepted.items())
        )
    if s.tunnels:
        con.print(
            "CONNECT tunnels relayed unrecorded: "
            + ", ".join(f"{k} ({v})" for k, v in s.tunnels.items())
        )
    for hostport, why in s.refused.items():
        con.print(f"[yellow]not intercepted[/yellow] {hostport}: {why}")
    if s.mode == "new" and not outcome.withheld:
        if not s.committed:
            con.print("nothing recorded: previous recordings left as they were")
        elif s.backup:
            con.print(f"previous recordings moved to {_rel(s.backup)}", soft_wrap=True)
        if s.kept:
            con.print("no traffic, previous recordings kept: " + ", ".join(s.kept))
