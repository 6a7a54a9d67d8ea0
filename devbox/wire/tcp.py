"""The generic connection loops: one serves a mock, one records through a relay, for
every kind that implements ``devbox.wire.contract``. They own sockets and timing and
know nothing of matching or of any protocol's bytes."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast

from devbox.wire.contract import (
    Fault,
    Forward,
    Hit,
    Miss,
    MockConnection,
    Output,
    RecorderConnection,
    Relay,
    Reply,
    Wake,
)
from devbox.wire.tls import TlsBridge

READ_SIZE = 65536
_SENT: Final = (Reply, Miss, Fault)  # what ``serve_blocking`` writes to the client
TLS_HANDSHAKE_TIMEOUT_S = 10.0


# ---------------------------------------------------------------- the recording relay


class RelayConnection(asyncio.Protocol):
    """One connection relayed to the real dependency while ``rec`` watches both ways.

    The client's side is this protocol, the real server's is ``_RelayUpstream``: bytes are
    handed to ``rec`` and passed on as they arrive, with no task, stream or ``drain`` per
    chunk (a stream relay spent more per query on its coroutines than on recording).
    Every stored object goes to ``sink`` as soon as it is complete; what is still open
    when the connection ends, through ``rec.close()``. Half-closes are passed on; a side
    that cannot take its writes pauses the other side's reading. ``upstream_tls``: the
    real server is spoken to in TLS (verified by that context, the host as SNI).
    ``on_refused`` hears why the real server could not be reached (the client is then
    disconnected); ``on_end`` that the connection is over."""

    def __init__(
        self,
        rec: RecorderConnection,
        upstream: tuple[str, int],
        sink: Callable[[list[dict[str, Any]]], None],
        *,
        upstream_tls: ssl.SSLContext | None = None,
        on_refused: Callable[[OSError], None] | None = None,
        on_end: Callable[[RelayConnection], None] | None = None,
    ) -> None:
        self.rec = rec
        self.upstream = upstream
        self.sink = sink
        self.upstream_tls = upstream_tls
        self.on_refused = on_refused
        self.on_end = on_end
        self.client: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self._early: list[bytes] = []  # the client's bytes before the upstream answered
        self._eofs: set[str] = set()
        self._connecting: asyncio.Task[None] | None = None
        self.ended = False

    # ------------------------------------------------------------ the client's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.upstream
        loop = asyncio.get_running_loop()
        tls = self.upstream_tls
        try:
            await loop.create_connection(
                lambda: _RelayUpstream(self),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
        except OSError as exc:
            if self.on_refused is not None:
                self.on_refused(exc)
            self.end()
        finally:
            self._connecting = None

    def data_received(self, data: bytes) -> None:
        self._pass(self.rec.from_client(data))

    def eof_received(self) -> bool:
        self._half_closed("client", self.up)
        return True  # keep reading the real server's answers

    def pause_writing(self) -> None:  # the client does not read: stop reading upstream
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and not self.ended:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.end()

    # ------------------------------------------------------------ the real server's side

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.ended:
            transport.close()
            return
        self.up = transport
        if self._early:
            transport.write(b"".join(self._early))
            self._early = []
        if "client" in self._eofs and transport.can_write_eof():
            transport.write_eof()

    def upstream_data(self, data: bytes) -> None:
        self._pass(self.rec.from_upstream(data))

    def upstream_eof(self) -> None:
        self._half_closed("upstream", self.client)

    # ------------------------------------------------------------ both sides

    def _pass(self, relay: Relay) -> None:
        """What the recorder passes on, to each side; stored objects to the sink."""
        if relay.to_upstream:
            if self.up is not None:
                self.up.write(relay.to_upstream)
            else:
                self._early.append(relay.to_upstream)
        if relay.to_client and self.client is not None:
            self.client.write(relay.to_client)
        done = self.rec.take_stored()
        if done:
            self.sink(done)

    def _half_closed(self, side: str, other: asyncio.Transport | None) -> None:
        """``side`` sent its end: pass it on; the connection ends when both have."""
        self._eofs.add(side)
        if other is not None and other.can_write_eof():
            other.write_eof()
        if len(self._eofs) == 2:
            self.end()

    # ------------------------------------------------------------ the end

    def end(self) -> None:
        """Close both sides (once) and store what is still open."""
        if self.ended:
            return
        self.ended = True
        if self._connecting is not None:
            self._connecting.cancel()
        for t in (self.client, self.up):
            if t is not None:
                t.close()
        rest = self.rec.close()
        if rest:
            self.sink(rest)
        if self.on_end is not None:
            self.on_end(self)


class _RelayUpstream(asyncio.Protocol):
    def __init__(self, relay: RelayConnection) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.relay.upstream_made(self.transport)

    def data_received(self, data: bytes) -> None:
        self.relay.upstream_data(data)

    def eof_received(self) -> bool:
        self.relay.upstream_eof()
        return True

    def pause_writing(self) -> None:  # the real server does not read: nor do we
        if self.relay.client is not None:
            self.relay.client.pause_reading()

    def resume_writing(self) -> None:
        if self.relay.client is not None and not self.relay.ended:
            self.relay.client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.end()


async def start_relay_server(
    new_relay: Callable[[], RelayConnection],
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen and relay every client connection with a fresh ``new_relay()``; with
    ``tls``, clients may also speak TLS on the same port (``SniffTls``)."""
    loop = asyncio.get_running_loop()
    if tls is None:
        return await loop.create_server(new_relay, host, port)
    return await loop.create_server(lambda: SniffTls(tls, new_relay), host, port)


