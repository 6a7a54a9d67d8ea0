"""Recordings begun in the same second get files of their own.

Every writer of a new recording file names it with ``devbox.store.new_stamp``: the UTC
second (readable, sorts in time order) and six random hex digits. Before, two recordings
started in the same second (``devbox record`` in two terminals, a test session recording
twice, two mocks in record mode) appended to one file and shared a trash directory."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from record_helpers import write_profile
from test_record_sink import _ex

from devbox.core.model import Direction
from devbox.core.profile import Dependency, load_profile
from devbox.core.redact import Redactor
from devbox.mock.kinds import WireMock
from devbox.mock.server import MockServer, MockSpec
from devbox.record.sink import RecordingSink
from devbox.store import load_dir, load_file, new_stamp, write_recording


def test_stamps_are_unique_within_one_second_and_sort_in_time_order() -> None:
    now = datetime(2026, 12, 5, 13, 10, 55, 123456, tzinfo=UTC)
    stamps = [new_stamp(now) for _ in range(5000)]
    assert len(set(stamps)) == len(stamps)
    assert all(re.fullmatch(r"20261205T131055Z-[0-9a-f]{6}", s) for s in stamps)
    assert max(stamps) < new_stamp(now + timedelta(seconds=1))


def test_two_recordings_in_the_same_second_write_two_files(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, {"payments": "http://127.0.0.1:9"}))
    now = datetime.now(UTC)
    # two sessions, as two `devbox record --append` started together
    first = RecordingSink(profile, Redactor(profile.redact), append=True, stamp=new_stamp(now))
    second = RecordingSink(profile, Redactor(profile.redact), append=True, stamp=new_stamp(now))
    first.write(_ex(1))
    second.write(_ex(2))
    a, b = first.commit(), second.commit()
    assert a.files != b.files
    assert [e.id for e in load_file(a.files[0]).decoded.exchanges] == ["payments-1"]
    assert [e.id for e in load_file(b.files[0]).decoded.exchanges] == ["payments-2"]

    # new sets: each commit moves the set before it to a trash directory of its own
    old = profile.recordings_dir("payments") / "old.json"
    write_recording(old, "payments", Direction.OUTBOUND, [_ex(100)])
    sinks = [RecordingSink(profile, Redactor(profile.redact), stamp=new_stamp(now)) for _ in "ab"]
    results = []
    for i, sink in enumerate(sinks, start=10):
        sink.write(_ex(i))
        results.append(sink.commit())
    assert results[0].backup != results[1].backup
    assert [e.id for e in load_dir(profile.recordings_dir("payments"))] == ["payments-11"]
    assert results[1].backup is not None
    moved = load_dir(results[1].backup / "payments")
    assert [e.id for e in moved] == ["payments-10"]


def test_two_mocks_recording_in_the_same_second_write_two_files(tmp_path: Path) -> None:
    http = [
        MockServer(MockSpec(dependency=Dependency(name="pay"), recordings=tmp_path / "pay"))
        for _ in "ab"
    ]
    paths = {s._recording_writer().path for s in http}
    assert len(paths) == 2 and all(p.name.startswith("mock-record-") for p in paths)

    cache = Dependency(name="cache", kind="redis", upstream="redis://127.0.0.1:9/0")
    stored = {"seq": 1, "db": 0, "proto": 2, "command": "GET", "args": ["k"]}
    stored["reply"] = {"type": "bulk", "value": "v"}
    wire = [WireMock(cache, tmp_path / "cache") for _ in "ab"]
    for mock in wire:
        mock._store(1, [dict(stored)])
    assert len(list((tmp_path / "cache").glob("recording-*-live.json"))) == 2
    for mock in wire:
        asyncio.run(mock.close())
    assert wire[0].load() == 2  # one object in each file, neither torn by the other
