"""The HTTP/2 (h2c, prior knowledge) that gRPC needs, sans-IO, in one module.

* ``FrameReader`` reads one direction of a relayed connection without taking part in it
  (the recording relay passes every byte on unchanged): frames, HPACK-decoded header
  blocks with the direction's own dynamic table, DATA payloads without padding. It
  never answers anything, so it cannot disturb the peers' flow control or settings.
* ``ServerConnection`` is the mock's side: the ``h2`` state machine (settings, flow
  control, stream states, HPACK) behind a small interface of requests in and responses
  out, with response bytes that wait for the client's flow-control window when needed.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

from devbox.core.frozen import fast_init
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import codec

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, GOAWAY, CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x5,
    0x7,
    0x9,
)
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE = 0x1

Headers = list[tuple[str, str]]


# ---------------------------------------------------------------- the passive reader


@fast_init  # one or two a frame: built as fast as the traffic model's classes
@dataclass(frozen=True, slots=True)
class HeadersEvent:
    stream_id: int
    headers: Headers
    end_stream: bool


@fast_init  # one or two a frame: built as fast as the traffic model's classes
@dataclass(frozen=True, slots=True)
class DataEvent:
    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(frozen=True, slots=True)
class ResetEvent:
    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class SettingsEvent:
    header_table_size: int | None


@dataclass(frozen=True, slots=True)
class GoawayEvent:
    """The sender processes no stream above ``last_stream_id`` (RFC 9113 6.8)."""

    last_stream_id: int
    error_code: int


FrameEvent = HeadersEvent | DataEvent | ResetEvent | SettingsEvent | GoawayEvent

# decoded header blocks kept per reader, by their bytes (see FrameReader._decode)
BLOCK_MEMO = 512
MAX_BLOCK = 16 << 20  # one header block's encoded bytes, CONTINUATIONs included
# what is memoised: ordinary blocks (a block of table references decodes to its
# entries' size over and over: 4,000 references to a 4 KB entry kept 512 times is 8 GB)
MEMO_BLOCK = 4096
MEMO_DECODED = 16 * 1024  # counted as HPACK counts (RFC 7541 4.1: 32 bytes a field more)
MEMO_FIELDS = 64
# a frame header: its 24-bit length as a byte and a short, type, flags, stream id
FRAME_HEAD = struct.Struct(">BHBBL")


class FrameReader:
    """One direction of an HTTP/2 connection, read passively. ``from_client``: expect the
    connection preface first."""

    def __init__(self, *, from_client: bool, text: Callable[[bytes], str] | None = None) -> None:
        self._buf = bytearray()
        self._preface = from_client
        self.decoder = hpack.Decoder()
        # a header block under way: (stream, flags, fragments), flags None for a
        # PUSH_PROMISE's (decoded to keep the table in step, not reported)
        self._block: tuple[int, int | None, bytearray] | None = None
        # header names and values from bytes (default: UTF-8, undecodable bytes kept)
        self._text = text or _s
        self._memo: dict[bytes, tuple[Any, Headers]] = {}
        self._need = 0  # bytes the buffered, incomplete frame needs in all

    def feed(self, data: bytes) -> list[FrameEvent]:
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []  # a large frame still coming: not copied again per read
            data = bytes(self._buf)
            self._buf.clear()
        out: list[FrameEvent] = []
        pos = 0
        if self._preface:
            if len(data) < len(PREFACE):
                if not PREFACE.startswith(data):
                    raise RemoteProtocolError("not an HTTP/2 connection preface")
                self._buf += data
                return out
            if not data.startswith(PREFACE):
                raise RemoteProtocolError("not an HTTP/2 connection preface")
            pos = len(PREFACE)
            self._preface = False
        n = len(data)
        head = FRAME_HEAD.unpack_from
        while n - pos >= 9:
            high, low, ftype, flags, stream = head(data, pos)
            end = pos + 9 + (high << 16 | low)
            if end > n:
                self._need = end - pos
                break
            payload = data[pos + 9 : end]
            pos = end
            stream &= 0x7FFFFFFF
            if ftype == DATA:
                out.append(DataEvent(stream, _unpad(payload, flags), bool(flags & END_STREAM)))
            elif ftype == HEADERS and flags & END_HEADERS and not flags & (PADDED | PRIORITY):
                # the common case, a whole block in one frame: decoded as it is
                headers = self._decode(payload)
                out.append(HeadersEvent(stream, list(headers), bool(flags & END_STREAM)))
            else:
                self._frame(ftype, flags, stream, payload, out)
        if pos < n:
            if n - pos < 9:
                self._need = 9
            self._buf += data[pos:]
        return out

    def _frame(
        self, ftype: int, flags: int, stream: int, payload: bytes, out: list[FrameEvent]
    ) -> None:
        if ftype == HEADERS:
            body = _unpad(payload, flags)
            if flags & PRIORITY:
                body = body[5:]
            self._block = (stream, flags, bytearray(body))
            if flags & END_HEADERS:
                self._end_block(out)
        elif ftype == CONTINUATION and self._block is not None:
            self._block[2].extend(payload)
            if len(self._block[2]) > MAX_BLOCK:
                # a peer's CONTINUATION without end: the relay passes it on (the other
                # side judges it), this reader does not keep it
                raise RemoteProtocolError(f"a header block over {MAX_BLOCK} bytes")
            if flags & END_HEADERS:
                self._end_block(out)
        elif ftype == PUSH_PROMISE:
            # its header block is the sender's HPACK, as any: skipped, every later block
            # of that direction would decode against a table out of step
            self._block = (stream, None, bytearray(_unpad(payload, flags)[4:]))
            if flags & END_HEADERS:
                self._end_block(out)
        elif ftype == RST_STREAM and len(payload) >= 4:
            out.append(ResetEvent(stream, int.from_bytes(payload[:4], "big")))
        elif ftype == GOAWAY and len(payload) >= 8:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            out.append(GoawayEvent(last, int.from_bytes(payload[4:8], "big")))
        elif ftype == SETTINGS and not flags & 0x1:  # not an ACK
            size = None
            for i in range(0, len(payload) - 5, 6):
                if int.from_bytes(payload[i : i + 2], "big") == SETTINGS_HEADER_TABLE_SIZE:
                    size = int.from_bytes(payload[i + 2 : i + 6], "big")
            out.append(SettingsEvent(size))
        # PING, PRIORITY, WINDOW_UPDATE: nothing an exchange consists of

    def _end_block(self, out: list[FrameEvent]) -> None:
        assert self._block is not None
        stream, flags, block = self._block
        self._block = None
        headers = self._decode(bytes(block))
        if flags is not None:
            out.append(HeadersEvent(stream, list(headers), bool(flags & END_STREAM)))

    def allow_table_size(self, size: int) -> None:
        """The other side's SETTINGS_HEADER_TABLE_SIZE bounds this side's encoder, but
        only once acknowledged (RFC 7541 4.2): blocks already on their way may use the
        old size. A passive reader follows the larger of the two (the peers judge)."""
        d = self.decoder
        d.max_allowed_table_size = max(d.max_allowed_table_size, size)

    def _decode(self, block: bytes) -> Headers:
        """HPACK decoding is most of a passive reader's cost (~10 µs a block in the pure
        Python ``hpack``), and a client repeating a request sends the same few bytes of
        table references each time. A block decoded without changing the dynamic table
        decodes alike while the table stays as it was: its headers are kept with the
        table's state (its size, its newest entry, held so it cannot be another object
        at the same address later) and taken from there while that state holds."""
        state = self._table_state()
        kept = self._memo.get(block)
        if kept is not None and _same(kept[0], state):
            return kept[1]
        try:
            raw = self.decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise RemoteProtocolError(f"undecodable HTTP/2 header block: {exc}") from None
        text = self._text
        headers = [(text(k), text(v)) for k, v in raw]
        if (
            len(block) <= MEMO_BLOCK
            and _same(self._table_state(), state)
            and len(headers) <= MEMO_FIELDS
            and sum(32 + len(k) + len(v) for k, v in headers) <= MEMO_DECODED
        ):
            if len(self._memo) >= BLOCK_MEMO:
                self._memo.clear()
            self._memo[block] = (state, headers)
        return headers

    def _table_state(self) -> tuple[int, Any, int]:
        table = self.decoder.header_table
        entries = table.dynamic_entries
        return len(entries), entries[0] if entries else None, table.maxsize


def _same(a: tuple[int, Any, int], b: tuple[int, Any, int]) -> bool:
    """Two states of a dynamic table are one: same size, same newest entry (the object
    itself), same maximum."""
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _unpad(payload: bytes, flags: int) -> bytes:
    if flags & PADDED and payload:
        pad = payload[0]
        return payload[1 : len(payload) - pad]
    return payload


# ---------------------------------------------------------------- the mock's side


@dataclass(frozen=True, slots=True)
class Request:
    """A stream the client ended; or, with ``refused``, one it is still sending that is
    answered now with that explanation (RESOURCE_EXHAUSTED: too much to buffer); or, with
    ``partial``, the messages that just came whole on a stream still open (``body``
    holds those only: a conversation is answered message by message)."""

    stream_id: int
    headers: Headers
    body: bytes
    refused: str | None = None
    partial: bool = False


# what the mock buffers of one connection's unanswered requests: beyond it, the stream
# that would add more is refused (a client sending without end must not eat the memory)
MAX_BUFFERED = 4 * codec.MAX_MESSAGE
FRAME_SIZE_ERROR = 0x6


class _FrameLimit:
    """The client's frame headers, followed without parsing the frames: h2 checks a
    frame's length only once the whole frame has arrived, so a client announcing a
    16 MiB frame would be buffered, unanswered, until it sent that much."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skip = len(PREFACE)  # bytes still to pass over: the preface, then a payload
        self.head = bytearray()

    def oversized(self, data: bytes) -> int | None:
        """The length of a frame over the limit that ``data`` announces, if any."""
        pos, n = 0, len(data)
        while pos < n:  # every turn consumes a payload, or the bytes of a header
            if self.skip:
                taken = min(self.skip, n - pos)
                self.skip -= taken
                pos += taken
                continue
            taken = min(9 - len(self.head), n - pos)
            self.head += data[pos : pos + taken]
            pos += taken
            if len(self.head) < 9:
                break
            length = int.from_bytes(self.head[:3], "big")
            self.head.clear()
            if length > self.limit:
                return length
            self.skip = length
        return None


