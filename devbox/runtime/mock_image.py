"""Build an image that holds devbox and a project's recordings, without a registry.

The Docker build itself is offline (the base image has no pip and cannot reach
an index): devbox is installed from wheels placed in the build context. They
are made on the host by ``pip wheel``: devbox's own from a copy of the source
tree it is imported from, its dependencies from pip's cache or the index the
host's pip is configured with (``PIP_FIND_LINKS``/``PIP_NO_INDEX`` make that
step offline too), plus pip's own wheel, which the build runs pip from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from devbox import __version__
from devbox.errors import EngineError
from devbox.runtime.build_stream import BuildStream
from devbox.runtime.docker_image import check_bases
from devbox.runtime.engine import api_errors, client

LineSink = Callable[[str], None]
# the Python of devbox/base:bookworm: binary wheels made on the host must fit it
IMAGE_PYTHON = (3, 11)
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")


@dataclass(frozen=True, slots=True)
class MockImageResult:
    image: str
    image_id: str
    built: bool  # False: the tag existed (it names its content) and was kept
    seconds: float
    wheels: int = 0


def devbox_source() -> Path | None:
    """The source tree devbox runs from (an editable install or a checkout), if any."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "devbox"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _copy_source(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in _SOURCE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    shutil.copytree(
        src / "devbox", dest / "devbox", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def make_wheels(dest: Path, on_line: LineSink | None = None, extras: Sequence[str] = ()) -> str:
    """Wheels of devbox (with ``extras``: their dependencies too), its dependencies and
    pip into ``dest``; the pip wheel's name."""
    if sys.version_info[:2] != IMAGE_PYTHON:
        want = ".".join(map(str, IMAGE_PYTHON))
        raise EngineError(
            f"the mock image runs Python {want} and devbox runs on "
            f"{sys.version_info.major}.{sys.version_info.minor}: binary wheels would not fit",
            hint=f"run `devbox image mock` from a Python {want} environment",
        )
    with tempfile.TemporaryDirectory(prefix="devbox-wheel-src-") as tmp:
        src = devbox_source()
        if src is not None:
            target = Path(tmp) / "devbox"
            _copy_source(src, target)  # an in-tree build would leave build/ in the checkout
            requirement = str(target) + _extras(extras)
        else:
            requirement = f"devbox{_extras(extras)}=={__version__}"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dest),
            requirement,
            f"pip=={metadata.version('pip')}",
        ]
        _run(cmd, on_line)
    pips = sorted(dest.glob("pip-*.whl"))
    if not pips:  # pragma: no cover - pip wheel succeeded, so it is there
        raise EngineError("pip wheel made no wheel of pip")
    return pips[-1].name


def _extras(extras: Sequence[str]) -> str:
    return f"[{','.join(sorted(extras))}]" if extras else ""


def _run(cmd: Sequence[str], on_line: LineSink | None) -> None:
    tail: list[str] = []
    # an argument list (no shell): our interpreter running pip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        tail = [*tail, line][-8:]
        if on_line is not None:
            on_line(line)
    if proc.wait() != 0:
        raise EngineError(
            "pip wheel failed: " + (" | ".join(x for x in tail if x.strip())[-400:] or "?"),
            hint="pip needs an index or a wheel folder (PIP_FIND_LINKS=DIR PIP_NO_INDEX=1)",
        )


def image_id(tag: str) -> str | None:
    import docker.errors

    try:
        return str(client().api.inspect_image(tag)["Id"])
    except docker.errors.ImageNotFound:
        return None


def build_mock_image(
    tag: str,
    dockerfile: Callable[[str, str], str],
    files: Sequence[tuple[str, Path]],
    *,
    labels: Mapping[str, str],
    force: bool = False,
    on_line: LineSink | None = None,
    extras: Sequence[str] = (),
) -> MockImageResult:
    """Build ``tag`` from ``dockerfile(pip wheel name, build id)``; ``files`` go under
    ``project/``; ``extras``: devbox's optional dependencies the image installs (their
    wheels are made too). Images labelled ``devbox.build=<build id>`` (the install stage)
    are removed afterwards."""
    started = time.monotonic()
    with api_errors(f"inspecting {tag}"):
        existing = image_id(tag)
    if existing and not force:
        return MockImageResult(tag, existing, False, time.monotonic() - started)
    # before the wheels (the slow part): the image it starts from must be here
    with api_errors(f"inspecting the base of {tag}"):
        check_bases(client().api, dockerfile("pip.whl", "check"), f"the Dockerfile of {tag}")
    with tempfile.TemporaryDirectory(prefix="devbox-mock-image-") as tmp:
        ctx = Path(tmp)
        pip_wheel = make_wheels(ctx / "wheels", on_line, extras)
        for rel, path in files:
            target = ctx / "project" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (ctx / "project").mkdir(exist_ok=True)
        build_id = uuid.uuid4().hex
        (ctx / "Dockerfile").write_text(dockerfile(pip_wheel, build_id), encoding="utf-8")
        wheels = len(list((ctx / "wheels").glob("*.whl")))
        try:
            built = _docker_build(ctx, tag, labels, on_line)
        finally:
            _remove_stages(build_id)
    return MockImageResult(tag, built, True, time.monotonic() - started, wheels)


def _remove_stages(build_id: str) -> None:
    api = client().api
    with api_errors("removing the install stage"):
        for img in api.images(all=True, filters={"label": f"devbox.build={build_id}"}):
            api.remove_image(img["Id"], force=True)


def _docker_build(ctx: Path, tag: str, labels: Mapping[str, str], on_line: LineSink | None) -> str:
    api = client(timeout=600).api
    with api_errors(f"building {tag}"):
        stream: Any = api.build(
            path=str(ctx),
            tag=tag,
            labels=dict(labels),
            rm=True,
            forcerm=True,
            decode=True,
            pull=False,
        )
        out = BuildStream(on_line).read(stream)
    built = out.image_id
    if out.error is not None:
        hint = "the build output is shown with -v"
        if "devbox/base" in out.error:
            hint = "build the offline base image first: devbox image base"
        raise EngineError(f"building {tag} failed: {out.error}", hint=hint)
    if built is None:
        with api_errors(f"inspecting {tag}"):
            built = image_id(tag)
    if built is None:  # pragma: no cover - the build reported success
        raise EngineError(f"building {tag}: the image is missing afterwards")
    return built
