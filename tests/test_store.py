"""Recordings on disk: atomic writes, append-only writer, kill -9 safety, directory loading."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.errors import NotFoundError, RecordingError
from devbox.store import (
    RecordingWriter,
    free_path,
    load_dir,
    load_file,
    load_path,
    recording_files,
    write_recording,
)

ROOT = Path(__file__).resolve().parent.parent


def ex(i: int, body: bytes = b'{"ok":true}') -> Exchange:
    return Exchange(
        id=f"ex-{i:05d}",
        direction=Direction.OUTBOUND,
        source="payments",
        request=Request("GET", f"/charges/{i}", (), (("Host", "payments"),), host="payments"),
        response=Response(200, (("Content-Type", "application/json"),), body),
        timing=Timing(started_at=1709284502.0 + i, duration_ms=1.5),
    )


def test_write_recording_then_load(tmp_path: Path) -> None:
    path = tmp_path / "payments" / "a.json"
    exchanges = [ex(i) for i in range(5)]
    assert write_recording(path, "payments", Direction.OUTBOUND, exchanges, origin="test") == path
    loaded = load_file(path)
    assert list(loaded.decoded.exchanges) == exchanges
    assert loaded.decoded.header.origin == "test" and loaded.decoded.header.created_at
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    write_recording(path, "payments", Direction.OUTBOUND, [ex(1)])
    before = path.read_bytes()

    def exploding() -> Iterator[Exchange]:
        yield ex(2)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_recording(path, "payments", Direction.OUTBOUND, exploding())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_load_dir_reads_files_in_name_order(tmp_path: Path) -> None:
    d = tmp_path / "payments"
    write_recording(d / "b.json", "payments", Direction.OUTBOUND, [ex(3), ex(4)])
    write_recording(d / "a.json", "payments", Direction.OUTBOUND, [ex(1), ex(2)])
    (d / "notes.txt").write_text("not a recording")
    with RecordingWriter(d / "c.json.partial", "payments", Direction.OUTBOUND) as w:
        w.append(ex(5))
    assert [e.id for e in load_dir(d)] == ["ex-00001", "ex-00002", "ex-00003", "ex-00004"]
    assert [e.id for e in load_dir(d, include_partial=True)][-1] == "ex-00005"
    assert [p.name for p in recording_files(d)] == ["a.json", "b.json"]
    assert load_dir(tmp_path / "nothing") == []
    assert [e.id for e in load_path(d / "b.json")] == ["ex-00003", "ex-00004"]
    assert len(load_path(d)) == 4


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_path(tmp_path / "nope")
    with pytest.raises(NotFoundError):
        load_file(tmp_path / "nope.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(RecordingError, match="cannot read"):
        load_file(tmp_path / "dir.json")


def test_free_path_never_overwrites(tmp_path: Path) -> None:
    p = tmp_path / "chrome.json"
    assert free_path(p) == p
    p.write_text("x")
    assert free_path(p) == tmp_path / "chrome-2.json"
    (tmp_path / "chrome-2.json").write_text("x")
    assert free_path(p) == tmp_path / "chrome-3.json"


def test_writer_appends_and_reopens_keeping_the_header(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    with RecordingWriter(path, "payments", Direction.OUTBOUND, origin="first") as w:
        w.append(ex(1))
        w.append(ex(2))
        assert w.count == 2 and w.bytes_written == path.stat().st_size
    with RecordingWriter(path, "payments", Direction.OUTBOUND, origin="second", fsync=True) as w:
        assert w.dropped_torn_bytes == 0
        w.append(ex(3))
    d = load_file(path).decoded
    assert [e.id for e in d.exchanges] == ["ex-00001", "ex-00002", "ex-00003"]
    assert d.header.origin == "first" and not d.torn_tail
    assert path.read_bytes().count(b'"devbox_recording"') == 1


def test_writer_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    w = RecordingWriter(path, "payments", Direction.OUTBOUND)

    def work(t: int) -> None:
        for i in range(150):
            w.append(ex(t * 1000 + i, body=os.urandom(2000).hex().encode()))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    w.close()
    ids = {e.id for e in load_dir(tmp_path)}
    assert len(ids) == 600


def test_writer_drops_a_torn_tail_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    with RecordingWriter(path, "payments", Direction.OUTBOUND) as w:
        w.append(ex(1))
        w.append(ex(2))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 40])  # exchange 2 torn by a kill
    assert load_file(path).decoded.torn_tail
    with RecordingWriter(path, "payments", Direction.OUTBOUND) as w:
        assert w.dropped_torn_bytes > 0
        w.append(ex(3))
    d = load_file(path).decoded
    assert [e.id for e in d.exchanges] == ["ex-00001", "ex-00003"] and not d.torn_tail


def test_writer_rewrites_a_torn_header(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    path.write_bytes(b'{\n  "devbox_recording": true,\n  "form')
    with RecordingWriter(path, "payments", Direction.OUTBOUND) as w:
        w.append(ex(1))
    assert [e.id for e in load_file(path).decoded.exchanges] == ["ex-00001"]


def test_writer_never_cuts_what_it_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    broken = b'{"devbox_recording": true, "format": 1}\n{"id": "a", "request": {]\n'
    path.write_bytes(broken)
    with pytest.raises(RecordingError, match="cannot append"):
        RecordingWriter(path, "payments", Direction.OUTBOUND)
    assert path.read_bytes() == broken


# ---------------------------------------------------------------- kill -9

WRITER = """
import os, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.store import RecordingWriter

