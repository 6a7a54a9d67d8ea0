"""``devbox image import``: make an image usable by builds without a registry.

A ``docker save`` tarball (from any machine that can pull) is loaded with its own tags;
a root file system tarball (``docker export``) is imported under ``--tag``; an image
already in the local store is tagged ``--tag``. After that, a Dockerfile's
``FROM python:3.11-slim`` builds here offline: the classic builder takes local images
and never pulls them.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.errors import NotFoundError, UsageError


@dataclass(frozen=True, slots=True)
class Imported:
    source: str
    how: str  # "loaded", "imported", "tagged", "present"
    images: tuple[str, ...]  # the names a FROM can now use
    image_id: str


def _is_save_tarball(path: Path) -> bool | None:
    """True: ``docker save`` output; False: another tarball (a root file system); None:
    not a tarball."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name.lstrip("./") in ("manifest.json", "index.json"):
                    return True
            return False
    except (tarfile.TarError, OSError, EOFError):
        return None


def _split(tag: str) -> tuple[str, str]:
    repo, sep, name = tag.rpartition(":")
    if sep and "/" not in name:
        return repo, name
    return tag, "latest"


def import_image(source: str, tag: str | None = None, docker_client: Any = None) -> Imported:
    import docker.errors

    from devbox.runtime.engine import api_errors, client

    dc = docker_client or client(timeout=600)
    api = dc.api
    path = Path(source)
    if path.is_file():
        kind = _is_save_tarball(path)
        if kind is None:
            raise UsageError(
                f"{source}: not a tarball",
                hint="give the output of `docker save IMAGE -o FILE.tar` (or of docker export)",
            )
        if kind:
            loaded: list[str] = []
            ids: list[str] = []
            with api_errors(f"loading {source}"), path.open("rb") as f:
                for chunk in api.load_image(f):
                    text = str(chunk.get("stream") or "") if isinstance(chunk, dict) else ""
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise UsageError(f"{source}: {chunk['error']}")
                    for line in text.splitlines():
                        if line.startswith("Loaded image: "):
                            loaded.append(line.removeprefix("Loaded image: ").strip())
                        elif line.startswith("Loaded image ID: "):
                            ids.append(line.removeprefix("Loaded image ID: ").strip())
            first = loaded[0] if loaded else (ids[0] if ids else None)
            if first is None:
                raise UsageError(f"{source}: the engine loaded no image from it")
            with api_errors(f"inspecting {first}"):
                image_id = str(api.inspect_image(first)["Id"])
            if tag:
                with api_errors(f"tagging {tag}"):
                    api.tag(image_id, *_split(tag))
                loaded.append(tag)
            return Imported(source, "loaded", tuple(dict.fromkeys(loaded)), image_id)
        if not tag:
            raise UsageError(
                f"{source} is a file system tarball, not `docker save` output: name it",
                hint=f"devbox image import {source} --tag NAME:TAG",
            )
        repo, name = _split(tag)
        with api_errors(f"importing {source}"):
            api.import_image_from_file(str(path), repository=repo, tag=name)
            image_id = str(api.inspect_image(tag)["Id"])
        return Imported(source, "imported", (tag,), image_id)
    with api_errors(f"inspecting {source}"):
        try:
            image_id = str(api.inspect_image(source)["Id"])
        except (docker.errors.ImageNotFound, docker.errors.NullResource):
            raise NotFoundError(
                f"{source}: no such file, and no image by that name in the local store",
                hint=(
                    f"on a machine that can pull it: docker save {source} -o image.tar; copy "
                    "image.tar here; then: devbox image import image.tar"
                ),
            ) from None
    if not tag:
        return Imported(source, "present", (source,), image_id)
    with api_errors(f"tagging {tag}"):
        api.tag(image_id, *_split(tag))
    return Imported(source, "tagged", (tag,), image_id)
