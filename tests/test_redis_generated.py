"""Commands that carry a value the client makes up on each run (``devbox.core.
generated``), recorded from a real redis-server and replayed to redis-py: its ``Lock``
(``SET name <uuid1 hex> NX PX``, then the release script with that token), session keys
named by ``uuid4`` or ``token_urlsafe``, redis-om's ULID keys, and a random API token.
The mock answered every one of them with DEVBOXMISS: the lock failed, the release
raised ``LockError``. Now a write binds its fresh values to the recorded ones and what
follows is matched through them; a read never binds, so a read by an id no write made
still misses (it answered another customer's value while any uuid stood for any other),
and with passthrough the real server answers."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import redis
from conftest import opaque_token
from loop_support import Loop
from redis_helpers import Mock, Recording, outcome, redis_server

from devbox.wire.contract import Hit, MockOptions
from devbox.wire.files import value_redactor
from devbox.wire.redis import KIND

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


ALICE = "3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f"  # a customer seeded before the run
BOB = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # another, never recorded


def seeded(port: int) -> None:
    r = redis.Redis(port=port)
    r.set(f"customer:{ALICE}", "alice")
    r.set(f"customer:{BOB}", "bob")
    r.close()


def test_a_read_by_an_id_no_write_made_misses(tmp_path: Path, loop: Loop) -> None:
    """Only a write binds a generated value: asked for bob, never recorded, the mock
    misses (it answered alice's value while any uuid stood for any other); with
    passthrough the real server answers."""
    with redis_server(tmp_path / "redis") as server:
        seeded(server.port)
        rec = Recording(loop, server.port).start()
        r = redis.Redis(port=rec.port, decode_responses=True)
        assert r.get(f"customer:{ALICE}") == "alice"
        r.close()
        rec.close()
        for options, up in ((MockOptions("cache"), None), (PASS, server.port)):
            mock = Mock(loop, rec.stored, options, upstream=up).start()
            got = ask_for_bob(mock.port)
            mock.close()
            if up is None:
                assert isinstance(got, tuple) and "DEVBOXMISS" in got[1], got
            else:
                assert got == "bob"


PASS = MockOptions("cache", on_miss="passthrough")


def ask_for_bob(port: int) -> Any:
    r = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
    try:
        return outcome(lambda: r.get(f"customer:{BOB}"))
    finally:
        r.close()


def test_bound_and_exact_calls_interleave(tmp_path: Path, loop: Loop) -> None:
    """A fresh user is written, alice (seeded) is read, the fresh user is read back: the
    read back is the fresh user's, not alice's recorded value."""

    def run(port: int) -> list[Any]:
        r = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
        fresh = uuid.uuid4()
        out = [
            outcome(lambda: r.set(f"user:{fresh}", "newbie")),
            outcome(lambda: r.get(f"customer:{ALICE}")),
            outcome(lambda: r.get(f"user:{fresh}")),
        ]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        seeded(server.port)
        rec = Recording(loop, server.port).start()
        recorded = run(rec.port)
        rec.close()
    mock = Mock(loop, rec.stored).start()
    try:
        assert run(mock.port) == recorded == [True, "alice", "newbie"]
    finally:
        mock.close()


def test_session_and_model_keys_with_a_prefix(tmp_path: Path, loop: Loop) -> None:
    """flask-session's ``session:<token_urlsafe(32)>`` and redis-om's
    ``app.models.Customer:<ULID>``: the id is part of a key."""
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def run(port: int) -> list[Any]:
        r = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
        session = "session:" + secrets.token_urlsafe(32)
        while True:
            ulid = "01" + "".join(secrets.choice(crockford) for _ in range(24))
            if sum(c.isdigit() for c in ulid) >= 3 and sum(c.isalpha() for c in ulid) >= 3:
                break
        model = f"app.models.Customer:{ulid}"
        out = [
            outcome(lambda: r.set(session, "ada", ex=60)),
            outcome(lambda: r.get(session)),
            outcome(lambda: r.hset(model, mapping={"name": "ada"})),
            outcome(lambda: r.hget(model, "name")),
        ]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = run(rec.port)
        rec.close()
    mock = Mock(loop, rec.stored).start()
    try:
        assert run(mock.port) == recorded == [True, "ada", 1, "ada"]
        assert mock.misses == []
    finally:
        mock.close()
