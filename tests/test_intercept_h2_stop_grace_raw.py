"""The HTTP/2 relay's stop-sending grace (e46851e) when something else happens during it.
Real parts: nginx answering a POST on its head alone (``return 201``, then a NO_ERROR
reset), ``devbox record``'s forward proxy, and the ``h2`` client of
test_intercept_h2_stop_sending, so the body can be held back and the stream reset, the
connection closed or recording stopped at a chosen point of the grace.

Each exchange is recorded exactly once, cut short when its body did not all come; the
connection keeps serving after a reset; recording stops without waiting for the grace;
a body still trickling in when the grace ends is cut, and the client hears NO_ERROR
once. These held when the grace came in: they guard it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import h2.errors
import h2.events
import pytest
from nginx_support import Nginx, nginx
from record_helpers import exchanges, wait_for
from test_intercept_h2_stop_sending import BODY, answered_early, ended, kinds

from devbox.record.h2late import STOP_GRACE_S


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as n:
        yield n


def test_client_reset_during_grace(tmp_path: Path, upstream: Nginx, devbox_ca: Path) -> None:
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, captured, _asked):
        c.conn.send_data(sid, b'{"amo', end_stream=False)
        c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        wait_for(lambda: len(captured) == 1, 5)
        # past the grace, the connection still serves: the reset took only its stream
        time.sleep(STOP_GRACE_S + 0.3)
        sid2 = c.post_head(upstream.tls_port)
        c.conn.send_data(sid2, BODY, end_stream=True)
        c.flush()
        assert "StreamEnded" in kinds(c.read_until(ended(sid2), 10), sid2)
        wait_for(lambda: len(captured) == 2, 5)
        c.tls.close()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 2
    assert sorted((e.request.body, e.request_truncated) for e in saved) == [
        (b'{"amo', True),
        (BODY, False),
    ]


def test_connection_close_during_grace(tmp_path: Path, upstream: Nginx, devbox_ca: Path) -> None:
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, captured, _asked):
        c.conn.send_data(sid, b'{"amo', end_stream=False)
        c.flush()
        time.sleep(0.1)  # the piece reaches the relay before the close does
        c.tls.close()
        wait_for(lambda: len(captured) == 1, 5)
        # the grace's end must not record the closed stream a second time
        time.sleep(STOP_GRACE_S + 0.3)
        assert len(captured) == 1
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert (e.request.body, e.request_truncated) == (b'{"amo', True)


def test_recording_stops_during_grace(tmp_path: Path, upstream: Nginx, devbox_ca: Path) -> None:
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, _captured, _asked):
        c.conn.send_data(sid, b'{"amo', end_stream=False)
        c.flush()
        time.sleep(0.1)
        t = time.monotonic()
        rec.stop()
        took = time.monotonic() - t
        # the client keeps its stream: it ends it now, after recording stopped (the proxy
        # may have closed the connection already: then this fails, which is fine)
        with contextlib.suppress(Exception):
            c.conn.send_data(sid, b'unt": 5}', end_stream=True)
            c.flush()
        time.sleep(STOP_GRACE_S + 0.3)
        c.tls.close()
    assert took < 5
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 1, saved
    assert saved[0].request_truncated


def test_body_in_several_pieces_over_the_grace(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """A body still coming at the grace's end: cut, the client hears NO_ERROR, once."""
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, captured, _asked):
        # a byte each 0.3 s (sooner when the reset comes) spans the grace
        for _ in range(6):
            try:
                c.conn.send_data(sid, b"x", end_stream=False)
                c.flush()
            except Exception:  # the stream was reset: nothing more to send
                break
            c.read_until(lambda evs: "StreamReset" in kinds(evs, sid), 0.3)
        evs = c.read_until(lambda evs: "StreamReset" in kinds(evs, sid), 3)
        resets = [e for e in evs if isinstance(e, h2.events.StreamReset)]
        wait_for(lambda: len(captured) == 1, 5)
        c.tls.close()
    assert [(r.stream_id, r.error_code) for r in resets] == [(sid, h2.errors.ErrorCodes.NO_ERROR)]
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.request_truncated
