"""``devbox init``: read a repository's Dockerfile and Compose file, write a commented profile.

The decisions live in ``devbox.init.scaffold`` (pure); this module finds and reads
the files, asks the few questions (only on a terminal, never with --yes), checks
the result with the profile parser and writes it, never over an existing profile
without --force.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import ConfigError, NotFoundError, UsageError

if TYPE_CHECKING:
    from devbox.init.compose import ComposeFile, ComposeService
    from devbox.init.scaffold import Proposal, RepoFacts

EPILOG = """\
examples:
  devbox init                          the repository in the current directory
  devbox init ../orders --yes          take every detected default, ask nothing
  devbox init --name orders --port 8080
  devbox init --command "python3 app.py"   no Dockerfile: how to start the service
  devbox init --dry-run                print the profile instead of writing it

Reads Dockerfile (EXPOSE, CMD, WORKDIR, HEALTHCHECK) and compose.yaml /
docker-compose.yml (the service built here, its ports and environment: variables
holding http URLs of other compose services become mocked dependencies).
"""

# directories never worth listing for language detection
_SKIP_DIRS = frozenset(
    {
        ".git",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        "target",
        "dist",
        "build",
        ".tox",
        ".mypy_cache",
        ".ruff_cache",
        "mocks",
    }
)
_MAX_FILES = 5000
_MAX_DEPTH = 4


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1..65535: {n}")
    return n


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "init",
        help="write profiles/NAME.toml for a repository (reads Dockerfile and compose file)",
        description=(
            "Detect how a repository's service is built and run (Dockerfile, compose file), "
            "propose its dependencies, and write a commented profile that validates. Asks for "
            "the name and port on a terminal; --yes (or no terminal) takes the detected values."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the repository (default: the current directory)",
    )
    p.add_argument("--name", help="profile name (default: the service's name)")
    p.add_argument("--port", type=_port, help="the port the service listens on")
    p.add_argument(
        "--service",
        metavar="NAME",
        help="the compose service under test (when several are built here)",
    )
    p.add_argument(
        "--dockerfile",
        metavar="PATH",
        help="the Dockerfile, relative to DIR (default: found automatically)",
    )
    p.add_argument(
        "--command",
        metavar="CMD",
        help='how to start the service as a process, e.g. "python3 app.py"',
    )
    p.add_argument(
        "-y", "--yes", action="store_true", help="accept the detected defaults; ask nothing"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument(
        "--dry-run", action="store_true", help="print the profile on stdout; write nothing"
    )
    p.set_defaults(func=run_init)


# ---------------------------------------------------------------- reading the repository


def _list_files(root: Path) -> tuple[str, ...]:
    """Project files as posix paths relative to root: bounded in depth and count."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        depth = len(rel.parts)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_DIRS and not d.startswith(".") and depth < _MAX_DEPTH
        )
        for f in sorted(filenames):
            found.append((rel / f).as_posix())
            if len(found) >= _MAX_FILES:
                return tuple(found)
    return tuple(found)


def _read(path: Path, root: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=_rel(path, root)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=_rel(path, root)) from None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _find_compose(root: Path) -> ComposeFile | None:
    from devbox.init.compose import COMPOSE_FILES, parse_compose

    for name in COMPOSE_FILES:
        path = root / name
        if path.is_file():
            return parse_compose(_read(path, root), name)
    return None


def _find_dockerfile(files: tuple[str, ...]) -> str | None:
    if "Dockerfile" in files:
        return "Dockerfile"
    found = [f for f in files if f.rsplit("/", 1)[-1] == "Dockerfile"]
    found.sort(key=lambda f: (f.count("/"), f))
    return found[0] if found else None


