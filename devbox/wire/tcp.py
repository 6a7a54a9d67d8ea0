"""The generic connection loops: one serves a mock, one records through a relay, for
every kind that implements ``devbox.wire.contract``. They own sockets and timing and
know nothing of matching or of any protocol's bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

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

READ_SIZE = 65536


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
) -> None:
    """Relay one connection to the real dependency, letting ``rec`` watch both ways;
    every stored object goes to ``sink`` as soon as it is complete."""
    up_reader, up_writer = await asyncio.open_connection(*upstream)

    async def pump(src: asyncio.StreamReader, from_client: bool) -> None:
        while data := await src.read(READ_SIZE):
            relay = rec.from_client(data) if from_client else rec.from_upstream(data)
            if relay.to_upstream:
                up_writer.write(relay.to_upstream)
            if relay.to_client:
                client_writer.write(relay.to_client)
            await asyncio.gather(up_writer.drain(), client_writer.drain())
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
