"""The offline base image ``devbox/base:bookworm``: Debian minbase + python3, no registry.

No image can be pulled here, so devbox makes its own: ``debootstrap`` installs a
minimal Debian into a temporary directory from the apt mirror this machine is
already configured with, the tree is trimmed (apt lists, .debs, docs) and
streamed as a tar into ``docker import``. About a minute, once: the tag is the
cache (``force`` rebuilds). A file lock keeps two builders (CI, a developer, a
test session) from doing the work twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.errors import EngineError

BASE_REPO = "devbox/base"
BASE_TAG = "bookworm"
BASE_IMAGE = f"{BASE_REPO}:{BASE_TAG}"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LOCK_PATH = Path(tempfile.gettempdir()) / "devbox-base-image.lock"
# trimmed after debootstrap: package caches and documentation nobody reads in a container
TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


@dataclass(frozen=True, slots=True)
class BaseImageResult:
    image: str
    image_id: str
    built: bool  # False: the tag existed and was kept
    seconds: float
    mirror: str = ""
    size_bytes: int = 0


def _sources_entries(apt_dir: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, suites, types) of every enabled apt source, deb822 and one-line formats."""
    files: list[Path] = []
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".sources", ".list"))
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split(), fields.get("types", "").split()
        else:
            for line in text.splitlines():
                # drop comments and [arch=... signed-by=...] options
                words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] in ("deb", "deb-src"):
                    yield words[1], [words[2]], [words[0]]


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine installs from (DEVBOX_DEBIAN_MIRROR overrides)."""
    env = os.environ.get("DEVBOX_DEBIAN_MIRROR")
    if env:
        return env
    fallback = None
    for uri, suites, types in _sources_entries(apt_dir):
        if "deb" not in types or not uri.startswith(("http://", "https://", "file:/")):
            continue
        if "security" in uri or any("security" in s for s in suites):
            continue
        if SUITE in suites:
            return uri.rstrip("/")
        if fallback is None and "debian" in uri:
            fallback = uri.rstrip("/")
    return fallback or DEFAULT_MIRROR


def base_image_id(docker_client: Any) -> str | None:
    import docker.errors

    try:
        return str(docker_client.api.inspect_image(BASE_IMAGE)["Id"])
    except docker.errors.ImageNotFound:
        return None


class _Lock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def find_debootstrap() -> str | None:
    return shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/sbin:/sbin:/usr/local/sbin"
    )


def ensure_base_image(
    *,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
    docker_client: Any = None,
    mirror: str | None = None,
) -> BaseImageResult:
    """Make sure ``devbox/base:bookworm`` exists; build it (debootstrap + import) if not."""
    from devbox.runtime.engine import api_errors, client

    say = on_line or (lambda _line: None)
    dc = docker_client or client(timeout=600)
    t0 = time.monotonic()
    with api_errors("checking the base image"):
        existing = base_image_id(dc)
    if existing and not force:
        return BaseImageResult(BASE_IMAGE, existing, False, 0.0)
    debootstrap = find_debootstrap()
    if debootstrap is None:
        raise EngineError(
            "debootstrap is not installed (it builds the offline base image)",
            hint="apt-get install debootstrap (bash scripts/setup does it)",
        )
    if os.geteuid() != 0:
        raise EngineError(
            "building the base image needs root (debootstrap installs into a chroot)",
            hint="run: sudo devbox image base",
        )
    mirror = mirror or debian_mirror()
    with _Lock(LOCK_PATH):
        if not force:
            # another builder may have finished while we waited for the lock
            with api_errors("checking the base image"):
                existing = base_image_id(dc)
            if existing:
                return BaseImageResult(BASE_IMAGE, existing, False, time.monotonic() - t0)
        work = Path(tempfile.mkdtemp(prefix="devbox-base-", dir="/var/tmp"))
        try:
            rootfs = work / "rootfs"
            _debootstrap(debootstrap, rootfs, mirror, say)
            say("I: trimming apt caches and documentation")
            for rel in TRIM:
                target = rootfs / rel
                if target.is_dir():
                    for child in target.iterdir():
                        if child.is_dir() and not child.is_symlink():
                            shutil.rmtree(child, ignore_errors=True)
                        elif child.name != "lock":
                            child.unlink(missing_ok=True)
            say(f"I: importing the tree as {BASE_IMAGE}")
            image_id = _import(dc, rootfs, mirror)
        finally:
            _cleanup(work)
    size = 0
    with api_errors("inspecting the base image"):
        size = int(dc.api.inspect_image(image_id).get("Size") or 0)
    say(f"I: {BASE_IMAGE} is {image_id[7:19]} ({size / 1e6:.0f} MB)")
    return BaseImageResult(BASE_IMAGE, image_id, True, time.monotonic() - t0, mirror, size)


def _debootstrap(exe: str, rootfs: Path, mirror: str, say: Callable[[str], None]) -> None:
    args = [exe, "--variant=minbase", "--include=python3,ca-certificates"]
    if KEYRING.is_file():
        args.append(f"--keyring={KEYRING}")
    args += [SUITE, str(rootfs), mirror]
    say(f"I: debootstrap {SUITE} from {mirror}")
    tail: list[str] = []
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail = [*tail[-9:], line]
            say(line)
    code = proc.wait()
    if code != 0:
        hint = "check that the mirror answers: apt-get update"
        log = rootfs / "debootstrap" / "debootstrap.log"
        if log.is_file():
            hint += f"; details in {log} (kept until the next run)"
        raise EngineError(
            f"debootstrap failed (exit {code}) from {mirror}: {tail[-1] if tail else 'no output'}",
            hint=hint,
        )


def _import(dc: Any, rootfs: Path, mirror: str) -> str:
    from devbox.runtime.engine import api_errors

    changes = [
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["python3"]',
        "LABEL devbox.kind=base",
        f"LABEL devbox.base.suite={SUITE}",
        f"LABEL devbox.base.mirror={mirror}",
        f"LABEL devbox.base.built={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
    ]
    # a tar stream straight into the engine: no temporary tarball on disk
    tar = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        ["tar", "-C", str(rootfs), "--numeric-owner", "--one-file-system", "-cf", "-", "."],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        with api_errors(f"importing {BASE_IMAGE}"):
            dc.api.import_image(src=tar.stdout, repository=BASE_REPO, tag=BASE_TAG, changes=changes)
    finally:
        tar.stdout.close()
        _, err = tar.communicate()
    if tar.returncode != 0:
        raise EngineError(f"tar of the base tree failed: {err.decode(errors='replace').strip()}")
    with api_errors("inspecting the base image"):
        return str(dc.api.inspect_image(BASE_IMAGE)["Id"])


def _cleanup(work: Path) -> None:
    """Remove the temporary tree, unmounting what a failed debootstrap left mounted."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    prefix = str(work) + "/"
    points = sorted(
        (m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)),
        reverse=True,
    )
    for point in points:
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["umount", "-l", point], check=False, capture_output=True
        )
    shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- python:* / node:* offline

