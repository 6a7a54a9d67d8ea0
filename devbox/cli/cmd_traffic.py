"""``devbox traffic ls`` and ``devbox traffic show``: what is recorded, and what one call was."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output, traffic_wire
from devbox.cli.traffic_targets import (
    _display,
    _FileInfo,
    _resolve_sources,
    _Source,
    as_path,
)
from devbox.errors import NotFoundError, RecordingError, UsageError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from devbox.core.model import Exchange, Headers

LS_EPILOG = """\
examples:
  devbox traffic ls                    every recording under ./mocks
  devbox traffic ls demo               the sources of profile demo (dependencies + inbound)
  devbox traffic ls mocks/demo/payments --files
  devbox traffic ls demo --json
"""

SHOW_EPILOG = """\
examples:
  devbox traffic show mocks/demo/payments            one line per exchange
  devbox traffic show demo/payments --method POST    PROFILE/SOURCE works too
  devbox traffic show mocks/demo/payments --id ch-0007   headers and bodies of one exchange
  devbox traffic show mocks/demo/payments --id '#3'      the third exchange
  devbox traffic show mocks/demo/inbound --json | jq '.[].request.url'
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "traffic",
        help="list and inspect recorded traffic",
        description="List recorded traffic (ls) and look at recorded exchanges (show).",
    )
    tsub = p.add_subparsers(dest="traffic_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _args: _help(p))

    ls = tsub.add_parser(
        "ls",
        help="recording sources with counts, methods, routes, sizes and torn tails",
        description=(
            "Summarise recordings: per source (a dependency, or inbound) the files, exchanges, "
            "methods, most frequent routes, failed calls, sizes, and files whose last exchange "
            "was cut by a killed recorder (torn tail, dropped on load)."
        ),
        epilog=LS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument(
        "target",
        nargs="?",
        help="a profile name (before a directory of that name: write ./DIR for the "
        "directory), PROFILE/SOURCE, or a recordings directory or file (default: ./mocks)",
    )
    ls.add_argument("--files", action="store_true", help="one row per file, not per source")
    ls.add_argument("--json", action="store_true", help="print the summary as JSON")
    ls.set_defaults(func=run_ls)

    show = tsub.add_parser(
        "show",
        help="recorded exchanges of a file or directory, or one exchange in full",
        description=(
            "Without --id: one line per exchange. With --id: the request and response of one "
            "exchange, headers and bodies (JSON pretty-printed)."
        ),
        epilog=SHOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument(
        "path",
        help="PROFILE/SOURCE (before a directory of that name: write ./DIR for the "
        "directory), or a recording file or directory",
    )
    show.add_argument(
        "--id", dest="ident", metavar="ID", help="an exchange id, a unique prefix of one, or #N"
    )
    show.add_argument("--method", help="only exchanges with this method")
    show.add_argument("--grep", metavar="TEXT", help="only exchanges whose target contains TEXT")
    show.add_argument("--status", type=int, help="only exchanges answered with this status")
    show.add_argument(
        "--limit", type=int, default=200, help="rows in the table (0: all; default 200)"
    )
    show.add_argument("--full", action="store_true", help="do not shorten long bodies")
    show.add_argument("--json", action="store_true", help="print the exchange(s) as JSON")
    show.set_defaults(func=run_show)


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


# ---------------------------------------------------------------- finding recordings


def _load_source(src: _Source) -> None:
    from devbox.store import PARTIAL_SUFFIX, load_file, recording_files

    if not src.files:
        src.files = [_FileInfo(p) for p in recording_files(src.directory, include_partial=True)]
    for info in src.files:
        info.partial = info.path.name.endswith(PARTIAL_SUFFIX)
        try:
            info.size = info.path.stat().st_size
            if traffic_wire.wire_paths([info.path]):
                info.wire = traffic_wire.rows_of([info.path])
                continue
            loaded = load_file(info.path)
        except RecordingError as exc:
            info.error = exc
            continue
        info.exchanges = list(loaded.decoded.exchanges)
        info.torn_tail = loaded.decoded.torn_tail
        info.origin = loaded.decoded.header.origin
        info.created_at = loaded.decoded.header.created_at


# ---------------------------------------------------------------- routes

_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{12,}|<redacted:[^>]+>|.*\d.*)$"
)
_VERSION_SEGMENT = re.compile(r"^v\d+(\.\d+)*$")


def route_of(method: str, path: str) -> str:
    """``GET /items/KB-101`` -> ``GET /items/{id}``: ids, numbers and hashes collapse."""
    parts = []
    for seg in path.split("/"):
        if (
            seg
            and _ID_SEGMENT.match(seg)
            and not _VERSION_SEGMENT.match(seg)
            and (len(seg) >= 3 or seg.isdigit())
        ):
            parts.append("{id}")
        else:
            parts.append(seg)
    return f"{method} {'/'.join(parts) or '/'}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _body_bytes(ex: Exchange) -> int:
    return len(ex.request.body) + (len(ex.response.body) if ex.response else 0)


def _summary(name: str, directory: Path, files: list[_FileInfo]) -> dict[str, Any]:
    exchanges = [e for f in files for e in f.exchanges]
    wire = [r for f in files for r in f.wire]
    methods = Counter(e.request.method for e in exchanges) + Counter(r.method for r in wire)
    routes = Counter(route_of(e.request.method, e.request.path) for e in exchanges)
    routes.update(f"{r.method} {r.target.split(' ')[0]}".strip() for r in wire)
    statuses = Counter(str(e.response.status) if e.response else "error" for e in exchanges)
    starts = [e.timing.started_at for e in exchanges if e.timing.started_at]
    return {
        "source": name,
        "directory": _display(directory),
        "files": [
            {
                "path": _display(f.path),
                "exchanges": len(f.exchanges) + len(f.wire),
                "bytes": f.size,
                "torn_tail": f.torn_tail,
                "partial": f.partial,
                "origin": f.origin,
                "created_at": f.created_at,
                "error": f.error.one_line() if f.error else None,
            }
            for f in files
        ],
        "exchanges": len(exchanges) + len(wire),
        "methods": dict(methods.most_common()),
        "routes": dict(routes.most_common()),
        "statuses": dict(sorted(statuses.items())),
        # errors: no answer at all; failures: that, or an answer of 400 and above (a
        # recorded 402 is a failure worth seeing, even though it replays faithfully)
        "errors": sum(1 for e in exchanges if not e.ok) + sum(r.failed for r in wire),
        "failures": sum(1 for e in exchanges if _failed(e)) + sum(r.failed for r in wire),
        "truncated": sum(1 for e in exchanges if e.request_truncated or e.response_truncated),
        "body_bytes": sum(_body_bytes(e) for e in exchanges),
        "disk_bytes": sum(f.size for f in files),
        "torn_tails": sum(1 for f in files if f.torn_tail),
        "first": min(starts) if starts else None,
        "last": max(starts) if starts else None,
    }


def _failed(e: Exchange) -> bool:
    return not e.ok or (e.response is not None and e.response.status >= 400)


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


def run_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    sources = _resolve_sources(args.target)
    for s in sources:
        _load_source(s)
    rows: list[dict[str, Any]] = []
    for s in sources:
        if args.files:
            rows.extend(
                _summary(s.name, s.directory, [f]) | {"file": _display(f.path)} for f in s.files
            )
        else:
            rows.append(_summary(s.name, s.directory, s.files))
    problems = [f.error for s in sources for f in s.files if f.error is not None]
    if args.json:
        output.print_json(rows)
    elif not rows:
        output.console().print("no recordings found")
    else:
        table = Table(title="Recorded traffic", title_justify="left")
        table.add_column("file" if args.files else "source", overflow="fold", ratio=1)
        table.add_column("calls", justify="right", no_wrap=True)
        table.add_column("methods", no_wrap=True)
        table.add_column("top routes", overflow="fold", ratio=2)
        table.add_column("fail", justify="right", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("torn", justify="right", no_wrap=True)
        for r in rows:
            label = f"[bold]{r['file'] if args.files else r['source']}[/bold]"
            n_files = len(r["files"])
            detail = [f"{n_files} file{'s' if n_files != 1 else ''}"] if not args.files else []
            if r["first"]:
                detail.append(_when(r["first"]))
            if any(f["partial"] for f in r["files"]):
                detail.append("[yellow]in progress[/yellow]")
            top = list(r["routes"].items())[:3]
            routes = "\n".join(f"{k} [dim]{v}[/dim]" for k, v in top)
            more = len(r["routes"]) - len(top)
            if more > 0:
                routes += f"\n[dim]+{more} more[/dim]"
            broken = any(f["error"] for f in r["files"])
            table.add_row(
                label + "\n[dim]" + " · ".join(detail) + "[/dim]",
                f"[red]{r['exchanges']}+?[/red]" if broken else str(r["exchanges"]),
                "\n".join(f"{m} {n}" for m, n in r["methods"].items()),
                routes or ("[dim]no recordings yet[/dim]" if not r["files"] else ""),
                f"[red]{r['failures']}[/red]" if r["failures"] else "0",
                _size(r["disk_bytes"]) if r["files"] else "",
                f"[yellow]{r['torn_tails']}[/yellow]" if r["torn_tails"] else "0",
            )
        output.console().print(table)
        torn = [f["path"] for r in rows for f in r["files"] if f["torn_tail"]]
        for t in torn:
            output.info(
                f"[yellow]torn tail:[/yellow] {t}: the last exchange was cut by a killed "
                "recorder and is ignored"
            )
    if problems:
        for p in problems[1:]:
            output.render_error(p)
        raise problems[0]
    return 0


# ---------------------------------------------------------------- show


def _load_for_show(target: str, path: Path | None) -> list[Exchange]:
    from devbox.store import load_path

    if path is not None and path.exists():
        return load_path(path)
    sources = _resolve_sources(target, note=False)
    out: list[Exchange] = []
    for s in sources:
        if s.directory.exists() and not traffic_wire.wire_paths([s.directory]):
            out.extend(load_path(s.directory))
    return out


def _pick(exchanges: list[Exchange], ident: str) -> Exchange:
    if ident.startswith("#") and ident[1:].isdigit():
        n = int(ident[1:])
        if not 1 <= n <= len(exchanges):
            raise NotFoundError(f"no exchange #{n}: there are {len(exchanges)}")
        return exchanges[n - 1]
    exact = [e for e in exchanges if e.id == ident]
    if exact:
        return exact[0]
    prefixed = [e for e in exchanges if e.id.startswith(ident)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise UsageError(
            f"{ident!r} matches {len(prefixed)} exchanges",
            hint="give more of the id: " + ", ".join(e.id for e in prefixed[:5]),
        )
    raise NotFoundError(
        f"no exchange with id {ident!r}", hint="list them: devbox traffic show PATH"
    )


def run_show(args: argparse.Namespace) -> int:
    from devbox.core.recording import exchange_to_dict

    target = as_path(args.path, note=True)
    if target is not None and target.exists():
        dirs = [target]
    else:
        dirs = [s.directory for s in _resolve_sources(args.path, note=False)]
    wire = traffic_wire.wire_paths(dirs)
    if wire and len(wire) == len(traffic_wire.all_paths(dirs)):
        return traffic_wire.run_show(wire, args)
    if wire:
        output.info(
            f"not shown here: {len(wire)} recording(s) of other kinds; "
            "show them per source: devbox traffic show PROFILE/SOURCE"
        )
    exchanges = _load_for_show(args.path, target)
    if args.ident:
        ex = _pick(exchanges, args.ident)
        if args.json:
            output.print_json(exchange_to_dict(ex))
        else:
            _print_exchange(ex, full=args.full)
        return 0
    numbered = list(enumerate(exchanges, start=1))
    if args.method:
        numbered = [(i, e) for i, e in numbered if e.request.method == args.method.upper()]
    if args.grep:
        numbered = [(i, e) for i, e in numbered if args.grep in e.request.target]
    if args.status is not None:
        numbered = [(i, e) for i, e in numbered if e.response and e.response.status == args.status]
    if args.json:
        output.print_json([exchange_to_dict(e) for _, e in numbered])
        return 0
    _print_table(numbered, args.limit, len(exchanges))
    return 0


def _print_table(numbered: list[tuple[int, Exchange]], limit: int, total: int) -> None:
    from rich.table import Table

    sources = {e.source for _, e in numbered}
    shown = numbered if limit <= 0 else numbered[:limit]
    id_prefix = _common_prefix([e.id for _, e in shown])
    parent_prefix = _common_prefix([e.parent for _, e in shown if e.parent])
    title = f"{len(shown)} of {len(numbered)} exchanges"
    if len(numbered) != total:
        title += f" matching ({total} in all)"
    if id_prefix:
        title += f"  [dim](ids: {id_prefix}…)[/dim]"
    table = Table(title_justify="left", title=title)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("id", overflow="fold")
    if len(sources) > 1:
        table.add_column("source", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("target", overflow="fold", ratio=2)
    table.add_column("status", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold", ratio=1)
    for i, e in shown:
        status = _status_text(e.response.status) if e.response else "[red]—[/red]"
        notes = []
        if e.error:
            notes.append(f"[red]{e.error}[/red]")
        if e.request_truncated or e.response_truncated:
            notes.append("[yellow]body cut[/yellow]")
        if e.parent:
            short = "…" + e.parent[len(parent_prefix) :] if parent_prefix else e.parent
            notes.append(f"[dim]parent {short}[/dim]")
        cells = [str(i), "…" + e.id[len(id_prefix) :] if id_prefix else e.id]
        if len(sources) > 1:
            cells.append(e.source)
        resp_len = len(e.response.body) if e.response else 0
        cells += [
            e.request.method,
            e.request.target,
            status,
            f"{e.timing.duration_ms:.1f}",
            f"{_size(len(e.request.body))}→{_size(resp_len)}".replace(" ", ""),
            " ".join(notes),
        ]
        table.add_row(*cells)
    output.console().print(table)
    if len(shown) < len(numbered):
        output.info(f"… {len(numbered) - len(shown)} more; --limit 0 shows all")


def _common_prefix(ids: list[str]) -> str:
    """The shared start of many ids, cut after a separator: "payments-20261126T0730-"."""
    if len(ids) < 2:
        return ""
    lo, hi = min(ids), max(ids)
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    prefix = lo[:n]
    cut = max(prefix.rfind("-"), prefix.rfind("_"), prefix.rfind("."))
    return prefix[: cut + 1] if cut >= 7 else ""


def _status_text(status: int) -> str:
    color = (
        "green" if status < 300 else "cyan" if status < 400 else "yellow" if status < 500 else "red"
    )
    return f"[{color}]{status}[/{color}]"


def _print_exchange(ex: Exchange, *, full: bool) -> None:
    from datetime import datetime

    from rich.panel import Panel
    from rich.table import Table

    con = output.console()
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim")
    meta.add_column()
    meta.add_row("id", ex.id)
    meta.add_row("source", f"{ex.source} ({ex.direction.value})")
    if ex.parent:
        meta.add_row("parent", ex.parent)
    if ex.timing.started_at:
        started = datetime.fromtimestamp(ex.timing.started_at).isoformat(timespec="milliseconds")
        meta.add_row("started", started)
    wait = f", first byte {ex.timing.wait_ms:.1f} ms" if ex.timing.wait_ms is not None else ""
    meta.add_row("took", f"{ex.timing.duration_ms:.1f} ms{wait}")
    if ex.origin:
        meta.add_row("origin", ex.origin)
    if ex.error:
        meta.add_row("error", f"[red]{ex.error}[/red]")
    req = ex.request
    con.print(Panel(meta, title=f"[bold]{req.method} {req.url}[/bold]", title_align="left"))
    con.print(f"[bold]request[/bold] {req.method} {req.target} {req.http_version}")
    con.print(_headers_table(req.headers))
    con.print(_body(req.body, req.headers, full=full, cut=ex.request_truncated))
    if ex.response is None:
        con.print("[red]no response[/red]" + (f": {ex.error}" if ex.error else ""))
        return
    resp = ex.response
    con.print(
        f"[bold]response[/bold] {resp.http_version} {_status_text(resp.status)} {resp.reason}"
    )
    con.print(_headers_table(resp.headers))
    con.print(_body(resp.body, resp.headers, full=full, cut=ex.response_truncated))


def _headers_table(headers: Headers) -> RenderableType:
    from rich.table import Table

    t = Table.grid(padding=(0, 1))
    t.add_column(style="cyan", no_wrap=True)
    t.add_column(overflow="fold")
    for k, v in headers:
        t.add_row(f"{k}:", v)
    return t


_MAX_LINES = 60


def _body(body: bytes, headers: Headers, *, full: bool, cut: bool) -> RenderableType:
    import json

    from rich.syntax import Syntax
    from rich.text import Text

    from devbox.core.model import header_get

    if not body:
        return Text("(no body)" + (" — not recorded" if cut else ""), style="dim")
    note = f"{_size(len(body))}" + (", cut by the recorder" if cut else "")
    ctype = (header_get(headers, "content-type") or "").lower()
    text: str | None
    lexer = "text"
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if "html" in ctype or "xml" in ctype:
            lexer = "html" if "html" in ctype else "xml"
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False)
        lexer = "json"
    if text is None:
        head = body[:256]
        hexdump = "\n".join(
            f"{i:08x}  {head[i : i + 16].hex(' ')}" for i in range(0, len(head), 16)
        )
        more = "\n…" if len(body) > len(head) else ""
        return Text(f"binary body, {note}\n{hexdump}{more}", style="dim")
    lines = text.splitlines()
    if not full and len(lines) > _MAX_LINES:
        text = "\n".join(lines[:_MAX_LINES])
        note += f"; {len(lines) - _MAX_LINES} more lines (--full)"
    from rich.console import Group

    return Group(
        Syntax(text, lexer, word_wrap=True, background_color="default"),
        Text(note, style="dim"),
    )
