"""Commands that carry a value the client makes up on each run (``devbox.wire.redis.
generated``), recorded from a real redis-server and replayed to redis-py: its ``Lock``
(``SET name <uuid1 hex> NX PX``, then the release script with that token), session keys
named by ``uuid4``, and a random API token that redaction turns into a placeholder whose
hash differs with each token. The mock answered every one of them with DEVBOXMISS:
the lock failed, the release raised ``LockError``. Now they are answered as recorded,
and reported as found with generated values set aside; a command that differs in
anything else still misses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import opaque_token
from redis_helpers import Loop, Mock, Recording, outcome, redis_server

from devbox.wire.contract import Hit, MockOptions
from devbox.wire.files import value_redactor
from devbox.wire.redis import KIND


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


KEY = "sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2"


def workload(port: int) -> list[Any]:
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    out: list[Any] = []
    lock = r.lock("jobs:nightly", timeout=10)
    out.append(outcome(lambda: lock.acquire(blocking=False)))
    out.append(outcome(lambda: r.incr("runs")))
    out.append(outcome(lock.release))
    session = f"session:{uuid.uuid4()}"
    out.append(outcome(lambda: r.set(session, "ada", ex=60)))
    out.append(outcome(lambda: r.get(session)))
    out.append(outcome(lambda: r.set("apikey:ada", opaque_token())))
    # a key in a script is still found by its format
    out.append(outcome(lambda: r.eval(f"return '{KEY}' ~= ''", 0)))
    r.close()
    return out


def test_a_lock_sessions_and_tokens_replay_with_new_values(tmp_path: Path, loop: Loop) -> None:
    redact = value_redactor(None)
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = workload(rec.port)
        rec.close()
    stored = [KIND.redact(o, redact) for o in rec.stored]  # as devbox record writes them
    # redis-py's release script is code: kept whole (the text rules took ``token =
    # redis.call(`` for a secret's assignment and cut it)
    (load,) = [o for o in stored if o.get("command") == "SCRIPT"]
    assert load["args"] == ["LOAD", redis.lock.Lock.LUA_RELEASE_SCRIPT]
    mock = Mock(loop, stored, MockOptions("cache", redact_value=redact)).start()
    replayed = workload(mock.port)  # new lock token, new session id, new API token
    mock.close()
    assert recorded == [True, 1, None, True, "ada", True, 1]
    (script,) = [o["args"][0] for o in stored if o.get("command") == "EVAL"]
    assert KEY not in script and script.startswith("return 'sk_live_<redacted:")
    assert replayed == recorded
    assert mock.misses == []
    found = [o.request for o in mock.outputs if isinstance(o, Hit)]
    aside = [r for r in found if r.endswith("(generated values set aside)")]
    # the lock's SET, its release (EVALSHA: NOSCRIPT, then after SCRIPT LOAD, 1), the
    # session's SET and GET, the token's SET
    assert len(aside) == 6, found


def test_what_else_differs_still_misses(tmp_path: Path, loop: Loop) -> None:
    def run(port: int) -> list[Any]:
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        one = uuid.uuid4().hex
        out = [
            outcome(lambda: r.set(f"lock:a:{one}", "1", nx=True)),
            outcome(lambda: r.evalsha(sha, 1, f"lock:a:{one}")),
        ]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        direct = redis.Redis(port=server.port)
        sha = direct.script_load("return redis.call('exists', KEYS[1])")
        other = direct.script_load("return 2")
        direct.close()
        rec = Recording(loop, server.port).start()
        recorded = run(rec.port)
        rec.close()
    assert recorded == [True, 1]
    mock = Mock(loop, rec.stored).start()
    try:
        assert run(mock.port) == recorded  # a new id: found
        r = redis.Redis(port=mock.port, socket_timeout=10)
        fresh = uuid.uuid4().hex
        # another key around the id, another option, another script: each a miss
        missed = [
            outcome(lambda: r.set(f"lock:b:{fresh}", "1", nx=True)),
            outcome(lambda: r.set(f"lock:a:{fresh}", "1", xx=True)),
            outcome(lambda: r.evalsha(other, 1, f"lock:a:{fresh}")),
        ]
        r.close()
    finally:
        mock.close()
    assert all(m[0] == "ResponseError" and "DEVBOXMISS" in m[1] for m in missed), missed
    assert len(mock.misses) == 3
