"""What a Dockerfile tells ``devbox init``: exposed ports, the start command, the work dir.

Theory of operation
-------------------
Only the *final* stage matters (that is the image that runs). The text is cut into
logical instructions the way Docker does (the ``# escape=`` directive, line
continuations, comment lines inside continuations dropped). ``ARG`` and ``ENV``
values are substituted into ``EXPOSE``, ``WORKDIR`` and ``COPY`` destinations
(``${PORT:-8080}`` included), because ``EXPOSE $PORT`` is common. A stage built
``FROM`` an earlier stage inherits its facts, as the image would.

The start command is ``ENTRYPOINT`` + ``CMD`` as argv. For the process runtime it is
made host-friendly: init wrappers (tini, dumb-init) are dropped, paths under the
image's work directory become relative (the process runs in the build context),
and ``python`` becomes ``python3`` (what a Debian host or a venv has).

Pure: text in, facts out.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from devbox.core.buildkit import buildkit_only

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_SHELL_META = re.compile(r"[|&;<>()`*?~]|\$")
_HEALTH_URL = re.compile(
    r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::\d+)?(/[^\s\"']*)"
)
_WRAPPERS = frozenset({"tini", "dumb-init", "catatonit"})


@dataclass(frozen=True, slots=True)
class DockerfileFacts:
    expose: tuple[int, ...] = ()
    # ENTRYPOINT + CMD of the final stage, as argv; () when the Dockerfile has neither
    command: tuple[str, ...] = ()
    # ENTRYPOINT alone (exec form as argv, shell form as sh -c): Compose's command goes after it
    entrypoint: tuple[str, ...] = ()
    workdir: str | None = None
    # where ``COPY . <dest>`` put the build context (the sync target), if it did
    context_dest: str | None = None
    healthcheck_path: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    base_image: str | None = None
    stop_signal: str | None = None
    # syntax the engine's classic builder (devbox's) refuses: "line 7: RUN --mount", ...
    buildkit_only: tuple[str, ...] = ()


@dataclass
class _Stage:
    expose: list[int] = field(default_factory=list)
    cmd: list[str] | None = None
    cmd_shell: bool = False
    entrypoint: list[str] | None = None
    entrypoint_shell: bool = False
    workdir: str = "/"
    workdir_set: bool = False
    context_dest: str | None = None
    healthcheck: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    stop_signal: str | None = None

    def copy(self) -> _Stage:
        return _Stage(
            expose=list(self.expose),
            cmd=self.cmd,
            cmd_shell=self.cmd_shell,
            entrypoint=self.entrypoint,
            entrypoint_shell=self.entrypoint_shell,
            workdir=self.workdir,
            workdir_set=self.workdir_set,
            context_dest=self.context_dest,
            healthcheck=self.healthcheck,
            env=dict(self.env),
            base=self.base,
            stop_signal=self.stop_signal,
        )


def logical_lines(text: str) -> list[str]:
    """Instructions, one per item, continuations joined and comments removed."""
    escape = "\\"
    lines = text.splitlines()
    for raw in lines:
        m = _DIRECTIVE.match(raw.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    out: list[str] = []
    buf: list[str] = []
    for raw in lines:
        s = raw.strip()
        if not s or s.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if s.endswith(escape):
            buf.append(s[: -len(escape)].strip())
            continue
        buf.append(s)
        out.append(" ".join(p for p in buf if p))
        buf = []
    if buf:
        out.append(" ".join(p for p in buf if p))
    return out


def substitute(value: str, variables: Mapping[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+alt}`` as Docker expands them."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = variables.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":+", "+"):
            set_ = current is not None and (op == "+" or current != "")
            return arg if set_ else ""
        return current or ""

    return _VAR.sub(repl, value)


def _exec_or_shell(rest: str) -> tuple[list[str], bool]:
    """(argv, is_shell_form). The JSON form is argv; anything else is run by /bin/sh -c."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return list(value), False
    return [rest], True


def _kv_pairs(rest: str) -> dict[str, str]:
    """``ENV A=1 B="two words"`` or the legacy ``ENV A 1``."""
    try:
        parts = shlex.split(rest, posix=True)
    except ValueError:
        parts = rest.split()
    if parts and "=" not in parts[0]:
        return {parts[0]: " ".join(parts[1:])}
    out = {}
    for p in parts:
        k, sep, v = p.partition("=")
        if sep:
            out[k] = v
    return out


def _join_path(base: str, path: str) -> str:
    if path.startswith("/"):
        joined = path
    else:
        joined = base.rstrip("/") + "/" + path
    parts: list[str] = []
    for seg in joined.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def _ports(rest: str) -> list[int]:
    found = []
    for token in rest.split():
        port, _, proto = token.partition("/")
        if proto and proto.lower() != "tcp":
            continue
        port = port.split("-", 1)[0]
        if port.isdigit() and 0 < int(port) < 65536:
            found.append(int(port))
    return found


