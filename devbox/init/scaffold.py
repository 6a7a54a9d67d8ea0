"""``devbox init``'s brain: repository facts in, a proposed profile out, rendered as TOML.

Theory of operation
-------------------
The CLI gathers :class:`RepoFacts` (the Dockerfile's facts, the Compose file's
services, a bounded listing of the project's files) and the user's answers; this
module decides everything else and explains each decision in the profile itself:

* The service under test is the Compose service built from this repository (or
  the Dockerfile alone). Its port is, in order: the answer, the Compose ports,
  the Dockerfile's ``EXPOSE``, a ``PORT`` variable, 8080.
* Each variable of its Compose environment whose value is an http(s) URL on
  another Compose service (``PAYMENTS_URL=http://payments:8081``) becomes a
  ``[[dependency]]`` with ``env`` = the variable and ``upstream`` = the URL. URLs
  on other hosts are offered as commented-out dependencies; services devbox cannot
  mock yet (postgres, redis, ...) are listed as comments, as are unresolvable values.
* The process runtime's ``command`` comes from the Compose ``command``, else the
  Dockerfile's ENTRYPOINT + CMD (made host-runnable, run in the build context),
  else the files (``app.py``, ``go.mod``, ...).
* Watch rules follow the language: interpreted sources sync + restart, compiled
  sources and dependency manifests rebuild.

``devbox.init.render`` writes the proposal as a commented profile; the CLI
validates it with ``parse_profile`` before writing anything.

Pure: no file system access.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devbox.init.compose import ComposeFile, ComposeService
from devbox.init.dockerfile import DockerfileFacts, host_command

DEFAULT_PORT = 8080
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# images (by the last path component of the repository) of kinds devbox plans to mock
PLANNED_IMAGES = {
    "postgres": "postgres",
    "postgis": "postgres",
    "timescaledb": "postgres",
    "redis": "redis",
    "valkey": "redis",
    "keydb": "redis",
    "redis-stack": "redis",
}
PLANNED_SCHEMES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "grpc": "grpc",
}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class RepoFacts:
    dir_name: str
    dockerfile: str | None = None  # relative to the project root (posix)
    dockerfile_facts: DockerfileFacts | None = None
    compose: ComposeFile | None = None
    service: ComposeService | None = None  # the Compose service under test
    files: tuple[str, ...] = ()  # project files (posix, relative), a bounded listing


@dataclass(frozen=True, slots=True)
class Answers:
    name: str | None = None
    port: int | None = None
    command: tuple[str, ...] | None = None


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


@dataclass(frozen=True, slots=True)
class Planned:
    name: str
    kind: str  # "postgres", "redis", "grpc" or "" (no kind planned)
    what: str  # "image postgres:16"
    env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    name: str
    service_name: str
    port: int
    port_source: str
    build_context: str | None = None
    dockerfile: str | None = None
    command: tuple[str, ...] = ()
    command_source: str = ""
    cwd: str = "."
    workdir: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    env_source: str = ""
    # (variable, value, why) of variables naming services devbox does not run: commented out
    unmocked_env: tuple[tuple[str, str, str], ...] = ()
    ready_http: str | None = None
    ready_source: str = ""
    sync: tuple[str, ...] = ()
    rebuild: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    dependencies: tuple[ProposedDependency, ...] = ()
    planned: tuple[Planned, ...] = ()
    remarks: tuple[str, ...] = ()  # written as comments at the end of [service]
    sources: tuple[str, ...] = ()  # the files this proposal was read from
    notes: tuple[str, ...] = field(default=())  # told to the user on the terminal

    @property
    def enabled_dependencies(self) -> tuple[ProposedDependency, ...]:
        return tuple(d for d in self.dependencies if d.enabled)


# ---------------------------------------------------------------- names


def slug(text: str, fallback: str = "service") -> str:
    """A valid profile/service/dependency name from any text."""
    s = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    s = re.sub(r"^[^a-z]+", "", s)[:63].rstrip("-_")
    return s if _NAME_RE.match(s) else fallback


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def pick_service(
    compose: ComposeFile, wanted: str | None, root_dockerfile: str | None
) -> tuple[ComposeService | None, tuple[str, ...]]:
    """(the service under test, candidates it was picked from when there was a choice)."""
    if wanted is not None:
        return compose.service(wanted), ()
    built = [s for s in compose.services if s.build_context is not None]
    if not built:
        return None, ()
    if len(built) == 1:
        return built[0], ()
    for s in built:
        if root_dockerfile is not None and s.dockerfile_path == root_dockerfile:
            return s, tuple(b.name for b in built)
    return built[0], tuple(b.name for b in built)


def default_name(facts: RepoFacts) -> str:
    if facts.service is not None:
        return slug(facts.service.name)
    return slug(facts.dir_name)


def default_port(facts: RepoFacts) -> tuple[int | None, str]:
    svc, df = facts.service, facts.dockerfile_facts
    compose_name = facts.compose.path if facts.compose else "the compose file"
    if svc is not None and svc.ports:
        return svc.ports[0], f"the container port of {svc.name} in {compose_name}"
    if df is not None and df.expose:
        return df.expose[0], f"EXPOSE {df.expose[0]} in {facts.dockerfile}"
    for k, v in svc.environment if svc is not None else ():
        if k == "PORT" and v.value.isdigit():
            return int(v.value), f"PORT in {compose_name}"
    if df is not None and df.env.get("PORT", "").isdigit():
        return int(df.env["PORT"]), f"ENV PORT in {facts.dockerfile}"
    return None, ""


def default_command(facts: RepoFacts) -> tuple[tuple[str, ...], str, str]:
    """(argv, where it came from, cwd) for the process runtime; argv () when unknown."""
    context = _build(facts)[0]
    df = facts.dockerfile_facts
    roots = (df.context_dest, df.workdir) if df is not None else ()
    svc = facts.service
    if svc is not None and svc.command:
        # Compose's command replaces CMD; the image's ENTRYPOINT still runs in front of it
        argv = (*(df.entrypoint if df is not None else ()), *svc.command)
        cmd = host_command(argv, *roots)
        if cmd:
            return cmd, f"the command of {svc.name} in {_name(facts.compose)}", context or "."
    if df is not None and df.command:
        cmd = host_command(df.command, *roots)
        if cmd:
            return cmd, f"CMD/ENTRYPOINT in {facts.dockerfile}", context or "."
    files = set(facts.files)
    for script in ("app.py", "main.py", "server.py"):
        if script in files:
            return ("python3", script), f"{script} in the project", "."
    if "package.json" in files:
        return ("npm", "start"), "package.json in the project", "."
    if "go.mod" in files:
        return ("go", "run", "."), "go.mod in the project", "."
    if "Cargo.toml" in files:
        return ("cargo", "run"), "Cargo.toml in the project", "."
    return (), "", "."


def _name(compose: ComposeFile | None) -> str:
    return compose.path if compose is not None else "the compose file"


def _build(facts: RepoFacts) -> tuple[str | None, str | None]:
    """(build context, dockerfile relative to the context)."""
    svc = facts.service
    if svc is not None and svc.build_context is not None:
        return svc.build_context, svc.dockerfile or "Dockerfile"
    if facts.dockerfile is None:
        return None, None
    ctx, name = posixpath.split(facts.dockerfile)
    return ctx or ".", name


# ---------------------------------------------------------------- watch rules

_PY_MANIFESTS = (
    "requirements.txt",
    "requirements-dev.txt",
    "pyproject.toml",
    "poetry.lock",
    "Pipfile",
    "Pipfile.lock",
    "setup.py",
    "setup.cfg",
    "uv.lock",
)
_NODE_MANIFESTS = (
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "tsconfig.json",
)


def watch_rules(
    files: tuple[str, ...], context: str, dockerfile: str | None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(sync, rebuild, ignore) for the sources under ``context``."""
    prefix = "" if context in (".", "") else context.rstrip("/") + "/"
    inside = [f[len(prefix) :] for f in files if f.startswith(prefix)]
    names = set(inside)
    exts = {posixpath.splitext(f)[1] for f in inside}

    def p(pattern: str) -> str:
        return prefix + pattern

    sync: list[str] = []
    rebuild: list[str] = []
    ignore = ["**/*.tmp", "**/*.swp", "**/*~"]
    if dockerfile is not None:
        rebuild.append(p(dockerfile))
    if "go.mod" in names or ".go" in exts:
        rebuild += [p("**/*.go"), p("go.mod"), p("go.sum")]
    elif "Cargo.toml" in names or ".rs" in exts:
        rebuild += [p("**/*.rs"), p("Cargo.toml"), p("Cargo.lock")]
        ignore.append(p("target/**"))
    elif names & {"pom.xml", "build.gradle", "build.gradle.kts"}:
        rebuild += [p("src/**")] + [
            p(n) for n in ("pom.xml", "build.gradle", "build.gradle.kts") if n in names
        ]
        ignore += [p("target/**"), p("build/**")]
    elif "package.json" in names or exts & {".js", ".mjs", ".cjs", ".ts"}:
        if "tsconfig.json" in names or ".ts" in exts:
            rebuild.append(p("**/*.ts"))
        sync += [p("**/*.js"), p("**/*.mjs"), p("**/*.cjs")]
        rebuild += [p(n) for n in _NODE_MANIFESTS if n in names]
        ignore.append("**/node_modules/**")
    elif ".py" in exts or names & set(_PY_MANIFESTS):
        sync.append(p("**/*.py"))
        rebuild += [p(n) for n in _PY_MANIFESTS if n in names]
        ignore += ["**/__pycache__/**", "**/.venv/**"]
    elif ".rb" in exts or "Gemfile" in names:
        sync.append(p("**/*.rb"))
        rebuild += [p(n) for n in ("Gemfile", "Gemfile.lock") if n in names]
    return tuple(dict.fromkeys(sync)), tuple(dict.fromkeys(rebuild)), tuple(ignore)


