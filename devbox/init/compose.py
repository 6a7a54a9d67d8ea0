"""What a Compose file tells ``devbox init``: services, how each is built, ports, environment.

Only the parts devbox can use are read; the rest of the Compose specification is
ignored, never rejected. Values keep Compose's meaning: ``${VAR:-default}`` in an
environment value becomes ``default`` (the value Compose would use with VAR unset),
while ``${VAR}`` without a default cannot be known here and is reported as such.

Pure: text in, facts out (YAML is parsed with ``yaml.safe_load``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devbox.errors import ConfigError

# Docker's own lookup order in a project directory
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

_INTERP = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")
_HEALTH_URL = re.compile(
    r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::\d+)?(/[^\s\"']*)"
)


@dataclass(frozen=True, slots=True)
class EnvValue:
    value: str
    raw: str
    # True when the value depends on the shell that runs compose (${VAR} without default)
    unresolved: bool = False


@dataclass(frozen=True, slots=True)
class ComposeService:
    name: str
    image: str | None = None
    build_context: str | None = None  # relative to the compose file's directory
    dockerfile: str | None = None  # relative to build_context
    ports: tuple[int, ...] = ()  # container side, published or only exposed
    published: Mapping[int, int] = field(default_factory=dict)  # container port -> host port
    environment: tuple[tuple[str, EnvValue], ...] = ()
    env_files: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()  # every name other services may use to reach this one
    command: tuple[str, ...] | None = None
    healthcheck_path: str | None = None
    depends_on: tuple[str, ...] = ()
    build_target: str | None = None  # build.target: the stage that runs
    stop_signal: str | None = None

    @property
    def dockerfile_path(self) -> str | None:
        """The Dockerfile relative to the compose file's directory."""
        if self.build_context is None:
            return None
        ctx = self.build_context
        name = self.dockerfile or "Dockerfile"
        return name if ctx == "." else f"{ctx}/{name}"


@dataclass(frozen=True, slots=True)
class ComposeFile:
    path: str
    services: tuple[ComposeService, ...]

    def service(self, name: str) -> ComposeService | None:
        for s in self.services:
            if s.name == name:
                return s
        return None

    def owner_of_host(self, host: str) -> ComposeService | None:
        for s in self.services:
            if host in s.hostnames:
                return s
        return None


def interpolate(raw: str) -> EnvValue:
    unresolved = False

    def repl(m: re.Match[str]) -> str:
        nonlocal unresolved
        if m.group(0) == "$$":
            return "$"
        op, default = m.group(2), m.group(3)
        if op in (":-", "-"):
            return default or ""
        unresolved = True
        return m.group(0)

    value = _INTERP.sub(repl, raw)
    return EnvValue(value=value, raw=raw, unresolved=unresolved)


def _scalar(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | str):
        return str(v)
    return None


def _norm_rel(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts) or "."


def _ports(raw: Any) -> tuple[list[int], dict[int, int]]:
    ports: list[int] = []
    published: dict[int, int] = {}
    if not isinstance(raw, list):
        return ports, published
    for item in raw:
        host: str | None = None
        if isinstance(item, dict):
            target = _scalar(item.get("target"))
            host = _scalar(item.get("published"))
            proto = str(item.get("protocol", "tcp"))
        else:
            text = _scalar(item)
            if text is None:
                continue
            text, _, proto = text.partition("/")
            text = re.sub(r"^\[[^\]]*\]:", "", text)  # [::1]:8081:8080
            parts = text.split(":")
            target = parts[-1]
            if len(parts) >= 2:
                host = parts[-2]
        if (proto and proto != "tcp") or not target:
            continue
        target = target.split("-", 1)[0]
        if not target.isdigit():
            continue
        port = int(target)
        ports.append(port)
        if host:
            host = host.split("-", 1)[0]
            if host.isdigit():
                published[port] = int(host)
    return ports, published


def _environment(raw: Any) -> list[tuple[str, EnvValue]]:
    out: list[tuple[str, EnvValue]] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            text = _scalar(v)
            if text is not None:
                out.append((str(k), interpolate(text)))
    elif isinstance(raw, list):
        for item in raw:
            text = _scalar(item)
            if text is None:
                continue
            k, sep, v = text.partition("=")
            if sep:  # a bare KEY takes the value from the shell: nothing to know here
                out.append((k.strip(), interpolate(v)))
    return out


def _strs(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list):
        return tuple(str(x) for x in raw if _scalar(x) is not None)
    if isinstance(raw, dict):
        return tuple(str(k) for k in raw)
    return ()


def _env_files(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list):
        return tuple(str(x.get("path")) if isinstance(x, dict) else str(x) for x in raw)
    return _strs(raw)


def _command(raw: Any) -> tuple[str, ...] | None:
    from devbox.init.dockerfile import shell_argv

    if isinstance(raw, str):
        return shell_argv(raw)
    if isinstance(raw, list) and raw:
        return tuple(str(x) for x in raw)
    return None


def _service(name: str, raw: Any, file: str) -> ComposeService:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"expected a mapping, got {type(raw).__name__}", file=file, field=f"services.{name}"
        )
    context = dockerfile = target = None
    build = raw.get("build")
    if isinstance(build, str):
        context = build
    elif isinstance(build, dict):
        context = str(build.get("context", "."))
        df = build.get("dockerfile")
        dockerfile = str(df) if df is not None else None
        target = _scalar(build.get("target"))
    if context is not None and re.match(r"^[a-z]+://|^git@", context):
        context = None  # a remote context: nothing in this repository to build
    if context is not None:
        context = _norm_rel(context)
    ports, published = _ports(raw.get("ports"))
    for extra in _ports(raw.get("expose"))[0]:
        if extra not in ports:
            ports.append(extra)
    hostnames = [name]
    for key in ("hostname", "container_name"):
        v = raw.get(key)
        if isinstance(v, str):
            hostnames.append(v)
    networks = raw.get("networks")
    if isinstance(networks, dict):
        for net in networks.values():
            if isinstance(net, dict):
                hostnames.extend(_strs(net.get("aliases")))
    health = raw.get("healthcheck")
    health_path = None
    if isinstance(health, dict):
        test = health.get("test")
        text = " ".join(str(x) for x in test) if isinstance(test, list) else str(test or "")
        m = _HEALTH_URL.search(text)
        health_path = m.group(1) if m else None
    image = raw.get("image")
    return ComposeService(
        name=name,
        image=str(image) if image is not None else None,
        build_context=context,
        dockerfile=dockerfile,
        ports=tuple(ports),
        published=published,
        environment=tuple(_environment(raw.get("environment"))),
        env_files=_env_files(raw.get("env_file")),
        hostnames=tuple(dict.fromkeys(hostnames)),
        command=_command(raw.get("command")),
        healthcheck_path=health_path,
        depends_on=_strs(raw.get("depends_on")),
        build_target=target,
        stop_signal=_scalar(raw.get("stop_signal")),
    )


def parse_compose(text: str, file: str) -> ComposeFile:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ConfigError(
            "no services: mapping at the top level",
            file=file,
            field="services",
            hint="devbox init reads Compose files of the current format (services: ...)",
        )
    services = tuple(_service(str(name), raw, file) for name, raw in data["services"].items())
    return ComposeFile(path=file, services=services)
