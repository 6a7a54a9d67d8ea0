"""Which of the service's compose variables name other services, and what devbox does
with each: mock it (``http``), map it to a kind (``redis``, ``postgres``), or comment it
out rewritten to the address compose publishes on this machine.

* A variable whose value is an http(s) URL on another compose service
  (``ANALYTICS_URL=http://analytics:5001/visit``) becomes a ``[[dependency]]`` with
  ``env`` = the variable and ``upstream`` = the URL, path included (the service is
  given it with host and port swapped: ``devbox.core.wiring``).
* A compose service named, imaged or built from redis or postgres becomes a dependency
  of that kind, with an upstream of the right scheme (``redis://``, ``postgresql://``)
  on its published port. While the profile parser does not accept the kind yet, it is
  written commented out and the CLI says so.
* A bare value naming a redis or postgres compose service (``REDIS_HOST=redis``,
  ``DATABASE_HOST=db:5432``) is wired like compose wires it: the dependency's mock gets
  a fixed port (``FIXED_PORT_OFFSET`` above the kind's default: 26379, 25432), the
  variable is set to ``127.0.0.1`` (``127.0.0.1:PORT``), and a matching port variable
  (``REDIS_PORT=6379``, the same stem) to that port.
* Any other value that names another compose service (``amqp://rabbit``, a mysql
  ``DB_HOST``) is commented out in ``[service.env]``, rewritten to ``127.0.0.1`` and the
  published port, so the service can keep using a copy run with ``docker compose up NAME``.

Pure: no file system access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

from devbox.init.compose import ComposeFile, ComposeService

URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# images or service names (last path component, no tag) -> the kind devbox maps them to
KIND_IMAGES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "postgis": "postgres",
    "timescaledb": "postgres",
    "redis": "redis",
    "valkey": "redis",
    "keydb": "redis",
    "redis-stack": "redis",
    "redis-stack-server": "redis",
}
KIND_SCHEMES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "grpc": "grpc",
}
# the scheme a kind's upstream is written with, and its default port
KIND_URL = {"postgres": ("postgresql", 5432), "redis": ("redis", 6379)}
# a kind dependency found through host/port variables gets a fixed mock port this far
# above the kind's default port (redis 26379, postgres 25432)
FIXED_PORT_OFFSET = 20000
HOST_SUFFIX_RE = re.compile(r"_(HOST|HOSTNAME|ADDR|ADDRESS|SERVER)$")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"})
DEFAULT_PORTS = {
    "postgres": 5432,
    "postgresql": 5432,
    "redis": 6379,
    "rediss": 6379,
    "mysql": 3306,
    "mongodb": 27017,
    "amqp": 5672,
    "http": 80,
    "https": 443,
}


@dataclass(frozen=True, slots=True)
class ProposedDependency:
    name: str
    env: str
    upstream: str
    origin: str  # "compose service payments" | "outside the compose file"
    # the same service as seen from the host, when Compose publishes its port
    host_upstream: str | None = None
    also_env: tuple[str, ...] = ()
    enabled: bool = True
    kind: str = "http"
    # a kind the profile parser does not accept yet: written commented out
    planned: bool = False
    note: str = ""
    # a fixed mock port, when the service finds the dependency through host and port
    # variables (REDIS_HOST=redis, REDIS_PORT=6379) that [service.env] then sets to it
    port: int | None = None
    host_vars: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    name: str
    kind: str  # "grpc" or "" (no kind planned): services devbox does not replace
    what: str  # "image mysql:8"
    env: tuple[str, ...] = ()


@dataclass(slots=True)
class Found:
    deps: list[ProposedDependency]
    planned: list[Planned]
    env: list[tuple[str, str]]  # kept for the service
    unmocked: list[tuple[str, str, str]]  # (variable, rewritten value, why): commented out
    remarks: list[str]


def image_kind(image: str | None) -> str:
    if not image:
        return ""
    repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return KIND_IMAGES.get(repo.lower(), "")


def service_kind(svc: ComposeService, bases: Mapping[str, str]) -> str:
    """redis/postgres by image, by the image its Dockerfile builds FROM, or by name."""
    return image_kind(svc.image) or image_kind(bases.get(svc.name)) or image_kind(svc.name)


def what(svc: ComposeService) -> str:
    if svc.image:
        return f"image {svc.image}"
    if svc.build_context:
        return f"built from {svc.build_context}"
    return "compose service"


def on_host(url: str, target: ComposeService) -> str:
    """The URL of a compose service as reached from the host through its published port."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    host_port = target.published.get(port) if port else None
    user = parts.netloc.rpartition("@")[0]
    netloc = (user + "@" if user else "") + "127.0.0.1" + (f":{host_port or port}" if port else "")
    return parts._replace(netloc=netloc).geturl()


