"""One exchange relayed by ``devbox.record.h2relay``: where it stands on both HTTP/2
connections (stream ids, what waits, what is owed to each side's window) and what the
recording gets of it once it is over."""

from __future__ import annotations

import time

from devbox.core.model import Direction
from devbox.record.capture import BodyCapture
from devbox.record.proxy_core import ProxyCore, Route
from devbox.wire.h2 import H2Request, H2Response


class H2Exchange:
    """One HTTP/2 exchange in flight (``up_sid`` 0 while it waits for an upstream stream)."""

    __slots__ = (
        "answered",
        "attempts",
        "csid",
        "id",
        "kept",
        "owed_client",
        "owed_up",
        "parent",
        "queued",
        "req",
        "req_ended",
        "req_trailers",
        "resp",
        "resp_sent",
        "resp_trailers",
        "rq",
        "rs",
        "started_at",
        "stopped",
        "t0",
        "t_first",
        "up_sid",
    )

    def __init__(self, req: H2Request, id: str, parent: str | None, max_body: int) -> None:
        self.req = req  # the request's head
        self.csid = req.stream_id
        self.id = id
        self.parent = parent
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.t_first = 0.0
        self.up_sid = 0
        self.attempts = 0
        self.rq = BodyCapture(max_body, header(req.headers, "content-encoding"))
        self.rs: BodyCapture | None = None
        self.queued = bytearray()  # request data not yet sent up (waiting for a stream)
        self.kept: bytearray | None = bytearray()  # all request data, for a retry
        self.req_ended = False
        self.req_trailers: tuple[tuple[str, str], ...] = ()
        self.resp: H2Response | None = None  # the response's head, once it came
        self.resp_trailers: tuple[tuple[str, str], ...] = ()
        self.resp_sent = False  # that head went to the client
        self.owed_client = 0  # client data taken but not yet acknowledged to it
        self.owed_up = 0  # upstream data taken but not yet acknowledged to it
        # answered before its request ended: recorded once the rest of it has come
        self.answered = False
        # answered, and the upstream stopped reading its body: the rest is taken, dropped
        self.stopped = False


def record(
    core: ProxyCore, route: Route, st: H2Exchange, error: str | None, *, cut: bool = False
) -> None:
    """The exchange to the recording: the response only if it completed (``error`` None),
    or, ``cut``, with what came of it before recording stopped (marked truncated)."""
    upstream = route.upstream
    assert upstream is not None
    now = time.perf_counter()
    duration_ms = (now - st.t0) * 1000.0
    req, resp, rq, rs = st.req, st.resp if error is None or cut else None, st.rq, st.rs
    sent = (("host", upstream.authority), *((k, v) for k, v in req.headers))
    sent = tuple((k, v) for k, v in sent if k not in ("proxy-connection",))
    capture = (
        "x",
        route.source,
        Direction.OUTBOUND.value,
        st.id,
        st.parent,
        "https",
        upstream.authority,
        req.method,
        req.path,
        "HTTP/2",
        list(sent),
        rq.body(),
        rq.truncated,
        (resp.status, "", "HTTP/2", list(resp.headers), list(st.resp_trailers))
        if resp is not None
        else None,
        rs.body() if resp is not None and rs is not None else b"",
        resp is not None and (cut or (rs is not None and rs.truncated)),
        st.started_at,
        duration_ms,
        (st.t_first - st.t0) * 1000.0 if resp is not None else None,
        error,
    )
    core.record(capture)


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None
