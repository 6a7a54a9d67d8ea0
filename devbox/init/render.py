"""A :class:`~devbox.init.scaffold.Proposal` rendered as a commented TOML profile.

The text is meant to be read: a comment line above every key says what it does and
where its value came from. Pure: no file system access.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

from devbox.init.scaffold import Proposal, ProposedDependency

# ---------------------------------------------------------------- rendering


def toml_str(s: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, except DEL must be escaped too)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def _inline(pairs: list[tuple[str, str]]) -> str:
    return "{ " + ", ".join(f"{k} = {v}" for k, v in pairs) + " }"


def _wrap(text: str, prefix: str = "# ") -> list[str]:
    return textwrap.wrap(
        text,
        width=96,
        initial_indent=prefix,
        subsequent_indent=prefix,
        break_long_words=False,
        break_on_hyphens=False,
    )


def render_profile(p: Proposal) -> str:
    out: list[str] = []

    def add(line: str) -> None:
        if line.startswith("# ") and len(line) > 96:
            out.extend(_wrap(line[2:]))
        else:
            out.append(line)

    from_ = " and ".join(p.sources) if p.sources else "your answers"
    add(f"# devbox profile {p.name!r}, written by `devbox init` from {from_}.")
    add("# A comment above each key says what it does; the full reference is docs/profiles.md.")
    add(f"# Check it after editing: devbox validate {p.name}")
    add("")
    add(f"# The profile's name: `devbox up {p.name}`; recordings live under mocks/{p.name}/.")
    add(f"name = {toml_str(p.name)}")
    add("")
    add("[service]")
    add("# The service under test: your code, built and run by devbox.")
    add(f"name = {toml_str(p.service_name)}")
    add(f"# The port it listens on (from {p.port_source}); devbox also passes it as $PORT.")
    add(f"port = {p.port}")
    if p.build_context is not None:
        add("# How the Docker runtime builds it: context and Dockerfile, relative to the project")
        add("# root (and the Dockerfile relative to the context).")
        pairs = [
            ("context", toml_str(p.build_context)),
            ("dockerfile", toml_str(p.dockerfile or "Dockerfile")),
        ]
        if p.build_target:
            add("# target: the Dockerfile stage that runs (build.target in compose).")
            pairs.append(("target", toml_str(p.build_target)))
        add(f"build = {_inline(pairs)}")
        if p.workdir and p.workdir != "/app":
            add("# Where the build context lands in the image (synced files go there).")
            add(f"workdir = {toml_str(p.workdir)}")
    if p.command:
        when = (
            'when there is no Docker engine, or with runtime = "process"'
            if p.build_context is not None
            else "as a local process"
        )
        add(f"# How devbox runs it {when}: argv, never")
        add(f"# through a shell. Guessed from {p.command_source}: check it.")
        add(f"command = {toml_list(p.command)}")
        add("# The working directory of the command, relative to the project root.")
        add(f"cwd = {toml_str(p.cwd)}")
    else:
        add("# Without Docker, devbox runs a command instead (argv, never through a shell):")
        add('# command = ["python3", "app.py"]')
    add("# When the service counts as ready: http = a path answering below 500,")
    if p.ready_http:
        add(f'# or tcp = true, or log = "a regex". From {p.ready_source}.')
        add(f"ready = {_inline([('http', toml_str(p.ready_http)), ('timeout_s', '30')])}")
    else:
        add('# or tcp = true (the port accepts connections), or log = "a regex" in its output.')
        add(f"ready = {_inline([('tcp', 'true'), ('timeout_s', '30')])}")
    add('# Where it runs: "auto" (Docker when an engine answers), "docker" or "process".')
    if p.runtime_reason:
        add(f"# {p.runtime}: {p.runtime_reason}.")
    add(f"runtime = {toml_str(p.runtime)}")
    if p.stop_signal:
        add("# The signal that stops it (from the compose file or STOPSIGNAL).")
        add(f"stop_signal = {toml_str(p.stop_signal)}")
    for r in p.remarks:
        add(f"# note: {r}")
    if p.env or p.unmocked_env:
        add("")
        add(f"# The service's environment (from {p.env_source}). Dependency URLs are not here:")
        add("# devbox sets each dependency's variable to its mock's address.")
        add("[service.env]")
        for k, v in p.env:
            add(f"{k} = {toml_str(v)}")
        for k, v, why in p.unmocked_env:
            add(f"# {why}")
            add(f"# {k} = {toml_str(v)}")
    add("")
    add("# The edit loop: what a saved file triggers (paths relative to the project root).")
    add("[service.watch]")
    add("# Copied into the running service, which is then restarted (no rebuild).")
    add(f"sync = {toml_list(p.sync)}")
    add("# Changes that need a new image (Dockerfile, dependency manifests, compiled sources).")
    add(f"rebuild = {toml_list(p.rebuild)}")
    add("# Never react to these.")
    add(f"ignore = {toml_list(p.ignore)}")
    for d in p.dependencies:
        add("")
        _render_dependency(add, d, p.name)
    if p.planned:
        add("")
        add("# Other services the compose file runs, of kinds devbox does not replace")
        add("# (grpc is a planned kind). Keep running them yourself:")
        for pl in p.planned:
            via = f", named by {', '.join(pl.env)}" if pl.env else ""
            kind = f"{pl.kind}, " if pl.kind else "no kind planned, "
            add(f"#   {pl.name}: {kind}{pl.what}{via}")
    add("")
    add("# What a replay compares, and when it fails.")
    add("[replay]")
    add("# Recorded inbound requests sent at once.")
    add("concurrency = 8")
    add('# Differences that are noise: JSON paths ("$.created_at") or "header:NAME".')
    add("# `devbox replay --learn-noise` proposes them from two runs.")
    add('ignore = ["header:date"]')
    add('# Conditions that fail a replay, e.g. "match < 100%", "p99 > 250ms".')
    add('fail_if = ["match < 100%"]')
    add("")
    add("# Secrets are redacted before recordings touch disk; default rules cover credentials,")
    add("# cookies, secret-named fields and more. Add your own fields here.")
    add("[redact]")
    add('# JSON field names or paths ("password", "$.customer.ssn").')
    add("json = []")
    add("# Request and response headers.")
    add("headers = []")
    return "\n".join(out) + "\n"


def _render_kind(add: Callable[[str], None], d: ProposedDependency, profile: str) -> None:
    """A redis/postgres service: a dependency of that kind, commented out while this
    devbox's profile parser does not accept the kind yet."""
    c = "# " if d.planned else ""
    if d.planned:
        add(f"# {d.origin}: a {d.kind} service. The {d.kind} kind is planned (being added to")
        add("# devbox); once your devbox accepts it, uncomment this to replace it with a mock:")
    else:
        add(f"# A {d.kind} dependency ({d.origin}), replaced by a mock replaying recordings.")
    add(f"{c}[[dependency]]")
    add(f"# Its name: recordings go to mocks/{profile}/{d.name}/.")
    add(f"{c}name = {toml_str(d.name)}")
    add(f"# Its protocol (docs/{d.kind}.md).")
    add(f"{c}kind = {toml_str(d.kind)}")
    add("# The real one as compose publishes it on this machine (used while recording).")
    add(f"{c}upstream = {toml_str(d.upstream)}")
    if d.env:
        add("# The variable that tells the service where it is: devbox sets it to the mock's URL.")
        add(f"{c}env = {toml_str(d.env)}")
    else:
        add(f"# note: {d.note}")
    if d.port:
        add("# The mock's port, fixed: the service's host and port variables point at it.")
        add(f"{c}port = {d.port}")
    if d.also_env:
        add(f"# note: {', '.join(d.also_env)} also point at {d.name}.")


