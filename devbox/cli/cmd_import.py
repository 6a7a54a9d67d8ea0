"""``devbox import`` (HAR -> recordings, redacted) and ``devbox export`` (recordings -> HAR)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import NotFoundError, RecordingError, UsageError

if TYPE_CHECKING:
    from devbox.core.model import Exchange

IMPORT_EPILOG = """\
examples:
  devbox import session.har --into mocks/demo/payments
  devbox import session.har --profile demo --source payments --host payments.example.com
  devbox import capture.har --into mocks/demo/inbound          (inbound: requests to replay)

Secrets are redacted before anything is written: the default rules plus the profile's
[redact] section with --profile. An existing recording is never overwritten: the import
goes to a new file unless --replace is given. See docs/recordings.md.
"""

EXPORT_EPILOG = """\
examples:
  devbox export mocks/demo/payments --har payments.har
  devbox export demo --har all.har            every source of profile demo
  devbox export mocks/demo/inbound --har -    to stdout
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "import",
        help="import a HAR file (browser or proxy export) as recorded traffic, redacted",
        description=(
            "Convert a HAR 1.2 file (Chrome, Firefox, Safari, mitmproxy, Charles, ...) into a "
            "devbox recording in DIR, redacting secrets and personal data first."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("har", metavar="FILE.har", help="the HAR file")
    p.add_argument(
        "--into",
        metavar="DIR",
        help="recordings directory (a source: mocks/PROFILE/SOURCE); "
        "default with --profile and --source: that source's directory",
    )
    p.add_argument(
        "--source",
        metavar="NAME",
        help="dependency name, or 'inbound' (default: the name of DIR)",
    )
    p.add_argument(
        "--profile", metavar="PROFILE", help="apply this profile's [redact] rules as well"
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="import only requests to this host (repeatable; a browser HAR holds every host)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="overwrite the file an earlier import of the same HAR wrote",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse the file when any entry needs a warning (skipped or guessed)",
    )
    p.add_argument("--json", action="store_true", help="print what was imported as JSON")
    p.set_defaults(func=run_import)

    e: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="export recorded traffic as a HAR 1.2 file, or a profile as Kubernetes manifests",
        description=(
            "Write recordings (a file, a directory, or every source of a profile) as one HAR "
            "1.2 file that browsers' devtools and HAR viewers open. `devbox export k8s PROFILE` "
            "writes the profile as a Kubernetes preview environment (docs/kubernetes.md)."
        ),
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "path",
        metavar="PATH",
        help="a recording file or directory, or a profile name; `k8s` for manifests",
    )
    e.add_argument("--har", metavar="FILE.har", help="where to write ('-': stdout)")
    e.add_argument("--force", action="store_true", help="overwrite FILE.har if it exists")
    e.add_argument("--json", action="store_true", help="print a summary as JSON")
    from devbox.cli.cmd_export import K8S_EPILOG, add_k8s_arguments

    add_k8s_arguments(e)
    e.epilog = (e.epilog or "") + K8S_EPILOG
    e.set_defaults(func=run_export)


# ---------------------------------------------------------------- import


def _target_dir(args: argparse.Namespace) -> tuple[Path, str, Any]:
    profile = None
    if args.profile:
        from devbox.core.profile import load_profile

        profile = load_profile(args.profile)
    if args.into:
        directory = Path(args.into)
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"--into {args.into}: not a directory")
        source = args.source or directory.resolve().name
    elif profile is not None and args.source:
        source = args.source
        directory = profile.inbound_dir if source == "inbound" else profile.recordings_dir(source)
    else:
        raise UsageError(
            "say where the recordings go",
            hint="--into mocks/PROFILE/SOURCE, or --profile PROFILE --source SOURCE",
        )
    if profile is not None and source != "inbound":
        known = {d.name for d in profile.dependencies}
        if known and source not in known:
            output.info(
                f"[yellow]note:[/yellow] profile {profile.name!r} has no dependency {source!r} "
                f"(known: {', '.join(sorted(known))}, inbound)"
            )
    return directory, source, profile


def _read_har(path: Path) -> dict[str, Any]:
    from devbox.core.har import parse_har

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such HAR file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a .har file") from None
    except OSError as exc:
        raise RecordingError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return parse_har(data, str(path))


