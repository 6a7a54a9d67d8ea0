"""The request timeout on a reused keep-alive connection: one timer per connection re-arms
itself, so each request gets its whole timeout from its own send, never a leftover."""

from __future__ import annotations

import asyncio
import time

from replay_helpers import exchange, serve

from devbox.core.profile import ReplaySettings
from devbox.replay import ReplayOptions, run_replay

JSON = [("Content-Type", "application/json")]


def delayed(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
    time.sleep(float(path.rsplit("/", 1)[-1]))
    return 200, JSON, b"{}"


def test_each_request_gets_its_whole_timeout_on_a_reused_connection() -> None:
    # six 0.1 s requests then one of 0.5 s on one connection, timeout 0.8 s: the last one
    # starts ~0.6 s after the timer was first armed and must still pass, then one of 3 s
    # must fail with the timeout, not hang and not fail early
    exs = [exchange("GET", "/wait/0.1", body=b"{}") for _ in range(6)]
    exs.append(exchange("GET", "/wait/0.5", body=b"{}"))
    exs.append(exchange("GET", "/wait/3", body=b"{}"))
    exs.append(exchange("GET", "/wait/0", body=b"{}"))
    opts = ReplayOptions(timeout_s=0.8, concurrency=1)
    with serve(delayed) as url:
        start = time.perf_counter()
        report = asyncio.run(run_replay(exs, url, ReplaySettings(), options=opts))
        elapsed = time.perf_counter() - start
    verdicts = [r.verdict for r in report.results]
    assert verdicts == ["pass"] * 7 + ["error", "pass"], report.results
    assert report.results[7].error == "timed out after 0.8s"
    # the 3 s request was abandoned at its timeout, not awaited to the end
    assert elapsed < 0.6 + 0.5 + 2.5
