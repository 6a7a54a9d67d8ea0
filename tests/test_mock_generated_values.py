"""An HTTP call carrying a value the client makes up on each run (``devbox.core.
generated``): a payment's ``idempotency_key`` (uuid4) in the JSON body and a
``request_id`` in the query, recorded through devbox's reverse proxy from a real server
with httpx, then asked of the mock with fresh ones. It missed ("add $.idempotency_key to
match.ignore_body") although nothing but the fresh values differed; now it is answered,
counted as a fuzzy hit and explained so, as the Redis and Postgres mocks answer a
redis-py lock or a uuid4 insert. A call that differs in anything else still misses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from mock_helpers import ADMIN, running
from record_helpers import Upstream, exchanges, start_upstream, write_profile

from devbox.core.profile import load_profile
from devbox.mock.answer import MISS_STATUS
from devbox.record import Recorder, RecordOptions


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.close()


def charge(client: httpx.Client, amount: int) -> httpx.Response:
    return client.post(
        "/echo",
        params={"request_id": str(uuid.uuid4())},
        json={"amount": amount, "idempotency_key": str(uuid.uuid4())},
    )


def test_fresh_ids_are_set_aside_and_nothing_else(tmp_path: Path, upstream: Upstream) -> None:
    rec = Recorder(load_profile(write_profile(tmp_path, {"pay": upstream.url})), RecordOptions())
    rec.start()
    try:
        with httpx.Client(base_url=rec.listener("pay").url, timeout=10) as c:
            recorded = charge(c, 5)
    finally:
        rec.stop()
    assert recorded.status_code == 200
    (saved,) = exchanges(rec.profile.mocks_dir, "pay")
    with running(recordings=rec.profile.mocks_dir / "pay") as (_fleet, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            again = charge(c, 5)  # a new key and request id
            other = charge(c, 6)  # a new amount: another charge
            stats = orjson.loads(c.get("/__devbox/stats", headers=ADMIN).content)
            misses = orjson.loads(c.get("/__devbox/misses", headers=ADMIN).content)
    assert again.status_code == 200 and again.content == recorded.content
    assert json.loads(again.content)["path"] == json.loads(recorded.content)["path"]
    assert other.status_code == MISS_STATUS
    assert (stats["hits"], stats["fuzzy_hits"], stats["misses"]) == (1, 1, 1)
    (miss,) = misses if isinstance(misses, list) else misses["misses"]
    assert "$.amount" in miss["explanation"]
    assert saved.request.path == "/echo"
