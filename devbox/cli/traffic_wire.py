"""``devbox traffic`` for the recordings of non-HTTP kinds (redis, ...): one row per stored
object (a command and its reply, a pushed message), summaries per source.

The stored objects are kind-specific JSON; this module reads the fields the kinds
share by convention (``command``/``args``/``reply``, ``push``, ``connection``,
``seq``, ``latency_ms``) and shows anything else as it is in ``--id`` and ``--json``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.cli import output
from devbox.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class Row:
    ident: str
    kind: str
    method: str  # the call: "GET", "SELECT", "pkg.Service/Method"; "PUSH" for a pushed message
    target: str  # its arguments, SQL and parameters, or request message: one line
    reply: str  # the reply, result tags or status and answer: one line
    failed: bool
    ms: float
    obj: dict[str, Any]


def _text(value: Any) -> str:
    if isinstance(value, dict) and "base64" in value:
        return f"<{len(str(value['base64'])) * 3 // 4} bytes>"
    return str(value)


def _reply_text(reply: Any, limit: int = 80) -> str:
    if not isinstance(reply, dict):
        return ""
    kind = reply.get("type", "?")
    if "base64" in reply:
        text = f"<{len(str(reply['base64'])) * 3 // 4} bytes>"
    elif isinstance(reply.get("value"), list):
        text = f"[{len(reply['value'])}]"
    else:
        text = str(reply.get("value", ""))
    line = f"{kind} {text}".strip() if kind not in ("bulk", "simple", "integer") else text
    return line if len(line) <= limit else line[: limit - 1] + "…"


def row(kind: str, obj: dict[str, Any]) -> Row:
    ident = f"{obj.get('connection', 0)}.{obj.get('seq', 0)}"
    if "push" in obj:
        push = obj["push"]
        return Row(ident, kind, "PUSH", "", _reply_text(push), False, 0.0, obj)
    if "service" in obj and "method" in obj:
        return _call_row(ident, kind, obj)
    if "sql" in obj or obj.get("type") == "connection":
        return _query_row(ident, kind, obj)
    args = obj.get("args", [])
    target = " ".join(_text(a) for a in args) if isinstance(args, list) else ""
    reply = obj.get("reply")
    if reply is None and isinstance(obj.get("replies"), list):
        reply = obj["replies"][-1] if obj["replies"] else None
    failed = isinstance(reply, dict) and reply.get("type") in ("error", "blob_error")
    note = " (queued)" if obj.get("queued") else ""
    if obj.get("noreply"):
        note += " (replies off)"
    elif obj.get("incomplete"):
        note += " (no reply)"
    ms = obj.get("latency_ms", 0.0)
    return Row(
        ident,
        kind,
        str(obj.get("command", obj.get("type", "?"))),
        target,
        _reply_text(reply) + note,
        bool(failed),
        float(ms) if isinstance(ms, int | float) else 0.0,
        obj,
    )


def _compact(value: Any, limit: int = 80) -> str:
    import orjson

    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_row(ident: str, kind: str, obj: dict[str, Any]) -> Row:
    """An RPC (``kind = "grpc"``): service/method, request messages, status and answer."""
    request = obj.get("request", [])
    response = obj.get("response", [])
    status = obj.get("status_name", "")
    if obj.get("incomplete"):
        status = "(no reply)"
    elif "reset" in obj:
        status = f"RST_STREAM {obj['reset']}"
    answer = obj.get("grpc_message", "") or (
        _compact(response[0] if len(response) == 1 else response) if response else ""
    )
    ms = obj.get("latency_ms", 0.0)
    return Row(
        ident,
        kind,
        f"{obj.get('service', '')}/{obj.get('method', '')}",
        _compact(request[0] if isinstance(request, list) and len(request) == 1 else request),
        f"{status} {answer}".strip(),
        obj.get("status", 0) != 0 or bool(obj.get("incomplete")) or "reset" in obj,
        float(ms) if isinstance(ms, int | float) else 0.0,
        obj,
    )


def _query_row(ident: str, kind: str, obj: dict[str, Any]) -> Row:
    """A SQL query (``kind = "postgres"``): its first word, the SQL and its parameter
    values on one line, each result's tag or error."""
    if obj.get("type") == "connection":
        who = f"{obj.get('user', '?')}@{obj.get('database', '?')}"
        return Row(ident, kind, "CONNECT", who, f"auth {obj.get('auth', '?')}", False, 0.0, obj)
    sql = " ".join(str(obj.get("sql", "")).split())
    params = obj.get("params")
    params = params if isinstance(params, list) else []
    shown = ", ".join(
        f"${i}={_compact(p.get('value') if isinstance(p, dict) else p, 40)}"
        for i, p in enumerate(params, 1)
    )
    answers, failed = [], False
    for res in obj.get("results") or []:
        if not isinstance(res, dict):
            continue
        err = res.get("error")
        if isinstance(err, dict):
            failed = True
            answers.append(f"ERROR {err.get('sqlstate', '')}: {err.get('message', '')}")
        else:
            answers.append(str(res.get("tag", "")))
    if obj.get("incomplete"):
        answers.append("(no reply)")
    ms = obj.get("latency_ms", 0.0)
    return Row(
        ident,
        kind,
        _first_word(sql),
        _compact(sql, 120) + (f" [{shown}]" if shown else ""),
        "; ".join(a for a in answers if a),
        failed,
        float(ms) if isinstance(ms, int | float) else 0.0,
        obj,
    )


