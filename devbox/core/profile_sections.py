"""Validating each table of a profile: ``[service]``, ``[[dependency]]``, ``[replay]``,
``[record]`` and ``[redact]``, each into its frozen object."""

from __future__ import annotations

import difflib
import re
from typing import Any

from devbox.core.profile_model import (
    NETWORKS,
    ON_MISS,
    PROTOCOLS,
    RUNTIMES,
    Build,
    Dependency,
    Faults,
    MatchRules,
    Ready,
    RecordSettings,
    RedactRules,
    ReplaySettings,
    Service,
    Watch,
)
from devbox.core.profile_toml import ENV_RE, Ctx
from devbox.core.redact import DEFAULT_RULES
from devbox.core.scoped_rules import parse_rule
from devbox.wire import registry as kinds

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_TIMING_RE = re.compile(r"^(none|recorded|(\d+(\.\d+)?)x)$")


def service_section(ctx: Ctx, raw: Any) -> Service:
    w = "service"
    t = ctx.table(
        raw,
        w,
        (
            "name",
            "build",
            "image",
            "command",
            "cwd",
            "port",
            "env",
            "ready",
            "watch",
            "runtime",
            "network",
            "workdir",
            "stop_signal",
            "protocol",
            "protos",
        ),
    )
    name = ctx.str_(t, "name", w, "service")
    if not NAME_RE.match(name):
        raise ctx.error("service.name", f"expected lowercase letters, digits, - or _, got {name!r}")
    if "port" not in t:
        raise ctx.error("service.port", "missing: the port your service listens on")
    port = ctx.int_(t, "port", w, None, 1, 65535)
    build = None
    if "build" in t:
        b = t["build"]
        if isinstance(b, str):
            b = {"context": b}
        bt = ctx.table(
            b, "service.build", ("context", "dockerfile", "args", "target", "offline_base")
        )
        build = Build(
            context=ctx.str_(bt, "context", "service.build", "."),
            dockerfile=ctx.str_(bt, "dockerfile", "service.build", "Dockerfile"),
            args=ctx.env(bt, "args", "service.build"),
            target=ctx.str_(bt, "target", "service.build"),
            offline_base=ctx.bool_(bt, "offline_base", "service.build", False),
        )
    command = t.get("command", [])
    if isinstance(command, str):
        raise ctx.error(
            "service.command",
            "expected a list of arguments, not a string",
            hint='write command = ["python3", "app.py"]: devbox never runs a shell',
        )
    command = ctx.strs(t, "command", w)
    image = ctx.str_(t, "image", w)
    if build is None and image is None and not command:
        raise ctx.error("service", "say how to run the service: build, image or command")
    ready_t = ctx.table(
        t.get("ready", {}), "service.ready", ("http", "tcp", "log", "timeout_s", "interval_ms")
    )
    ready = Ready(
        http=ctx.str_(ready_t, "http", "service.ready"),
        tcp=ctx.bool_(ready_t, "tcp", "service.ready", False),
        log=ctx.str_(ready_t, "log", "service.ready"),
        timeout_s=ctx.num(ready_t, "timeout_s", "service.ready", 30.0, 0.1, 3600),
        interval_ms=ctx.int_(ready_t, "interval_ms", "service.ready", 20, 1, 10000),
    )
    if ready.http is not None and not ready.http.startswith("/"):
        raise ctx.error(
            "service.ready.http", f"expected a path starting with /, got {ready.http!r}"
        )
    if ready.log is not None:
        try:
            re.compile(ready.log)
        except re.error as exc:
            raise ctx.error("service.ready.log", f"invalid regular expression: {exc}") from None
    watch_t = ctx.table(
        t.get("watch", {}), "service.watch", ("sync", "rebuild", "ignore", "quiet_ms", "cap_ms")
    )
    watch = Watch(
        sync=ctx.strs(watch_t, "sync", "service.watch"),
        rebuild=ctx.strs(watch_t, "rebuild", "service.watch"),
        ignore=ctx.strs(watch_t, "ignore", "service.watch"),
        quiet_ms=ctx.int_(watch_t, "quiet_ms", "service.watch", 50, 0, 60000),
        cap_ms=ctx.int_(watch_t, "cap_ms", "service.watch", 1000, 1, 600000),
    )
    protocol = ctx.choice(t, "protocol", w, PROTOCOLS, "http")
    protos: str | None = ctx.str_(t, "protos", w)
    if protos is not None and protocol != "grpc":
        raise ctx.error(
            "service.protos", 'protos is for a service that serves gRPC (protocol = "grpc")'
        )
    return Service(
        name=name,
        port=port,
        build=build,
        image=image,
        command=command,
        cwd=ctx.str_(t, "cwd", w, "."),
        env=ctx.env(t, "env", w),
        ready=ready,
        watch=watch,
        runtime=ctx.choice(t, "runtime", w, RUNTIMES, "auto"),
        network=ctx.choice(t, "network", w, NETWORKS, "host"),
        workdir=ctx.str_(t, "workdir", w, "/app"),
        stop_signal=_stop_signal(ctx, t, w),
        protocol=protocol,
        protos=protos,
    )


