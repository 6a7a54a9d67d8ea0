"""The image half of the Docker runtime: building the service's image (or finding a
local one) and dropping the builds it replaced.

``prepare`` builds ``build.context`` with the engine's classic builder through the
low-level API (``decode=True`` streams JSON chunks: each line becomes a
BuildProgress event, "Step i/n" gives the progress). A profile with only ``image``
uses that local image. ``DockerRuntime`` (docker_runtime.py) adds the container.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devbox.core.buildkit import buildkit_only
from devbox.core.events import BuildProgress
from devbox.core.profile import Profile
from devbox.errors import ConfigError, EngineError
from devbox.runtime.base import RuntimeBase
from devbox.runtime.base_image import BASE_REPO
from devbox.runtime.build_stream import BuildStream
from devbox.runtime.engine import api_errors
from devbox.runtime.ownership import L_KIND, L_PROFILE, L_SERVICE
from devbox.store import atomic_write_bytes

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)


def image_tag(profile: Profile) -> str:
    if profile.service.image:
        return profile.service.image
    return f"devbox/{profile.name}-{profile.service.name}:latest"


def dockerfile_bases(text: str) -> list[tuple[int, str]]:
    """(line, image) of every FROM that names an image (not scratch, not an earlier stage)."""
    stages: set[str] = set()
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        m = _FROM_RE.match(line)
        if not m:
            continue
        ref, alias = m.group(1), m.group(2)
        if ref.lower() != "scratch" and ref.lower() not in stages and "$" not in ref:
            out.append((n, ref))
        if alias:
            stages.add(alias.lower())
    return out


def check_bases(api: Any, text: str, where: str) -> None:
    """Every devbox base image the Dockerfile ``text`` starts FROM must be on this machine:
    a build would look for it in a registry and fail with a network error that names
    neither the image nor the fix."""
    import docker.errors

    for line, ref in dockerfile_bases(text):
        if not ref.startswith(BASE_REPO + ":") and ref != BASE_REPO:
            continue  # other images may come from a registry or the local store
        try:
            api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"{where}:{line}: base image {ref} is missing",
                hint="build it once, offline, in about a minute: devbox image base",
            ) from None


class DockerImages(RuntimeBase):
    """Image steps shared by ``DockerRuntime``; it sets ``api`` and ``image_id``."""

    api: Any  # docker's low-level APIClient
    image_id: str | None

    def _local_image(self) -> str:
        ref = image_tag(self.profile)
        import docker.errors

        try:
            return str(self.api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise EngineError(f"inspecting image {ref}: {exc.explanation or exc}") from None
        self.emit(BuildProgress(name=self.service.name, line=f"pulling {ref}"))
        try:
            self.api.pull(ref)
            return str(self.api.inspect_image(ref)["Id"])
        except Exception as exc:
            raise EngineError(
                f"image {ref} is not present locally and could not be pulled: {_first_line(exc)}",
                hint=f"build or load it first (docker build -t {ref} ., docker load), "
                "or give [service] a build = { context = ... }",
            ) from None

    def _dockerfile(self) -> tuple[Path, Path]:
        build = self.service.build
        assert build is not None
        context = (self.profile.root / build.context).resolve()
        dockerfile = (context / build.dockerfile).resolve()
        if not context.is_dir():
            raise ConfigError(
                f"build context does not exist: {context}",
                file=str(self.profile.path),
                field="service.build.context",
            )
        if not dockerfile.is_file():
            raise ConfigError(
                f"Dockerfile does not exist: {dockerfile}",
                file=str(self.profile.path),
                field="service.build.dockerfile",
            )
        return context, dockerfile

    def _offline_dockerfile(self, dockerfile: Path) -> Path | None:
        """``build.offline_base``: FROM python:*/node:* images missing from the local store
        become the offline base image + Debian's runtime (a copy of the Dockerfile, next to
        the session state; the original is never touched). Says what it did."""
        from devbox.runtime.base_image import rewrite_for_debian

        text, done = rewrite_for_debian(
            dockerfile.read_text(errors="replace"), keep=lambda ref: self._tag_id(ref) is not None
        )
        if not done:
            return None
        for r in done:
            self.devbox_log(f"offline base: {dockerfile.name} {r.describe()}")
        out_dir = self.profile.root / ".devbox" / "offline"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"Dockerfile.{self.profile.name}.{self.service.name}"
        # every session (pytest-xdist workers, two `devbox up`) makes the same copy: the
        # first writes it whole (temp + rename), the others find it written and leave it
        if not out.is_file() or out.read_text(errors="replace") != text:
            atomic_write_bytes(out, text.encode())
        self._check_bases(out)  # the base image it now starts from must exist
        return out

    def _check_bases(self, dockerfile: Path) -> None:
        check_bases(self.api, dockerfile.read_text(errors="replace"), str(dockerfile))

    def _build(self) -> str:
        build = self.service.build
        assert build is not None
        context, dockerfile = self._dockerfile()
        self._check_bases(dockerfile)
        tag = image_tag(self.profile)
        self.set_state("building", f"building {tag}")
        rewritten = self._offline_dockerfile(dockerfile) if build.offline_base else None
        try:
            df_arg = str((rewritten or dockerfile).relative_to(context))
        except ValueError:
            df_arg = str(rewritten or dockerfile)  # outside the context: the SDK sends it along
        # no project label: the tag is shared by every checkout of the project anyway, and
        # identical contexts should hit the build cache wherever they live
        labels = {L_KIND: "image", L_PROFILE: self.profile.name, L_SERVICE: self.service.name}
        previous = self._tag_id(tag)
        try:
            with api_errors(f"building {tag}"):
                stream = self.api.build(
                    path=str(context),
                    dockerfile=df_arg,
                    tag=tag,
                    buildargs=dict(build.args) or None,
                    target=build.target,
                    labels=labels,
                    rm=True,
                    forcerm=True,
                    decode=True,
                )
                out = BuildStream(self._build_line).read(stream)
        except EngineError as exc:
            # the classic builder refuses a heredoc before any step: say why, and what to do
            hint = _buildkit_hint(dockerfile, exc.message)
            if hint is None or exc.hint:
                raise
            self.set_state("crashed", "build failed")
            raise EngineError(exc.message, hint=hint) from None
        image_id = out.image_id
        if out.error is not None:
            msg = out.error
            self.set_state("crashed", "build failed")
            hint = "the build output is shown above"
            if (
                "pull access denied" in msg
                or "repository does not exist" in msg
                or "dial tcp" in msg
                or "no such host" in msg
            ):
                hint = (
                    "a FROM image is not present locally and no registry can be reached: "
                    "build FROM devbox/base:bookworm (devbox image base), or load the image"
                )
            hint = _buildkit_hint(dockerfile, msg) or hint
            raise EngineError(f"building {tag} failed: {msg}", hint=hint)
        if image_id is None:
            with api_errors(f"inspecting {tag}"):
                image_id = str(self.api.inspect_image(tag)["Id"])
        if previous and previous != image_id and previous != self.image_id:
            self._drop_image(previous)  # the tag moved on; the old build is dead weight
        return image_id

    def _tag_id(self, tag: str) -> str | None:
        try:
            return str(self.api.inspect_image(tag)["Id"])
        except Exception:
            return None

    def _build_line(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        m = _STEP_RE.match(line)
        if m:
            self.emit(
                BuildProgress(
                    name=self.service.name, line=line, step=int(m.group(1)), total=int(m.group(2))
                )
            )
        else:
            self.emit(BuildProgress(name=self.service.name, line=line))

    def _drop_image(self, image_id: str) -> None:
        """The previous build, now untagged: remove it unless something still uses it."""
        try:
            info = self.api.inspect_image(image_id)
            if not info.get("RepoTags"):
                self.api.remove_image(image_id, noprune=False)
        except Exception:
            pass


def _buildkit_hint(dockerfile: Path, error: str) -> str | None:
    """When the classic builder refused BuildKit-only syntax: what it was and what to do."""
    refused = ("parse error", "requires BuildKit", "Unknown flag", "unknown flag")
    if not any(r in error for r in refused):
        return None
    try:
        uses = buildkit_only(dockerfile.read_text(errors="replace"))
    except OSError:
        return None
    if not uses:
        return None
    return (
        f"{dockerfile.name} uses syntax only BuildKit builds ({', '.join(uses[:3])}) and devbox "
        "builds with the engine's classic builder: run the service as a process (--runtime "
        'process, or runtime = "process" with [service] command), or build without that syntax'
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
