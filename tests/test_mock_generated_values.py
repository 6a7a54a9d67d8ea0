"""An HTTP call carrying a value the client makes up on each run: a payment's
``idempotency_key`` (uuid4) in the JSON body and a ``request_id`` in the query,
recorded through devbox's reverse proxy from a real server with httpx, then asked of
the mock with fresh ones. The HTTP mock does not guess which values are generated
(guessing served one customer's answer for another's id): the miss names the fields
and the rule that ignores them, and with those rules two charges get the two recorded
answers in order, while a charge of another amount still misses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from mock_helpers import ADMIN, running
from record_helpers import Upstream, start_upstream, write_profile

from devbox.core.profile import MatchRules, load_profile
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


def test_fresh_ids_miss_with_the_rule_to_write_then_match_by_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    rec = Recorder(load_profile(write_profile(tmp_path, {"pay": upstream.url})), RecordOptions())
    rec.start()
    try:
        with httpx.Client(base_url=rec.listener("pay").url, timeout=10) as c:
            recorded = [charge(c, 5), charge(c, 5)]
    finally:
        rec.stop()
    assert [r.status_code for r in recorded] == [200, 200]
    shop = rec.profile.mocks_dir / "pay"
    with running(recordings=shop) as (_fleet, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            missed = charge(c, 5)
    assert missed.status_code == MISS_STATUS
    hint = orjson.loads(missed.content)["explanation"]
    assert '"$.idempotency_key" to match.ignore_body' in hint
    assert '"request_id" to match.ignore_query' in hint
    rules = MatchRules(
        ignore_query=("request_id",),
        ignore_body=("$.idempotency_key",),
    )
    with running(recordings=shop, match=rules) as (_fleet, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            again = [charge(c, 5), charge(c, 5)]  # new keys and request ids
            other = charge(c, 6)  # a new amount: another charge
            stats = orjson.loads(c.get("/__devbox/stats", headers=ADMIN).content)
    # each recorded answer once, in order (the echo shows which request each was)
    assert [a.content for a in again] == [r.content for r in recorded]
    assert json.loads(again[0].content) != json.loads(again[1].content)
    assert other.status_code == MISS_STATUS
    assert (stats["hits"], stats["fuzzy_hits"], stats["misses"]) == (2, 0, 1)