def gather(root: Path, args: argparse.Namespace) -> tuple[RepoFacts, tuple[str, ...]]:
    """(the facts, candidate compose services when the choice was a guess)."""
    from devbox.init.dockerfile import parse_dockerfile
    from devbox.init.scaffold import RepoFacts, pick_service
    from devbox.wire import registry

    files = _list_files(root)
    compose = _find_compose(root)
    dockerfile: str | None = None
    if args.dockerfile:
        dockerfile = Path(args.dockerfile).as_posix().removeprefix("./")
        if not (root / dockerfile).is_file():
            raise NotFoundError(f"{args.dockerfile}: no such Dockerfile in {root}")
    service: ComposeService | None = None
    candidates: tuple[str, ...] = ()
    if compose is not None:
        service, candidates = pick_service(
            compose, args.service, dockerfile or ("Dockerfile" if "Dockerfile" in files else None)
        )
        if args.service and service is None:
            known = ", ".join(s.name for s in compose.services)
            raise UsageError(
                f"--service {args.service}: no such service in {compose.path}",
                hint=f"services: {known}",
            )
    elif args.service:
        raise UsageError("--service needs a compose file (compose.yaml or docker-compose.yml)")
    if dockerfile is None and service is not None and service.dockerfile_path is not None:
        path = service.dockerfile_path
        if (root / path).is_file():
            dockerfile = path
        else:
            output.info(
                f"[yellow]{compose.path if compose else 'compose'}: {service.name} "
                f"builds from {path}, which does not exist[/yellow]"
            )
    if dockerfile is None and service is None:
        dockerfile = _find_dockerfile(files)
    target = service.build_target if service is not None else None
    facts_df = parse_dockerfile(_read(root / dockerfile, root), target) if dockerfile else None
    return RepoFacts(
        dir_name=root.name,
        dockerfile=dockerfile,
        dockerfile_facts=facts_df,
        compose=compose,
        service=service,
        files=files,
        bases=_other_bases(root, compose, service),
        # every kind devbox.wire registers (http, redis, postgres, grpc)
        supported_kinds=registry.names(),
    ), candidates


def _other_bases(
    root: Path, compose: ComposeFile | None, service: ComposeService | None
) -> dict[str, str]:
    """Other compose services built here -> the image their Dockerfile starts FROM (a
    service built FROM redis is a redis). Unreadable Dockerfiles are simply not known."""
    from devbox.errors import DevboxError
    from devbox.init.dockerfile import parse_dockerfile

    out: dict[str, str] = {}
    for other in compose.services if compose is not None else ():
        path = other.dockerfile_path
        if other is service or path is None or not (root / path).is_file():
            continue
        try:
            base = parse_dockerfile(_read(root / path, root), other.build_target).base_image
        except DevboxError:
            continue
        if base:
            out[other.name] = base
    return out


# ---------------------------------------------------------------- questions


def _interactive(args: argparse.Namespace) -> bool:
    return not args.yes and sys.stdin.isatty() and sys.stdout.isatty()


def _ask(question: str, default: str | None) -> str:
    from rich.markup import escape

    con = output.err_console()
    suffix = escape(f" [{default}]") if default else ""
    while True:
        try:
            answer = con.input(f"[bold]{question}[/bold]{suffix}: ").strip()
        except EOFError:
            answer = ""
        if answer:
            return answer
        if default:
            return default


def _ask_name(default: str) -> str:
    from devbox.init.scaffold import valid_name

    while True:
        name = _ask("profile name", default)
        if valid_name(name):
            return name
        output.err_console().print("  lowercase letters, digits, - or _, starting with a letter")


def _ask_port(default: int | None) -> int:
    while True:
        text = _ask("port the service listens on", str(default) if default else None)
        try:
            return _port(text)
        except argparse.ArgumentTypeError as exc:
            output.err_console().print(f"  {exc}")


def _ask_command(default: tuple[str, ...]) -> tuple[str, ...]:
    while True:
        text = _ask("command that starts the service", shlex.join(default) if default else None)
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            output.err_console().print(f"  {exc}")
            continue
        if argv:
            return argv


def _split_command(text: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"--command: {exc}") from None
    if not argv:
        raise UsageError("--command: empty command")
    return argv


# ---------------------------------------------------------------- the command


