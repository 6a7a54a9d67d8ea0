"""HTTP/2 as messages: a sans-IO adaptor over the ``h2`` package.

``h2`` turns bytes into frame-level events (headers, data, window updates, resets);
everything devbox does with HTTP (match a request, answer it, record an exchange) works
on whole messages. ``H2Endpoint`` sits between: bytes in (``receive_data``), complete
``H2Request`` / ``H2Response`` values out, whole responses and requests in
(``send_response``, ``send_request``), bytes out (``data_to_send``). Flow control is
its business: bodies larger than the peer's window wait here and go out as the peer
opens it; received data is acknowledged at once (bounded by ``max_body`` per stream).

Header names arrive lower-case (HTTP/2 requires it); pseudo-headers are taken apart
into ``method``, ``path``, ``authority``, ``scheme`` (``status`` for responses), so a
request maps onto the same model as HTTP/1.1: ``http1_headers()`` gives the header
list with ``Host`` from ``:authority``. No sockets, no asyncio: the mock's HTTP/2
connection (``devbox.mock.h2conn``, server side) and gRPC replay
(``devbox.replay.grpc``, client side) drive it. Informational responses (1xx) are
passed over: a client gets the final response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from devbox.wire.contract import RemoteProtocolError

if TYPE_CHECKING:
    from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame  # h2's own dependency

Headers = tuple[tuple[str, str], ...]
# connection-specific headers HTTP/2 forbids (RFC 9113 8.2.2); dropped from what we send
CONNECTION_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
)


@dataclass(frozen=True, slots=True)
class H2Request:
    stream_id: int
    method: str
    path: str  # :path, the request-target as sent
    authority: str = ""
    scheme: str = "https"
    headers: Headers = ()  # regular headers, lower-case names, in order
    body: bytes = b""
    trailers: Headers = ()

    def http1_headers(self) -> Headers:
        """The headers as an HTTP/1.1 request carries them: ``host`` from ``:authority``."""
        if self.authority and not any(k == "host" for k, _ in self.headers):
            return (("host", self.authority), *self.headers)
        return self.headers


@dataclass(frozen=True, slots=True)
class H2Response:
    stream_id: int
    status: int
    headers: Headers = ()
    body: bytes = b""
    trailers: Headers = ()


@dataclass(frozen=True, slots=True)
class Oversized:
    """A request or response body passed ``max_body``: answer it (413) or give up on it;
    its remaining data is discarded."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer sent GOAWAY (or we did after a protocol error)."""

    code: int
    reason: str = ""
    # the peer's GOAWAY still covers our streams up to this one; those above it were not
    # processed and may be retried elsewhere (RFC 9113 6.8)
    last_stream_id: int = 0


Event = H2Request | H2Response | Oversized | StreamReset | Closed


@dataclass(slots=True)
class _Inbound:
    headers: list[tuple[str, str]] = field(default_factory=list)
    pseudo: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    discard: bool = False


@dataclass(slots=True)
class _Outbound:
    """What is still to go on one stream: body beyond the peer's window, then trailers."""

    data: bytearray
    trailers: Headers = ()


