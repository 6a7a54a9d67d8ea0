"""The profile's typed, frozen objects (``Profile``, ``Service``, ``Dependency``...).

``devbox.core.profile`` parses TOML into them and re-exports them: import from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devbox.errors import NotFoundError

ON_MISS = ("fail", "passthrough", "record")
RUNTIMES = ("auto", "docker", "process")
NETWORKS = ("host", "bridge")
# what the service itself serves: recorded by the HTTP proxy, or by the gRPC relay
PROTOCOLS = ("http", "grpc")


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
    # "grpc": inbound calls are recorded by the gRPC relay and replayed over h2c
    protocol: str = "http"
    # with protocol "grpc": the service's descriptors, messages stored with field names
    protos: str | None = None


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
    # grpc: a folder of .proto files or a descriptor set, relative to the project root
    protos: str | None = None
    # processes serving the mock's connections (a kind whose capabilities allow it):
    # 1 serves them on the fleet's own loop
    workers: int = 1

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
    # field names whose values are written as they are, whatever a rule says (a test
    # user's password hash: Django's login checks it, and its session signs it)
    keep: tuple[str, ...] = ()
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