@dataclass(slots=True)
class _Pending:
    """A response's bytes still waiting for the client's flow-control window."""

    data: deque[bytes] = field(default_factory=deque)
    trailers: Headers | None = None


class ServerConnection:
    """The mock's HTTP/2 server connection: ``receive(bytes) -> complete requests``
    (streams the client ended), ``respond``/``send_*`` queue frames, ``take()`` returns
    the bytes to write."""

    def __init__(self) -> None:
        # the checks h2 makes on every header block cost more than the rest of a call: the
        # mock's own headers are made once from stored objects, a client's only matched
        config = h2.config.H2Configuration(
            client_side=False,
            # bytes: h2 would raise UnicodeDecodeError on a header that is not UTF-8
            # (a hostile client's), out of ``receive_data``; ``_s`` decodes them
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            split_outbound_cookies=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window((1 << 24) - 65535)
        self._heads: dict[int, Headers] = {}
        self._bodies: dict[int, bytearray] = {}
        self._scanned: dict[int, int] = {}  # where a body's first unfinished message starts
        self._buffered = 0  # bytes in ``_bodies``
        self._pending: dict[int, _Pending] = {}
        self._frames = _FrameLimit(self._h2.local_settings.max_frame_size)
        self.closed = False

    def receive(self, data: bytes) -> list[Request]:
        too_long = self._frames.oversized(data)
        if too_long is not None:
            self.closed = True
            self._h2.close_connection(FRAME_SIZE_ERROR)
            raise RemoteProtocolError(f"HTTP/2: a frame of {too_long} bytes")
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.closed = True
            raise RemoteProtocolError(f"HTTP/2: {exc}") from None
        out: list[Request] = []
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self._heads[ev.stream_id] = [(_s(k), _s(v)) for k, v in ev.headers or ()]
                self._bodies[ev.stream_id] = bytearray()
                self._scanned[ev.stream_id] = 0
                if ev.stream_ended is not None:
                    out.append(self._complete(ev.stream_id))
            elif isinstance(ev, h2.events.DataReceived):
                self._data(ev, out)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in self._heads:
                    out.append(self._complete(ev.stream_id))
            elif isinstance(ev, h2.events.StreamReset):
                self._heads.pop(ev.stream_id, None)
                self._drop_body(ev.stream_id)
                self._pending.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                if self._pending:
                    self._flush(list(self._pending))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        return out

    def _data(self, ev: h2.events.DataReceived, out: list[Request]) -> None:
        sid = ev.stream_id
        if sid in self._bodies and ev.data:
            self._bodies[sid] += ev.data
            self._buffered += len(ev.data)
            was = self._scanned[sid]
            refused = self._over_limit(sid)
            if refused is not None:
                out.append(refused)
            elif ev.stream_ended is None and self._scanned[sid] > was:
                body = bytes(self._bodies[sid][was : self._scanned[sid]])
                out.append(Request(sid, self._heads[sid], body, partial=True))
        if ev.flow_controlled_length:
            self._h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        if ev.stream_ended is not None and ev.stream_id in self._heads:
            out.append(self._complete(ev.stream_id))

    def _complete(self, stream_id: int) -> Request:
        head = self._heads.pop(stream_id, [])
        return Request(stream_id, head, bytes(self._drop_body(stream_id)))

    def _drop_body(self, stream_id: int) -> bytearray:
        self._scanned.pop(stream_id, None)
        body = self._bodies.pop(stream_id, bytearray())
        self._buffered -= len(body)
        return body

    def _over_limit(self, stream_id: int) -> Request | None:
        """The stream refused when its next message announces more than gRPC servers
        take (they answer at once, without waiting for it), or when the connection
        holds too much already; its body is dropped, and what it still sends ignored."""
        body = self._bodies[stream_id]
        pos, size = codec.scan_messages(body, self._scanned[stream_id])
        self._scanned[stream_id] = pos
        if size is not None and size > codec.MAX_MESSAGE:
            why = f"received message larger than max ({size} vs. {codec.MAX_MESSAGE})"
        elif self._buffered > MAX_BUFFERED:
            why = f"the mock holds {MAX_BUFFERED} bytes of unanswered requests already"
        else:
            return None
        self._drop_body(stream_id)
        return Request(stream_id, self._heads.pop(stream_id, []), b"", refused=why)

    def is_open(self, stream_id: int) -> bool:
        """The stream can still be answered: the client has not reset it."""
        stream = self._h2.streams.get(stream_id)
        return stream is not None and not stream.closed

    def send_headers(self, stream_id: int, headers: Headers) -> None:
        try:
            self._h2.send_headers(stream_id, headers)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # the client reset it meanwhile

    def send_data(self, stream_id: int, data: bytes) -> None:
        pending = self._pending.get(stream_id)
        if pending is None:
            pending = self._pending[stream_id] = _Pending()
        pending.data.append(data)
        self._flush((stream_id,))

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        pending = self._pending.get(stream_id)
        if pending is None:
            pending = self._pending[stream_id] = _Pending()
        pending.trailers = trailers
        self._flush((stream_id,))

    def _flush(self, streams: Iterable[int]) -> None:
        h2c = self._h2
        for stream_id in streams:
            pending = self._pending.get(stream_id)
            if pending is None:
                continue
            try:
                while pending.data:
                    chunk = pending.data[0]
                    room = min(
                        h2c.local_flow_control_window(stream_id), h2c.max_outbound_frame_size
                    )
                    if room <= 0:
                        break
                    if len(chunk) > room:
                        h2c.send_data(stream_id, chunk[:room])
                        pending.data[0] = chunk[room:]
                    else:
                        h2c.send_data(stream_id, chunk)
                        pending.data.popleft()
                if not pending.data and pending.trailers is not None:
                    h2c.send_headers(stream_id, pending.trailers, end_stream=True)
                    del self._pending[stream_id]
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                del self._pending[stream_id]  # the client reset it meanwhile

    def send_trailers_only(self, stream_id: int, headers: Headers) -> None:
        """A call answered by one HEADERS frame that ends the stream (gRPC errors)."""
        try:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def reset(self, stream_id: int, code: int = 0x2) -> None:
        self._pending.pop(stream_id, None)
        try:
            self._h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def take(self) -> bytes:
        return self._h2.data_to_send()
