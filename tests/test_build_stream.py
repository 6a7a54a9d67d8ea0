"""BuildStream reads the Docker engine's real build stream: whole lines (a RUN's output
arrives in pieces), the built image's ID, and the error that failed a build. The
service's image (docker_image.py) and the mock image (mock_image.py) both read theirs
with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devbox.runtime import ensure_base_image
from devbox.runtime.base_image import BASE_REPO
from devbox.runtime.build_stream import BuildStream

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def api() -> Any:
    import docker

    ensure_base_image()
    return docker.from_env(timeout=120).api


@pytest.fixture
def tag(api: Any) -> Iterator[str]:
    name = f"devbox-test/build-stream:{uuid.uuid4().hex[:12]}"
    yield name
    try:
        api.remove_image(name, force=True)
    except Exception:  # the failing build made no image
        pass


def build(api: Any, ctx: Path, tag: str, dockerfile: str) -> tuple[BuildStream, list[str]]:
    (ctx / "Dockerfile").write_text(dockerfile)
    lines: list[str] = []
    stream = api.build(path=str(ctx), tag=tag, rm=True, forcerm=True, decode=True, pull=False)
    return BuildStream(lines.append).read(stream), lines


def test_lines_and_image_id_of_a_real_build(api: Any, tag: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {BASE_REPO}:bookworm\n"
        # three lines in one RUN, the last without a newline: it comes in pieces
        "RUN printf 'first line\\nsecond line\\n' && printf 'no newline'\n"
        f'LABEL devbox.test="{tag}"\n'
    )
    out, lines = build(api, tmp_path, tag, dockerfile)
    assert out.error is None and out.errors == []
    assert out.image_id == api.inspect_image(tag)["Id"]
    # the engine sends "Step i/n : ..." and its newline as two chunks: one line
    assert sum(line.startswith("Step 2/3 : RUN printf") for line in lines) == 1
    assert "first line" in lines and "second line" in lines
    # output without a final newline runs into the engine's next line, as docker build
    # itself prints it; it is not lost
    assert any(line.startswith("no newline") for line in lines)
    # every line whole: none empty, none with its newline left on
    assert all(line and line == line.rstrip() and "\n" not in line for line in lines)


def test_the_error_that_failed_a_build(api: Any, tag: str, tmp_path: Path) -> None:
    dockerfile = f"FROM {BASE_REPO}:bookworm\nRUN echo about to fail && exit 3\n"
    out, lines = build(api, tmp_path, tag, dockerfile)
    assert out.error is not None and "returned a non-zero code: 3" in out.error
    assert "about to fail" in lines
    assert out.image_id is None
