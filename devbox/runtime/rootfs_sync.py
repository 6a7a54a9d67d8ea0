"""Fast sync: write changed files straight into a running container's root filesystem.

``put_archive`` costs ~45 ms per call on this engine (a tar upload and an
extraction inside the container's mount namespace), a fifth of a whole
restart. When devbox runs as root on the engine's own host and the container
uses overlay2, the container's root is mounted at ``GraphDriver.Data.MergedDir``;
writing there is what ``put_archive`` does, minus the round trip (~1 ms).

Safety rules (any failure falls back to ``put_archive``):
* the merged dir must be a mount point before and after the writes: a container
  that stopped meanwhile has it unmounted, and writes would land underneath;
* no path component inside the container may be a symlink: the host resolves
  it, so an absolute link such as ``/app -> /srv`` would otherwise point at the
  HOST's /srv;
* each file is written to a temporary name and renamed: a process that reads it
  meanwhile sees the old or the new content, never half of one.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


class UnsafeTarget(Exception):
    pass


def _safe_dir(root: Path, parts: Sequence[str], create: bool) -> Path:
    """root/parts..., each component a real directory (created when missing)."""
    d = root
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeTarget(part)
        d = d / part
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(d, 0o755)
            os.chown(d, 0, 0)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeTarget(str(d))  # a symlink or a file where a directory should be
    return d


def write_files(
    merged: Path, files: Sequence[tuple[Path, PurePosixPath]], deleted: Sequence[PurePosixPath]
) -> None:
    """Copy each (host file, absolute container path) in; remove ``deleted`` paths.

    Raises UnsafeTarget or OSError when the fast path cannot be used safely;
    the caller then falls back to the engine's copy.
    """
    if not os.path.ismount(merged):
        raise UnsafeTarget("not mounted")
    written: list[Path] = []
    for src, dest in files:
        parts = dest.parts[1:]  # without the leading "/"
        if not parts:
            raise UnsafeTarget(str(dest))
        d = _safe_dir(merged, parts[:-1], create=True)
        target = d / parts[-1]
        try:
            if stat.S_ISLNK(os.lstat(target).st_mode) or os.path.isdir(target):
                raise UnsafeTarget(str(target))
        except FileNotFoundError:
            pass
        tmp = d / f".{parts[-1]}.devbox-sync"
        shutil.copyfile(src, tmp)
        st = os.stat(src)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.chown(tmp, 0, 0)  # what COPY and put_archive do by default
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
        written.append(target)
    for dest in deleted:
        parts = dest.parts[1:]
        try:
            d = _safe_dir(merged, parts[:-1], create=False)
        except FileNotFoundError:
            continue
        target = d / parts[-1]
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    if not os.path.ismount(merged):
        # the container stopped while we wrote: our files went under the mount point
        for w in written:
            try:
                w.unlink()
            except OSError:
                pass
        raise UnsafeTarget("unmounted while writing")