def _host_url(url: str, target: ComposeService) -> str | None:
    """The compose URL as reached from this machine (path kept), when compose publishes
    the port: what ``devbox record`` can forward to."""
    parts = urlsplit(url)
    container_port = parts.port or (443 if parts.scheme == "https" else 80)
    host_port = target.published.get(container_port)
    if not host_port:
        return None
    path = "" if parts.path in ("", "/") else parts.path
    return parts._replace(netloc=f"127.0.0.1:{host_port}", path=path).geturl()


def _unique(name: str, used: set[str]) -> str:
    candidate, i = name, 2
    while candidate in used:
        candidate = f"{name}-{i}"
        i += 1
    used.add(candidate)
    return candidate


def env_stem(key: str) -> str:
    return re.sub(
        r"(_(BASE|API|SERVICE|SVC|ENDPOINT|HOST|ADDR|ADDRESS))*_(URL|URI|ENDPOINT|HOST|"
        r"ADDR|ADDRESS)$",
        "",
        key,
    )


def _kind_upstream(kind: str, target: ComposeService, url: str | None) -> str:
    """The kind's upstream as reached from this machine: the compose URL's user, path
    and query kept; else built from the target's own environment (user and database)."""
    scheme, default_port = KIND_URL[kind]
    port = target.published.get(default_port) or (target.ports[0] if target.ports else default_port)
    if url is not None:
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = (user + "@" if user else "") + f"127.0.0.1:{port}"
        return parts._replace(scheme=scheme, netloc=netloc).geturl()
    env = {k: v.value for k, v in target.environment if not v.unresolved}
    if kind == "postgres":
        user = env.get("POSTGRES_USER", "postgres")
        db = env.get("POSTGRES_DB", user)
        return f"{scheme}://{quote(user)}@127.0.0.1:{port}/{quote(db)}"
    return f"{scheme}://127.0.0.1:{port}"


def _names_service(value: str, compose: ComposeFile, own: str) -> ComposeService | None:
    """``redis``, ``db:5432``: a bare value naming another compose service."""
    host = value.rsplit(":", 1)[0] if re.fullmatch(r"[A-Za-z0-9_.-]+:\d+", value) else value
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        return None
    target = compose.owner_of_host(host)
    return target if target is not None and target.name != own else None


def _rewrite_bare(value: str, target: ComposeService) -> str:
    if ":" in value:
        port = int(value.rsplit(":", 1)[1])
        return f"127.0.0.1:{target.published.get(port, port)}"
    return "127.0.0.1"