# Debian bookworm's runtimes, what an official python:*/node:* image is rewritten to
DEBIAN_RUNTIMES = {
    "python": (
        "3.11",
        "python3 python3-pip python3-venv",
        "ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip",
        # Debian marks its python as externally managed: pip in an image is the point
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1",
    ),
    "node": ("18", "nodejs npm", "true", "ENV NODE_ENV=production"),
}
_FROM_LINE = re.compile(
    r"^(\s*FROM\s+)((?:--platform=\S+\s+)?)(\S+)(\s+AS\s+\S+)?\s*$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Rewrite:
    line: int
    image: str  # what the Dockerfile asked for
    runtime: str  # "python" | "node"
    version: str  # the Debian package's version (bookworm)

    def describe(self) -> str:
        asked = self.image.rsplit(":", 1)[1] if ":" in self.image else "latest"
        same = asked.startswith(self.version) or not asked[:1].isdigit()
        note = "" if same else f" (asked for {asked})"
        return (
            f"line {self.line}: FROM {self.image} -> {BASE_IMAGE} + Debian's "
            f"{self.runtime} {self.version}{note}"
        )


def official_runtime(image: str) -> str | None:
    """ "python" for python:3.11-slim, docker.io/library/python, ...; "node" likewise."""
    ref = image.split("@", 1)[0]
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for prefix in ("docker.io/library/", "library/", "docker.io/"):
        repo = repo.removeprefix(prefix)
    return repo if repo in DEBIAN_RUNTIMES else None


def rewrite_for_debian(
    text: str, keep: Callable[[str], bool] = lambda _i: False
) -> tuple[str, tuple[Rewrite, ...]]:
    """``FROM python:*`` / ``FROM node:*`` -> the offline base image plus that runtime from
    Debian packages (installed from the apt mirror at build time, cached as a layer).
    ``keep(image)``: True for images to leave alone (present in the local store).
    Pure: text in, text and what was done out."""
    out: list[str] = []
    done: list[Rewrite] = []
    for n, line in enumerate(text.splitlines(), start=1):
        m = _FROM_LINE.match(line)
        runtime = official_runtime(m.group(3)) if m else None
        if m is None or runtime is None or keep(m.group(3)):
            out.append(line)
            continue
        version, packages, links, env = DEBIAN_RUNTIMES[runtime]
        out.append(f"{m.group(1)}{BASE_IMAGE}{m.group(4) or ''}")
        out.append(
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {packages} && rm -rf /var/lib/apt/lists/* && {links}"
        )
        out.append(env)
        done.append(Rewrite(n, m.group(3), runtime, version))
    return "\n".join(out) + "\n", tuple(done)
