"""Reading the build context's ``.dockerignore`` (the one piece of file I/O the plan needs)."""

from __future__ import annotations

from pathlib import Path

from devbox.core.profile import Profile


def dockerignore_path(profile: Profile) -> Path | None:
    build = profile.service.build
    if build is None:
        return None
    return profile.root / build.context / ".dockerignore"


def read_dockerignore(profile: Profile) -> tuple[str, ...]:
    """The lines of the build context's ``.dockerignore``; empty when there is none.

    An unreadable file counts as empty: watching must not fail because of it, and
    ``docker build`` will report the same problem with more authority.
    """
    path = dockerignore_path(profile)
    if path is None:
        return ()
    try:
        return tuple(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return ()
