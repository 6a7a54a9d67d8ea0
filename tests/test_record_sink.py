"""Recording sets on disk: a new set replaces the old one only when complete; --append adds;
an interrupted commit is rolled forward; a secret never reaches the disk."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
from record_helpers import all_bytes, write_profile

from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.profile import Profile, load_profile
from devbox.core.redact import Redactor
from devbox.record.sink import JOURNAL, TRASH, RecordingSink, recover, unfinished
from devbox.store import load_dir, load_file, write_recording

TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"


def _profile(tmp_path: Path) -> Profile:
    return load_profile(write_profile(tmp_path, {"payments": "http://127.0.0.1:9"}))


def _ex(i: int, source: str = "payments") -> Exchange:
    return Exchange(
        id=f"{source}-{i}",
        direction=Direction.INBOUND if source == "inbound" else Direction.OUTBOUND,
        source=source,
        request=Request("GET", f"/n/{i}", headers=(("Authorization", f"token {TOKEN}"),)),
        response=Response(200, (("Content-Type", "application/json"),), b'{"ok": true}'),
    )


def _old_set(p: Profile) -> Path:
    old = p.recordings_dir("payments") / "old.json"
    write_recording(old, "payments", Direction.OUTBOUND, [_ex(100)])
    return old


def test_new_set_is_partial_until_commit_then_replaces_the_old_one(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    old = _old_set(p)
    old_bytes = old.read_bytes()
    sink = RecordingSink(p, Redactor(p.redact), stamp="20260101T000000Z")
    sink.write(_ex(1))
    sink.write(_ex(2))
    # while recording: mocks still read the old set; the new one is inspectable
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100"]
    partial = load_dir(p.recordings_dir("payments"), include_partial=True)
    assert [e.id for e in partial] == ["payments-100", "payments-1", "payments-2"]
    result = sink.commit()
    assert result.committed and result.backup == p.mocks_dir / TRASH / "20260101T000000Z"
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-1", "payments-2"]
    assert (result.backup / "payments" / "old.json").read_bytes() == old_bytes
    assert not old.exists()
    assert (p.mocks_dir / TRASH / ".gitignore").exists()
    assert not list((p.mocks_dir / TRASH).glob(f"*/{JOURNAL}"))
    assert TOKEN.encode() not in all_bytes(p.mocks_dir / "payments")


def test_uncommitted_set_leaves_the_old_one_untouched(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    old = _old_set(p)
    before = old.read_bytes()
    sink = RecordingSink(p, Redactor(p.redact))
    sink.write(_ex(1))
    sink.close()  # a failed run: no commit
    assert old.read_bytes() == before
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100"]
    (left,) = unfinished(p, ["payments", "inbound"])
    assert [e.id for e in load_file(left).decoded.exchanges] == ["payments-1"]


def test_sources_without_traffic_keep_their_recordings(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    _old_set(p)
    sink = RecordingSink(
        p,
        Redactor(p.redact),
        sources={"payments": Direction.OUTBOUND, "inbound": Direction.INBOUND},
    )
    sink.write(_ex(1, "inbound"))
    result = sink.commit()
    assert result.kept == ("payments",)
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100"]
    assert [e.id for e in load_dir(p.inbound_dir)] == ["inbound-1"]


def test_nothing_recorded_commits_nothing(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    _old_set(p)
    result = RecordingSink(p, Redactor(p.redact)).commit()
    assert not result.committed
    assert not (p.mocks_dir / TRASH).exists()
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100"]


def test_append_adds_a_live_file_beside_the_old_one(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    _old_set(p)
    sink = RecordingSink(p, Redactor(p.redact), append=True, stamp="20260101T000000Z")
    sink.write(_ex(1))
    # appended exchanges are live at once: a crash now keeps them
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100", "payments-1"]
    result = sink.commit()
    assert result.backup is None
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-100", "payments-1"]


def test_an_interrupted_commit_is_rolled_forward(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    old = _old_set(p)
    sink = RecordingSink(p, Redactor(p.redact), stamp="20260101T000000Z")
    sink.write(_ex(1))
    sink.close()
    # what commit() writes first, then "killed" before any move
    partial = sink.file_for("payments")
    final = partial.with_name("recording-20260101T000000Z.json")
    journal = sink.trash_dir / JOURNAL
    journal.parent.mkdir(parents=True)
    moves = [[str(old), str(sink.trash_dir / "payments" / "old.json")], [str(partial), str(final)]]
    journal.write_bytes(orjson.dumps({"moves": moves}))
    # and the first move done
    (sink.trash_dir / "payments").mkdir()
    old.rename(sink.trash_dir / "payments" / "old.json")
    assert recover(p) == [sink.trash_dir]
    assert [e.id for e in load_dir(p.recordings_dir("payments"))] == ["payments-1"]
    assert not journal.exists()


def test_a_failing_redactor_drops_the_exchange_instead_of_writing_it(tmp_path: Path) -> None:
    p = _profile(tmp_path)

    class Broken:
        stats: dict[str, int] = {}

        def exchange(self, ex: Exchange) -> Exchange:
            raise ValueError("boom")

    sink = RecordingSink(p, Broken())
    assert sink.write(_ex(1)) is None
    (st,) = sink.stats()
    assert st.dropped == 1 and st.exchanges == 0
    assert not p.mocks_dir.exists() or TOKEN.encode() not in all_bytes(p.mocks_dir)


def test_written_exchange_is_the_redacted_one(tmp_path: Path) -> None:
    p = _profile(tmp_path)
    sink = RecordingSink(p, Redactor(p.redact))
    stored = sink.write(replace(_ex(1), error=f"upstream said: Bearer {TOKEN}"))
    assert stored is not None
    assert TOKEN not in str(stored.request.headers) and TOKEN not in (stored.error or "")
    assert TOKEN.encode() not in all_bytes(p.mocks_dir)
