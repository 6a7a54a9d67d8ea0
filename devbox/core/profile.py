"""Profiles: ``profiles/NAME.toml`` parsed into typed, validated, frozen objects.

Every validation error names the file, the line and the dotted field
(``dependency[1].on_miss``), because the profile is what users edit most.
TOML parsers do not report positions, so ``_LineIndex`` scans the text once for
table headers and keys; that is enough to point at the offending line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.core.nesting import MAX_DEPTH, too_deep_toml
from devbox.core.redact import DEFAULT_RULES
from devbox.core.scoped_rules import parse_rule
from devbox.errors import ConfigError, NotFoundError
from devbox.wire import registry as kinds

SUPPORTED_KINDS = ("http",)  # served by devbox.mock.server; the others come from devbox.wire
PLANNED_KINDS = ("postgres", "redis", "grpc")
ON_MISS = ("fail", "passthrough", "record")
RUNTIMES = ("auto", "docker", "process")
NETWORKS = ("host", "bridge")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_TIMING_RE = re.compile(r"^(none|recorded|(\d+(\.\d+)?)x)$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Build:
    context: str
    dockerfile: str = "Dockerfile"
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None  # the stage to build (compose's build.target)
    # FROM python:*/node:* missing locally -> devbox/base + Debian's runtime (no registry)
    offline_base: bool = False


@dataclass(frozen=True, slots=True)
class Ready:
    http: str | None = None  # path probed with GET; any status < 500 counts
    tcp: bool = False
    log: str | None = None  # regex searched in the service's output
    timeout_s: float = 30.0
    interval_ms: int = 20

    @property
    def kind(self) -> str:
        if self.http:
            return "http"
        if self.log:
            return "log"
        return "tcp"


@dataclass(frozen=True, slots=True)
class Watch:
    sync: tuple[str, ...] = ()
    rebuild: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    quiet_ms: int = 50
    cap_ms: int = 1000


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    port: int
    build: Build | None = None
    image: str | None = None
    command: tuple[str, ...] = ()
    # working directory of ``command`` for the process runtime, relative to the project root
    cwd: str = "."
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Ready = field(default_factory=Ready)
    watch: Watch = field(default_factory=Watch)
    runtime: str = "auto"
    network: str = "host"
    # where build.context lands inside the container (sync target)
    workdir: str = "/app"
    # what stops it (compose's stop_signal, Dockerfile STOPSIGNAL); SIGTERM when None
    stop_signal: str | None = None


@dataclass(frozen=True, slots=True)
class MatchRules:
    ignore_query: tuple[str, ...] = ()
    ignore_body: tuple[str, ...] = ()  # JSON paths such as "$.request_id"
    headers: tuple[str, ...] = ()  # request headers that take part in matching
    fuzzy: bool = False


@dataclass(frozen=True, slots=True)
class Faults:
    delay_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    reset_rate: float = 0.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str
    kind: str = "http"
    upstream: str | None = None
    env: str | None = None
    port: int | None = None  # None: a free port is chosen when the mock starts
    on_miss: str = "fail"
    match: MatchRules = field(default_factory=MatchRules)
    timing: str = "none"
    faults: Faults = field(default_factory=Faults)
    recordings: str | None = None  # directory, relative to the project root

    @property
    def timing_factor(self) -> float | None:
        """None: answer at once; else multiply recorded latency by this."""
        if self.timing == "none":
            return None
        if self.timing == "recorded":
            return 1.0
        return float(self.timing[:-1])


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    concurrency: int = 8
    # "$.created_at", "header:date", or scoped to a route: "POST /orders $.id"
    ignore: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # response headers compared besides status and body
    fail_if: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()  # "GET /orders*": only these are replayed (all when empty)
    unordered: tuple[str, ...] = ()  # JSON paths of arrays compared as multisets
    timeout_s: float = 10.0
    # a command (argv, no shell) that puts the service back in its recorded state; run by
    # devbox replay before it sends anything and before each --learn-noise pass
    reset: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordSettings:
    """``[record]``: how ``devbox record`` captures traffic."""

    # a request header the service copies from its inbound request onto its outbound calls;
    # links outbound calls to the inbound request under concurrency (see docs/recording.md)
    correlation_header: str | None = None
    max_body_kb: int = 1024  # bodies above this are stored cut and marked truncated


@dataclass(frozen=True, slots=True)
class RedactRules:
    json: tuple[str, ...] = ()  # field names or JSON paths
    headers: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()  # extra regexes redacted anywhere in text
    disable: tuple[str, ...] = ()  # names of default rules turned off
    # e-mail addresses in documents and code (HTML, JavaScript, CSS, Markdown, API specs)
    # are public far more often than personal: redacted only when the profile says so
    document_emails: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    path: Path
    root: Path  # the project root: relative paths in the profile start here
    service: Service
    dependencies: tuple[Dependency, ...] = ()
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    redact: RedactRules = field(default_factory=RedactRules)
    mocks: str | None = None  # recordings root; default mocks/<name>
    record: RecordSettings = field(default_factory=RecordSettings)

    @property
    def mocks_dir(self) -> Path:
        return self.root / (self.mocks or f"mocks/{self.name}")

    def recordings_dir(self, source: str) -> Path:
        for d in self.dependencies:
            if d.name == source and d.recordings:
                return self.root / d.recordings
        return self.mocks_dir / source

    @property
    def inbound_dir(self) -> Path:
        return self.mocks_dir / "inbound"

    def dependency(self, name: str) -> Dependency:
        for d in self.dependencies:
            if d.name == name:
                return d
        raise NotFoundError(
            f"profile {self.name!r} has no dependency {name!r}",
            hint="known: " + ", ".join(d.name for d in self.dependencies),
        )


# ---------------------------------------------------------------- line index


class _LineIndex:
    """Maps dotted field paths (``dependency[1].match.ignore_query``) to line numbers."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+(?:\s*\.\s*[A-Za-z0-9_\-\"']+)*)\s*=")
    _INLINE_KEY = re.compile(r"([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix = ""
        for n, raw in enumerate(text.splitlines(), start=1):
            m = self._HEADER.match(raw)
            if m:
                name = m.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if m.group(1) == "[[":
                    i = counters.get(name, 0)
                    counters[name] = i + 1
                    prefix = f"{name}[{i}]"
                else:
                    # [dependency.match] after [[dependency]] belongs to the last element
                    head, _, rest = name.partition(".")
                    if head in counters and rest:
                        prefix = f"{head}[{counters[head] - 1}].{rest}"
                    else:
                        prefix = name
                self.lines.setdefault(prefix, n)
                continue
            m = self._KEY.match(raw)
            if m:
                key = m.group(1).replace('"', "").replace("'", "").replace(" ", "")
                full = f"{prefix}.{key}" if prefix else key
                self.lines.setdefault(full, n)
                rest = raw[m.end() :]
                if rest.lstrip().startswith("{"):
                    for km in self._INLINE_KEY.finditer(rest):
                        self.lines.setdefault(f"{full}.{km.group(1)}", n)

    def line(self, dotted: str) -> int | None:
        probe = dotted
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe)
            if parent == probe:
                # a top-level name the file does not contain (a missing [service])
                return None
            probe = parent
        return None