rng_seed, path = int(sys.argv[1]), Path(sys.argv[2])
import random
rng = random.Random(rng_seed)
w = RecordingWriter(path, "payments", Direction.OUTBOUND)
for i in range(100000):
    # bodies up to 1 MB: large writes are where a kill can tear an object
    body = os.urandom(rng.choice([10, 1000, 200000, 1000000])).hex().encode()
    e = Exchange(id=f"k-{rng_seed}-{i}", direction=Direction.OUTBOUND, source="payments",
                 request=Request("POST", f"/c/{i}", (), (), body[:100], host="p"),
                 response=Response(200, (), body), timing=Timing(1.0, 1.0))
    w.append(e)
    print(e.id, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_loses_nothing_that_was_appended(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "rec.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(seed), str(path), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    confirmed: list[str] = []
    assert proc.stdout is not None
    try:
        # wait for a few appends, then kill at a random moment
        while len(confirmed) < 3:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            confirmed.append(line.strip())
        time.sleep(random.Random(seed).uniform(0.05, 1.0))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # lines already printed (still in the pipe) were appended before the kill
    confirmed += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    loaded = load_file(path).decoded
    ids = [e.id for e in loaded.exchanges]
    assert set(confirmed) <= set(ids)
    # at most the one exchange being appended at the kill is missing, and nothing else
    assert ids[: len(confirmed)] == confirmed
    assert len(ids) - len(confirmed) in (0, 1)

    # recording resumes into the same file: the torn tail (if any) does not corrupt it
    with RecordingWriter(path, "payments", Direction.OUTBOUND) as w:
        w.append(ex(99999))
    after = load_file(path).decoded
    assert not after.torn_tail
    assert [e.id for e in after.exchanges][:-1] == ids


def test_import_and_record_write_recordings_with_one_mode(tmp_path: Path) -> None:
    """A recording written whole (import, accept) and one appended (record) get the same
    mode: FILE_MODE less the umask; a replaced file keeps the mode its owner gave it."""
    import stat

    from devbox.core.model import Direction
    from devbox.store import FILE_MODE, RecordingWriter, write_recording

    old = os.umask(0o022)
    try:
        imported = write_recording(tmp_path / "imported.json", "api", Direction.OUTBOUND, [])
        with RecordingWriter(tmp_path / "recorded.json", "api", Direction.OUTBOUND):
            pass
        modes = {stat.S_IMODE(p.stat().st_mode) for p in (imported, tmp_path / "recorded.json")}
        assert modes == {FILE_MODE & ~0o022} == {0o644}
        imported.chmod(0o600)
        write_recording(imported, "api", Direction.OUTBOUND, [])
        assert stat.S_IMODE(imported.stat().st_mode) == 0o600
        assert not list(tmp_path.glob(".*.tmp"))
    finally:
        os.umask(old)


def test_a_deferring_writer_writes_at_flush_in_one_write(tmp_path: Path) -> None:
    """The recording worker's mode: appends wait for flush(), which writes them whole
    with one write(); close() flushes what is left."""
    path = tmp_path / "rec.json"
    w = RecordingWriter(path, "payments", Direction.OUTBOUND, defer=True)
    header = path.stat().st_size
    w.append(ex(1))
    w.append(ex(2))
    assert path.stat().st_size == header  # nothing written yet
    assert w.count == 2 and w.bytes_written > header
    w.flush()
    assert path.stat().st_size == w.bytes_written
    assert [e.id for e in load_file(path).decoded.exchanges] == ["ex-00001", "ex-00002"]
    w.append(ex(3))
    w.close()
    assert path.stat().st_size == w.bytes_written
    d = load_file(path).decoded
    assert [e.id for e in d.exchanges] == ["ex-00001", "ex-00002", "ex-00003"]
    assert not d.torn_tail


def test_a_deferring_writer_reports_a_failed_flush(tmp_path: Path) -> None:
    """A full disk at flush time raises (the worker reports it), and never leaves a
    torn object behind that a later append would build on."""
    if not Path("/dev/full").exists():
        pytest.fail("/dev/full is needed")
    path = tmp_path / "rec.json"
    w = RecordingWriter(path, "payments", Direction.OUTBOUND, defer=True)
    w.append(ex(1))
    os.dup2(os.open("/dev/full", os.O_WRONLY), w._fd)
    with pytest.raises(OSError):
        w.flush()
    w.close()  # what failed is not written again
    assert [e.id for e in load_file(path).decoded.exchanges] == []
