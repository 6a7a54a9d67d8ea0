"""The watcher on real files with real inotify: batches, filters and the plan of each.

Every wait is bounded (``next_batch(timeout=...)``); no test asserts on how fast
anything is, only on what arrives and how it is grouped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devbox.core.plan import FileChange
from devbox.core.profile import Profile, load_profile
from devbox.watch import Batch, Watcher

T = TypeVar("T")

PROFILE = """
name = "p"

[service]
name = "svc"
port = 8080
build = { context = "svc" }
command = ["python3", "svc/app.py"]

[service.watch]
sync = ["svc/**/*.py"]
rebuild = ["svc/requirements.txt"]
ignore = ["**/*.tmp"]
quiet_ms = 50
cap_ms = 1000

[[dependency]]
name = "payments"
env = "PAYMENTS_URL"
"""

# long enough for a loaded CI machine; a test that waits this long has failed anyway
FIRST = 5.0
# how long "nothing arrives" is observed: several quiet periods and polling steps
SILENCE = 0.6


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def make_project(tmp: Path, text: str = PROFILE, mocks: bool = True) -> Profile:
    (tmp / "profiles").mkdir(parents=True, exist_ok=True)
    (tmp / "svc" / "pkg").mkdir(parents=True, exist_ok=True)
    (tmp / "svc" / "app.py").write_text("print('v1')\n")
    (tmp / "svc" / "pkg" / "mod.py").write_text("X = 1\n")
    (tmp / "svc" / "Dockerfile").write_text("FROM scratch\n")
    (tmp / "svc" / ".git").mkdir(exist_ok=True)
    if mocks:
        (tmp / "mocks" / "p" / "payments").mkdir(parents=True, exist_ok=True)
    (tmp / "profiles" / "p.toml").write_text(text)
    return load_profile(tmp / "profiles" / "p.toml")


MODE = "inotify"


@pytest.fixture(params=["inotify", "polling"], autouse=True)
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs against inotify and against the polling fallback."""
    global MODE
    MODE = request.param
    yield MODE
    MODE = "inotify"


def watcher(profile: Profile, **kw: Any) -> Watcher:
    kw.setdefault("canary_deadline_ms", 3000)
    if MODE == "polling":
        kw.setdefault("force_polling", True)
        kw.setdefault("poll_delay_ms", 30)
    return Watcher.for_profile(profile, **kw)


async def expect_batch(w: Watcher) -> Batch:
    b = await w.next_batch(timeout=FIRST)
    assert b is not None, "no batch arrived"
    return b


async def expect_silence(w: Watcher) -> None:
    b = await w.next_batch(timeout=SILENCE)
    assert b is None, f"unexpected batch: {b}"


def names(b: Batch, root: Path) -> dict[str, str]:
    return {c.path.relative_to(root).as_posix(): c.kind for c in b.changes}


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Profile]:
    root = tmp_path.resolve()
    return root, make_project(root)