def parse_dockerfile(text: str, target: str | None = None) -> DockerfileFacts:
    """The facts of the stage that runs: ``target`` (compose's ``build.target``), else
    the last one."""
    args: dict[str, str] = {}
    stages: dict[str, _Stage] = {}
    stage = _Stage()
    seen_from = False
    for line in logical_lines(text):
        word, _, rest = line.partition(" ")
        instr, rest = word.upper(), rest.strip()
        variables = {**args, **stage.env}
        if instr == "FROM":
            tokens = [t for t in rest.split() if not t.startswith("--")]
            image = substitute(tokens[0], args) if tokens else ""
            parent = stages.get(image.lower())
            stage = parent.copy() if parent is not None else _Stage(base=image or None)
            if len(tokens) >= 3 and tokens[1].lower() == "as":
                stages[tokens[2].lower()] = stage
            seen_from = True
        elif instr == "ARG":
            name, sep, default = rest.partition("=")
            name = name.strip()
            if name and (sep or name not in args):
                args[name] = default.strip().strip("\"'")
        elif instr == "ENV":
            for k, v in _kv_pairs(rest).items():
                stage.env[k] = substitute(v, variables)
        elif instr == "EXPOSE":
            stage.expose.extend(_ports(substitute(rest, variables)))
        elif instr == "WORKDIR":
            stage.workdir = _join_path(stage.workdir, substitute(rest.strip("\"'"), variables))
            stage.workdir_set = True
        elif instr in ("COPY", "ADD"):
            _copy(stage, rest, variables)
        elif instr == "CMD":
            stage.cmd, stage.cmd_shell = _exec_or_shell(rest)
        elif instr == "ENTRYPOINT":
            stage.entrypoint, stage.entrypoint_shell = _exec_or_shell(rest)
            # Docker: setting ENTRYPOINT resets a CMD inherited from the base image
        elif instr == "HEALTHCHECK":
            m = _HEALTH_URL.search(rest)
            stage.healthcheck = m.group(1) if m else None
        elif instr == "STOPSIGNAL":
            stage.stop_signal = substitute(rest, variables) or None
    if not seen_from:
        return DockerfileFacts()
    if target is not None:
        stage = stages.get(target.lower(), stage)
    return DockerfileFacts(
        expose=tuple(dict.fromkeys(stage.expose)),
        command=_command(stage),
        entrypoint=_entrypoint(stage),
        workdir=stage.workdir if stage.workdir_set else None,
        context_dest=stage.context_dest,
        healthcheck_path=stage.healthcheck,
        env=dict(stage.env),
        base_image=stage.base,
        stop_signal=stage.stop_signal,
        buildkit_only=buildkit_only(text),
    )


def _copy(stage: _Stage, rest: str, variables: Mapping[str, str]) -> None:
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    if rest.startswith("["):
        tokens, _ = _exec_or_shell(rest)
    if any(t.startswith("--from") for t in tokens):
        return  # from another stage or image, not from the build context
    tokens = [t for t in tokens if not t.startswith("--")]
    if len(tokens) < 2:
        return
    sources, dest = tokens[:-1], substitute(tokens[-1], variables)
    if any(s.rstrip("/") in (".", "./", "") for s in sources):
        stage.context_dest = _join_path(stage.workdir, dest)


def _entrypoint(stage: _Stage) -> tuple[str, ...]:
    if stage.entrypoint is None:
        return ()
    return shell_argv(stage.entrypoint[0]) if stage.entrypoint_shell else tuple(stage.entrypoint)


def _command(stage: _Stage) -> tuple[str, ...]:
    if stage.entrypoint is not None:
        if stage.entrypoint_shell:
            return shell_argv(stage.entrypoint[0])
        argv = list(stage.entrypoint)
        if stage.cmd is not None:
            argv += shell_argv(stage.cmd[0]) if stage.cmd_shell else stage.cmd
        return tuple(argv)
    if stage.cmd is None:
        return ()
    return shell_argv(stage.cmd[0]) if stage.cmd_shell else tuple(stage.cmd)


def shell_argv(text: str) -> tuple[str, ...]:
    """A shell-form command as argv: split when it is a plain command line, else sh -c."""
    text = text.strip()
    if text.startswith("exec "):
        text = text[5:].strip()
    if not _SHELL_META.search(text):
        try:
            return tuple(shlex.split(text))
        except ValueError:
            pass
    return ("sh", "-c", text)


def host_command(argv: tuple[str, ...], *roots: str | None) -> tuple[str, ...]:
    """The image's start command made runnable on the host, in the build context."""
    args = list(argv)
    while args and args[0].rsplit("/", 1)[-1] in _WRAPPERS:
        args.pop(0)
        while args and args[0].startswith("-") and args[0] != "--":
            args.pop(0)
        if args and args[0] == "--":
            args.pop(0)
    if not args:
        return ()
    exe = args[0]
    if exe.startswith(("/usr/local/bin/", "/usr/bin/", "/bin/")):
        exe = exe.rsplit("/", 1)[-1]
    if exe == "python" or re.fullmatch(r"python3\.\d+", exe):
        exe = "python3"
    args[0] = exe
    prefixes = sorted({r.rstrip("/") + "/" for r in roots if r and r != "/"}, key=len, reverse=True)
    out = []
    for i, a in enumerate(args):
        for p in prefixes:
            if a.startswith(p):
                a = a[len(p) :] or "."
                if i == 0:
                    a = "./" + a  # an executable in the context, not one on PATH
                break
        out.append(a)
    return tuple(out)