def _host_of(ex: Exchange) -> str:
    host = ex.request.host.rpartition("@")[2]
    return host.split(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"


def print_har_warnings(har_path: Path, warnings: Any, *, limit: int = 20) -> None:
    """One line per entry that was skipped or needed a guess (the first *limit* of them)."""
    from rich.markup import escape

    for w in list(warnings)[:limit]:
        output.info(f"[yellow]warning:[/yellow] {escape(w.one_line(str(har_path)))}")
    if len(warnings) > limit:
        output.info(f"[yellow]warning:[/yellow] {len(warnings) - limit} more (--json lists all)")


def run_import(args: argparse.Namespace) -> int:
    from devbox.core.har import import_har
    from devbox.core.model import Direction
    from devbox.core.redact import Redactor
    from devbox.store import free_path, load_file, recording_files, write_recording

    har_path = Path(args.har)
    directory, source, profile = _target_dir(args)
    har = _read_har(har_path)
    result = import_har(har, source=source, filename=str(har_path), strict=args.strict)
    exchanges = list(result.exchanges)
    if not exchanges:
        raise result.nothing_usable(str(har_path))
    if not args.json:
        print_har_warnings(har_path, result.warnings)
    hosts = Counter(_host_of(e) for e in exchanges)
    if args.host:
        wanted = {h.lower() for h in args.host}
        exchanges = [e for e in exchanges if _host_of(e).lower() in wanted]
        if not exchanges:
            raise UsageError(
                f"no request in {har_path} goes to {', '.join(args.host)}",
                hint="hosts in the file: "
                + ", ".join(f"{h} ({n})" for h, n in hosts.most_common(8)),
            )
    if not exchanges:
        raise UsageError(f"{har_path}: the HAR file holds no requests")

    redactor = Redactor(profile.redact if profile is not None else None)
    redacted = _redact_all(redactor, exchanges)

    # an earlier import of the same HAR has the same exchange ids
    ids = {e.id for e in redacted}
    previous: Path | None = None
    overlap = 0
    for f in recording_files(directory):
        found = sum(1 for e in load_file(f).decoded.exchanges if e.id in ids)
        if found:
            previous, overlap = f, found
            break
    stem = har_path.name[:-4] if har_path.name.lower().endswith(".har") else har_path.name
    wanted_path = directory / f"{stem}.json"
    if previous is not None and not args.replace:
        raise UsageError(
            f"{overlap} of the {len(redacted)} exchanges in {har_path} are already in {previous}",
            hint="--replace overwrites that file with this import",
        )
    if args.replace:
        target = previous or wanted_path
    else:
        target = free_path(wanted_path)
    direction = Direction.INBOUND if source == "inbound" else Direction.OUTBOUND
    origin = redacted[0].origin if redacted else "har"
    write_recording(target, source, direction, redacted, origin=origin)

    failed = sum(1 for e in redacted if not e.ok)
    missing = sum(1 for e in redacted if e.response_truncated)
    report = {
        "file": str(target),
        "har": str(har_path),
        "source": source,
        "direction": direction.value,
        "imported": len(redacted),
        "failed_requests": failed,
        "bodies_missing": missing,
        "hosts": dict(Counter(_host_of(e) for e in redacted).most_common()),
        "redacted": dict(sorted(redactor.stats.items())),
        "replaced": str(previous) if args.replace and previous is not None else None,
        "skipped": result.skipped,
        "warnings": [
            {"entry": w.entry, "field": w.field, "reason": w.reason, "skipped": w.skipped}
            for w in result.warnings
        ],
    }
    if args.json:
        output.print_json(report)
        return 0
    con = output.console()
    if target != wanted_path and not args.replace:
        output.info(f"[yellow]note:[/yellow] {wanted_path} exists; wrote a new file instead")
    notes = []
    if failed:
        notes.append(f"{failed} without a response")
    if missing:
        notes.append(f"{missing} whose body the HAR did not keep")
    if result.skipped:
        notes.append(f"{result.skipped} skipped")
    con.print(
        f"[green]imported[/green] {_plural(len(redacted), 'exchange')} from {har_path} into "
        f"[bold]{target}[/bold]" + (f" ({'; '.join(notes)})" if notes else "")
    )
    if len(hosts) > 1 and not args.host:
        con.print(
            "hosts: "
            + ", ".join(f"{h} {n}" for h, n in hosts.most_common(6))
            + ("" if len(hosts) <= 6 else f", +{len(hosts) - 6} more")
            + "  [dim](import one with --host)[/dim]"
        )
    if redactor.stats:
        con.print("redacted: " + ", ".join(f"{k} {v}" for k, v in sorted(redactor.stats.items())))
    else:
        con.print("redacted: nothing matched the redaction rules")
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _redact_all(redactor: Any, exchanges: list[Exchange]) -> list[Exchange]:
    if len(exchanges) < 2000 or output.QUIET or not output.err_console().is_terminal:
        return [redactor.exchange(e) for e in exchanges]
    from rich.progress import Progress

    out = []
    with Progress(console=output.err_console(), transient=True) as progress:
        task = progress.add_task("redacting", total=len(exchanges))
        for i, e in enumerate(exchanges, 1):
            out.append(redactor.exchange(e))
            if i % 200 == 0:
                progress.update(task, completed=i)
    return out


# ---------------------------------------------------------------- export


def _collect(path_arg: str) -> list[Exchange]:
    from devbox.store import load_path

    path = Path(path_arg)
    if path.exists():
        return load_path(path)
    if "/" in path_arg or path_arg.endswith((".json", ".har")):
        raise NotFoundError(f"{path_arg}: no such recording file or directory")
    from devbox.core.profile import load_profile

    profile = load_profile(path_arg)
    dirs = [profile.recordings_dir(d.name) for d in profile.dependencies]
    dirs.append(profile.inbound_dir)
    out: list[Exchange] = []
    for d in dirs:
        if d.is_dir():
            out.extend(load_path(d))
    return out


def run_export(args: argparse.Namespace) -> int:
    import sys

    import orjson

    from devbox.cli.cmd_export import is_k8s, run_export_k8s
    from devbox.core.har import exchanges_to_har
    from devbox.store import atomic_write_bytes

    if is_k8s(args):
        return run_export_k8s(args)
    if args.har is None:
        raise UsageError(
            "devbox export PATH needs --har FILE.har", hint="or: devbox export k8s PROFILE"
        )
    if args.profile is not None:
        raise UsageError(
            f"devbox export PATH takes one PATH, got {args.profile!r} too",
            hint="devbox export PATH --har FILE.har",
        )
    exchanges = _collect(args.path)
    if not exchanges:
        raise UsageError(f"{args.path}: no recorded exchanges to export")
    data = orjson.dumps(exchanges_to_har(exchanges), option=orjson.OPT_INDENT_2) + b"\n"
    if args.har == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    target = Path(args.har)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists", hint="--force overwrites it")
    atomic_write_bytes(target, data)
    summary = {"har": str(target), "exchanges": len(exchanges), "bytes": len(data)}
    if args.json:
        output.print_json(summary)
    else:
        output.console().print(
            f"[green]exported[/green] {_plural(len(exchanges), 'exchange')} "
            f"to [bold]{target}[/bold]"
        )
    return 0
