"""Sidekiq (Ruby's usual job queue) enqueues through devbox's Redis relay and replays.

A job is JSON pushed with ``LPUSH queue:default``; it carries a fresh ``jid`` (24 hex
digits, a generated value that binds) and the times it was made and enqueued as Unix
seconds with a fraction (``"created_at":1796708648.396183``). Those differ on every run,
and every enqueue of a replay missed: a Rails app's ``perform_async`` raised. A time
under a JSON key that says it is one (``_at``, ``At``) is now a clock reading
(``devbox.core.generated``); a bare number is not, as it may be an id. Recorded from a
real redis-server with Debian's Sidekiq 6 and redis-rb, replayed in a fresh process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from loop_support import Loop
from redis_helpers import Mock, Recording, redis_server

from devbox.core import generated
from devbox.wire.files import default_redactor
from devbox.wire.redis import KIND

FLOW = r"""
require "sidekiq"
require "sidekiq/api"
require "json"
Sidekiq.configure_client { |c| c.redis = { url: "redis://127.0.0.1:#{ENV["REDIS_PORT"]}/0" } }
class HardWorker
  include Sidekiq::Worker
  def perform(id, name); end
end
out = []
jid = HardWorker.perform_async(42, "ada")
out << (jid.is_a?(String) && jid.size == 24)
out << HardWorker.perform_async(43, "bob").size
queue = Sidekiq::Queue.new("default")
out << queue.size
first = queue.to_a.last  # the oldest: LPUSH puts the newest first
out << (first.jid == jid) << first.args << (first.created_at.to_f > 0)
puts out.to_json
"""


def _flow(script: Path, port: int) -> Any:
    ruby = shutil.which("ruby")
    assert ruby, "ruby is missing: scripts/setup installs it"
    env = {**os.environ, "REDIS_PORT": str(port)}
    done = subprocess.run(
        [ruby, "-W0", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sidekiq_jobs_enqueue_against_the_mock(tmp_path: Path) -> None:
    script = tmp_path / "flow.rb"
    script.write_text(FLOW)
    loop = Loop()
    try:
        with redis_server(tmp_path / "redis") as server:
            rec = Recording(loop, server.port).start()
            recorded = _flow(script, rec.port)
            rec.close()
        stored = [KIND.redact(o, default_redactor()) for o in rec.stored]
        assert '\\"created_at\\":' in json.dumps(stored)
        mock = Mock(loop, stored).start()
        try:
            replayed = _flow(script, mock.port)
        finally:
            mock.close()
    finally:
        loop.close()
    assert recorded == [True, 24, 2, True, [42, "ada"], True]
    assert [m.explanation for m in mock.misses] == []
    # the job read back is the one this run pushed: its own jid, given back
    assert replayed == recorded


def test_a_time_under_a_key_that_says_so_is_a_clock_reading() -> None:
    def job(jid: str, at: str) -> bytes:
        return f'{{"class":"W","jid":"{jid}","created_at":{at},"enqueued_at":{at}}}'.encode()

    live, recorded = (
        job("fb1c2d3e4f5a6b7c8d9e0f1a", "1796708700.123456"),
        job("ebbb1742c4287380bcf9a95e", "1796708648.396183"),
    )
    assert generated.Bindings().match([b"queue:default", live], [b"queue:default", recorded])
    ms = b'{"id":1,"createdAt":1796708648396}'
    assert generated.Bindings().as_of_now([ms.replace(b"8396", b"9001")], [ms])
    # under a key that says nothing of time, a number is data: another id, another answer
    other = b'{"id":1,"amount":1796708648}'
    assert not generated.Bindings().as_of_now([other.replace(b"8648", b"8700")], [other])