def _first_word(sql: str) -> str:
    word = re.match(r"[A-Za-z]*", sql)
    return (word.group(0) if word else "").upper() or "QUERY"


def rows_of(paths: list[Path]) -> list[Row]:
    from devbox.wire import files

    out: list[Row] = []
    for p in paths:
        f = files.read_file(p)
        out.extend(row(f.kind, obj) for _line, obj in f.objects)
    return out


def all_paths(paths: list[Path]) -> list[Path]:
    from devbox.store import recording_files

    found: list[Path] = []
    for p in paths:
        found.extend(recording_files(p, include_partial=True) if p.is_dir() else [p])
    return [f for f in found if f.is_file()]


def wire_paths(paths: list[Path]) -> list[Path]:
    """The files among ``paths`` (files or directories) that hold object streams: those of a
    kind recorded by the generic relay, not exchange files (``Capabilities.http_edges``); a
    kind devbox does not know is shown here too, where its rows say so."""
    from devbox.wire import registry
    from devbox.wire.files import file_kind

    def streams(kind: str) -> bool:
        return kind not in registry.names() or not registry.capabilities(kind).http_edges

    return [f for f in all_paths(paths) if streams(file_kind(f))]


def run_show(paths: list[Path], args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = rows_of(paths)
    if args.ident:
        picked = _pick(rows, args.ident)
        output.print_json(picked.obj)
        return 0
    numbered = list(enumerate(rows, start=1))
    if args.method:
        numbered = [(i, r) for i, r in numbered if r.method == args.method.upper()]
    if args.grep:
        numbered = [(i, r) for i, r in numbered if args.grep in r.target]
    if args.json:
        output.print_json([r.obj for _, r in numbered])
        return 0
    shown = numbered if args.limit <= 0 else numbered[: args.limit]
    kinds = ", ".join(sorted({r.kind for r in rows})) or "no"
    table = Table(title=f"{len(numbered)} of {len(rows)} {kinds} calls", title_justify="left")
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("id", no_wrap=True)
    # words every kind's rows fit: a Redis command, a SQL query, a gRPC method
    table.add_column("call", no_wrap=True)
    table.add_column("request", overflow="fold", ratio=2)
    table.add_column("answer", overflow="fold", ratio=2)
    table.add_column("ms", justify="right", no_wrap=True)
    for i, r in shown:
        reply = f"[red]{r.reply}[/red]" if r.failed else r.reply
        table.add_row(str(i), r.ident, r.method, r.target, reply, f"{r.ms:.2f}")
    output.console().print(table)
    if len(shown) < len(numbered):
        output.info(f"… {len(numbered) - len(shown)} more; --limit 0 shows all")
    return 0


def _pick(rows: list[Row], ident: str) -> Row:
    if ident.startswith("#") and ident[1:].isdigit():
        n = int(ident[1:])
        if not 1 <= n <= len(rows):
            raise NotFoundError(f"no call #{n}: there are {len(rows)}")
        return rows[n - 1]
    for r in rows:
        if r.ident == ident:
            return r
    raise NotFoundError(
        f"no call with id {ident!r}", hint="ids are CONNECTION.SEQ: devbox traffic show PATH"
    )
