"""Blocking commands at the end of a recording: a worker's ``BLPOP queue 0`` still
waiting when recording stopped was never answered by the real server. Recorded through
the relay against a real redis-server and replayed by the mock with redis-py, the
worker must again wait (until its own socket timeout), not be handed the last job it
popped once more (the mock repeated the last recorded reply of identical calls, so a
worker loop popped the same job forever)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from loop_support import Loop
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_helpers import Mock, Recording, redis_server


def _outcome(call: Any) -> Any:
    try:
        return call()
    except redis.TimeoutError:
        return "timed out"  # its text names the port, which differs
    except redis.RedisError as exc:
        return (type(exc).__name__, str(exc))


def _work(port: int) -> list[Any]:
    producer = redis.Redis(port=port, protocol=2)
    # no retry: a retried BLPOP would be one more blocked command on a new connection
    worker = redis.Redis(port=port, protocol=2, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    out: list[Any] = [producer.rpush("jobs", "job0", "job1")]
    out += [_outcome(lambda: worker.blpop(["jobs"], timeout=0)) for _ in range(3)]
    out.append(producer.llen("jobs"))
    worker.close()
    producer.close()
    return out


def test_a_blocking_pop_never_answered_while_recording_is_not_answered_in_replay(
    tmp_path: Path, loop: Loop
) -> None:
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = _work(rec.port)
        rec.close()
    assert recorded == [2, (b"jobs", b"job0"), (b"jobs", b"job1"), "timed out", 0]
    assert [o.get("incomplete") for o in rec.stored if o.get("command") == "BLPOP"] == [
        None,
        None,
        True,
    ]
    m = Mock(loop, rec.stored).start()
    replayed = _work(m.port)
    m.close()
    assert replayed == recorded
    assert m.misses == []


def test_a_blocking_pop_with_a_timeout_cut_short_while_recording_times_out_in_replay(
    tmp_path: Path, loop: Loop
) -> None:
    def pop(port: int, socket_timeout: float) -> Any:
        worker = redis.Redis(
            port=port, protocol=2, socket_timeout=socket_timeout, retry=Retry(NoBackoff(), 0)
        )
        got = _outcome(lambda: worker.blpop(["idle"], timeout=1))
        worker.close()
        return got

    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        # the worker was stopped while it waited: the server never got to answer
        assert pop(rec.port, 0.2) == "timed out"
        rec.close()
        direct = pop(server.port, 10)  # what the server answers when let finish
    assert direct is None
    m = Mock(loop, rec.stored).start()
    replayed = pop(m.port, 10)
    m.close()
    assert replayed == direct
    assert m.misses == []