# ---------------------------------------------------------------- the mock loop


class _MockProtocol(asyncio.Protocol):
    """One client connection of a mock: what can be answered at once
    (no delay, no upstream) is written from ``data_received`` itself, with no task, no
    stream and no ``drain`` per request; anything else goes, in order, through a queue
    one task works through, so replies always leave in the order they were asked for."""

    def __init__(
        self,
        conn: MockConnection,
        upstream: tuple[str, int] | None,
        on_output: Callable[[MockConnection, Output], None] | None,
    ) -> None:
        self.conn = conn
        self.upstream = upstream
        self.on_output = on_output
        self.transport: asyncio.Transport | None = None
        self._queue: deque[Output] | None = None  # not None: a task is working through it
        self._task: asyncio.Task[None] | None = None
        self._up_writer: asyncio.StreamWriter | None = None
        self._up_task: asyncio.Task[None] | None = None
        self._wakes: set[asyncio.TimerHandle] = set()
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._apply(self.conn.data_received(data))

    def eof_received(self) -> bool:
        self._apply(self.conn.eof_received())
        return self._queue is not None  # keep the socket half-open while answers are due

    def pause_writing(self) -> None:  # a client that does not read: stop reading it too
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for task in (self._task, self._up_task):
            if task is not None:
                task.cancel()
        for handle in self._wakes:
            handle.cancel()
        self._wakes.clear()
        if self._up_writer is not None:
            self._up_writer.close()

    def _wake_later(self, out: Wake) -> None:
        handle: asyncio.TimerHandle

        def due() -> None:
            self._wakes.discard(handle)
            if not self._closed:
                self._apply(self.conn.wake(out.token))

        handle = asyncio.get_running_loop().call_later(max(out.delay_s, 0.0), due)
        self._wakes.add(handle)

    def _apply(self, outputs: list[Output]) -> None:
        if self._queue is not None:
            self._queue.extend(outputs)
            return
        transport = self.transport
        assert transport is not None
        on_output = self.on_output
        conn = self.conn
        i = 0
        for out in outputs:
            # ``type(out) is``: exact classes, narrowed for mypy with no ``cast`` call
            # (a function call and a union built per output, on every query's path)
            if type(out) is Hit:
                if on_output is not None:
                    on_output(conn, out)
                i += 1
                continue
            if type(out) is Wake:
                self._wake_later(out)
                i += 1
                continue
            if type(out) is Miss or (type(out) is Reply and out.delay_s <= 0):
                cls = type(out)
                # an immediate reply is only bytes, except on a connection that passed
                # requests through (its kind may have stored what came back)
                if on_output is not None and (cls is Miss or self._up_writer is not None):
                    on_output(conn, out)
                i += 1
                if out.data:
                    transport.write(out.data)
                if out.close:
                    self._closed = True
                    transport.close()
                    return
                continue
            self._queue = deque(outputs[i:])
            self._task = asyncio.get_running_loop().create_task(self._work())
            return

    async def _work(self) -> None:
        transport = self.transport
        assert transport is not None and self._queue is not None
        try:
            while self._queue and not self._closed:
                out = self._queue.popleft()
                if type(out) is Wake:
                    self._wake_later(out)
                    continue
                if self.on_output is not None:
                    self.on_output(self.conn, out)
                await self._one(out, transport)
        except (ConnectionError, OSError):
            transport.abort()
        finally:
            self._queue = None
            self._task = None

    async def _one(self, out: Output, transport: asyncio.Transport) -> None:
        if isinstance(out, Hit):
            return
        if isinstance(out, Reply | Miss):
            if isinstance(out, Reply) and out.delay_s > 0:
                await asyncio.sleep(out.delay_s)
            transport.write(out.data)
            if out.close:
                self._closed = True
                transport.close()
        elif isinstance(out, Fault):
            if out.delay_s > 0:
                await asyncio.sleep(out.delay_s)
            if out.kind == "reset":
                self._closed = True
                transport.abort()
            else:
                transport.write(out.data)
        elif isinstance(out, Forward):
            if self._up_writer is None:
                if self.upstream is None:
                    raise ConnectionError("passthrough without an upstream")
                reader, self._up_writer = await asyncio.open_connection(*self.upstream)
                self._up_task = asyncio.get_running_loop().create_task(self._from_upstream(reader))
            self._up_writer.write(out.data)
            await self._up_writer.drain()

    async def _from_upstream(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(READ_SIZE):
            self._apply(self.conn.upstream_data(data))
        if self.transport is not None and not self._closed:
            self.transport.close()  # the real server hung up: so do we


async def start_mock_server(
    new_connection: Callable[[], MockConnection],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    upstream: tuple[str, int] | None = None,
    on_output: Callable[[MockConnection, Output], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Serve a mock: every client connection gets ``new_connection()`` (called per
    client, so it sees the current index), its outputs applied in order by
    ``_MockProtocol``; and
    ``on_output`` is told which connection an output came from. It sees every output
    except the immediate ``Reply`` of a connection that never passed anything through:
    those are the bulk of the traffic, and nothing but bytes.

    With ``tls``, a connection whose first byte starts a TLS handshake is served inside
    TLS with that context; any other is served as it is (one port for both)."""
    loop = asyncio.get_running_loop()

    def protocol() -> asyncio.Protocol:
        return _MockProtocol(new_connection(), upstream, on_output)

    if tls is None:
        return await loop.create_server(protocol, host, port)
    return await loop.create_server(lambda: SniffTls(tls, protocol), host, port)


async def serve_accepted(
    sock: socket.socket,
    conn: MockConnection,
    *,
    upstream: tuple[str, int] | None = None,
    on_output: Callable[[MockConnection, Output], None] | None = None,
) -> None:
    """Serve one connection accepted elsewhere (a worker process is handed it) as
    ``start_mock_server`` serves its own."""
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: _MockProtocol(conn, upstream, on_output), sock)


def serve_blocking(
    sock: socket.socket,
    conn: MockConnection,
    on_output: Callable[[MockConnection, Output], None] | None = None,
) -> None:
    """Serve one connection on the calling thread with blocking I/O, its outputs applied
    as ``_MockProtocol`` applies them, until either side ends it. A worker process
    (``devbox.mock.worker_process``) serves each connection so: one ``recv`` and one
    ``send`` per query and no event loop in between cost about half the CPU of the
    loop's read callback and write. There is no upstream here (workers serve replay), so
    a ``Forward`` ends the connection. A ``Wake`` is slept out here, in order: only
    kinds that serve from one process (gRPC) pace streams side by side with it."""
    sock.setblocking(True)
    try:
        while True:
            data = sock.recv(READ_SIZE)
            outputs = conn.data_received(data) if data else conn.eof_received()
            if not _send_outputs(sock, conn, outputs, on_output) or not data:
                break
    except OSError:
        pass  # the client went away
    finally:
        sock.close()


def _send_outputs(
    sock: socket.socket,
    conn: MockConnection,
    outputs: list[Output],
    on_output: Callable[[MockConnection, Output], None] | None,
) -> bool:
    """Apply ``outputs`` in order; False once the connection is to end."""
    for out in outputs:
        cls = type(out)
        if type(out) is Reply and out.delay_s <= 0:
            # the hot path (a kept turn's bytes): ``type(out) is`` narrows for mypy with
            # no union built per output, as ``isinstance(out, Reply | Miss)`` would
            if out.data:
                sock.sendall(out.data)
            if out.close:
                return False
            continue
        if on_output is not None and cls is not Reply:
            on_output(conn, out)
        if cls is Hit:
            continue
        if cls is Forward:
            return False
        if type(out) is Wake:
            time.sleep(max(out.delay_s, 0.0))
            if not _send_outputs(sock, conn, conn.wake(out.token), on_output):
                return False
            continue
        assert isinstance(out, _SENT)
        if out.delay_s > 0:
            time.sleep(out.delay_s)
        if isinstance(out, Fault) and out.kind == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # closed with linger 0: the client sees a reset
        if out.data:
            sock.sendall(out.data)
        if not isinstance(out, Fault) and out.close:
            return False
    return True


# ---------------------------------------------------------------- TLS or not, by the first byte


class SniffTls(asyncio.Protocol):
    """A listener's protocol that lets the first byte decide: ``0x16`` (a TLS handshake
    record) is terminated with ``context`` (``devbox.wire.tls.TlsBridge``) and the
    protocol ``make`` returns speaks inside; anything else is handed to that protocol
    on the raw transport, with the bytes read so far."""

    def __init__(self, context: ssl.SSLContext, make: Callable[[], asyncio.Protocol]) -> None:
        self.context = context
        self.make = make
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        t = self.transport
        assert t is not None
        if data[:1] == b"\x16":
            make = self.make
            bridge = TlsBridge(self.context, lambda _alpn, _sni, _t: make())
            bridge.start(t, data, timeout_s=TLS_HANDSHAKE_TIMEOUT_S)
            return
        inner = self.make()
        t.set_protocol(inner)
        inner.connection_made(t)
        inner.data_received(data)

    def eof_received(self) -> bool:
        return False  # hung up before sending anything

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
