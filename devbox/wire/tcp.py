"""The generic connection loops: one serves a mock, one records through a relay, for
every kind that implements ``devbox.wire.contract``. They own sockets and timing and
know nothing of matching or of any protocol's bytes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from devbox.wire.contract import (
    Fault,
    Forward,
    Hit,
    Index,
    Kind,
    Miss,
    MockConnection,
    MockOptions,
    Output,
    RecorderConnection,
    Reply,
)
from devbox.wire.tls import TlsBridge

READ_SIZE = 65536
TLS_HANDSHAKE_TIMEOUT_S = 10.0


async def _upstream_reader(
    reader: asyncio.StreamReader, conn: MockConnection, handle: Callable[[list[Output]], Any]
) -> None:
    while data := await reader.read(READ_SIZE):
        await handle(conn.upstream_data(data))


async def serve_mock_connection(
    conn: MockConnection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    upstream: tuple[str, int] | None = None,
    on_output: Callable[[Output], None] | None = None,
) -> None:
    """Drive one client connection: bytes in, the connection's outputs applied in order.
    ``on_output`` sees every output (hits and misses for statistics and the journal)."""
    up_writer: asyncio.StreamWriter | None = None
    up_task: asyncio.Task[None] | None = None
    closing = False

    async def handle(outputs: list[Output]) -> None:
        nonlocal up_writer, up_task, closing
        for out in outputs:
            if on_output is not None:
                on_output(out)
            if isinstance(out, Hit):
                continue
            if isinstance(out, Reply | Miss):
                delay = out.delay_s if isinstance(out, Reply) else 0.0
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(out.data)
                await writer.drain()
                closing = closing or out.close
            elif isinstance(out, Fault):
                if out.delay_s > 0:
                    await asyncio.sleep(out.delay_s)
                if out.kind == "reset":
                    writer.transport.abort()
                    closing = True
                else:
                    writer.write(out.data)
                    await writer.drain()
            elif isinstance(out, Forward):
                if up_writer is None:
                    if upstream is None:
                        raise ConnectionError("passthrough without an upstream")
                    up_reader, up_writer = await asyncio.open_connection(*upstream)
                    up_task = asyncio.create_task(_upstream_reader(up_reader, conn, handle))
                up_writer.write(out.data)
                await up_writer.drain()

    try:
        while not closing:
            data = await reader.read(READ_SIZE)
            if not data:
                await handle(conn.eof_received())
                break
            await handle(conn.data_received(data))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if up_task is not None:
            up_task.cancel()
            with contextlib.suppress(BaseException):
                await up_task
        for w in (up_writer, writer):
            if w is not None:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()


async def start_mock_server(
    kind: Kind,
    index: Index,
    options: MockOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    upstream: tuple[str, int] | None = None,
    on_output: Callable[[Output], None] | None = None,
) -> asyncio.Server:
    """Listen and serve every connection with a fresh ``kind.mock_connection``."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = kind.mock_connection(index, options)
        await serve_mock_connection(conn, reader, writer, upstream=upstream, on_output=on_output)

    return await asyncio.start_server(client, host, port)


async def relay_connection(
    rec: RecorderConnection,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    sink: Callable[[list[dict[str, Any]]], None],
    *,
    upstream_tls: ssl.SSLContext | None = None,
) -> None:
    """Relay one connection to the real dependency, letting ``rec`` watch both ways;
    every stored object goes to ``sink`` as soon as it is complete. With
    ``upstream_tls`` the real dependency is spoken to in TLS (verified by that context,
    the upstream's host name as SNI); ``rec`` sees what is inside."""
    host, port = upstream
    if upstream_tls is None:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    else:
        up_reader, up_writer = await asyncio.open_connection(
            host, port, ssl=upstream_tls, server_hostname=host
        )

    async def pump(src: asyncio.StreamReader, from_client: bool) -> None:
        while data := await src.read(READ_SIZE):
            relay = rec.from_client(data) if from_client else rec.from_upstream(data)
            if relay.to_upstream:
                up_writer.write(relay.to_upstream)
            if relay.to_client:
                client_writer.write(relay.to_client)
            # one after the other: each returns at once unless its transport is paused;
            # gather() would wrap both in tasks and wait a loop turn per chunk
            await up_writer.drain()
            await client_writer.drain()
            done = rec.take_stored()
            if done:
                sink(done)
        # half-close: pass the end on, keep reading the other direction
        target = up_writer if from_client else client_writer
        if target.can_write_eof():
            with contextlib.suppress(OSError):
                target.write_eof()

    try:
        await asyncio.gather(pump(client_reader, True), pump(up_reader, False))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        rest = rec.close()
        if rest:
            sink(rest)
        for w in (up_writer, client_writer):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


# ---------------------------------------------------------------- the fast mock loop


class _MockProtocol(asyncio.Protocol):
    """``serve_mock_connection`` as an ``asyncio.Protocol``: what can be answered at once
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
        if self._up_writer is not None:
            self._up_writer.close()

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


async def start_fast_mock_server(
    new_connection: Callable[[], MockConnection],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    upstream: tuple[str, int] | None = None,
    on_output: Callable[[MockConnection, Output], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Like ``start_mock_server`` (same outputs, same order) on the Protocol loop above;
    ``new_connection`` is called per client (so it sees the current index), and
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


StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


async def start_stream_server(
    handler: StreamHandler,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """``asyncio.start_server``; with ``tls``, clients may also speak TLS on the same port
    (``SniffTls``), and ``handler`` gets the streams inside it."""
    if tls is None:
        return await asyncio.start_server(handler, host, port)
    loop = asyncio.get_running_loop()

    def streams() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
        return asyncio.StreamReaderProtocol(reader, handler, loop=loop)

    return await loop.create_server(lambda: SniffTls(tls, streams), host, port)