def test_armed_info_counts_what_inotify_watches(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            info = w.armed_info
            assert info is not None
            assert info.mode == MODE
            assert info.canary == "ok" and info.canary_ms is not None
            assert info.fallback == ""
            assert info.trees == (str(root / "mocks/p"), str(root / "svc"))
            assert info.flat_dirs == (str(root / "profiles"),)
            # svc, svc/pkg, svc/.git, mocks/p, mocks/p/payments + profiles
            assert info.dirs == 6
            assert info.files == 4  # app.py, mod.py, Dockerfile, p.toml
            assert info.missing == ()
            assert "watching 2 trees + 1 dir (6 dirs, 4 files) with " in info.summary()
            assert info.as_dict()["canary"] == "ok"

    run(go())


def test_one_write_one_batch_and_its_plan(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            (root / "svc/app.py").write_text("print('v2')\n")
            b = await expect_batch(w)
            assert names(b, root) == {"svc/app.py": "modified"}
            assert b.first_event_at <= b.last_event_at <= b.delivered_at
            assert not b.capped
            plan = w.plan(b)
            assert b.plan == plan  # the batch carries its plan: the engine applies it as is
            assert plan.action == "sync+restart"
            assert plan.sync_paths == (root / "svc/app.py",)
            assert plan.reason == "svc/app.py matched sync rule 'svc/**/*.py'"
            await expect_silence(w)

    run(go())


def test_burst_within_quiet_period_is_one_batch(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        # a generous quiet period so that a loaded machine still sees one burst
        async with watcher(profile, quiet_ms=300) as w:
            for i in range(10):
                (root / "svc/app.py").write_text(f"print({i})\n")
                (root / "svc/pkg/mod.py").write_text(f"X = {i}\n")
                (root / f"svc/pkg/new{i % 3}.py").write_text("Y = 1\n")
            b = await expect_batch(w)
            assert names(b, root) == {
                "svc/app.py": "modified",
                "svc/pkg/mod.py": "modified",
                "svc/pkg/new0.py": "added",
                "svc/pkg/new1.py": "added",
                "svc/pkg/new2.py": "added",
            }
            assert b.events >= 5
            assert w.plan(b).action == "sync+restart"
            await expect_silence(w)

    run(go())


def test_cap_bounds_a_batch_under_continuous_edits(project: tuple[Path, Profile]) -> None:
    root, profile = project
    stop = threading.Event()

    def keep_editing() -> None:
        # bounded: at most 150 writes, 20 ms apart (about 3 s)
        for i in range(150):
            if stop.is_set():
                return
            (root / "svc/app.py").write_text(f"print({i})\n")
            time.sleep(0.02)

    async def go() -> list[Batch]:
        batches: list[Batch] = []
        # the quiet period outlasts any plausible stall of the writer: only the cap ends
        # a batch while it writes
        async with watcher(profile, quiet_ms=500, cap_ms=600) as w:
            t = threading.Thread(target=keep_editing, daemon=True)
            t.start()
            try:
                while len(batches) < 3:
                    batches.append(await expect_batch(w))
            finally:
                stop.set()
                t.join(5)
        return batches

    batches = run(go())
    for b in batches[:2]:
        assert b.capped, b
    for b in batches:
        assert b.last_event_at - b.first_event_at <= 0.6
        assert names(b, root) == {"svc/app.py": "modified"}
    for b in batches:
        assert b.first_event_at <= b.last_event_at <= b.delivered_at
    # batches never overlap: every change of the second came after the first's last one.
    # (Not after the first's delivery: a save landing while a capped batch is being
    # handed out rightly starts the next batch, a fraction of a millisecond earlier.)
    assert batches[0].last_event_at <= batches[1].first_event_at


def test_delete_counts_and_rename_is_delete_plus_add(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            (root / "svc/pkg/mod.py").unlink()
            b = await expect_batch(w)
            assert names(b, root) == {"svc/pkg/mod.py": "deleted"}
            plan = w.plan(b)
            assert b.plan == plan  # the batch carries its plan: the engine applies it as is
            assert plan.action == "sync+restart"
            assert plan.deleted_paths == (root / "svc/pkg/mod.py",)
            assert plan.steps[0].change == "deleted"

            (root / "svc/app.py").rename(root / "svc/main.py")
            b = await expect_batch(w)
            assert names(b, root) == {"svc/app.py": "deleted", "svc/main.py": "added"}

    run(go())


def test_atomic_save_yields_the_file_not_the_temp(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            # what most editors and write-file-atomic libraries do
            tmp = root / "svc/.app.py.3f9a2c"
            tmp.write_text("print('atomic')\n")
            os.replace(tmp, root / "svc/app.py")
            b = await expect_batch(w)
            assert names(b, root) == {"svc/app.py": "modified"}
            # vim's default: app.py -> app.py~, write app.py, delete app.py~, probe 4913
            (root / "svc/4913").write_text("")
            (root / "svc/4913").unlink()
            os.rename(root / "svc/app.py", root / "svc/app.py~")
            (root / "svc/app.py").write_text("print('vim')\n")
            (root / "svc/app.py~").unlink()
            b = await expect_batch(w)
            assert names(b, root) == {"svc/app.py": "modified"}
            # a batch made only of a transient file is never delivered
            tmp.write_text("x")
            tmp.unlink()
            await expect_silence(w)

    run(go())


LITTER = [
    "svc/.git/index",
    "svc/.git/objects/ab/cdef",
    "svc/pkg/__pycache__/mod.cpython-311.pyc",
    "svc/__pycache__/x.py",
    "svc/.app.py.swp",
    "svc/.app.py.swx",
    "svc/app.py~",
    "svc/#app.py#",
    "svc/.#app.py",
    "svc/app.py___jb_tmp___",
    "svc/app.py___jb_old___",
    "svc/app.py.vsctmp",
    "svc/.app.py.kate-swp",
    "svc/.goutputstream-XYZ123",
    "svc/notes.tmp",
    "svc/.devbox/state.json",
    "profiles/other.toml",
    "mocks/p/payments/.1.json.swp",
]


def _write_litter(root: Path) -> None:
    for rel in LITTER:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("litter\n")
        p.write_text("litter again\n")  # modified too, and the file stays


def test_litter_never_produces_a_batch(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            _write_litter(root)
            await expect_silence(w)
            # litter mixed into a real edit is filtered out of the batch
            _write_litter(root)
            (root / "svc/pkg/mod.py").write_text("X = 2\n")
            b = await expect_batch(w)
            assert names(b, root) == {"svc/pkg/mod.py": "modified"}

    run(go())


def test_dockerignore_entries_are_ignored_and_reread(project: tuple[Path, Profile]) -> None:
    root, profile = project
    (root / "svc/.dockerignore").write_text("docs/\n*.md\n")

    async def go() -> None:
        async with watcher(profile) as w:
            (root / "svc/docs").mkdir()
            (root / "svc/docs/guide.txt").write_text("x")
            (root / "svc/README.md").write_text("x")
            await expect_silence(w)
            # a file in the context that no rule names: rebuild, conservatively
            (root / "svc/data.csv").write_text("a,b\n")
            b = await expect_batch(w)
            plan = w.plan(b)
            assert plan.action == "rebuild"
            assert "no sync or rebuild rule" in plan.reason
            # the .dockerignore itself changes the image: rebuild, and the new rules apply
            (root / "svc/.dockerignore").write_text("docs/\n*.md\n*.csv\n")
            b = await expect_batch(w)
            plan = w.plan(b)
            assert plan.action == "rebuild"
            assert plan.reason == "svc/.dockerignore is the build context's .dockerignore"
            assert w.plan([FileChange(root / "svc/data.csv")]).action == "nothing"

    run(go())


def test_new_directory_files_are_reported(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            # files created right after mkdir can precede the new directory's watch
            d = root / "svc/newpkg/sub"
            d.mkdir(parents=True)
            (d / "a.py").write_text("A = 1\n")
            (root / "svc/newpkg/__init__.py").write_text("")
            b = await expect_batch(w)
            got = names(b, root)
            # never a directory itself, always the files
            assert got == {"svc/newpkg/__init__.py": "added", "svc/newpkg/sub/a.py": "added"}
            shutil.rmtree(root / "svc/newpkg")
            b = await expect_batch(w)
            assert names(b, root) == {
                "svc/newpkg/__init__.py": "deleted",
                "svc/newpkg/sub/a.py": "deleted",
            }
            (root / "svc/emptydir").mkdir()
            await expect_silence(w)

    run(go())


def test_profile_and_recordings_changes(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile) as w:
            (root / "profiles/p.toml").write_text(PROFILE + "\n# edited\n")
            b = await expect_batch(w)
            assert names(b, root) == {"profiles/p.toml": "modified"}
            assert w.plan(b).action == "reload-profile"
            (root / "mocks/p/payments/001.json").write_text("{}\n")
            b = await expect_batch(w)
            assert names(b, root) == {"mocks/p/payments/001.json": "added"}
            assert w.plan(b).action == "reload-mocks"

    run(go())


def test_recordings_dir_created_after_start(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    profile = make_project(root, mocks=False)
    notices: list[str] = []

    async def go() -> None:
        async with watcher(profile, on_notice=notices.append) as w:
            info = w.armed_info
            assert info is not None and info.missing == (str(root / "mocks/p"),)
            # the way a recorder creates it: all at once
            (root / "mocks/p/inbound").mkdir(parents=True)
            (root / "mocks/p/inbound/001.json").write_text("{}\n")
            seen: dict[str, str] = {}
            for _ in range(3):  # the file may come alone or with a re-scan duplicate
                b = await w.next_batch(timeout=FIRST if not seen else SILENCE)
                if b is None:
                    break
                seen.update(names(b, root))
            assert seen == {"mocks/p/inbound/001.json": "added"}
            info = w.armed_info
            assert info is not None and info.missing == ()
            assert str(root / "mocks/p") in info.trees
            # and it is really watched now
            (root / "mocks/p/inbound/002.json").write_text("{}\n")
            b = await expect_batch(w)
            assert names(b, root) == {"mocks/p/inbound/002.json": "added"}
            assert w.plan(b).action == "reload-mocks"

    run(go())


def test_stop_event_ends_iteration(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> list[Batch]:
        stop = asyncio.Event()
        got: list[Batch] = []
        async with watcher(profile, stop_event=stop) as w:

            async def consume() -> None:
                async for b in w:
                    got.append(b)
                    stop.set()

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            (root / "svc/app.py").write_text("print('x')\n")
            await asyncio.wait_for(task, FIRST)
        return got

    got = run(go())
    assert len(got) == 1


def test_generic_watcher_without_profile(tmp_path: Path) -> None:
    from devbox.core.plan import WatchTargets

    root = tmp_path.resolve()
    (root / "src").mkdir()
    (root / "single").mkdir()
    (root / "single/one.cfg").write_text("a")
    (root / "single/other.cfg").write_text("a")
    targets = WatchTargets(root, trees=(root / "src",), literals=(root / "single/one.cfg",))

    async def go() -> None:
        accept_calls: list[Path] = []

        def accept(c: FileChange) -> bool:
            accept_calls.append(c.path)
            return c.path.name != "other.cfg"

        kw: dict[str, Any] = {"canary_deadline_ms": 3000, "force_polling": MODE == "polling"}
        async with Watcher(targets, **kw) as w:
            (root / "src/.git").mkdir()
            (root / "src/.git/HEAD").write_text("x")
            (root / "src/a.txt").write_text("x")
            b = await expect_batch(w)
            assert names(b, root) == {"src/a.txt": "added"}
            with pytest.raises(RuntimeError):
                w.plan(b)
        async with Watcher(targets, accept=accept, **kw) as w:
            (root / "single/other.cfg").write_text("b")
            (root / "single/one.cfg").write_text("b")
            b = await expect_batch(w)
            assert names(b, root) == {"single/one.cfg": "modified"}
            assert root / "single/other.cfg" in accept_calls

    run(go())


def test_cancelled_consumer_loses_no_events(project: tuple[Path, Profile]) -> None:
    root, profile = project

    async def go() -> None:
        async with watcher(profile, quiet_ms=300) as w:
            (root / "svc/app.py").write_text("print(1)\n")
            # cancelled while the batch is still collecting its quiet period
            task = asyncio.create_task(w.next_batch(timeout=FIRST))
            await asyncio.sleep(0.15)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            b = await expect_batch(w)
            assert names(b, root) == {"svc/app.py": "modified"}

    run(go())


def test_missing_literal_that_appears_as_a_directory(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    text = PROFILE.replace(
        'rebuild = ["svc/requirements.txt"]', 'rebuild = ["svc/requirements.txt", "vendor"]'
    )
    profile = make_project(root, text)

    async def go() -> None:
        async with watcher(profile) as w:
            info = w.armed_info
            assert info is not None and info.missing == (str(root / "vendor"),)
            (root / "vendor/lib").mkdir(parents=True)
            (root / "vendor/lib/x.txt").write_text("x")
            seen: dict[str, str] = {}
            for _ in range(3):
                b = await w.next_batch(timeout=FIRST if not seen else SILENCE)
                if b is None:
                    break
                seen.update(names(b, root))
                assert w.plan(b).action == "rebuild"
            assert seen == {"vendor/lib/x.txt": "added"}
            info = w.armed_info
            assert info is not None and str(root / "vendor") in info.trees
            (root / "vendor/lib/x.txt").write_text("y")
            b = await expect_batch(w)
            assert names(b, root) == {"vendor/lib/x.txt": "modified"}
            plan = w.plan(b)
            assert plan.reason == "vendor/lib/x.txt matched rebuild rule 'vendor'"

    run(go())