# ---------------------------------------------------------------- dependencies


@dataclass(slots=True)
class _Found:
    deps: list[ProposedDependency]
    planned: list[Planned]
    env: list[tuple[str, str]]  # kept for the service
    unmocked: list[tuple[str, str, str]]
    remarks: list[str]


def _dependencies(facts: RepoFacts, own_port: int) -> _Found:
    svc, compose = facts.service, facts.compose
    deps: dict[str, ProposedDependency] = {}
    planned: dict[str, Planned] = {}
    env: list[tuple[str, str]] = []
    unmocked: list[tuple[str, str, str]] = []
    remarks: list[str] = []
    used = {"inbound"}
    if svc is None or compose is None:
        return _Found([], [], env, unmocked, remarks)
    for key, val in svc.environment:
        if val.unresolved:
            remarks.append(
                f"{key} = {val.raw!r} comes from the shell that runs compose: "
                "add it to [service.env] if the service needs it"
            )
            continue
        if key == "PORT":
            continue  # devbox sets PORT to service.port
        m = _URL_RE.match(val.value)
        if not m:
            env.append((key, val.value))
            continue
        scheme = m.group(1).lower()
        parts = urlsplit(val.value)
        host = parts.hostname or ""
        target = compose.owner_of_host(host)
        if target is not None and target.name != svc.name:
            if scheme in ("http", "https"):
                if target.name in deps:
                    d = deps[target.name]
                    deps[target.name] = _replace_also(d, key)
                    continue
                name = _unique(slug(target.name, "dependency"), used)
                deps[target.name] = ProposedDependency(
                    name=name,
                    env=key,
                    upstream=val.value.rstrip("/") if parts.path in ("", "/") else val.value,
                    origin=f"compose service {target.name}",
                    host_upstream=_host_url(parts.scheme, parts.port, target),
                )
            else:
                p = planned.get(target.name)
                kind = PLANNED_SCHEMES.get(scheme) or _image_kind(target.image)
                planned[target.name] = Planned(
                    name=target.name,
                    kind=kind,
                    what=_what(target),
                    env=(*(p.env if p else ()), key),
                )
                unmocked.append(
                    (
                        key,
                        _on_host(val.value, target),
                        (
                            f"{target.name} is not run by devbox: point {key} at a running one, "
                            "e.g. as compose publishes it (started with "
                            f"`docker compose up {target.name}`)"
                        ),
                    )
                )
            continue
        if scheme in ("http", "https") and host and host not in _LOCAL_HOSTS:
            name = _unique(slug(_env_stem(key) or host.split(".")[0], "dependency"), used)
            deps[f"url:{key}"] = ProposedDependency(
                name=name,
                env=key,
                upstream=val.value,
                origin="outside the compose file",
                enabled=False,
            )
            continue
        if scheme in PLANNED_SCHEMES and host and host not in _LOCAL_HOSTS:
            remarks.append(
                f"{key} points at {host}, outside the compose file "
                f"({PLANNED_SCHEMES[scheme]}): not mocked"
            )
            continue
        if host in _LOCAL_HOSTS and parts.port not in (None, own_port):
            remarks.append(f"{key} = {val.value!r} points at this machine: kept as it is")
        env.append((key, val.value))
    for other in compose.services:
        if other.name == svc.name or other.name in deps or other.name in planned:
            continue
        kind = _image_kind(other.image)
        if kind:
            planned[other.name] = Planned(name=other.name, kind=kind, what=_what(other))
        elif other.name in svc.depends_on:
            remarks.append(
                f"{svc.name} depends on {other.name} ({_what(other)}), but no "
                "variable in its environment names it"
            )
    return _Found(list(deps.values()), list(planned.values()), env, unmocked, remarks)