def find(
    svc: ComposeService | None,
    compose: ComposeFile | None,
    own_port: int,
    supported: tuple[str, ...],
    bases: Mapping[str, str] | None = None,
) -> Found:
    """``supported``: the kinds the profile parser accepts now; ``bases``: compose service
    -> the image its Dockerfile builds FROM (for services built from redis/postgres)."""
    bases = bases or {}
    found = Found([], [], [], [], [])
    if svc is None or compose is None:
        return found
    deps: dict[str, ProposedDependency] = {}
    planned: dict[str, Planned] = {}
    used = {"inbound"}

    def kind_dep(target: ComposeService, kind: str, key: str | None, url: str | None) -> None:
        if target.name in deps:
            if key is not None:
                d = deps[target.name]
                deps[target.name] = replace(d, also_env=(*d.also_env, key))
            return
        ready = kind in supported
        env_note = (
            ""
            if key is not None
            else ("no variable of the service holds its URL: set env to the one it reads")
        )
        deps[target.name] = ProposedDependency(
            name=_unique(slug(target.name), used),
            env=key or "",
            upstream=_kind_upstream(kind, target, url),
            origin=f"compose service {target.name}, {what(target)}",
            kind=kind,
            planned=not ready,
            enabled=ready,
            note=env_note,
        )

    for key, val in svc.environment:
        if val.unresolved:
            found.remarks.append(
                f"{key} = {val.raw!r} comes from the shell that runs compose: "
                "add it to [service.env] if the service needs it"
            )
            continue
        if key == "PORT":
            continue  # devbox sets PORT to service.port
        m = URL_RE.match(val.value)
        if not m:
            target = _names_service(val.value, compose, svc.name)
            if target is None:
                found.env.append((key, val.value))
                continue
            kind = service_kind(target, bases)
            if kind in KIND_URL and kind in supported:
                kind_dep(target, kind, None, None)
                d = deps[target.name]
                fixed = d.port or _fixed_port(kind, deps)
                deps[target.name] = replace(
                    d, port=fixed, host_vars=(*d.host_vars, key), note=_wired_note(key)
                )
                live = f"127.0.0.1:{fixed}" if ":" in val.value else "127.0.0.1"
                found.env.append((key, live))
                continue
            rewritten = _rewrite_bare(val.value, target)
            found.unmocked.append((key, rewritten, _not_run(target, key, kind=kind)))
            if kind in KIND_URL:
                kind_dep(target, kind, None, None)
            continue
        scheme = m.group(1).lower()
        parts = urlsplit(val.value)
        host = parts.hostname or ""
        target = compose.owner_of_host(host)
        if target is not None and target.name != svc.name:
            kind = KIND_SCHEMES.get(scheme) or service_kind(target, bases)
            if scheme in ("http", "https") and not service_kind(target, bases):
                if target.name in deps:
                    d = deps[target.name]
                    deps[target.name] = replace(d, also_env=(*d.also_env, key))
                    continue
                deps[target.name] = ProposedDependency(
                    name=_unique(slug(target.name, "dependency"), used),
                    env=key,
                    upstream=val.value.rstrip("/") if parts.path in ("", "/") else val.value,
                    origin=f"compose service {target.name}",
                    host_upstream=_host_url(val.value, target),
                )
            elif kind in KIND_URL:
                kind_dep(target, kind, key, val.value)
                if kind not in supported:
                    found.unmocked.append(
                        (key, on_host(val.value, target), _not_run(target, key, kind=kind))
                    )
            else:
                p = planned.get(target.name)
                planned[target.name] = Planned(
                    name=target.name, kind=kind, what=what(target), env=(*(p.env if p else ()), key)
                )
                found.unmocked.append(
                    (key, on_host(val.value, target), _not_run(target, key, kind=kind))
                )
            continue
        if scheme in ("http", "https") and host and host not in LOCAL_HOSTS:
            name = _unique(slug(env_stem(key) or host.split(".")[0], "dependency"), used)
            deps[f"url:{key}"] = ProposedDependency(
                name=name,
                env=key,
                upstream=val.value,
                origin="outside the compose file",
                enabled=False,
            )
            continue
        if scheme in KIND_SCHEMES and host and host not in LOCAL_HOSTS:
            found.remarks.append(
                f"{key} points at {host}, outside the compose file "
                f"({KIND_SCHEMES[scheme]}): not mocked"
            )
            continue
        if host in LOCAL_HOSTS and parts.port not in (None, own_port):
            found.remarks.append(f"{key} = {val.value!r} points at this machine: kept as it is")
        found.env.append((key, val.value))
    for other in compose.services:
        if other.name == svc.name or other.name in deps or other.name in planned:
            continue
        kind = service_kind(other, bases)
        if kind in KIND_URL:
            kind_dep(other, kind, None, None)
        elif other.name in svc.depends_on:
            found.remarks.append(
                f"{svc.name} depends on {other.name} ({what(other)}), but no "
                "variable in its environment names it"
            )
    found.env = _wire_port_vars(found.env, deps.values())
    found.deps = list(deps.values())
    found.planned = list(planned.values())
    return found


def _fixed_port(kind: str, deps: Mapping[str, ProposedDependency]) -> int:
    taken = {d.port for d in deps.values() if d.port}
    port = KIND_URL[kind][1] + FIXED_PORT_OFFSET
    while port in taken:
        port += 1
    return port


def _wired_note(key: str) -> str:
    stem = HOST_SUFFIX_RE.sub("", key)
    port = f"{stem}_PORT" if stem != key else "its port variable"
    return (
        f"the service finds it through {key} (set to 127.0.0.1) and {port} (set to the "
        "mock's fixed port below, when the service has one; a service that assumes the "
        "default port needs that variable or the port changed)"
    )


def _wire_port_vars(
    env: list[tuple[str, str]], deps: Iterable[ProposedDependency]
) -> list[tuple[str, str]]:
    """``REDIS_PORT=6379`` next to a wired ``REDIS_HOST``: the mock's fixed port."""
    ports: dict[str, int] = {}
    for d in deps:
        for var in d.host_vars:
            stem = HOST_SUFFIX_RE.sub("", var)
            if stem != var and d.port:
                ports[f"{stem}_PORT"] = d.port
    return [
        (key, str(ports[key]) if key in ports and value.isdigit() else value) for key, value in env
    ]


def _not_run(target: ComposeService, key: str, *, kind: str = "") -> str:
    mocked = f" until the {kind} kind replaces it" if kind in KIND_URL else ""
    return (
        f"{target.name} is not run by devbox{mocked}: {key} points at a running one, as compose "
        f"publishes it on this machine (`docker compose up {target.name}`)"
    )


_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def slug(text: str, fallback: str = "service") -> str:
    """A valid profile/service/dependency name from any text."""
    s = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    s = re.sub(r"^[^a-z]+", "", s)[:63].rstrip("-_")
    return s if _NAME_RE.match(s) else fallback


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))