def _split(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for k, v in raw:
        name = k.decode("latin-1")
        value = v.decode("latin-1")
        if name.startswith(":"):
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, regular


_OPEN = (h2.connection.ConnectionState.CLIENT_OPEN, h2.connection.ConnectionState.SERVER_OPEN)


class _Connection(h2.connection.H2Connection):
    """h2 takes a GOAWAY for the end of the connection at once: the frames of the streams
    it still covers then raise ProtocolError. A graceful GOAWAY (NO_ERROR) only stops new
    streams (RFC 9113 6.8), and nginx does answer the streams it covers after its GOAWAY;
    ``H2Endpoint`` opens no stream after one itself, so the connection stays open here."""

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        state, pending = self.state_machine.state, self._data_to_send
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0 and state in _OPEN:
            self.state_machine.state = state
            self._data_to_send = pending  # acknowledgements of the covered streams' data
        return frames, events

    # set while a refused stream's HEADERS goes through h2: its limit check is skipped
    _lifted = False

    @property
    def open_inbound_streams(self) -> int:
        return 0 if self._lifted else super().open_inbound_streams

    def _receive_headers_frame(
        self, frame: HeadersFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        """A stream beyond our MAX_CONCURRENT_STREAMS is that stream's error, REFUSED_STREAM
        (RFC 9113 5.1.2; nginx's answer too): h2 ends the whole connection. Its header
        block is decoded all the same, or HPACK's table would be out of step."""
        sid = frame.stream_id
        limit = self.local_settings.max_concurrent_streams
        if sid in self.streams or super().open_inbound_streams < limit:
            return super()._receive_headers_frame(frame)
        self._lifted = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._lifted = False
        self.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        return frames, [e for e in events if getattr(e, "stream_id", None) != sid]


class H2Endpoint:
    """One HTTP/2 connection, server (``client=False``) or client side."""

    def __init__(
        self,
        *,
        client: bool = False,
        max_body: int = 16 * 1024 * 1024,
        max_streams: int = 128,
        max_header_list: int = 64 * 1024,
    ) -> None:
        # what we send is built here, lower-case and free of connection headers: h2 need
        # not check it again per message (what we receive is checked)
        config = h2.config.H2Configuration(
            client_side=client,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = _Connection(config=config)
        self.client = client
        self.max_body = max_body
        self.conn.local_settings = h2.settings.Settings(
            client=client,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # h2 applies a MAX_HEADER_LIST_SIZE to its decoder only when an acknowledged
        # SETTINGS changes it, never the first one: it would keep 64 KiB whatever we
        # said, and a larger header block ends the whole connection (a mock's limit is
        # its configured one)
        self.conn.decoder.max_header_list_size = max_header_list
        self._in: dict[int, _Inbound] = {}
        # stream -> what is left to send on it, as the peer's windows allow
        self._out: dict[int, _Outbound] = {}
        self.closed = False

    def initiate(self) -> None:
        """Our preface and SETTINGS (a client also sends the connection preface)."""
        self.conn.initiate_connection()

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    @property
    def open_streams(self) -> int:
        return len(self._in) + len(self._out)

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the peer; raises ``RemoteProtocolError`` (GOAWAY is then queued)."""
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued the GOAWAY naming the error (a second one is not ours to add)
            self.closed = True
            code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            raise RemoteProtocolError(f"HTTP/2 protocol error: {exc}", code=int(code)) from exc
        out: list[Event] = []
        for ev in events:
            self._event(ev, out)
        return out

    def _event(self, ev: h2.events.Event, out: list[Event]) -> None:
        if isinstance(ev, h2.events.RequestReceived | h2.events.ResponseReceived):
            sid = ev.stream_id
            assert sid is not None
            pseudo, regular = _split(list(ev.headers or ()))
            self._in[sid] = _Inbound(headers=regular, pseudo=pseudo)
        elif isinstance(ev, h2.events.DataReceived):
            self._data(ev, out)
        elif isinstance(ev, h2.events.TrailersReceived):
            st = self._in.get(ev.stream_id or 0)
            if st is not None:
                st.trailers = _split(list(ev.headers or ()))[1]
        elif isinstance(ev, h2.events.StreamEnded):
            self._ended(ev.stream_id or 0, out)
        elif isinstance(ev, h2.events.StreamReset):
            sid = ev.stream_id or 0
            self._in.pop(sid, None)
            self._out.pop(sid, None)
            out.append(StreamReset(sid, int(ev.error_code or 0)))
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._pump()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True
            reason = (ev.additional_data or b"").decode("latin-1", "replace")
            out.append(Closed(int(ev.error_code or 0), reason, int(ev.last_stream_id or 0)))

    def _data(self, ev: h2.events.DataReceived, out: list[Event]) -> None:
        sid = ev.stream_id
        assert sid is not None
        flow = ev.flow_controlled_length or 0
        if flow:
            self.conn.acknowledge_received_data(flow, sid)
        st = self._in.get(sid)
        if st is None or st.discard or not ev.data:
            return
        st.body += ev.data
        if len(st.body) > self.max_body:
            st.discard = True
            st.body = bytearray()
            out.append(Oversized(sid))

    def _ended(self, sid: int, out: list[Event]) -> None:
        st = self._in.pop(sid, None)
        if st is None or st.discard:
            return
        out.append(self._message(sid, st))

    def _message(self, sid: int, st: _Inbound) -> H2Request | H2Response:
        """The complete message received on this stream."""
        p = st.pseudo
        if self.client:
            status = p.get(":status", "0")
            return H2Response(
                sid,
                int(status) if status.isdigit() else 0,
                tuple(st.headers),
                bytes(st.body),
                tuple(st.trailers),
            )
        return H2Request(
            sid,
            p.get(":method", "GET"),
            p.get(":path", "/"),
            p.get(":authority", ""),
            p.get(":scheme", "https"),
            tuple(st.headers),
            bytes(st.body),
            tuple(st.trailers),
        )

    # ------------------------------------------------------------ sending

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, trailers: Headers = ()
    ) -> None:
        """A whole response; a body larger than the window is sent as it opens."""
        self._send(stream_id, _response_head(status, headers), body, trailers)

    def send_request(
        self,
        method: str,
        path: str,
        authority: str,
        headers: Headers,
        body: bytes = b"",
        *,
        scheme: str = "https",
        trailers: Headers = (),
    ) -> int:
        """A whole request on a new stream; its id is returned, 0 if no stream could be
        opened (GOAWAY, or the peer's stream limit)."""
        if self.closed:
            return 0
        try:
            sid = int(self.conn.get_next_available_stream_id())
        except h2.exceptions.NoAvailableStreamIDError:
            return 0
        head = [(":method", method), (":scheme", scheme), (":authority", authority)]
        head.append((":path", path))
        head.extend((k, v) for k, v in _outbound(headers) if k != "host")
        return sid if sid and self._send(sid, head, body, trailers) else 0

    @property
    def sending(self) -> bool:
        """Some stream still has data or its end waiting for the peer's window: closing
        the connection now would cut it off."""
        return bool(self._out)

    def _send(self, sid: int, head: list[tuple[str, str]], body: bytes, trailers: Headers) -> bool:
        if self.closed:
            return False
        end_now = not body and not trailers
        try:
            self.conn.send_headers(sid, head, end_stream=end_now)
        except h2.exceptions.ProtocolError:
            # the peer reset the stream meanwhile, or (a new stream) its limit is reached:
            # h2's exceptions must not escape into the protocol callback that called us
            return False
        if not end_now:
            self._out[sid] = _Outbound(bytearray(body), tuple(_outbound(trailers)))
            self._pump_one(sid)
        return True

    def _pump(self) -> None:
        for sid in list(self._out):
            self._pump_one(sid)

    def _pump_one(self, sid: int) -> None:
        out = self._out.get(sid)
        if out is None:
            return
        data = out.data
        try:
            while data:
                window = min(
                    self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size
                )
                if window <= 0:
                    return  # the rest goes as the peer opens its window
                chunk = bytes(data[:window])
                del data[:window]
                # the last data ends the stream, unless trailers follow
                self.conn.send_data(sid, chunk, end_stream=not data and not out.trailers)
            if out.trailers:
                self.conn.send_headers(sid, list(out.trailers), end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        del self._out[sid]
        if sid in self._in and self._in[sid].discard:
            # answered before its body was read (413): the rest is not wanted
            self.reset(sid, h2.errors.ErrorCodes.NO_ERROR)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        self._in.pop(stream_id, None)
        self._out.pop(stream_id, None)
        try:
            self.conn.reset_stream(stream_id, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def close(self, code: int = 0) -> None:
        """GOAWAY: no new streams (the ones open may finish)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.conn.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:
            pass


def _response_head(status: int, headers: Headers) -> list[tuple[str, str]]:
    return [(":status", str(status)), *_outbound(headers)]


def _outbound(headers: Headers) -> list[tuple[str, str]]:
    # ``te: trailers`` is the one connection header HTTP/2 keeps (RFC 9113 8.2.2): gRPC
    # servers require it of every call
    return [
        (k.lower(), v)
        for k, v in headers
        if (k.lower() not in CONNECTION_HEADERS or (k.lower() == "te" and v == "trailers"))
        and not k.startswith(":")
    ]
