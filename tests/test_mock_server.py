"""The mock server over real sockets: matching, sequences, misses, framing, encodings,
admin API, hot reload, faults, timing, passthrough and record."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
import zlib
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import orjson
import pytest
import zstandard
from mock_helpers import ADMIN, call, exchange, read_responses, running, send_raw, status_of

from devbox.core.events import Event, Log, MockMiss, MockStats, Problem
from devbox.core.model import Direction
from devbox.core.profile import Faults, MatchRules, RedactRules
from devbox.core.redact import Redactor
from devbox.mock import MISS_STATUS
from devbox.store import load_dir, write_recording

PARSERS = ["httptools", "python"]


@pytest.mark.parametrize("parser", PARSERS)
def test_hits_answer_recorded_responses_in_recorded_order(parser: str) -> None:
    exs = [
        exchange(1, "GET", "/items/1", resp_headers=(("X-Request-Id", "r1"),)),
        exchange(2, "POST", "/charges", body=b'{"amount": 12.5, "currency": "EUR"}', status=201),
        exchange(3, "GET", "/poll"),
        exchange(4, "GET", "/poll", status=202),
    ]
    with running(exs, parser=parser) as (_, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        status, headers, body = call(port, "GET", "/items/1", conn=conn)
        assert (status, body, headers["x-request-id"]) == (200, b'{"n": 1}', "r1")
        assert headers["content-length"] == str(len(body))
        status, _, body = call(
            port, "POST", "/charges", b'{"currency":"EUR",  "amount":12.5}', conn=conn
        )
        assert (status, body) == (201, b'{"n": 2}')
        polls = [call(port, "GET", "/poll", conn=conn)[:3:2] for _ in range(3)]
        assert polls == [(200, b'{"n": 3}'), (202, b'{"n": 4}'), (202, b'{"n": 4}')]
        conn.close()


@pytest.mark.parametrize("parser", PARSERS)
def test_miss_is_a_5xx_with_the_explanation_and_is_reported(parser: str) -> None:
    events: list[Event] = []
    exs = [exchange(1, "POST", "/charges", body=b'{"amount": 12.5}')]
    with running(exs, parser=parser, events=events, name="payments") as (fleet, port):
        status, headers, body = call(port, "POST", "/charges", b'{"amount": 13.0}')
        assert status == MISS_STATUS
        assert headers["x-devbox-miss"] == "payments"
        payload = orjson.loads(body)
        assert payload["explanation"] == (
            "POST /charges: no recording matches. nearest: #1 POST /charges differs in body "
            '$.amount (recorded 12.5, got 13.0); hint: add "$.amount" to match.ignore_body of '
            "dependency payments"
        )
        assert payload["candidates"][0]["differences"] == [
            {"field": "body", "name": "$.amount", "recorded": "12.5", "got": "13.0"}
        ]
        # still serving
        assert call(port, "POST", "/charges", b'{"amount": 12.5}')[0] == 200
        _, _, misses = call(port, "GET", "/__devbox/misses")
        (miss,) = orjson.loads(misses)["misses"]
        assert miss["explanation"] == payload["explanation"] and miss["action"] == "failed"
        assert [m.target for m in fleet.misses()] == ["/charges"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = [e for e in events if isinstance(e, MockStats) and e.misses == 1]
            if stats:
                break
            time.sleep(0.05)
        assert stats and stats[-1].hits == 1 and "differs in body $.amount" in stats[-1].last_miss
    assert [e.target for e in events if isinstance(e, MockMiss)] == ["/charges"]


@pytest.mark.parametrize("parser", PARSERS)
def test_pipelined_requests_are_answered_in_order(parser: str) -> None:
    exs = [exchange(i, "GET", f"/p/{i}") for i in range(40)]
    exs += [exchange(100 + i, "POST", "/o", body=b'{"i": %d}' % i) for i in range(10)]
    batch = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(40))
    batch += b"".join(
        b"POST /o HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(b'{"i": %d}' % i), b'{"i": %d}' % i)
        for i in range(10)
    )
    with running(exs, parser=parser) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            # all at once, then split at awkward places: the parser must not care
            s.sendall(batch)
            got = read_responses(s, 50)
            for cut in (1, 7, 33):
                for i in range(0, len(batch), cut * 97):
                    s.sendall(batch[i : i + cut * 97])
                got += read_responses(s, 50)
    expected = [b'{"n": %d}' % i for i in range(40)] + [b'{"n": %d}' % (100 + i) for i in range(10)]
    assert [b for _, b in got] == expected * 4


@pytest.mark.parametrize("parser", PARSERS)
def test_chunked_request_body_matches_like_a_content_length_one(parser: str) -> None:
    exs = [exchange(1, "POST", "/upload", body=b'{"a": [1, 2, 3]}')]
    with running(exs, parser=parser) as (_, port):
        raw = send_raw(
            port,
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
            b'5;ext=1\r\n{"a":\r\n9\r\n [1,2,3]}\r\n0\r\nX-Trailer: 1\r\n\r\n',
        )
    assert status_of(raw) == 200 and raw.endswith(b'{"n": 1}')
    assert b"Connection: close" in raw


def test_recorded_gzip_and_deflate_bodies_are_served_encoded_or_identity() -> None:
    text = b'{"msg": "' + b"hello " * 200 + b'"}'
    exs = [
        exchange(
            1,
            "GET",
            "/gz",
            resp_body=text,
            resp_headers=(
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "17"),
            ),
        ),
        exchange(2, "GET", "/df", resp_body=text, resp_headers=(("Content-Encoding", "deflate"),)),
        exchange(3, "GET", "/br", resp_body=text, resp_headers=(("Content-Encoding", "br"),)),
        exchange(4, "GET", "/zs", resp_body=text, resp_headers=(("Content-Encoding", "zstd"),)),
    ]
    with running(exs) as (_, port):
        status, headers, body = call(port, "GET", "/gz", headers={"Accept-Encoding": "gzip, br"})
        assert headers["content-encoding"] == "gzip" and "transfer-encoding" not in headers
        assert int(headers["content-length"]) == len(body) < len(text)
        assert gzip.decompress(body) == text
        # the same recording, twice: the same bytes (deterministic encoding)
        assert call(port, "GET", "/gz", headers={"Accept-Encoding": "gzip"})[2] == body
        status, headers, body = call(port, "GET", "/gz")  # no Accept-Encoding: identity
        assert status == 200 and "content-encoding" not in headers and body == text
        status, headers, body = call(port, "GET", "/df", headers={"Accept-Encoding": "deflate"})
        assert status == 200
        assert headers["content-encoding"] == "deflate" and zlib.decompress(body) == text
        _, headers, body = call(port, "GET", "/br", headers={"Accept-Encoding": "br"})
        assert headers["content-encoding"] == "br" and brotli.decompress(body) == text
        _, headers, body = call(port, "GET", "/zs", headers={"Accept-Encoding": "gzip, zstd"})
        assert headers["content-encoding"] == "zstd"
        assert zstandard.ZstdDecompressor().decompress(body) == text
        _, headers, body = call(port, "GET", "/br", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in headers and body == text  # not accepted: identity


def test_head_of_a_recorded_get_gets_its_headers_only() -> None:
    with running([exchange(1, "GET", "/h", resp_body=b"x" * 50)]) as (_, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("HEAD", "/h")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-length") == "50" and r.read() == b""
        assert call(port, "GET", "/h", conn=conn)[2] == b"x" * 50  # the connection still works


def test_expect_100_continue_and_http10() -> None:
    with running([exchange(1, "POST", "/e", body=b"data"), exchange(2, "GET", "/v")]) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(
                b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(b"data")
            assert read_responses(s, 1) == [(200, b'{"n": 1}')]
        raw = send_raw(port, b"GET /v HTTP/1.0\r\n\r\n")  # 1.0: the server closes
        assert status_of(raw) == 200 and raw.endswith(b'{"n": 2}')
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
            assert [st for st, _ in read_responses(s, 2)] == [200, 200]


def test_a_recorded_network_error_is_replayed_as_a_reset() -> None:
    exs = [exchange(1, "GET", "/down", error="connection refused"), exchange(2, "GET", "/up")]
    with running(exs) as (_, port):
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            call(port, "GET", "/down")
        assert call(port, "GET", "/up")[0] == 200


def test_admin_stats_journal_reset_mode() -> None:
    exs = [
        exchange(1, "GET", "/a"),
        exchange(2, "GET", "/a"),
        exchange(3, "POST", "/b", body=b"\xff"),
    ]
    with running(exs, name="inv") as (fleet, port):
        call(port, "GET", "/a")
        call(port, "POST", "/b", b"\xff")
        call(port, "GET", "/nope?x=1")
        _, _, raw = call(port, "GET", "/__devbox/stats")
        stats = orjson.loads(raw)
        assert (stats["hits"], stats["misses"], stats["exchanges"]) == (2, 1, 3)
        routes = {(r["method"], r["path"]): (r["hits"], r["misses"]) for r in stats["routes"]}
        assert routes[("GET", "/a")] == (1, 0) and routes[("GET", "/nope")] == (0, 1)
        _, _, raw = call(port, "GET", "/__devbox/journal?after=0")
        journal = orjson.loads(raw)
        assert [(e["seq"], e["method"], e["target"], e["matched"]) for e in journal["entries"]] == [
            (1, "GET", "/a", "ex1"),
            (2, "POST", "/b", "ex3"),
            (3, "GET", "/nope?x=1", None),
        ]
        assert journal["entries"][1]["body"] == "base64:/w=="
        assert journal["next"] == 3
        _, _, raw = call(port, "GET", "/__devbox/journal?after=2")
        assert [e["seq"] for e in orjson.loads(raw)["entries"]] == [3]
        assert fleet.journal("inv", after=1)["next"] == 3
        # reset: the sequence starts again
        assert call(port, "GET", "/a")[2] == b'{"n": 2}'
        assert call(port, "POST", "/__devbox/reset", headers=ADMIN)[0] == 200
        assert call(port, "GET", "/a")[2] == b'{"n": 1}'
        # no upstream: nothing to pass through to, whoever asks
        status, _, raw = call(port, "POST", "/__devbox/mode?mode=passthrough", headers=ADMIN)
        assert status == 409 and b"needs an upstream" in raw
        assert call(port, "POST", "/__devbox/mode?mode=replay", headers=ADMIN)[0] == 200
        assert call(port, "POST", "/__devbox/mode?mode=bogus", headers=ADMIN)[0] == 400
        assert call(port, "GET", "/__devbox/nothing")[0] == 404
        assert call(port, "DELETE", "/__devbox/stats", headers=ADMIN)[0] == 405
        assert [s.mode for s in fleet.stats()] == ["replay"]


def test_hot_reload_without_dropping_connections(tmp_path: Path) -> None:
    events: list[Event] = []
    rec = tmp_path / "payments"
    write_recording(rec / "a.json", "payments", Direction.OUTBOUND, [exchange(1, "GET", "/a")])
    with running(recordings=rec, events=events, poll_interval_s=0.05, name="payments") as (
        fleet,
        port,
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert call(port, "GET", "/a", conn=conn)[0] == 200
        assert call(port, "GET", "/b", conn=conn)[0] == MISS_STATUS
        write_recording(rec / "b.json", "payments", Direction.OUTBOUND, [exchange(2, "GET", "/b")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, _, body = call(port, "GET", "/b", conn=conn)  # same connection throughout
            if status == 200:
                break
            time.sleep(0.05)
        assert (status, body) == (200, b'{"n": 2}')
        assert any(isinstance(e, Log) and "reloaded 2 recorded exchanges" in e.text for e in events)
        # a broken file: reported, the previous recordings keep serving
        (rec / "c.json").write_text('{"devbox_recording": true, "format": 1}\n{"id": \n}\n{}')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(isinstance(e, Problem) for e in events):
            time.sleep(0.05)
        (problem,) = [e for e in events if isinstance(e, Problem)]
        assert "c.json" in problem.message and "still serving the previous ones" in problem.message
        assert call(port, "GET", "/b", conn=conn)[0] == 200
        (rec / "c.json").unlink()
        fleet.reload()  # explicit reload, as the engine does
        assert fleet.exchanges() == {"payments": 2}
        conn.close()


def test_faults_are_seeded_and_reproducible() -> None:
    exs = [exchange(1, "GET", "/f")]
    faults = Faults(error_rate=0.5, error_status=503, seed=42)

    def run() -> list[int]:
        with running(exs, faults=faults) as (_, port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            out = [call(port, "GET", "/f", conn=conn)[0] for _ in range(30)]
            conn.close()
            return out

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}
    resets = Faults(reset_rate=1.0, seed=1)
    with running(exs, faults=resets) as (fleet, port):
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            call(port, "GET", "/f")
        assert fleet.servers["dep"].injected_resets == 1


def test_delays_never_answer_early_and_keep_order() -> None:
    """Lower bounds only: a delayed answer cannot come sooner than the delay."""
    exs = [exchange(1, "GET", "/slow", wait_ms=300), exchange(2, "GET", "/fast", wait_ms=1)]
    with running(exs, timing="recorded") as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            got = read_responses(s, 2)
            assert time.monotonic() - t0 >= 0.29
    assert [b for _, b in got] == [b'{"n": 1}', b'{"n": 2}']  # order kept despite the delays
    with running(exs, faults=Faults(delay_ms=200)) as (_, port):
        t0 = time.monotonic()
        assert call(port, "GET", "/fast")[0] == 200
        assert time.monotonic() - t0 >= 0.19


def test_live_requests_are_redacted_before_matching(tmp_path: Path) -> None:
    """A bearer token named in match.headers: the recording holds its placeholder."""
    token = "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    raw = exchange(
        1,
        "POST",
        "/charges",
        body=b'{"amount": 5, "email": "ann@example.com"}',
        req_headers=(("Authorization", token),),
    )
    stored = Redactor().exchange(raw)
    assert "4eC39HqLyjWDarjtT1zdp7dc" not in str(stored.request.headers)
    assert b"ann@" not in stored.request.body
    rec = tmp_path / "payments"
    write_recording(rec / "r.json", "payments", Direction.OUTBOUND, [stored])
    with running(
        recordings=rec,
        redact=RedactRules(),
        name="payments",
        match=MatchRules(headers=("authorization",)),
    ) as (fleet, port):
        body = b'{"amount": 5, "email": "ann@example.com"}'
        assert call(port, "POST", "/charges", body, {"Authorization": token})[0] == 200
        status, _, out = call(port, "POST", "/charges", body, {"Authorization": "Bearer other1234"})
        assert status == MISS_STATUS and b"4eC39HqLyjWDarjtT1zdp7dc" not in out
        assert b"other1234" not in out
        # the journal never shows the secret either
        entries = fleet.journal("payments")["entries"]
        assert entries and all("ann@example.com" not in e["body"] for e in entries)


def test_passthrough_and_record_against_a_real_upstream(
    tmp_path: Path, demo_upstreams: dict[str, int]
) -> None:
    upstream = f"http://127.0.0.1:{demo_upstreams['inventory']}"
    rec = tmp_path / "inventory"
    with running(
        recordings=rec,
        name="inventory",
        upstream=upstream,
        on_miss="passthrough",
        redact=RedactRules(),
    ) as (fleet, port):
        status, headers, body = call(port, "GET", "/items/KB-101")
        assert status == 200 and orjson.loads(body)["sku"] == "KB-101"
        assert "x-devbox-miss" not in headers
        assert fleet.servers["inventory"].passed_through == 1
        assert not rec.exists()  # passthrough records nothing
        fleet.set_mode("inventory", "record")
        status, _, first = call(
            port, "GET", "/items/MS-202", headers={"Authorization": "Bearer abcdefgh12345678"}
        )
        assert status == 200
        fleet.set_mode("inventory", "replay")
        # now served from the new recording, identical bytes, no upstream call
        status, _, again = call(port, "GET", "/items/MS-202")
        assert (status, again) == (200, first)
        (misses,) = [m for m in fleet.misses() if m.action == "record"]
        assert misses.target == "/items/MS-202"
    saved = load_dir(rec)
    assert [e.request.path for e in saved] == ["/items/MS-202"]
    assert saved[0].origin == "devbox mock record"
    assert "abcdefgh12345678" not in str(saved[0].request.headers)  # redacted on the way to disk
    # a passthrough whose upstream is gone: a 5xx that says so
    with running([], name="gone", upstream="http://127.0.0.1:9", on_miss="passthrough") as (_, p):
        status, _, body = call(p, "GET", "/x")
        assert status == MISS_STATUS
        assert "forwarding to the upstream failed: 127.0.0.1:9" in orjson.loads(body)["explanation"]


def test_fuzzy_answers_with_the_strongest_candidate_and_says_so() -> None:
    exs = [
        exchange(1, "POST", "/q", body=b'{"a": 1, "b": 1, "c": 1}'),
        exchange(2, "POST", "/q", body=b'{"a": 1, "b": 2, "c": 2}'),
    ]
    with running(exs, match=MatchRules(fuzzy=True)) as (_, port):
        assert call(port, "POST", "/q", b'{"a": 1, "b": 2, "c": 9}')[2] == b'{"n": 2}'
        assert call(port, "POST", "/r", b'{"a": 1}')[0] == MISS_STATUS  # never across routes
        _, _, raw = call(port, "GET", "/__devbox/stats")
        stats = orjson.loads(raw)
        assert (stats["hits"], stats["fuzzy_hits"], stats["misses"]) == (1, 1, 1)


def test_a_repeated_miss_is_logged_every_time_but_reported_once_a_second() -> None:
    events: list[Event] = []
    with running([exchange(1, "GET", "/a")], events=events) as (fleet, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(20):
            assert call(port, "GET", "/retry", conn=conn)[0] == MISS_STATUS
        conn.close()
        assert len(fleet.misses()) == 20
        assert fleet.servers["dep"].misses == 20
    assert len([e for e in events if isinstance(e, MockMiss)]) < 20


def test_single_file_recording_reloads_records_and_reports_reload_errors(
    tmp_path: Path, demo_upstreams: dict[str, int]
) -> None:
    """A recording given as one file: hot reload watches it, record mode appends to it,
    POST /__devbox/reload reports a broken file with 422 and keeps serving."""
    rec = tmp_path / "inventory.json"
    write_recording(rec, "inventory", Direction.OUTBOUND, [exchange(1, "GET", "/a")])
    upstream = f"http://127.0.0.1:{demo_upstreams['inventory']}"
    with running(
        recordings=rec,
        name="inventory",
        upstream=upstream,
        on_miss="record",
        redact=RedactRules(),
        poll_interval_s=0.05,
    ) as (fleet, port):
        assert call(port, "GET", "/items/CB-404")[0] == 200  # forwarded and appended
        assert [e.request.path for e in load_dir(tmp_path)] == ["/a", "/items/CB-404"]
        fleet.set_mode("inventory", "replay")
        # edit the file by hand: picked up without a restart
        write_recording(
            rec,
            "inventory",
            Direction.OUTBOUND,
            [exchange(1, "GET", "/a"), exchange(7, "GET", "/hand-written")],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and call(port, "GET", "/hand-written")[0] != 200:
            time.sleep(0.05)
        assert call(port, "GET", "/hand-written")[2] == b'{"n": 7}'
        rec.write_text("not json at all")
        status, _, raw = call(port, "POST", "/__devbox/reload", headers=ADMIN)
        assert status == 422 and "inventory.json" in orjson.loads(raw)["error"]
        assert call(port, "GET", "/hand-written")[0] == 200  # the previous set still serves
