"""Records gRPC calls from a relayed HTTP/2 connection: every byte passes on unchanged,
both directions are read passively (``http2.FrameReader``), and each call becomes one
stored object when its response ends (``store`` documents the object)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.wire.contract import ProtocolError, Relay
from devbox.wire.grpc import codec
from devbox.wire.grpc.http2 import (
    DataEvent,
    FrameEvent,
    FrameReader,
    GoawayEvent,
    HeadersEvent,
    ResetEvent,
    SettingsEvent,
)
from devbox.wire.grpc.schema import Schema


@dataclass(slots=True)
class _Call:
    at: float
    headers: list[tuple[str, str]]
    request: list[dict[str, Any]] = field(default_factory=list)
    request_at: list[float] = field(default_factory=list)  # ms after the call's start
    # a message's bytes until it is whole: appended to, never copied per DATA frame (a
    # 32 MiB message in 16 KiB frames cost the relay's loop 14 s when it was)
    request_buf: bytearray = field(default_factory=bytearray)
    request_ended: float | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response: list[dict[str, Any]] = field(default_factory=list)
    response_at: list[float] = field(default_factory=list)
    response_buf: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] | None = None
    reset: int | None = None
    reset_by_client: bool = False
    # the answer was one HEADERS block, status and all (how servers send an error)
    trailers_only: bool = False
    # the length the request's unfinished message announced (None: it ends between
    # messages): what a server that answered before the client finished (a message over
    # its limit) had seen of it
    request_pending: int | None = None
    # directions (True: the response) whose next message announced more than a gRPC
    # peer takes: what follows is relayed but not buffered (it could be 4 GiB)
    unread: set[bool] = field(default_factory=set)


class GrpcRecorder:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, schema: Schema | None = None
    ) -> None:
        self._clock = clock
        self._schema = schema
        self._t0 = clock()
        self._client = FrameReader(from_client=True)
        self._server = FrameReader(from_client=False)
        self._calls: dict[int, _Call] = {}
        self._stored: list[dict[str, Any]] = []
        self._seq = 0
        self._broken = False  # not HTTP/2 we can read: relay on, record nothing more

    def _ms(self, t: float, since: float | None = None) -> float:
        return round((t - (self._t0 if since is None else since)) * 1000.0, 3)

    def from_client(self, data: bytes) -> Relay:
        self._read(self._client, data, from_client=True)
        return Relay(to_upstream=data)

    def from_upstream(self, data: bytes) -> Relay:
        self._read(self._server, data, from_client=False)
        return Relay(to_client=data)

    def _read(self, reader: FrameReader, data: bytes, *, from_client: bool) -> None:
        if self._broken:
            return
        try:
            events = reader.feed(data)
        except ProtocolError:
            self._broken = True
            return
        now = self._clock()
        for ev in events:
            self._event(ev, now, from_client)

    def _event(self, ev: FrameEvent, now: float, from_client: bool) -> None:
        if isinstance(ev, SettingsEvent):
            if ev.header_table_size is not None:
                # what one side allows limits the other side's encoder
                other = self._server if from_client else self._client
                other.allow_table_size(ev.header_table_size)
            return
        if isinstance(ev, GoawayEvent):
            return  # the calls it covers end as they end; a call it cuts is reset or open
        call = self._calls.get(ev.stream_id)
        if isinstance(ev, ResetEvent):
            if call is not None:
                call.reset = ev.error_code
                call.reset_by_client = from_client
                self._finish(ev.stream_id, now)
        elif from_client:
            self._from_client(ev, call, now)
        elif call is not None:
            self._from_server(ev, call, now)

    def _from_client(self, ev: HeadersEvent | DataEvent, call: _Call | None, now: float) -> None:
        if isinstance(ev, HeadersEvent):
            if call is None:
                call = self._calls[ev.stream_id] = _Call(now, ev.headers)
        elif call is not None:
            msgs = self._split(call.request_buf, ev.data, call, False)
            call.request.extend(msgs)
            call.request_at.extend(self._ms(now, call.at) for _ in msgs)
        if call is not None and ev.end_stream:
            call.request_ended = now

    def _from_server(self, ev: HeadersEvent | DataEvent, call: _Call, now: float) -> None:
        if isinstance(ev, HeadersEvent):
            if call.response_headers or ev.end_stream:
                if not call.response_headers:  # trailers-only: one block is both
                    call.response_headers = [h for h in ev.headers if h[0] == ":status"]
                    call.trailers_only = True
                call.trailers = ev.headers
            else:
                call.response_headers = ev.headers
        else:
            msgs = self._split(call.response_buf, ev.data, call, True)
            call.response.extend(msgs)
            call.response_at.extend(self._ms(now, call.at) for _ in msgs)
        if ev.end_stream:
            self._finish(ev.stream_id, now)

    def _split(
        self, buffer: bytearray, data: bytes, call: _Call, response: bool
    ) -> list[dict[str, Any]]:
        """The messages ``data`` completes in ``buffer`` (taken out of it)."""
        if response in call.unread:
            return []
        buffer += data
        whole, size = codec.scan_messages(buffer, 0)
        if not response:
            call.request_pending = size
        if size is not None and size > codec.MAX_MESSAGE:
            call.unread.add(response)
        if not whole:
            if response in call.unread:
                buffer.clear()
            return []
        try:
            msgs, _rest = codec.split_messages(bytes(buffer[:whole]))
        except ProtocolError:
            msgs = []
        del buffer[: len(buffer) if response in call.unread else whole]
        decode = None
        head = dict(call.headers)
        if self._schema is not None:
            schema, path = self._schema, head.get(":path", "")

            def decode(payload: bytes) -> dict[str, Any] | None:
                return schema.decode(path, response, payload)

        if response:  # stored as the server sent them: the mock sends them back so
            return [codec.message_json(c, p, decode) for c, p in msgs]
        encoding = head.get("grpc-encoding")
        return [codec.kept_request_json(c, p, encoding, decode) for c, p in msgs]

    def _finish(self, stream_id: int, now: float | None) -> None:
        call = self._calls.pop(stream_id)
        self._seq += 1
        head = dict(call.headers)
        path = head.get(":path", "")
        service, _, method = path.lstrip("/").partition("/")
        obj: dict[str, Any] = {
            "seq": self._seq,
            "at_ms": self._ms(call.at),
            "service": service,
            "method": method,
        }
        if now is not None:
            obj["latency_ms"] = self._ms(now, call.at)
        obj["metadata"] = codec.metadata(call.headers)
        obj["request"] = call.request
        request_encoding = head.get("grpc-encoding", "identity")
        if request_encoding != "identity":
            # the messages are stored inflated (matched so, sent so by devbox replay):
            # how the client compressed them, for whoever reads the recording
            obj["request_encoding"] = request_encoding
        if call.request_ended is None:
            obj["request_open"] = True  # the client had not finished sending
            if call.request_pending is not None:
                obj["request_unfinished"] = call.request_pending
        resp_meta = codec.metadata(call.response_headers)
        if resp_meta:
            obj["response_metadata"] = resp_meta
        encoding = dict(call.response_headers).get("grpc-encoding", "identity")
        if encoding != "identity":
            # a transport header, but the one the client needs to read a compressed message
            obj["response_encoding"] = encoding
        obj["response"] = call.response
        obj["response_at_ms"] = call.response_at
        if call.response_at and call.request_at and call.response_at[0] < call.request_at[-1]:
            # a conversation: the server answered before the client's last message, so
            # the mock answers message by message (when each one came is kept for that)
            obj["request_at_ms"] = call.request_at
        if call.trailers is not None:
            code, text = codec.status_of(call.trailers)
            obj["status"] = code
            obj["status_name"] = codec.status_name(code)
            if text:
                obj["grpc_message"] = text
            rest = codec.trailer_metadata(call.trailers)
            if rest:
                obj["trailers"] = rest
            if call.trailers_only:
                # a client tells it from headers then trailers: grpc-js gives the one
                # block's metadata (content-type too) with the error and no initial
                # metadata; so the mock answers alike
                obj["trailers_only"] = True
        elif call.reset is not None:
            obj["reset"] = call.reset
            # the client gave up (cancel, its deadline): the mock must not answer for it
            obj["reset_by"] = "client" if call.reset_by_client else "server"
        elif now is not None:
            # the stream ended with no grpc-status: not a gRPC answer (a gateway's 502);
            # the client makes its status of the HTTP one
            obj["no_grpc_status"] = True
        else:
            obj["incomplete"] = True
        status = dict(call.response_headers).get(":status")
        if status not in (None, "200"):
            numeric = len(status) == 3 and status.isascii() and status.isdigit()
            obj["http_status"] = int(status) if numeric else status
        self._stored.append(obj)

    def take_stored(self) -> list[dict[str, Any]]:
        done, self._stored = self._stored, []
        return done

    def close(self) -> list[dict[str, Any]]:
        for stream_id in list(self._calls):
            self._finish(stream_id, None)
        return self.take_stored()
