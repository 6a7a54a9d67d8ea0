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
from collections.abc import Mapping
from dataclasses import dataclass, field

from devbox.init import deps
from devbox.init.compose import ComposeFile, ComposeService
from devbox.init.deps import Planned, ProposedDependency, slug, valid_name
from devbox.init.dockerfile import DockerfileFacts, host_command

__all__ = ["Planned", "ProposedDependency", "slug", "valid_name"]

DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True)
class RepoFacts:
    dir_name: str
    dockerfile: str | None = None  # relative to the project root (posix)
    dockerfile_facts: DockerfileFacts | None = None
    compose: ComposeFile | None = None
    service: ComposeService | None = None  # the Compose service under test
    files: tuple[str, ...] = ()  # project files (posix, relative), a bounded listing
    # other compose services built here -> the image their Dockerfile builds FROM
    bases: Mapping[str, str] = field(default_factory=dict)
    # dependency kinds the profile parser accepts (others are written commented out)
    supported_kinds: tuple[str, ...] = ("http",)


@dataclass(frozen=True, slots=True)
class Answers:
    name: str | None = None
    port: int | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    name: str
    service_name: str
    port: int
    port_source: str
    build_context: str | None = None
    dockerfile: str | None = None
    build_target: str | None = None
    stop_signal: str | None = None
    command: tuple[str, ...] = ()
    command_source: str = ""
    runtime: str = "auto"
    runtime_reason: str = ""  # why not "auto", written above the key
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


# a listen port on a command line: --port 9091, --port=9091, -p 9091, --bind 0.0.0.0:9091,
# -b :9091, runserver 0.0.0.0:8000
_PORT_FLAGS = ("--port", "-p", "--http-port", "--listen-port", "--server.port")
_BIND_FLAGS = ("--bind", "-b", "--listen", "--host-port")
_HOSTPORT = re.compile(r"^(?:[\w.-]*|\[[0-9a-fA-F:]*\]|unix:.*)?:(\d{1,5})$")
# listen ports in variables: PORT, then names that say "this server", then any *_PORT
# whose stem names no other service (REDIS_PORT is redis's, not ours)
_OWN_PORT_VARS = re.compile(r"^(?:\w+_)?(?:SERVER|HTTP|APP|WEB|LISTEN|API|SERVICE)_PORT$")
_OTHER_WORDS = re.compile(
    r"(REDIS|POSTGRES|PG|DB|DATABASE|MYSQL|MONGO|AMQP|RABBIT|KAFKA|SMTP|MAIL|MEMCACHE|ELASTIC|"
    r"CACHE|QUEUE|BROKER|METRICS|DEBUG|ADMIN)"
)


def _valid_port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def command_port(argv: tuple[str, ...]) -> int | None:
    """The port a command line says the server listens on, if it says one."""
    words = [w for a in argv for w in (a.split() if " " in a else [a])]
    for i, w in enumerate(words):
        flag, eq, val = w.partition("=")
        nxt = val if eq else (words[i + 1] if i + 1 < len(words) else "")
        if flag in _PORT_FLAGS:
            port = _valid_port(nxt)
            if port:
                return port
        if flag in _BIND_FLAGS:
            m = _HOSTPORT.match(nxt)
            if m and _valid_port(m.group(1)):
                return int(m.group(1))
        if w in ("runserver", "serve") and i + 1 < len(words):
            m = _HOSTPORT.match(words[i + 1])
            if m and _valid_port(m.group(1)):
                return int(m.group(1))
            if _valid_port(words[i + 1]):
                return int(words[i + 1])
    return None