# ---------------------------------------------------------------- validation helpers


class _Ctx:
    def __init__(self, file: str, index: _LineIndex) -> None:
        self.file = file
        self.index = index

    def error(self, fieldpath: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=self.file, line=self.index.line(fieldpath), field=fieldpath, hint=hint
        )

    def table(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, f"expected a table, got {_tname(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
                raise self.error(f"{where}.{key}" if where else key, f"unknown key {key!r}", hint)
        return value

    def str_(self, t: dict[str, Any], key: str, where: str, default: str | None = None) -> Any:
        v = t.get(key, default)
        if v is not None and not isinstance(v, str):
            raise self.error(_join(where, key), f"expected a string, got {_tname(v)}")
        return v

    def choice(
        self, t: dict[str, Any], key: str, where: str, choices: tuple[str, ...], default: str
    ) -> str:
        v = self.str_(t, key, where, default)
        if v not in choices:
            raise self.error(_join(where, key), f"expected one of {', '.join(choices)}, got {v!r}")
        return str(v)

    def int_(
        self, t: dict[str, Any], key: str, where: str, default: int | None, lo: int, hi: int
    ) -> Any:
        v = t.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(_join(where, key), f"expected an integer, got {_tname(v)}")
        if not lo <= v <= hi:
            raise self.error(_join(where, key), f"expected {lo}..{hi}, got {v}")
        return v

    def num(
        self, t: dict[str, Any], key: str, where: str, default: float, lo: float, hi: float
    ) -> float:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(_join(where, key), f"expected a number, got {_tname(v)}")
        if not lo <= v <= hi:
            raise self.error(_join(where, key), f"expected {lo:g}..{hi:g}, got {v}")
        return float(v)

    def bool_(self, t: dict[str, Any], key: str, where: str, default: bool) -> bool:
        v = t.get(key, default)
        if not isinstance(v, bool):
            raise self.error(_join(where, key), f"expected true or false, got {_tname(v)}")
        return v

    def strs(self, t: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        v = t.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(_join(where, key), "expected a list of strings")
        return tuple(v)

    def env(self, t: dict[str, Any], key: str, where: str) -> dict[str, str]:
        v = t.get(key, {})
        if not isinstance(v, dict):
            raise self.error(
                _join(where, key), f"expected a table of NAME = value, got {_tname(v)}"
            )
        out = {}
        for k, val in v.items():
            if not _ENV_RE.match(k):
                raise self.error(_join(where, f"{key}.{k}"), f"not a valid variable name: {k!r}")
            if isinstance(val, bool) or not isinstance(val, str | int | float):
                raise self.error(_join(where, f"{key}.{k}"), "expected a string or number")
            out[k] = str(val)
        return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _tname(v: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


# ---------------------------------------------------------------- parsing


def project_root_for(path: Path) -> Path:
    """profiles/NAME.toml lives one level below the project root."""
    parent = path.resolve().parent
    return parent.parent if parent.name == "profiles" else parent


def resolve_profile_path(name_or_path: str, root: Path | None = None) -> Path:
    """``demo`` -> ``profiles/demo.toml``; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path:
        if not p.exists():
            raise NotFoundError(f"{name_or_path}: no such profile file")
        return p
    base = root or Path.cwd()
    candidate = base / "profiles" / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = sorted(q.stem for q in (base / "profiles").glob("*.toml"))
    hint = "known profiles: " + ", ".join(known) if known else "create one with `devbox init`"
    raise NotFoundError(f"no profile named {name_or_path!r} (looked for {candidate})", hint=hint)


def load_profile(name_or_path: str | Path, root: Path | None = None) -> Profile:
    path = resolve_profile_path(str(name_or_path), root)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    return parse_profile(text, path)


def parse_profile(text: str, path: Path) -> Profile:
    fname = str(path)
    deep = too_deep_toml(text)
    if deep is not None:
        # tomllib recurses per level: a RecursionError, not an answer, a few hundred down
        raise ConfigError(f"a value nested more than {MAX_DEPTH} deep", file=fname, line=deep)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError("a value nested too deeply", file=fname) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"line (\d+)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError(f"invalid TOML: {msg}", file=fname, line=line) from None
    except ValueError:
        # Python refuses to convert an integer of more than 4,300 digits
        m = re.search(r"[0-9_]{4300,}", text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        raise ConfigError("a number too long to read", file=fname, line=line) from None
    ctx = _Ctx(fname, _LineIndex(text))
    top = ctx.table(
        data, "", ("name", "service", "dependency", "replay", "redact", "mocks", "record")
    )
    name = ctx.str_(top, "name", "", path.stem)
    if not _NAME_RE.match(name):
        raise ctx.error("name", f"expected lowercase letters, digits, - or _, got {name!r}")
    if "service" not in top:
        raise ctx.error("service", "missing [service] table", hint="see docs/profiles.md")
    service = _service(ctx, top["service"])
    deps_raw = top.get("dependency", [])
    if not isinstance(deps_raw, list):
        raise ctx.error("dependency", "expected [[dependency]] tables")
    deps = tuple(_dependency(ctx, d, f"dependency[{i}]") for i, d in enumerate(deps_raw))
    seen: set[str] = set()
    ports = {service.port: "service"}
    for i, d in enumerate(deps):
        if d.name in seen or d.name == "inbound":
            raise ctx.error(f"dependency[{i}].name", f"duplicate or reserved name {d.name!r}")
        seen.add(d.name)
        if d.port is not None:
            if d.port in ports:
                raise ctx.error(
                    f"dependency[{i}].port", f"port {d.port} is already used by {ports[d.port]}"
                )
            ports[d.port] = d.name
    return Profile(
        name=name,
        path=path,
        root=project_root_for(path),
        service=service,
        dependencies=deps,
        replay=_replay(ctx, top.get("replay", {})),
        redact=_redact(ctx, top.get("redact", {})),
        mocks=ctx.str_(top, "mocks", ""),
        record=_record(ctx, top.get("record", {})),
    )


def _service(ctx: _Ctx, raw: Any) -> Service:
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
        ),
    )
    name = ctx.str_(t, "name", w, "service")
    if not _NAME_RE.match(name):
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
    )


_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL")


def _stop_signal(ctx: _Ctx, t: dict[str, Any], w: str) -> str | None:
    value: str | None = ctx.str_(t, "stop_signal", w)
    if value is None:
        return None
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in _SIGNALS:
        raise ctx.error(f"{w}.stop_signal", f"expected one of {', '.join(_SIGNALS)}, got {value!r}")
    return name


def _dependency(ctx: _Ctx, raw: Any, w: str) -> Dependency:
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
        ),
    )
    if "name" not in t:
        raise ctx.error(w, "missing name")
    name = ctx.str_(t, "name", w)
    if not _NAME_RE.match(name):
        raise ctx.error(f"{w}.name", f"expected lowercase letters, digits, - or _, got {name!r}")
    kind = ctx.str_(t, "kind", w, "http")
    known = ("http", *kinds.names())
    if kind in PLANNED_KINDS and kind not in known:
        raise ctx.error(
            f"{w}.kind",
            f"kind {kind!r} is planned but not supported yet",
            hint="supported: " + ", ".join(known),
        )
    if kind not in known:
        raise ctx.error(f"{w}.kind", f"expected one of {', '.join(known)}, got {kind!r}")
    upstream = ctx.str_(t, "upstream", w)
    if upstream is not None and kind == "http":
        if not re.match(r"^https?://[^/\s]+", upstream):
            raise ctx.error(
                f"{w}.upstream", f"expected an http:// or https:// URL, got {upstream!r}"
            )
    elif upstream is not None and (bad := kinds.upstream_problem(kind, upstream)):
        raise ctx.error(f"{w}.upstream", bad[0], hint=bad[1])
    env = ctx.str_(t, "env", w)
    if env is not None and not _ENV_RE.match(env):
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
    )


_PATH_RE = re.compile(r"^\$(\.[A-Za-z0-9_\-]+|\[\d+\]|\[\*\]|\.\*)*$")


def _json_paths(ctx: _Ctx, t: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    paths = ctx.strs(t, key, where)
    for p in paths:
        if not _PATH_RE.match(p):
            raise ctx.error(
                f"{where}.{key}",
                f"not a JSON path: {p!r}",
                hint='write paths as "$.a.b", "$.items[*].id"',
            )
    return paths


def _replay(ctx: _Ctx, raw: Any) -> ReplaySettings:
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


_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _record(ctx: _Ctx, raw: Any) -> RecordSettings:
    w = "record"
    t = ctx.table(raw, w, ("correlation_header", "max_body_kb"))
    header = ctx.str_(t, "correlation_header", w)
    if header is not None and not _HEADER_NAME_RE.match(header):
        raise ctx.error("record.correlation_header", f"not a header name: {header!r}")
    return RecordSettings(
        correlation_header=header.lower() if header else None,
        max_body_kb=ctx.int_(t, "max_body_kb", w, 1024, 1, 1024 * 1024),
    )


def _redact(ctx: _Ctx, raw: Any) -> RedactRules:
    w = "redact"
    t = ctx.table(raw, w, ("json", "headers", "query", "patterns", "disable", "document_emails"))
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
    return RedactRules(
        json=fields,
        headers=tuple(h.lower() for h in ctx.strs(t, "headers", w)),
        query=ctx.strs(t, "query", w),
        patterns=patterns,
        disable=disable,
        document_emails=ctx.bool_(t, "document_emails", w, False),
    )
