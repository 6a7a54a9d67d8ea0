"""The watcher's self-check: the canary, and the fall back to polling when native
events do not arrive (forced through the injectable canary writer) or the native
backend cannot arm or fails mid-session. Polling is then exercised for real."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devbox.core.profile import Profile, load_profile
from devbox.errors import EngineError
from devbox.watch import Batch, Watcher, sources
from devbox.watch import arming as watcher_module

T = TypeVar("T")

PROFILE = """
name = "p"
[service]
port = 8080
build = { context = "svc" }
command = ["python3", "svc/app.py"]
[service.watch]
sync = ["svc/**/*.py"]
"""
FIRST = 5.0


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Profile]:
    root = tmp_path.resolve()
    (root / "profiles").mkdir()
    (root / "svc").mkdir()
    (root / "svc/app.py").write_text("print(1)\n")
    (root / "mocks/p").mkdir(parents=True)
    (root / "profiles/p.toml").write_text(PROFILE)
    return root, load_profile(root / "profiles/p.toml")


def only_when_polling(path: Path, mode: str) -> None:
    """A canary writer that simulates a file system without native events."""
    if mode == "polling":
        path.write_text("canary\n")


def never(path: Path, mode: str) -> None:
    """A canary writer whose change never arrives, in any mode."""


async def expect_batch(w: Watcher) -> Batch:
    b = await w.next_batch(timeout=FIRST)
    assert b is not None, "no batch arrived"
    return b


def test_canary_ok_means_native_and_writes_nothing_visible(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with Watcher.for_profile(profile, canary_deadline_ms=3000) as w:
            info = w.armed_info
            assert info is not None and info.mode == "inotify" and info.canary == "ok"
            # the canary leaves no file behind but the directory's own .gitignore
            assert sorted(p.name for p in (root / ".devbox/watch").iterdir()) == [".gitignore"]
            # and canary events never surface as batches
            assert await w.next_batch(timeout=0.5) is None

    run(go())


def test_failed_canary_falls_back_to_polling(project: tuple[Path, Profile]) -> None:
    root, profile = project
    notices: list[str] = []

    async def go() -> None:
        async with Watcher.for_profile(
            profile,
            canary_write=only_when_polling,
            canary_deadline_ms=200,
            poll_delay_ms=50,
            on_notice=notices.append,
        ) as w:
            info = w.armed_info
            assert info is not None
            assert info.mode == "polling" and w.mode == "polling"
            assert info.canary == "ok"  # confirmed through polling
            assert "no inotify event for the canary within 200 ms" in info.fallback
            assert info.poll_delay_ms == 50
            assert "polling every 50 ms" in info.summary()
            # polling really delivers changes, batched and filtered the same way
            (root / "svc/app.py").write_text("print(2)\n")
            (root / "svc/.app.py.swp").write_text("swap")
            b = await expect_batch(w)
            assert [c.path for c in b.changes] == [root / "svc/app.py"]
            assert w.plan(b).action == "sync+restart"
            (root / "svc/app.py").unlink()
            b = await expect_batch(w)
            assert [(c.path.name, c.kind) for c in b.changes] == [("app.py", "deleted")]

    run(go())
    assert any("falls back to polling" in n for n in notices)


def test_canary_failing_everywhere_is_reported_not_fatal(project: tuple[Path, Profile]) -> None:
    _root, profile = project
    notices: list[str] = []

    async def go() -> None:
        async with Watcher.for_profile(
            profile,
            canary_write=never,
            canary_deadline_ms=100,
            poll_delay_ms=20,
            on_notice=notices.append,
        ) as w:
            info = w.armed_info
            assert info is not None and info.mode == "polling" and info.canary == "failed"
            assert "canary FAILED" in info.summary()

    run(go())
    assert any("not seen even when polling" in n for n in notices)


def test_arming_failure_falls_back_to_polling(
    project: tuple[Path, Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, profile = project
    real = sources.open_source

    def limited(paths: list[str], **kw: Any) -> Any:
        if not kw["polling"]:
            raise OSError(28, "OS file watch limit reached")
        return real(paths, **kw)

    monkeypatch.setattr(watcher_module, "open_source", limited)

    async def go() -> None:
        async with Watcher.for_profile(profile, poll_delay_ms=50) as w:
            info = w.armed_info
            assert info is not None and info.mode == "polling" and info.canary == "ok"
            assert "inotify could not arm" in info.fallback and "watch limit" in info.fallback
            (root / "svc/app.py").write_text("print(3)\n")
            b = await expect_batch(w)
            assert [c.kind for c in b.changes] == ["modified"]

    run(go())


def test_nothing_can_arm_is_an_engine_error(
    project: tuple[Path, Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    _root, profile = project

    def broken(paths: list[str], **kw: Any) -> Any:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(watcher_module, "open_source", broken)

    async def go() -> None:
        with pytest.raises(EngineError, match="cannot watch files"):
            async with Watcher.for_profile(profile):
                pass

    run(go())


def test_force_polling(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with Watcher.for_profile(profile, force_polling=True, poll_delay_ms=30) as w:
            info = w.armed_info
            assert info is not None and info.mode == "polling" and info.fallback == ""
            assert info.canary == "ok"
            (root / "svc/new.py").write_text("N = 1\n")
            b = await expect_batch(w)
            assert [(c.path.name, c.kind) for c in b.changes] == [("new.py", "added")]

    run(go())


def test_polling_sees_two_saves_within_one_second(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with Watcher.for_profile(
            profile, force_polling=True, poll_delay_ms=20, quiet_ms=0
        ) as w:
            # same size, same second: only nanosecond mtimes tell these apart
            (root / "svc/app.py").write_text("print(7)\n")
            b1 = await expect_batch(w)
            (root / "svc/app.py").write_text("print(8)\n")
            b2 = await expect_batch(w)
            assert [c.kind for c in (*b1.changes, *b2.changes)] == ["modified", "modified"]

    run(go())


def test_backend_failure_mid_session_switches_to_polling(project: tuple[Path, Profile]) -> None:
    root, profile = project
    notices: list[str] = []

    async def go() -> None:
        async with Watcher.for_profile(
            profile, poll_delay_ms=30, canary_deadline_ms=3000, on_notice=notices.append
        ) as w:
            assert w.mode == "inotify"
            # what a reader thread does when the backend raises (queue overflow...)
            t = threading.Thread(target=w._on_error, args=(RuntimeError("inotify overflow"),))
            t.start()
            t.join()
            for _ in range(200):  # bounded: up to ~10 s
                if w.mode == "polling" and w.armed_info and w.armed_info.mode == "polling":
                    break
                await asyncio.sleep(0.05)
            info = w.armed_info
            assert info is not None and info.mode == "polling"
            assert "inotify overflow" in info.fallback
            (root / "svc/app.py").write_text("print(4)\n")
            b = await expect_batch(w)
            assert [c.path.name for c in b.changes] == ["app.py"]

    run(go())
    assert any("inotify overflow" in n for n in notices)


def test_check_reruns_the_canary(project: tuple[Path, Profile]) -> None:
    _root, profile = project
    calls: list[str] = []
    broken = {"on": False}

    def writer(path: Path, mode: str) -> None:
        calls.append(mode)
        if not (broken["on"] and mode != "polling"):
            path.write_text("canary\n")

    async def go() -> None:
        async with Watcher.for_profile(
            profile, canary_write=writer, canary_deadline_ms=300, poll_delay_ms=30
        ) as w:
            assert (await w.check()).mode == "inotify"
            broken["on"] = True  # e.g. the inotify instance died during a suspend
            info = await w.check()
            assert info.mode == "polling" and info.canary == "ok"
            assert "canary stopped arriving" in info.fallback

    run(go())
    assert calls == ["inotify", "inotify", "inotify", "polling"]


def test_unwritable_canary_dir_skips_the_canary(
    project: tuple[Path, Profile],
) -> None:
    root, profile = project
    (root / ".devbox").write_text("a file where the directory would go")

    async def go() -> None:
        async with Watcher.for_profile(profile) as w:
            info = w.armed_info
            assert info is not None and info.canary == "skipped" and info.mode == "inotify"
            (root / "svc/app.py").write_text("print(5)\n")
            b = await expect_batch(w)
            assert [c.path.name for c in b.changes] == ["app.py"]

    run(go())