def env_port(env: Mapping[str, str], others: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """(port, variable) of the variable most likely to hold the service's own port."""
    other = tuple(o.upper().replace("-", "_") for o in others)

    def foreign(name: str) -> bool:
        return bool(_OTHER_WORDS.search(name)) or any(name.startswith(o + "_") for o in other)

    ranked = sorted(
        (0 if k == "PORT" else 1 if _OWN_PORT_VARS.match(k) else 2, k)
        for k in env
        if (k == "PORT" or k.endswith("_PORT")) and not foreign(k) and _valid_port(env[k])
    )
    if not ranked:
        return None
    key = ranked[0][1]
    return int(env[key]), key


def default_port(facts: RepoFacts) -> tuple[int | None, str]:
    svc, df = facts.service, facts.dockerfile_facts
    compose_name = facts.compose.path if facts.compose else "the compose file"
    if svc is not None and svc.command:
        port = command_port(svc.command)
        if port:
            return port, f"the command of {svc.name} in {compose_name}"
    if df is not None and df.command and (svc is None or not svc.command):
        port = command_port(df.command)
        if port:
            return port, f"CMD/ENTRYPOINT in {facts.dockerfile}"
    if svc is not None and svc.ports:
        return svc.ports[0], f"the container port of {svc.name} in {compose_name}"
    others = tuple(s.name for s in facts.compose.services) if facts.compose else ()
    if svc is not None:
        env = {k: v.value for k, v in svc.environment if not v.unresolved}
        found = env_port(env, tuple(o for o in others if o != svc.name))
        if found:
            return found[0], f"{found[1]} = {found[0]} in {compose_name}"
    if df is not None and df.expose:
        return df.expose[0], f"EXPOSE {df.expose[0]} in {facts.dockerfile}"
    if df is not None:
        found = env_port(dict(df.env), others)
        if found:
            return found[0], f"ENV {found[1]} in {facts.dockerfile}"
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
    found = deps.find(svc, facts.compose, port, facts.supported_kinds, facts.bases)
    sources = tuple(
        s for s in (facts.dockerfile, facts.compose.path if facts.compose else None) if s
    )
    notes: list[str] = []
    if port_guess is None and answers.port is None:
        notes.append(f"no port found in the repository: using {DEFAULT_PORT} (--port to change)")
    if not command and context is None:
        notes.append("no Dockerfile and no command: the profile needs one of them")
    for d in found.deps:
        if d.planned:
            notes.append(
                f"{d.name} ({d.origin}) maps to kind {d.kind!r}, which this devbox does not "
                f"accept yet: written commented out with upstream {d.upstream}; uncomment it "
                "once the kind lands"
            )
        elif d.kind != "http":
            notes.append(f"{d.name} ({d.origin}) is mocked as kind {d.kind!r}")
        if d.note:
            notes.append(f"{d.name}: {d.note}")
    stop_signal = svc.stop_signal if svc is not None and svc.stop_signal else None
    if stop_signal is None and df is not None:
        stop_signal = df.stop_signal
    runtime, runtime_reason = _runtime(facts, df, context, command, notes)
    return Proposal(
        name=name,
        service_name=service_name,
        port=port,
        port_source=port_source,
        build_context=context,
        dockerfile=dockerfile,
        build_target=svc.build_target if svc is not None else None,
        stop_signal=stop_signal,
        command=command,
        command_source=cmd_source,
        runtime=runtime,
        runtime_reason=runtime_reason,
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


def _runtime(
    facts: RepoFacts,
    df: DockerfileFacts | None,
    context: str | None,
    command: tuple[str, ...],
    notes: list[str],
) -> tuple[str, str]:
    """(runtime, why when not "auto"): a Dockerfile only BuildKit builds cannot be built
    by devbox's builder (the engine's classic one), so it runs as a process if it can."""
    if df is None or not df.buildkit_only or context is None:
        return "auto", ""
    uses = ", ".join(df.buildkit_only[:3]) + (", ..." if len(df.buildkit_only) > 3 else "")
    why = (
        f"{facts.dockerfile} uses syntax only BuildKit builds ({uses}); devbox builds "
        "with the Docker engine's classic builder"
    )
    if not command:
        notes.append(f"{why}: give a command (--command) to run it as a process")
        return "auto", ""
    notes.append(
        f'{why}: runtime = "process" (runs {" ".join(command)} on this machine: '
        f"{_install_hint(facts.files, context)})"
    )
    return "process", why


def _install_hint(files: tuple[str, ...], context: str) -> str:
    """How the user installs what the process needs, from the manifests in the context."""
    prefix = "" if context in (".", "") else context.rstrip("/") + "/"
    if prefix + "requirements.txt" in files:
        return f"pip install -r {prefix}requirements.txt first"
    if prefix + "package.json" in files:
        return f"npm install{' --prefix ' + prefix.rstrip('/') if prefix else ''} first"
    return "install what it needs here first"