_DEFAULT_PORTS = {
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


def _on_host(url: str, target: ComposeService) -> str:
    """The URL of a compose service as reached from the host through its published port."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    host_port = target.published.get(port) if port else None
    user = parts.netloc.rpartition("@")[0]
    netloc = (user + "@" if user else "") + "127.0.0.1" + (f":{host_port or port}" if port else "")
    return parts._replace(netloc=netloc).geturl()


def _replace_also(d: ProposedDependency, key: str) -> ProposedDependency:
    return ProposedDependency(
        name=d.name,
        env=d.env,
        upstream=d.upstream,
        origin=d.origin,
        host_upstream=d.host_upstream,
        also_env=(*d.also_env, key),
        enabled=d.enabled,
    )


def _unique(name: str, used: set[str]) -> str:
    candidate, i = name, 2
    while candidate in used:
        candidate = f"{name}-{i}"
        i += 1
    used.add(candidate)
    return candidate


def _env_stem(key: str) -> str:
    return re.sub(
        r"(_(BASE|API|SERVICE|SVC|ENDPOINT|HOST|ADDR|ADDRESS))*_(URL|URI|ENDPOINT|HOST|"
        r"ADDR|ADDRESS)$",
        "",
        key,
    )


def _host_url(scheme: str, port: int | None, target: ComposeService) -> str | None:
    container_port = port or (443 if scheme == "https" else 80)
    host_port = target.published.get(container_port)
    return f"{scheme}://127.0.0.1:{host_port}" if host_port else None


def _image_kind(image: str | None) -> str:
    if not image:
        return ""
    repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return PLANNED_IMAGES.get(repo, "")


def _what(svc: ComposeService) -> str:
    if svc.image:
        return f"image {svc.image}"
    if svc.build_context:
        return f"built from {svc.build_context}"
    return "compose service"


# ---------------------------------------------------------------- proposal


def propose(facts: RepoFacts, answers: Answers) -> Proposal:
    name = answers.name or default_name(facts)
    service_name = slug(facts.service.name) if facts.service is not None else name
    port_guess, port_source = default_port(facts)
    if answers.port is not None:
        port, port_source = answers.port, "your answer"
    elif port_guess is not None:
        port = port_guess
    else:
        port, port_source = DEFAULT_PORT, "a default: nothing in the repository names a port"
    context, dockerfile = _build(facts)
    if answers.command is not None:
        command: tuple[str, ...] = answers.command
        cmd_source, cwd = "your answer", "."
    else:
        command, cmd_source, cwd = default_command(facts)
    df = facts.dockerfile_facts
    workdir = None
    if df is not None:
        workdir = df.context_dest or df.workdir
    ready_http, ready_source = None, ""
    svc = facts.service
    if svc is not None and svc.healthcheck_path:
        ready_http = svc.healthcheck_path
        ready_source = f"the healthcheck in {_name(facts.compose)}"
    elif df is not None and df.healthcheck_path:
        ready_http, ready_source = df.healthcheck_path, f"HEALTHCHECK in {facts.dockerfile}"
    sync, rebuild, ignore = watch_rules(facts.files, context or cwd, dockerfile)
    found = _dependencies(facts, port)
    sources = tuple(
        s for s in (facts.dockerfile, facts.compose.path if facts.compose else None) if s
    )
    notes: list[str] = []
    if port_guess is None and answers.port is None:
        notes.append(f"no port found in the repository: using {DEFAULT_PORT} (--port to change)")
    if not command and context is None:
        notes.append("no Dockerfile and no command: the profile needs one of them")
    return Proposal(
        name=name,
        service_name=service_name,
        port=port,
        port_source=port_source,
        build_context=context,
        dockerfile=dockerfile,
        command=command,
        command_source=cmd_source,
        cwd=cwd,
        workdir=workdir,
        env=tuple(found.env),
        env_source=_name(facts.compose),
        unmocked_env=tuple(found.unmocked),
        ready_http=ready_http,
        ready_source=ready_source,
        sync=sync,
        rebuild=rebuild,
        ignore=ignore,
        dependencies=tuple(found.deps),
        planned=tuple(found.planned),
        remarks=tuple(found.remarks),
        sources=sources,
        notes=tuple(notes),
    )
