"""An HTTP/2 upstream that answers before the request's body came, then resets the
stream with NO_ERROR ("stop sending", RFC 9113 8.1), as nginx's ``return 201`` does.

Through the proxy the upstream has the request's head before its body, which it rarely
has from the client directly, so this happens far more often than without devbox. The
reset, passed on at once, met curl 7.88 before it had written its body and curl failed
the stream (exit 92: CI, ``POST /charges``). The relay now takes the rest of the body for
a grace and drops it: a client whose body was on its way ends its stream cleanly and the
exchange is recorded with all of it; one that sends nothing more hears the reset after
the grace and the exchange is recorded cut short. The client here is ``h2`` itself, so
the body can be held back until the answer is in, every time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from nginx_support import CHARGE, Nginx, nginx
from record_helpers import exchanges, wait_for
from tee_support import recording, tunnel

from devbox.record import Recorder
from devbox.record.h2late import STOP_GRACE_S
from devbox.record.proxy_core import Captured

BODY = b'{"amount": 5}'


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as n:
        yield n


class Client:
    """One HTTP/2 connection through the forward proxy, read frame by frame."""

    def __init__(self, proxy: int, port: int, ca: Path) -> None:
        self.tls = tunnel(proxy, port, ca, alpn="h2")
        assert self.tls.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.events: list[Any] = []

    def flush(self) -> None:
        self.tls.sendall(self.conn.data_to_send())

    def post_head(self, port: int) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        head = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", f"localhost:{port}"),
            (":path", "/charges"),
            ("content-type", "application/json"),
            ("content-length", str(len(BODY))),
        ]
        self.conn.send_headers(sid, head)
        self.flush()
        return sid

    def read_until(self, done: Any, seconds: float) -> list[Any]:
        """Events until ``done(events)`` or ``seconds`` (all of them, either way)."""
        end = time.monotonic() + seconds
        while not done(self.events) and (left := end - time.monotonic()) > 0:
            self.tls.settimeout(left)
            try:
                data = self.tls.recv(65536)
            except TimeoutError:
                break
            assert data, "the proxy closed the connection"
            self.events += self.conn.receive_data(data)
            self.flush()
        return self.events


def kinds(events: list[Any], sid: int) -> list[str]:
    return [type(e).__name__ for e in events if getattr(e, "stream_id", None) == sid]


def ended(sid: int) -> Any:
    return lambda evs: "StreamEnded" in kinds(evs, sid)


@contextlib.contextmanager
def answered_early(
    tmp: Path, upstream: Nginx, ca: Path
) -> Iterator[tuple[Recorder, Client, int, list[Captured], float]]:
    """Recording; a client through the proxy sent a POST's head, no body, and nginx's
    answer came: (recorder, client, stream, what was captured, when the head went)."""
    captured: list[Captured] = []
    with recording(tmp, upstream.url, upstream.ca_file, on_captured=captured.append) as (
        rec,
        proxy,
    ):
        c = Client(proxy, upstream.tls_port, ca)
        asked = time.monotonic()  # the grace starts later: once the answer has come up
        sid = c.post_head(upstream.tls_port)
        c.read_until(ended(sid), 10)  # nginx answered on the head alone
        yield rec, c, sid, captured, asked


def test_a_body_on_its_way_ends_the_stream_cleanly(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, captured, _asked):
        data = b"".join(e.data for e in c.events if isinstance(e, h2.events.DataReceived))
        assert kinds(c.events, sid)[-1] == "StreamEnded" and data == CHARGE
        c.conn.send_data(sid, BODY, end_stream=True)  # the body, after the answer
        c.flush()
        # no reset follows the answer within the grace: the stream closed both ways
        evs = c.read_until(lambda evs: "StreamReset" in kinds(evs, sid), STOP_GRACE_S + 0.5)
        assert "StreamReset" not in kinds(evs, sid)
        # and the connection still serves the next request
        sid2 = c.post_head(upstream.tls_port)
        c.conn.send_data(sid2, BODY, end_stream=True)
        c.flush()
        assert "StreamEnded" in kinds(c.read_until(ended(sid2), 10), sid2)
        wait_for(lambda: len(captured) == 2)  # while the connection is open
        c.tls.close()
    for e in exchanges(rec.profile.mocks_dir, "shop"):
        assert e.response is not None and (e.response.status, e.response.body) == (201, CHARGE)
        # the whole body, though the upstream never read it
        assert (e.request.body, e.request_truncated, e.error) == (BODY, False, None)


def test_a_body_that_does_not_come_hears_the_reset_after_the_grace(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    with answered_early(tmp_path, upstream, devbox_ca) as (rec, c, sid, captured, asked):
        evs = c.read_until(lambda evs: "StreamReset" in kinds(evs, sid), STOP_GRACE_S + 5)
        waited = time.monotonic() - asked
        resets = [e for e in evs if isinstance(e, h2.events.StreamReset)]
        assert [(r.stream_id, r.error_code) for r in resets] == [
            (sid, h2.errors.ErrorCodes.NO_ERROR)
        ]
        # not at once (what made curl fail), but once the grace was over (a timer may
        # fire a millisecond early)
        assert waited >= STOP_GRACE_S - 0.01
        wait_for(lambda: len(captured) == 1)  # then, not when recording stops
        c.tls.close()
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.response is not None and e.response.status == 201
    assert (e.request.body, e.request_truncated) == (b"", True)
