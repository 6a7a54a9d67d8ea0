"""What job queues and session stores send, recorded from a real redis-server and replayed
to redis-py with fresh values (``devbox.core.generated``).

Found by running rq, celery and Django's cache sessions through devbox:
- replies carried the recorded values, not the client's own: a worker popped the recorded
  job id, a lock read back the recorded token (``Lock.owned()`` was False);
- a worker writes under the job id the mock's reply gave it (the recorded one) and an id
  of its own (rq's ``rq:execution:<job id>:<uuid4 hex>``): that write missed, because
  the recorded job id was bound to the client's, and a recorded value sent back counted
  as a binding of its own;
- a store checks that its fresh key is free before it writes it (Django's sessions:
  ``EXISTS`` then ``SET``): the read missed, as every read of a value no write made;
- Django's cache session keys (glued to their prefix) were not generated values;
- a job's arguments stored base64-encoded (celery) were taken for a random token, so
  another job's arguments matched the recorded job's: a wrong answer, not a miss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import random
import secrets
import string
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from loop_support import Loop
from redis_helpers import Mock, Recording, outcome, redis_server

from devbox.core.profile_model import RedactRules
from devbox.wire.contract import Hit
from devbox.wire.files import value_redactor
from devbox.wire.redis import KIND


def recorded_then(loop: Loop, tmp: Path, flow: Any) -> tuple[list[Any], list[Any], Mock]:
    """``flow`` through the recording relay, then through the mock of what it stored."""
    with redis_server(tmp / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = flow(rec.port)
        rec.close()
    redact = value_redactor(None)
    stored = [KIND.redact(o, redact) for o in rec.stored]  # as devbox record writes them
    mock = Mock(loop, stored).start()
    try:
        replayed = flow(mock.port)
    finally:
        mock.close()
    return recorded, replayed, mock


def run_once(loop: Loop, stored: list[dict[str, Any]], flow: Any, arg: Any) -> Any:
    """``flow(port, arg)`` against a fresh mock of ``stored``."""
    mock = Mock(loop, stored).start()
    try:
        return flow(mock.port, arg)
    finally:
        mock.close()


def queue(port: int) -> list[Any]:
    """A client enqueues a job by a fresh id; a worker pops it and records its execution
    under the job id and a fresh id of its own (rq's shape)."""
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    job = str(uuid.uuid4())
    out = [
        outcome(lambda: r.hset(f"job:{job}", mapping={"func": "add", "status": "queued"})),
        outcome(lambda: r.rpush("queue:default", job)),
    ]
    popped = str(r.lpop("queue:default"))
    out.append(popped == job)  # its own job id, not the recorded one
    run = uuid.uuid4().hex
    out.append(outcome(lambda: r.hset(f"exec:{popped}:{run}", "state", "started")))
    out.append(outcome(lambda: r.hset(f"job:{popped}", "status", "finished")))
    out.append(outcome(lambda: r.hget(f"job:{job}", "status")))
    r.close()
    return out


def test_a_worker_pops_the_job_its_client_pushed_and_writes_under_it(
    tmp_path: Path, loop: Loop
) -> None:
    recorded, replayed, mock = recorded_then(loop, tmp_path, queue)
    assert recorded == [2, 1, True, 1, 0, "finished"]
    assert replayed == recorded
    assert mock.misses == []


PICKLED = "gAWVFAAAAAAAAAB9lIwEY2FydJRdlChLAUsCZXMu"  # the session's data as Django stores it


def lock(port: int) -> list[Any]:
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    held = r.lock("report", timeout=30)
    out = [
        outcome(lambda: held.acquire(blocking=False)),
        outcome(held.owned),  # GET report: the client's own token back
        outcome(lambda: held.extend(10)),
        outcome(held.release),
    ]
    r.close()
    return out


def test_a_lock_reads_back_its_own_token(tmp_path: Path, loop: Loop) -> None:
    """Replies carried the recorded token, so ``owned()`` was False against the mock."""
    recorded, replayed, mock = recorded_then(loop, tmp_path, lock)
    assert recorded == [True, True, True, None]
    assert replayed == recorded
    assert mock.misses == []


def django_session(port: int) -> list[Any]:
    """Django's cache session backend: a fresh key checked free, then written, read."""
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    alphabet = string.ascii_lowercase + string.digits
    key = "".join(secrets.choice(alphabet) for _ in range(32))
    while sum(c.isdigit() for c in key) < 4 or sum(c.isalpha() for c in key) < 4:
        key = "".join(secrets.choice(alphabet) for _ in range(32))
    name = f":1:django.contrib.sessions.cache{key}"
    out = [
        outcome(lambda: r.exists(name)),
        outcome(lambda: r.set(name, PICKLED, ex=1209600, nx=True)),
        outcome(lambda: r.get(name)),
    ]
    r.close()
    return out


def test_a_fresh_session_key_checked_free_then_written(tmp_path: Path, loop: Loop) -> None:
    recorded, replayed, mock = recorded_then(loop, tmp_path, django_session)
    assert recorded == [0, True, PICKLED]
    assert replayed == recorded
    assert mock.misses == []
    aside = [o.request for o in mock.outputs if isinstance(o, Hit)]
    assert all(a.endswith("(generated values set aside)") for a in aside), aside


def test_a_read_of_a_fresh_key_is_answered_only_when_it_found_nothing(
    tmp_path: Path, loop: Loop
) -> None:
    """The same read that found a value while recording still misses with a fresh key:
    that value is another session's."""

    def flow(port: int) -> list[Any]:
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        fresh = str(uuid.uuid4())
        out = [outcome(lambda: r.get(f"session:{fresh}"))]
        if port == recording_port[0]:
            out.append(outcome(lambda: r.set(f"session:{fresh}", "ada")))
            out.append(outcome(lambda: r.get(f"session:{fresh}")))
        else:
            out.append(outcome(lambda: r.get(f"session:{uuid.uuid4()}")))
        r.close()
        return out

    recording_port: list[int] = []

    def first(port: int) -> list[Any]:
        if not recording_port:
            recording_port.append(port)
        return flow(port)

    recorded, replayed, mock = recorded_then(loop, tmp_path, first)
    assert recorded == [None, True, "ada"]
    # the first GET found nothing while recording: answered; the second asks for a key
    # the recorded GET found "ada" under: that is someone else's, a miss
    assert replayed[0] is None
    assert "DEVBOXMISS" in str(replayed[1])
    assert len(mock.misses) == 1


def payloads(port: int, args: list[Any]) -> list[Any]:
    """A celery message: its arguments base64-encoded JSON, the task id in the headers."""
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    body = base64.b64encode(json.dumps([args, {}, {"chain": None}]).encode()).decode()
    task = str(uuid.uuid4())
    message = json.dumps({"body": body, "headers": {"task": "tasks.ship", "id": task}})
    out = [outcome(lambda: r.lpush("celery", message))]
    r.close()
    return out


def test_another_jobs_encoded_arguments_miss(tmp_path: Path, loop: Loop) -> None:
    """The same task for a fresh order id (inside the encoded arguments) binds; other
    arguments miss (they matched the recorded job's while the whole base64 counted as a
    random token; then, for a while, a fresh id inside missed too)."""
    order = str(uuid.uuid4())
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        assert payloads(rec.port, [order, 2]) == [1]
        rec.close()
    same, other = (run_once(loop, rec.stored, payloads, [str(uuid.uuid4()), n]) for n in (2, 3))
    assert same == [1]
    assert "DEVBOXMISS" in str(other[0])


def test_a_read_of_an_id_the_recording_never_wrote_still_misses(tmp_path: Path, loop: Loop) -> None:
    """Recorded: a read of an unknown customer (nil). A fresh id read so may be one the
    server holds: a miss, not "not found" (as long as the recording did not write it
    after its read, which would make that read a check that the id is free)."""
    known = str(uuid.uuid4())

    def flow(port: int, who: str) -> list[Any]:
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        out = [outcome(lambda: r.get(f"customer:{who}"))]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        assert flow(rec.port, known) == [None]
        rec.close()
    mock = Mock(loop, rec.stored).start()
    try:
        replayed = flow(mock.port, str(uuid.uuid4()))
    finally:
        mock.close()
    assert "DEVBOXMISS" in str(replayed[0])


def test_a_token_after_a_numeric_id_is_no_signed_value(tmp_path: Path, loop: Loop) -> None:
    """``auth:<user id>:<token_urlsafe()>`` looked like Django's signed values (payload,
    six characters, 43 characters): another user's key bound to the recorded user's."""

    def flow(port: int, user: int) -> list[Any]:
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        key = f"auth:{user}:{secrets.token_urlsafe()}"
        out = [outcome(lambda: r.set(key, "1")), outcome(lambda: r.get(key))]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        assert flow(rec.port, 100042) == [True, "1"]
        rec.close()
    same, other = (run_once(loop, rec.stored, flow, user) for user in (100042, 100099))
    assert same == [True, "1"]
    assert "DEVBOXMISS" in str(other[0])


def test_free_checks_of_keys_mixing_bound_and_fresh_values(tmp_path: Path, loop: Loop) -> None:
    """``EXISTS exec:<bound job id>:<fresh run id>``, and ``EXISTS``/``TTL`` of a fresh
    key in ``MULTI``, answered as recorded (they missed)."""

    def flow(port: int) -> list[Any]:
        r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        job, run, tmp = str(uuid.uuid4()), uuid.uuid4().hex, str(uuid.uuid4())
        out = [outcome(lambda: r.set(f"job:{job}", "queued"))]
        out.append(outcome(lambda: r.exists(f"exec:{job}:{run}")))
        out.append(outcome(lambda: r.hset(f"exec:{job}:{run}", "state", "started")))
        pipe = r.pipeline(transaction=True)
        pipe.exists(f"tmp:{tmp}")
        pipe.ttl(f"tmp:{tmp}")
        out.append(outcome(pipe.execute))
        out.append(outcome(lambda: r.set(f"tmp:{tmp}", "x", ex=60)))
        r.close()
        return out

    recorded, replayed, mock = recorded_then(loop, tmp_path, flow)
    assert recorded == [True, 0, 1, [0, -2], True]
    assert replayed == recorded
    assert mock.misses == []


def jwt_session(port: int) -> list[Any]:
    """A service that signs a fresh JWT at each login (its ``iat``, ``exp`` and ``jti``
    change) and keeps the session under it: the JWT's payload and signature are redacted
    to placeholders, which were not generated values, so the write missed."""
    now = int(time.time())
    claims = {"sub": "42", "iat": now, "exp": now + 3600, "jti": secrets.token_hex(8)}
    head, body = (
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    )
    mac = hmac.new(b"service-signing-key", f"{head}.{body}".encode(), hashlib.sha256)
    token = f"{head}.{body}." + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    out = [
        outcome(lambda: r.set(f"session:{token}", "user:42", ex=3600)),
        outcome(lambda: r.get(f"session:{token}")),
        outcome(lambda: r.ttl(f"session:{token}") > 0),
        # stored under a fixed key and read back: the client's own token, not the
        # placeholder the recording holds (nothing can verify that)
        outcome(lambda: r.set("user_token:42", token, ex=900)),
        outcome(lambda: r.get("user_token:42") == token),
    ]
    r.close()
    return out


def test_a_session_kept_under_a_fresh_jwt_replays(tmp_path: Path, loop: Loop) -> None:
    recorded, replayed, mock = recorded_then(loop, tmp_path, jwt_session)
    assert recorded == [True, "user:42", True, True, True]
    assert replayed == recorded
    assert mock.misses == []


_SEEDS = itertools.count(11)


def session_id() -> str:
    """``token_urlsafe(24)``'s shape, new on each call but the same on every test run: one
    random id in a few hundred has no digit and reads as words run together, so a test
    of truly random ones would fail now and then."""
    return base64.urlsafe_b64encode(random.Random(next(_SEEDS)).randbytes(24)).decode()


def express_session(port: int) -> list[Any]:
    """connect-redis's shape: a session id of random letters and digits under a prefix
    (``sess:<id>``). The id is a bearer credential: it reached the recording whole."""
    sid = session_id()
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    out = [
        outcome(lambda: r.set(f"sess:{sid}", json.dumps({"user": 42}), ex=600)),
        outcome(lambda: json.loads(str(r.get(f"sess:{sid}")))),
    ]
    r.close()
    return out


def test_a_session_id_under_a_prefix_is_redacted_and_replays(tmp_path: Path, loop: Loop) -> None:
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        sid = session_id()
        r = redis.Redis(port=rec.port, socket_timeout=10)
        r.set(f"sess:{sid}", "x")
        r.close()
        rec.close()
    written = json.dumps([KIND.redact(o, value_redactor(None)) for o in rec.stored])
    assert sid not in written and "sess:<redacted:token:" in written
    recorded, replayed, mock = recorded_then(loop, tmp_path / "again", express_session)
    assert recorded == [True, {"user": 42}]
    assert replayed == recorded
    assert mock.misses == []


def test_the_servers_password_is_redacted_whatever_the_profile_keeps() -> None:
    """``[redact] keep = ["password"]`` keeps a test user's hash; Redis's AUTH password
    is the server's credential, never so named."""
    red = value_redactor(RedactRules(keep=("password", "value", "arg")))
    for args in (
        [b"AUTH", b"redis-prod-pw-9f3k"],
        [b"HELLO", b"3", b"AUTH", b"default", b"redis-prod-pw-9f3k"],
        [b"CONFIG", b"SET", b"requirepass", b"redis-prod-pw-9f3k"],
    ):
        obj = KIND.redact(
            {"command": args[0].decode(), "args": [a.decode() for a in args[1:]]}, red
        )
        assert "redis-prod-pw-9f3k" not in json.dumps(obj), obj
    # and a value is named by nothing a profile could keep: its e-mail is redacted
    obj = KIND.redact({"command": "SET", "args": ["k", "ada@example.com"]}, red)
    assert "ada@example.com" not in json.dumps(obj)


def user_hash(port: int) -> list[Any]:
    """A user kept in a hash: fields named like credentials name their values."""
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    out = [
        outcome(lambda: r.hset("user:1", mapping={"email": "ada@example.com", **HASHED})),
        outcome(lambda: sorted(r.hgetall("user:1"))),
        outcome(lambda: r.hmget("user:1", ["api_key", "name"])[1]),
    ]
    r.close()
    return out


HASHED: dict[str | bytes | bytearray | memoryview[int] | int | float, str] = {
    "password_hash": "scrypt:32768:8:1$kU3mQ9zLp2Vb$9f8e7d6c5b4a",
    "api_key": "ak_9f8e7d6c5b4a3",
}


def test_a_hashs_fields_name_its_values(tmp_path: Path, loop: Loop) -> None:
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = user_hash(rec.port)
        rec.close()
    assert recorded == [3, ["api_key", "email", "password_hash"], None]
    written = json.dumps([KIND.redact(o, value_redactor(None)) for o in rec.stored])
    for secret in (*HASHED.values(), "ada@example.com"):
        assert secret not in written, secret


def notify(port: int) -> list[Any]:
    """A subscriber hears what a publisher sends after it subscribed: a fresh id in it."""
    r = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    sub = r.pubsub()
    sub.subscribe("notify")
    assert sub.get_message(timeout=5) is not None  # the subscription's confirmation
    time.sleep(0.05)
    msg_id = str(uuid.uuid4())
    publisher = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
    out = [outcome(lambda: publisher.publish("notify", json.dumps({"msgId": msg_id})))]
    heard = sub.get_message(timeout=5)
    out.append(heard is not None and json.loads(heard["data"])["msgId"] == msg_id)
    sub.close()
    publisher.close()
    r.close()
    return out


def test_a_message_published_after_the_subscription_carries_the_fresh_id(
    tmp_path: Path, loop: Loop
) -> None:
    """The message was made when the subscription was answered, before the publish bound
    its id: the subscriber heard the recorded id."""
    recorded, replayed, mock = recorded_then(loop, tmp_path, notify)
    assert recorded == [1, True]
    assert replayed == recorded
    assert mock.misses == []
