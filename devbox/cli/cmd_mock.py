"""``devbox mock``: serve recorded responses for every HTTP dependency until Ctrl-C.

    devbox mock demo                         # every dependency of profiles/demo.toml
    devbox mock demo --only payments --port payments=9000
    devbox mock --har traffic.har --port 8081
    devbox mock --recording mocks/demo/payments --port 8081 --on-miss passthrough \\
                --upstream http://127.0.0.1:7201
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import NotFoundError, RecordingError, UsageError

if TYPE_CHECKING:
    from devbox.core.events import Event
    from devbox.mock import MockFleet

_TIMING_RE = re.compile(r"^(none|recorded|(\d+(\.\d+)?)x)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "mock",
        help="serve recorded responses for every dependency (or one HAR/recording)",
        description=(
            "Start one mock server per HTTP dependency of a profile, each answering with the "
            "responses recorded from the real dependency; or serve a single HAR file or "
            "recording. Runs until Ctrl-C. Admin API on every mock under /__devbox/."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  devbox mock demo\n"
            "  devbox mock demo --only payments --port payments=9000\n"
            "  devbox mock --har traffic.har --port 8081\n"
            "  devbox mock --recording mocks/demo/payments --port 8081 "
            "--on-miss passthrough --upstream http://127.0.0.1:7201\n"
            "docs: docs/mocks.md"
        ),
    )
    p.add_argument("profile", nargs="?", help="profile name (profiles/NAME.toml) or path")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--har", metavar="FILE", help="serve the entries of a HAR file")
    src.add_argument(
        "--recording", metavar="PATH", help="serve a recording file or a directory of them"
    )
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="[DEP=]PORT",
        help="port to listen on (0: any free port); DEP=PORT per dependency of a profile",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--only", action="append", default=[], metavar="DEP", help="mock only this dependency"
    )
    p.add_argument(
        "--mode",
        action="append",
        default=[],
        metavar="[DEP=]MODE",
        help="on a miss: replay (fail with an explanation), passthrough or record",
    )
    standalone = p.add_argument_group("with --har / --recording")
    standalone.add_argument("--name", default="mock", help="dependency name shown in messages")
    standalone.add_argument(
        "--on-miss",
        choices=("fail", "passthrough", "record"),
        default="fail",
        help="what an unmatched request gets (default fail: a 502 that explains the miss)",
    )
    standalone.add_argument("--upstream", help="real dependency URL for passthrough/record")
    standalone.add_argument(
        "--ignore-query",
        action="append",
        default=[],
        metavar="NAME",
        help="query parameter left out of matching (globs allowed: utm_*)",
    )
    standalone.add_argument(
        "--ignore-body",
        action="append",
        default=[],
        metavar="PATH",
        help='JSON path left out of matching ("$.request_id", "$.items[*].ts")',
    )
    standalone.add_argument(
        "--match-header",
        action="append",
        default=[],
        metavar="NAME",
        help="request header that takes part in matching",
    )
    standalone.add_argument(
        "--fuzzy", action="store_true", help="answer a miss with the strongest candidate"
    )
    standalone.add_argument(
        "--timing", default="none", help='none (default), recorded, or a factor such as "2x"'
    )
    p.add_argument(
        "--parser", choices=("auto", "httptools", "python"), default="auto", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--no-reload", action="store_true", help="do not reload recordings when they change"
    )
    p.add_argument("--json", action="store_true", help="print the mocks and misses as JSON")
    p.set_defaults(func=run_mock)


# ---------------------------------------------------------------- building the fleet


def _split_pairs(values: list[str], what: str) -> tuple[str | None, dict[str, str]]:
    """``["8081"]`` -> ("8081", {}); ``["a=1", "b=2"]`` -> (None, {"a": "1", "b": "2"})."""
    single: str | None = None
    pairs: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if sep:
            pairs[name.strip()] = value.strip()
        elif single is None:
            single = v.strip()
        else:
            raise UsageError(
                f"--{what} given twice without a dependency name: {v!r}",
                hint=f"write --{what} DEP=VALUE for each dependency",
            )
    return single, pairs


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise UsageError(f"invalid port {text!r}", hint="a number 0..65535 (0: any free port)")
    return int(text)


def _standalone(args: argparse.Namespace, on_event: Any) -> MockFleet:
    from devbox.core.matching import parse_json_path
    from devbox.core.profile import Dependency, MatchRules, RedactRules
    from devbox.mock import MockFleet, MockSpec
    from devbox.wire.admin_token import ensure_token

    if not _NAME_RE.match(args.name):
        raise UsageError(f"invalid --name {args.name!r}", hint="lowercase letters, digits, - or _")
    if not _TIMING_RE.match(args.timing):
        raise UsageError(f"invalid --timing {args.timing!r}", hint='none, recorded or "2x"')
    for path in args.ignore_body:
        try:
            parse_json_path(path)
        except ValueError:
            raise UsageError(
                f"--ignore-body: not a JSON path: {path!r}", hint='write "$.a.b" or "$.items[*].id"'
            ) from None
    if args.upstream and not re.match(r"^https?://[^/\s]+", args.upstream):
        raise UsageError(f"--upstream: expected an http:// or https:// URL, got {args.upstream!r}")
    single, pairs = _split_pairs(args.port, "port")
    if pairs:
        raise UsageError("--port DEP=PORT is for profiles; give --port PORT")
    mode_single, mode_pairs = _split_pairs(args.mode, "mode")
    if mode_pairs:
        raise UsageError("--mode DEP=MODE is for profiles; give --mode MODE")
    on_miss = {"replay": "fail"}.get(mode_single or "", mode_single) or args.on_miss
    if on_miss not in ("fail", "passthrough", "record"):
        raise UsageError(f"invalid mode {mode_single!r}", hint="replay, passthrough or record")
    if on_miss != "fail" and not args.upstream:
        raise UsageError(
            f"--on-miss {on_miss} needs --upstream URL (the real dependency to forward to)"
        )
    dep = Dependency(
        name=args.name,
        upstream=args.upstream,
        port=_port(single) if single is not None else 0,
        on_miss=on_miss,
        match=MatchRules(
            ignore_query=tuple(args.ignore_query),
            ignore_body=tuple(args.ignore_body),
            headers=tuple(h.lower() for h in args.match_header),
            fuzzy=args.fuzzy,
        ),
        timing=args.timing,
    )
    if args.har:
        if on_miss == "record":
            raise UsageError(
                "--on-miss record needs a recording to append to",
                hint="serve with --recording DIR "
                "(import the HAR first: devbox import FILE.har --into DIR)",
            )
        spec = MockSpec(dependency=dep, exchanges=tuple(_load_har(Path(args.har), args.name)))
    else:
        path = Path(args.recording)
        if not path.exists() and on_miss != "record":
            raise NotFoundError(f"{path}: no such recording file or directory")
        # recordings are stored redacted: live requests go through the same default rules
        spec = MockSpec(dependency=dep, recordings=path, redact=RedactRules())
    return MockFleet.from_specs(
        [spec],
        on_event=on_event,
        host=args.host,
        poll_interval_s=0 if args.no_reload else 1.0,
        parser=args.parser,
        # no project here: the token lives in the directory devbox mock runs in
        admin_token=ensure_token(Path.cwd()),
    )


def _load_har(path: Path, name: str) -> list[Any]:
    from devbox.cli.cmd_import import print_har_warnings
    from devbox.core.har import import_har, parse_har

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such HAR file") from None
    except OSError as exc:
        raise RecordingError(f"cannot read: {exc.strerror}", file=str(path)) from None
    result = import_har(parse_har(data, str(path)), source=name, filename=str(path))
    if not result.exchanges:
        raise result.nothing_usable(str(path))
    print_har_warnings(path, result.warnings)
    return list(result.exchanges)


def _from_profile(args: argparse.Namespace, on_event: Any) -> MockFleet:
    from devbox.core.profile import load_profile
    from devbox.mock import MockFleet

    for flag, given in (
        ("--ignore-query", args.ignore_query),
        ("--ignore-body", args.ignore_body),
        ("--match-header", args.match_header),
        ("--upstream", args.upstream),
        ("--fuzzy", args.fuzzy),
    ):
        if given:
            raise UsageError(
                f"{flag} is for --har/--recording; with a profile, set it in the profile",
                hint="see [dependency.match] in docs/profiles.md",
            )
    profile = load_profile(args.profile)
    if not profile.dependencies:
        raise UsageError(f"profile {profile.name!r} has no [[dependency]] to mock")
    names = [d.name for d in profile.dependencies]
    single, pairs = _split_pairs(args.port, "port")
    ports: dict[str, int | None] = {}
    for dep, value in pairs.items():
        profile.dependency(dep)
        ports[dep] = _port(value)
    targets = args.only or names
    if single is not None:
        if len(targets) != 1:
            raise UsageError(
                "--port PORT is ambiguous with several dependencies",
                hint="write --port DEP=PORT, or pick one with --only DEP",
            )
        ports[targets[0]] = _port(single)
    fleet = MockFleet(
        profile,
        on_event=on_event,
        host=args.host,
        ports=ports,
        only=args.only or None,
        poll_interval_s=0 if args.no_reload else 1.0,
        parser=args.parser,
    )
    mode_single, mode_pairs = _split_pairs(args.mode, "mode")
    for dep, mode in mode_pairs.items():
        fleet.set_mode(dep, mode)
    if mode_single is not None:
        for dep in [*fleet.servers, *fleet.wire]:
            fleet.set_mode(dep, mode_single)
    return fleet


# ---------------------------------------------------------------- running


def _json_line(value: Any) -> None:
    """One JSON object per line on stdout, flushed: a stream other tools can follow."""
    import sys

    import orjson

    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
    sys.stdout.flush()


class _Printer:
    """Miss, problem and reload events, printed as they happen (from the mocks' thread)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: Event) -> None:
        from devbox.core.events import Log, MockMiss, Problem

        if self.as_json:
            if isinstance(event, MockMiss):
                _json_line(
                    {
                        "event": "miss",
                        "dependency": event.dependency,
                        "method": event.method,
                        "target": event.target,
                        "explanation": event.explanation,
                    }
                )
            return
        con = output.err_console()
        if isinstance(event, MockMiss):
            con.print(
                f"[yellow]miss[/yellow] [bold]{event.dependency}[/bold] {event.explanation}",
                markup=True,
                highlight=False,
                soft_wrap=True,
            )
        elif isinstance(event, Problem):
            con.print(f"[red]problem[/red] {event.message}", markup=True, soft_wrap=True)
        elif isinstance(event, Log) and not output.QUIET:
            con.print(f"[dim]{event.text}[/dim]", markup=True, soft_wrap=True)


def run_mock(args: argparse.Namespace) -> int:
    from devbox.cli.waiting import wait_until

    if bool(args.profile) == bool(args.har or args.recording):
        raise UsageError(
            "give a profile, or --har FILE, or --recording PATH",
            hint="devbox mock demo | devbox mock --har traffic.har --port 8081",
        )
    printer = _Printer(args.json)
    fleet = _from_profile(args, printer) if args.profile else _standalone(args, printer)
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    # before the ports open: a supervisor may send SIGTERM as soon as they answer
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if args.json or output.QUIET:
            fleet.start()
        else:
            with output.err_console().status("loading recordings and binding ports"):
                fleet.start()
        # this process only serves mocks: the loaded recordings live until it exits and
        # hold no garbage cycles, so spare the collector from walking them again and again
        import gc

        gc.collect()
        gc.freeze()
        _announce(fleet, args.json)
        try:
            wait_until(stop)
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.stop()
    if not args.json:
        for s in fleet.stats():
            output.info(f"{s.dependency}: {s.hits} hits, {s.misses} misses")
    return 0


def _announce(fleet: MockFleet, as_json: bool) -> None:
    from devbox.mock import env_name

    urls = fleet.urls()
    rows: list[dict[str, Any]] = []
    for name, server in fleet.servers.items():
        env = env_name(name, server.spec.dependency.env)
        rows.append(
            {
                "dependency": name,
                "port": server.port,
                "exchanges": len(server.index),
                "mode": server.mode,
                "env": env,
                "url": urls[env],
                "admin": urls[env] + "/__devbox/",
            }
        )
    for name, wire in fleet.wire.items():  # redis, postgres...: no in-band admin API
        env = env_name(name, wire.dependency.env)
        rows.append(
            {
                "dependency": name,
                "port": wire.port,
                "exchanges": len(wire.index),
                "mode": wire.mode,
                "env": env,
                "url": urls[env],
                "admin": None,
            }
        )
    if as_json:
        _json_line({"event": "serving", "mocks": rows})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("dependency", "port", "exchanges", "mode", "url"):
        table.add_column(col, justify="right" if col in ("port", "exchanges") else "left")
    for r in rows:
        table.add_row(
            str(r["dependency"]), str(r["port"]), str(r["exchanges"]), str(r["mode"]), str(r["url"])
        )
    output.console().print(table)
    for name, server in fleet.servers.items():
        if not len(server.index):
            where = server.spec.recordings or "the HAR file"
            output.err_console().print(
                f"[yellow]warning:[/yellow] no recordings for {name} in {where}: every call "
                "will miss; record some with `devbox record`",
                markup=True,
                highlight=False,
            )
    serving = f"serving {len(rows)} mock{'s' if len(rows) != 1 else ''}"
    if not fleet.servers:  # Redis, Postgres, gRPC only: no admin API, no https:// on HTTP
        output.info(f"{serving}; Ctrl-C to stop")
        return
    output.info(f"{serving}; HTTP admin API at <url>/__devbox/; Ctrl-C to stop")
    output.info(
        "each HTTP mock's port also answers https:// and HTTP/2 (h2, h2c); trust the CA "
        'with `curl --cacert "$(devbox ca path)"` (docs/tls.md)'
    )
