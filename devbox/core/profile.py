"""Profiles: ``profiles/NAME.toml`` parsed into typed, validated, frozen objects.

Every validation error names the file, the line and the dotted field
(``dependency[1].on_miss``), because the profile is what users edit most.
The objects live in ``profile_model``, position tracking in ``profile_toml`` and
each table's validation in ``profile_sections``; this module reads a file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from devbox.core.nesting import MAX_DEPTH, too_deep_toml
from devbox.core.profile_model import (
    NETWORKS,
    ON_MISS,
    RUNTIMES,
    Build,
    Dependency,
    Faults,
    MatchRules,
    Profile,
    Ready,
    RecordSettings,
    RedactRules,
    ReplaySettings,
    Service,
    Watch,
)
from devbox.core.profile_sections import (
    NAME_RE,
    dependency_section,
    record_section,
    redact_section,
    replay_section,
    service_section,
)
from devbox.core.profile_toml import Ctx, LineIndex
from devbox.errors import ConfigError, NotFoundError

__all__ = [
    "NETWORKS",
    "ON_MISS",
    "RUNTIMES",
    "Build",
    "Dependency",
    "Faults",
    "MatchRules",
    "Profile",
    "Ready",
    "RecordSettings",
    "RedactRules",
    "ReplaySettings",
    "Service",
    "Watch",
    "load_profile",
    "parse_profile",
    "project_root_for",
    "resolve_profile_path",
]


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
    ctx = Ctx(fname, LineIndex(text))
    top = ctx.table(
        data, "", ("name", "service", "dependency", "replay", "redact", "mocks", "record")
    )
    name = ctx.str_(top, "name", "", path.stem)
    if not NAME_RE.match(name):
        raise ctx.error("name", f"expected lowercase letters, digits, - or _, got {name!r}")
    if "service" not in top:
        raise ctx.error("service", "missing [service] table", hint="see docs/profiles.md")
    service = service_section(ctx, top["service"])
    deps_raw = top.get("dependency", [])
    if not isinstance(deps_raw, list):
        raise ctx.error("dependency", "expected [[dependency]] tables")
    deps = tuple(dependency_section(ctx, d, f"dependency[{i}]") for i, d in enumerate(deps_raw))
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
        replay=replay_section(ctx, top.get("replay", {})),
        redact=redact_section(ctx, top.get("redact", {})),
        mocks=ctx.str_(top, "mocks", ""),
        record=record_section(ctx, top.get("record", {})),
    )
