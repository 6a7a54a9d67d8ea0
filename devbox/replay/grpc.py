"""Replaying recorded inbound gRPC calls against a service that serves gRPC.

The runner (``devbox.replay.runner``) drives gRPC calls as it drives HTTP requests:
same pacing, lanes, results and report. What differs is here: ``GrpcCalls.prepare``
turns a recorded call (``devbox.wire.grpc.inbound``) into its headers and framed
messages once, ``GrpcClient`` sends it over one HTTP/2 connection (h2c, or TLS for an
``https://`` target) with the sans-IO ``devbox.wire.h2.H2Endpoint``, and the answer is
decoded the way the recorder decodes one, then judged by the pure
``devbox.core.diff_grpc``.

Every call shape goes the same way: the recorded request messages are sent and the
request half-closed, then the answer is read to its trailers. A bidirectional call is
thus replayed as its client sent it all (the messages, in order), which is what a
recording of it can reproduce.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from devbox.core.diff import ExpectedResponse
from devbox.core.diff_grpc import call_differences
from devbox.core.diff_types import Difference, DiffRules
from devbox.core.model import Exchange, Headers, Request, Response
from devbox.core.profile import Profile
from devbox.errors import ConfigError
from devbox.replay.http import HttpError, Target, connect_failed, service_tls
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import inbound, schema
from devbox.wire.h2 import Closed, H2Endpoint, H2Response, StreamReset

_READ = 1 << 16
_BASE_HEADERS: Headers = (
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("user-agent", "devbox-replay"),
)


@dataclass(frozen=True, slots=True)
class GrpcPrepared:
    path: str
    headers: Headers
    body: bytes  # the framed request messages


@dataclass(frozen=True, slots=True)
class GrpcCalls:
    """Replay speaks gRPC; ``schema``: the service's descriptors (``[service] protos``)."""

    schema: schema.Schema | None = None

    def prepare(self, req: Request) -> GrpcPrepared:
        return GrpcPrepared(
            req.path, (*_BASE_HEADERS, *req.headers), inbound.request_frames(req, self.schema)
        )

    def client(self, target: Target, timeout: float) -> GrpcClient:
        return GrpcClient(target, timeout, self)

    @staticmethod
    def differences(
        expected: ExpectedResponse, actual: Response, rules: DiffRules, method: str, target: str
    ) -> tuple[Difference, ...]:
        return call_differences(expected, actual, rules, method, target)


def inbound_calls(profile: Profile, source: Path | None = None) -> tuple[list[Exchange], GrpcCalls]:
    """The recorded inbound calls (the profile's, or those of ``source``, a file or a
    directory) of a service with ``[service] protocol = "grpc"``, and how to replay them
    (with its ``protos`` when it names them)."""
    found = None
    protos = profile.service.protos
    if protos:
        path = profile.root / protos
        try:
            found = schema.load(path)
        except ConfigError as exc:
            raise ConfigError(
                exc.message, file=str(profile.path), field="service.protos", hint=exc.hint
            ) from None
    return inbound.load_calls(source or profile.inbound_dir, found), GrpcCalls(found)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = H2Endpoint(client=True, max_body=64 << 20)
        self.closed = False
        self.h2.initiate()
        writer.write(self.h2.data_to_send())

    async def call(self, call: GrpcPrepared, authority: str, scheme: str) -> H2Response:
        h2 = self.h2
        sid = h2.send_request("POST", call.path, authority, call.headers, call.body, scheme=scheme)
        if not sid:  # GOAWAY came, or the service's stream limit is reached
            self.closed = True
            raise HttpError("the service takes no new call on this connection")
        await self._flush()
        while True:
            try:
                data = await self.reader.read(_READ)
            except OSError as exc:
                self.closed = True
                raise HttpError(f"connection lost: {exc.strerror or exc}") from None
            if not data:
                self.closed = True
                raise HttpError("the service closed the connection before answering")
            try:
                events = h2.receive_data(data)
            except RemoteProtocolError as exc:
                self.closed = True
                raise HttpError(str(exc)) from None
            await self._flush()  # acknowledgements, window updates, the rest of the body
            for ev in events:
                if isinstance(ev, H2Response) and ev.stream_id == sid:
                    return ev
                if isinstance(ev, StreamReset) and ev.stream_id == sid:
                    raise HttpError(f"the service reset the call (HTTP/2 error code {ev.code})")
                if isinstance(ev, Closed):
                    self.closed = True  # GOAWAY: our call may still finish, no new one

    async def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.writer.write(out)
            try:
                await self.writer.drain()
            except OSError as exc:
                self.closed = True
                raise HttpError(f"connection lost: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.closed = True
        self.writer.close()


class GrpcClient:
    """A worker's client: one HTTP/2 connection, one call at a time, reopened when the
    service closed it."""

    def __init__(self, target: Target, timeout: float, calls: GrpcCalls) -> None:
        self.target = target
        self.timeout = timeout
        self.calls = calls
        self._conn: _Connection | None = None
        self._ssl = service_tls(target, ("h2",))

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.target.host, self.target.port, ssl=self._ssl),
                self.timeout,
            )
        except OSError as exc:  # TimeoutError among them
            raise connect_failed(self.target, exc) from None
        return _Connection(reader, writer)

    async def send(self, prepared: GrpcPrepared) -> tuple[Response, float]:
        """Make the call and await its whole answer; returns it with the latency in ms."""
        conn = self._conn
        if conn is None or conn.closed:
            if conn is not None:
                conn.close()
            conn = self._conn = await self._connect()
        start = time.perf_counter()
        try:
            got = await asyncio.wait_for(
                conn.call(prepared, self.target.authority, self.target.scheme), self.timeout
            )
        except TimeoutError:
            self.close()  # the call is still open on it: a fresh connection for the next
            raise HttpError(f"timed out after {self.timeout:g}s") from None
        except HttpError:
            self.close()
            raise
        latency = (time.perf_counter() - start) * 1000.0
        try:
            answer = inbound.live_answer(
                got.status, got.headers, got.body, got.trailers, prepared.path, self.calls.schema
            )
        except RemoteProtocolError as exc:
            raise HttpError(str(exc)) from None
        return answer, latency

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