_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL")


def _stop_signal(ctx: Ctx, t: dict[str, Any], w: str) -> str | None:
    value: str | None = ctx.str_(t, "stop_signal", w)
    if value is None:
        return None
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in _SIGNALS:
        raise ctx.error(f"{w}.stop_signal", f"expected one of {', '.join(_SIGNALS)}, got {value!r}")
    return name


def dependency_section(ctx: Ctx, raw: Any, w: str) -> Dependency:
    t = ctx.table(
        raw,
        w,
        (
            "name",
            "kind",
            "upstream",
            "env",
            "port",
            "on_miss",
            "match",
            "timing",
            "faults",
            "recordings",
            "protos",
            "workers",
        ),
    )
    if "name" not in t:
        raise ctx.error(w, "missing name")
    name = ctx.str_(t, "name", w)
    if not NAME_RE.match(name):
        raise ctx.error(f"{w}.name", f"expected lowercase letters, digits, - or _, got {name!r}")
    kind = ctx.str_(t, "kind", w, "http")
    known = kinds.names()
    if kind not in known:
        raise ctx.error(f"{w}.kind", f"expected one of {', '.join(known)}, got {kind!r}")
    upstream = ctx.str_(t, "upstream", w)
    if upstream is not None and (bad := kinds.upstream_problem(kind, upstream)):
        raise ctx.error(f"{w}.upstream", bad[0], hint=bad[1])
    env = ctx.str_(t, "env", w)
    if env is not None and not ENV_RE.match(env):
        raise ctx.error(f"{w}.env", f"not a valid variable name: {env!r}")
    timing = ctx.str_(t, "timing", w, "none")
    if not _TIMING_RE.match(timing):
        raise ctx.error(
            f"{w}.timing", f'expected none, recorded or a factor such as "2x", got {timing!r}'
        )
    mw = f"{w}.match"
    mt = ctx.table(t.get("match", {}), mw, ("ignore_query", "ignore_body", "headers", "fuzzy"))
    match = MatchRules(
        ignore_query=ctx.strs(mt, "ignore_query", mw),
        ignore_body=_json_paths(ctx, mt, "ignore_body", mw),
        headers=tuple(h.lower() for h in ctx.strs(mt, "headers", mw)),
        fuzzy=ctx.bool_(mt, "fuzzy", mw, False),
    )
    fw = f"{w}.faults"
    ft = ctx.table(
        t.get("faults", {}), fw, ("delay_ms", "error_rate", "error_status", "reset_rate", "seed")
    )
    faults = Faults(
        delay_ms=ctx.int_(ft, "delay_ms", fw, 0, 0, 600000),
        error_rate=ctx.num(ft, "error_rate", fw, 0.0, 0.0, 1.0),
        error_status=ctx.int_(ft, "error_status", fw, 503, 100, 599),
        reset_rate=ctx.num(ft, "reset_rate", fw, 0.0, 0.0, 1.0),
        seed=ctx.int_(ft, "seed", fw, 0, 0, 2**63),
    )
    return Dependency(
        name=name,
        kind=kind,
        upstream=upstream,
        env=env,
        port=ctx.int_(t, "port", w, None, 1, 65535),
        on_miss=ctx.choice(t, "on_miss", w, ON_MISS, "fail"),
        match=match,
        timing=timing,
        faults=faults,
        recordings=ctx.str_(t, "recordings", w),
        protos=_protos(ctx, t, w, kind),
        workers=_workers(ctx, t, w, kind),
    )


def _workers(ctx: Ctx, t: dict[str, Any], w: str, kind: str) -> int:
    workers: int = ctx.int_(t, "workers", w, 1, 1, 16)
    if workers > 1 and not kinds.capabilities(kind).workers:
        able = [k for k in kinds.names() if kinds.capabilities(k).workers]
        raise ctx.error(
            f"{w}.workers",
            f"a {kind} mock serves from one process; workers is for {', '.join(able)}",
        )
    return workers


def _protos(ctx: Ctx, t: dict[str, Any], w: str, kind: str) -> str | None:
    protos: str | None = ctx.str_(t, "protos", w)
    if protos is not None and kind != "grpc":
        raise ctx.error(f"{w}.protos", f"protos is for grpc dependencies, not {kind}")
    return protos


