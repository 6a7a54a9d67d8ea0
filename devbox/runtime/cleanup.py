"""Cleanup: ``devbox down`` and ``reap_orphans``.

What devbox starts is findable without its own memory: containers, networks and
volumes carry ``devbox.*`` labels, process-runtime children are listed in
``<root>/.devbox/sessions/*.json``. ``down`` removes everything of a project (or
one profile of it), live or orphaned; ``reap_orphans`` removes only what a dead
devbox left (owner PID gone, or reused by another process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.runtime.ownership import (
    L_KIND,
    L_OWNER_PID,
    L_PROFILE,
    L_PROJECT,
    L_SESSION,
    owner_from_labels,
    project_hash,
)
from devbox.runtime.sessions import SessionFile, iter_sessions, kill_group


@dataclass(frozen=True, slots=True)
class Removed:
    kind: str  # "container" | "network" | "volume" | "process"
    name: str
    profile: str
    session: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f", {self.detail}" if self.detail else ""
        return f"{self.kind} {self.name} (profile {self.profile}, session {self.session}{extra})"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding profiles/ or .devbox/; else ``start``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "profiles").is_dir() or (d / ".devbox").is_dir():
            return d
    return here


def _label_filters(root: Path | None, profile: str | None) -> list[str]:
    labels = [L_PROJECT + "=" + project_hash(root)] if root is not None else [L_PROJECT]
    if profile:
        labels.append(f"{L_PROFILE}={profile}")
    return labels


def devbox_containers(
    api: Any, *, root: Path | None = None, profile: str | None = None, session: str | None = None
) -> list[dict[str, Any]]:
    """Every container devbox started (running or not) for this project/profile/session."""
    labels = [*_label_filters(root, profile), f"{L_KIND}=service"]
    if session:
        labels.append(f"{L_SESSION}={session}")
    return list(api.containers(all=True, filters={"label": labels}))


def owner_dead(labels: dict[str, str]) -> bool:
    owner = owner_from_labels(labels)
    if owner is None:
        return True  # unlabelled owner: nothing alive claims it
    return owner.alive() is False


def _docker_api() -> Any | None:
    from devbox.runtime.engine import client, why_no_engine

    if why_no_engine(timeout=3.0) is not None:
        return None
    return client(timeout=30).api


def _remove_containers(api: Any, containers: Iterable[dict[str, Any]]) -> list[Removed]:
    import docker.errors

    out = []
    for c in containers:
        labels = c.get("Labels") or {}
        name = (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")
        try:
            api.remove_container(c["Id"], v=True, force=True)
        except docker.errors.NotFound:
            continue  # someone else removed it meanwhile
        except docker.errors.APIError:
            continue
        detail = f"{c.get('State', '?')}, owner pid {labels.get(L_OWNER_PID, '?')}"
        out.append(
            Removed(
                "container", name, labels.get(L_PROFILE, "?"), labels.get(L_SESSION, "?"), detail
            )
        )
    return out


def _remove_networks_volumes(
    api: Any, root: Path | None, profile: str | None, only_dead: bool
) -> list[Removed]:
    """Networks and volumes devbox labelled (none today; kept so down stays complete)."""
    import docker.errors

    out: list[Removed] = []
    filters = {"label": _label_filters(root, profile)}
    try:
        networks = api.networks(filters=filters)
        volumes = (api.volumes(filters=filters) or {}).get("Volumes") or []
    except docker.errors.APIError:
        return out
    for n in networks:
        labels = n.get("Labels") or {}
        if only_dead and not owner_dead(labels):
            continue
        try:
            api.remove_network(n["Id"])
            out.append(
                Removed(
                    "network",
                    n.get("Name", n["Id"][:12]),
                    labels.get(L_PROFILE, "?"),
                    labels.get(L_SESSION, "?"),
                )
            )
        except docker.errors.APIError:
            pass
    for v in volumes:
        labels = v.get("Labels") or {}
        if only_dead and not owner_dead(labels):
            continue
        try:
            api.remove_volume(v["Name"], force=True)
            out.append(
                Removed("volume", v["Name"], labels.get(L_PROFILE, "?"), labels.get(L_SESSION, "?"))
            )
        except docker.errors.APIError:
            pass
    return out


def _end_session(s: SessionFile) -> list[Removed]:
    out = []
    for child in s.children:
        for pid in kill_group(child):
            cmd = " ".join(child.command)[:80]
            out.append(Removed("process", str(pid), s.profile, s.session, cmd))
    s.remove()
    return out


def project_profiles(root: Path) -> list[str]:
    """Names of the profiles in root/profiles (the ``name`` key, else the file's stem)."""
    import tomllib

    names = []
    for p in sorted((root / "profiles").glob("*.toml")):
        try:
            names.append(str(tomllib.loads(p.read_text()).get("name", p.stem)))
        except (OSError, ValueError):
            names.append(p.stem)
    return names


def _remove_images(api: Any, profiles: Iterable[str]) -> list[Removed]:
    """Images devbox built for these profiles (label devbox.kind=image), unless still in use."""
    import docker.errors

    out = []
    for name in profiles:
        filters = {"label": [f"{L_KIND}=image", f"{L_PROFILE}={name}"]}
        for img in api.images(filters=filters):
            tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
            # untag only what devbox named; a tag the user added keeps the image alive
            refs = [t for t in tags if t.startswith("devbox/")] if tags else [img["Id"]]
            for ref in refs:
                try:
                    api.remove_image(ref)
                except docker.errors.APIError:
                    continue  # a container (maybe of another checkout) still uses it
                out.append(Removed("image", ref if tags else ref[7:19], name, "-"))
    return out


def down(
    profile: str | None = None,
    *,
    root: Path | None = None,
    docker_api: Any | None = None,
    use_docker: bool = True,
    images: bool = False,
) -> list[Removed]:
    """Stop and remove everything devbox started for this project (one profile of it);
    with ``images``, the images it built for them too."""
    root = (root or find_project_root()).resolve()
    removed: list[Removed] = []
    for s in iter_sessions(root, profile):
        if s.owner.pid == os.getpid():
            continue  # our own live session: its runtime stops it
        removed += _end_session(s)
    api = docker_api if docker_api is not None else (_docker_api() if use_docker else None)
    if api is not None:
        removed += _remove_containers(api, devbox_containers(api, root=root, profile=profile))
        removed += _remove_networks_volumes(api, root, profile, only_dead=False)
        if images:
            removed += _remove_images(api, [profile] if profile else project_profiles(root))
    return removed


def reap_orphans(
    profile_name: str | None = None,
    *,
    root: Path | None = None,
    docker_api: Any | None = None,
    use_docker: bool = True,
) -> list[str]:
    """Remove what dead devbox sessions left: containers of any project whose owner process
    is gone, and process-runtime children listed in this project's session files."""
    root = (root or find_project_root()).resolve()
    removed: list[Removed] = []
    for s in iter_sessions(root, profile_name):
        if s.owner.alive() is False:
            removed += _end_session(s)
    api = docker_api if docker_api is not None else (_docker_api() if use_docker else None)
    if api is not None:
        labels = [L_PROJECT, f"{L_KIND}=service"]
        if profile_name:
            labels.append(f"{L_PROFILE}={profile_name}")
        dead = [
            c
            for c in api.containers(all=True, filters={"label": labels})
            if owner_dead(c.get("Labels") or {})
        ]
        removed += _remove_containers(api, dead)
        removed += _remove_networks_volumes(api, None, profile_name, only_dead=True)
    return [str(r) for r in removed]