def run_init(args: argparse.Namespace) -> int:
    from devbox.core.profile import parse_profile
    from devbox.init.render import render_profile
    from devbox.init.scaffold import (
        Answers,
        default_command,
        default_name,
        default_port,
        propose,
        valid_name,
    )
    from devbox.store import atomic_write_bytes

    root = Path(args.dir)
    if not root.is_dir():
        raise NotFoundError(f"{args.dir}: no such directory")
    root = root.resolve()
    if args.name is not None and not valid_name(args.name):
        raise UsageError(
            f"--name: expected lowercase letters, digits, - or _, got {args.name!r}",
            hint="a profile name starts with a letter, e.g. orders or orders-dev",
        )
    command = _split_command(args.command) if args.command is not None else None
    facts, candidates = gather(root, args)
    ask = _interactive(args)
    if candidates and facts.service is not None:
        output.info(
            f"several compose services build from this repository ({', '.join(candidates)})"
            f": using {facts.service.name} (--service to choose)"
        )
    name, port = args.name, args.port
    if ask:
        _say_found(facts)
        if name is None:
            name = _ask_name(default_name(facts))
        if port is None:
            port = _ask_port(default_port(facts)[0])
    if (
        command is None
        and facts.dockerfile is None
        and (facts.service is None or facts.service.build_context is None)
    ):
        guess = default_command(facts)[0]
        if ask:
            command = _ask_command(guess)
        elif not guess:
            raise UsageError(
                f"no Dockerfile or compose build in {root}, and no command to run the service",
                hint='pass --command "python3 app.py" (or add a Dockerfile)',
            )
    proposal = propose(facts, Answers(name=name, port=port, command=command))
    text = render_profile(proposal)
    target = root / "profiles" / f"{proposal.name}.toml"
    try:
        parse_profile(text, target)
    except ConfigError as exc:
        raise UsageError(
            f"the proposed profile does not validate: {exc.one_line()}",
            hint="correct the flag values (--name, --port, --command), or report this as a bug",
        ) from None
    if args.dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    if target.exists() and not args.force:
        raise UsageError(
            f"{_shown(target)} already exists: not overwritten",
            hint="pass --force to replace it, or --name to write another profile",
        )
    atomic_write_bytes(target, text.encode("utf-8"))
    _say_written(proposal, target, root)
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _say_found(facts: RepoFacts) -> None:
    found = [f for f in (facts.dockerfile, facts.compose.path if facts.compose else None) if f]
    if found:
        what = " and ".join(found)
        svc = f" (service under test: {facts.service.name})" if facts.service else ""
        output.info(f"found {what}{svc}")
    else:
        output.info("no Dockerfile or compose file here: the service runs as a local process")


def _say_written(p: Proposal, target: Path, root: Path) -> None:
    con = output.console()
    if output.QUIET:
        con.print(_shown(target))
        return
    deps = p.enabled_dependencies
    dep_text = ", ".join(f"{d.name} ({d.env})" if d.env else d.name for d in deps) or "none yet"
    con.print(
        f"[green]wrote[/green] {_shown(target)}: service [bold]{p.service_name}[/bold] on "
        f"port {p.port}, dependencies: {dep_text}",
        soft_wrap=True,
    )
    planned = [pl.name for pl in p.planned]
    if planned:
        con.print(
            f"  not mocked (planned kinds, listed in the profile): {', '.join(planned)}",
            soft_wrap=True,
        )
    for note in p.notes:
        con.print(f"  [yellow]note:[/yellow] {note}", soft_wrap=True)
    con.print("next:")
    if root != Path.cwd().resolve():
        con.print(f"  cd {_shown(root)}")
    if deps:
        con.print("  # with the real dependencies reachable at their upstream URLs:")
    con.print(
        f"  devbox record {p.name} -- <your client> {{inbound}}   "
        "# record real traffic ({inbound} = the recording proxy's URL)",
        soft_wrap=True,
        markup=False,
    )
    con.print(
        f"  devbox up {p.name}   # the service, its mocks and the edit loop",
        soft_wrap=True,
        markup=False,
    )