_PATH_RE = re.compile(r"^\$(\.[A-Za-z0-9_\-]+|\[\d+\]|\[\*\]|\.\*)*$")


def _json_paths(ctx: Ctx, t: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    paths = ctx.strs(t, key, where)
    for p in paths:
        if not _PATH_RE.match(p):
            raise ctx.error(
                f"{where}.{key}",
                f"not a JSON path: {p!r}",
                hint='write paths as "$.a.b", "$.items[*].id"',
            )
    return paths


def replay_section(ctx: Ctx, raw: Any) -> ReplaySettings:
    w = "replay"
    t = ctx.table(
        raw,
        w,
        (
            "concurrency",
            "ignore",
            "headers",
            "fail_if",
            "routes",
            "unordered",
            "timeout_s",
            "reset",
        ),
    )
    ignore = ctx.strs(t, "ignore", w)
    for p in ignore:
        try:
            bare = parse_rule(p).rule
        except ValueError as exc:
            raise ctx.error("replay.ignore", str(exc)) from None
        if not (bare.startswith("header:") or _PATH_RE.match(bare)):
            raise ctx.error(
                "replay.ignore",
                f"expected a JSON path ($.a.b) or header:NAME, optionally after a route "
                f'("POST /orders $.id"), got {p!r}',
            )
    if isinstance(t.get("reset"), str):
        raise ctx.error(
            "replay.reset",
            "expected a list of strings (the command's argv), got a string",
            hint='write reset = ["./scripts/reset-db"]: devbox never runs a shell',
        )
    return ReplaySettings(
        concurrency=ctx.int_(t, "concurrency", w, 8, 1, 1024),
        ignore=ignore,
        headers=tuple(h.lower() for h in ctx.strs(t, "headers", w)),
        fail_if=ctx.strs(t, "fail_if", w),
        routes=ctx.strs(t, "routes", w),
        unordered=_json_paths(ctx, t, "unordered", w),
        timeout_s=ctx.num(t, "timeout_s", w, 10.0, 0.1, 3600),
        reset=ctx.strs(t, "reset", w),
    )


_HEADERNAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def record_section(ctx: Ctx, raw: Any) -> RecordSettings:
    w = "record"
    t = ctx.table(raw, w, ("correlation_header", "max_body_kb"))
    header = ctx.str_(t, "correlation_header", w)
    if header is not None and not _HEADERNAME_RE.match(header):
        raise ctx.error("record.correlation_header", f"not a header name: {header!r}")
    return RecordSettings(
        correlation_header=header.lower() if header else None,
        max_body_kb=ctx.int_(t, "max_body_kb", w, 1024, 1, 1024 * 1024),
    )


def redact_section(ctx: Ctx, raw: Any) -> RedactRules:
    w = "redact"
    t = ctx.table(
        raw, w, ("json", "headers", "query", "patterns", "disable", "keep", "document_emails")
    )
    patterns = ctx.strs(t, "patterns", w)
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ctx.error("redact.patterns", f"invalid regular expression {p!r}: {exc}") from None
    fields = ctx.strs(t, "json", w)
    for f in fields:
        if f.startswith("$") and not _PATH_RE.match(f):
            raise ctx.error(
                "redact.json",
                f"not a JSON path: {f!r}",
                hint='write a field name ("ssn") or a path ("$.customer.ssn", "$.items[*].token")',
            )
        if not f.strip():
            raise ctx.error("redact.json", "empty field name")
    disable = ctx.strs(t, "disable", w)
    for rule in disable:
        if rule not in DEFAULT_RULES:
            close = difflib.get_close_matches(rule, DEFAULT_RULES, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "default rules: " + ", ".join(DEFAULT_RULES)
            )
            raise ctx.error("redact.disable", f"unknown redaction rule {rule!r}", hint)
    headers = tuple(h.lower() for h in ctx.strs(t, "headers", w))
    query = ctx.strs(t, "query", w)
    keep = tuple(k.lower() for k in ctx.strs(t, "keep", w))
    redacted = {f.lower() for f in (*fields, *headers, *query)}
    for name in keep:
        if not name.strip() or name.startswith("$"):
            raise ctx.error(
                "redact.keep",
                f"not a field name: {name!r}",
                hint='name the field whose values are written as they are ("password")',
            )
        if name in redacted:
            # which of the two the user meant cannot be guessed: say so rather than pick
            raise ctx.error("redact.keep", f"{name!r} is also a name [redact] redacts")
    return RedactRules(
        json=fields,
        headers=headers,
        query=query,
        patterns=patterns,
        disable=disable,
        keep=keep,
        document_emails=ctx.bool_(t, "document_emails", w, False),
    )