def _render_dependency(add: Callable[[str], None], d: ProposedDependency, profile: str) -> None:
    if d.kind != "http":
        _render_kind(add, d, profile)
        return
    if not d.enabled:
        add(f"# {d.env} names an HTTP service {d.origin}; to mock it too, uncomment:")
        add("# [[dependency]]")
        add(f"# name = {toml_str(d.name)}")
        add(f"# upstream = {toml_str(d.upstream)}")
        add(f"# env = {toml_str(d.env)}")
        return
    add(f"# An HTTP dependency ({d.origin}), replaced by a mock replaying recorded traffic.")
    add("[[dependency]]")
    add(f"# Its name: recordings go to mocks/{profile}/{d.name}/.")
    add(f"name = {toml_str(d.name)}")
    add("# Its protocol: http (redis and postgres dependencies have their own kinds).")
    add('kind = "http"')
    add("# The real service, used only while recording (`devbox record`); its path is the base")
    add("# path the service is given (devbox swaps only host and port).")
    if d.host_upstream:
        add(f"# Compose calls it {d.upstream}; from this machine compose publishes it here")
        add(f"# (start it with `docker compose up {d.origin.rsplit(' ', 1)[-1]}`):")
        add(f"upstream = {toml_str(d.host_upstream)}")
    else:
        add(f"upstream = {toml_str(d.upstream)}")
        if d.origin.startswith("compose service"):
            add("# note: compose publishes no port for it: `devbox record` needs the host above")
            add("# to resolve from this machine (or change upstream to an address that does).")
    add("# The variable that tells the service where it is: devbox sets it to the mock's URL.")
    add(f"env = {toml_str(d.env)}")
    if d.also_env:
        add(f"# note: {', '.join(d.also_env)} also point at {d.name}; devbox sets only {d.env}.")
    add("# A request with no recording: fail (answer 502 with the reasons), passthrough")
    add("# (forward to upstream) or record (forward and keep the exchange).")
    add('on_miss = "fail"')
