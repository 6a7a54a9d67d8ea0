"""The protocol contract a dependency kind implements, and nothing else has to know about.

Theory of operation. A kind (``http``, ``redis``, ``postgres``, ...) is five pieces:

1. a **codec** per side (sans-IO: ``receive_data(bytes) -> events``, ``send(event) ->
   bytes``), raising ``ProtocolError`` subclasses, never touching a socket;
2. a **store mapping** between wire messages and readable JSON objects (one object per
   stored exchange, in a recording file whose header names the kind);
3. a **match key and a miss explanation** (pure, over the stored objects);
4. a pure **answer** step: ``answer(request, state) -> Reply | Miss | Fault | Forward``;
5. **per-connection state** owned by the protocol (selected database, prepared
   statements, transaction status, nth-call counters...).

The kind packs these behind two per-connection objects that the generic connection
loops in ``devbox.wire.tcp`` drive: a ``MockConnection`` (bytes from the client in,
``Output`` actions out) and a ``RecorderConnection`` (observes both directions of a
relayed connection and yields readable stored objects). The loops know nothing of
matching; the connection objects know nothing of sockets, so every behaviour is
testable in-process with bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from devbox.errors import DevboxError

# ---------------------------------------------------------------- errors


class ProtocolError(DevboxError):
    """Bytes that break a protocol's rules. ``code`` is what to answer with, when the
    protocol has one (an HTTP status, a SQLSTATE, a RESP error prefix)."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow (our bug or our
    caller's): never the peer's fault."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; answer with ``code`` where there is one, then
    close."""


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Reply:
    """Send these bytes to the client, ``delay_s`` after the request arrived (recorded
    timing), then close the connection if ``close``."""

    data: bytes
    delay_s: float = 0.0
    close: bool = False


@dataclass(frozen=True, slots=True)
class Miss:
    """No recorded answer. ``data`` is the protocol's own error reply (an HTTP 404 with
    the explanation, ``-DEVBOXMISS ...``, an ErrorResponse with a devbox SQLSTATE);
    ``explanation`` names the nearest recorded request and what differed."""

    data: bytes
    request: str  # one line: what was asked ("GET /x", "GET user:1", "SELECT ... [$1=7]")
    explanation: str
    nearest: str | None = None
    close: bool = False
    delay_s: float = 0.0  # a configured fault's delay applies to misses too


@dataclass(frozen=True, slots=True)
class Fault:
    """A configured fault: ``reset`` the connection, or ``delay_s`` then reply ``data``."""

    kind: str  # "reset" | "delay" | "error"
    data: bytes = b""
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Forward:
    """Pass this request to the real dependency (passthrough / record-on-miss); the
    loop opens the upstream connection if it has none and relays the answer back
    through ``MockConnection.upstream_data``."""

    data: bytes
    record: bool = False
    # the kind's own view of the request to forward (HTTP: the parsed request), for a
    # loop that forwards it itself rather than relaying ``data``
    message: Any = None


Answer = Reply | Miss | Fault | Forward


@dataclass(frozen=True, slots=True)
class Wake:
    """Call the connection's ``wake(token)`` ``delay_s`` from now and apply what it
    returns. Replies with a delay leave in order, each after the one before: right for
    one request after another, wrong for streams that run side by side (gRPC's). A kind
    that paces such streams asks to be woken when each one's next step is due and makes
    that step's bytes then, so no stream waits behind another's recorded gaps."""

    delay_s: float
    token: int


@dataclass(frozen=True, slots=True)
class Hit:
    """Reported for the dashboard's mock statistics: what matched."""

    request: str
    exchange_id: str = ""


Output = Reply | Miss | Fault | Forward | Hit | Wake


# ---------------------------------------------------------------- connections


class MockConnection(Protocol):
    """One client connection to a mock. Pure: no sockets, no clocks it did not get."""

    def data_received(self, data: bytes) -> list[Output]:
        """Bytes from the client; every complete request is answered in order."""
        ...

    def eof_received(self) -> list[Output]:
        """The client closed its sending side: answer what is still pending."""
        ...

    def upstream_data(self, data: bytes) -> list[Output]:
        """Bytes the real dependency sent after a ``Forward`` (passthrough)."""
        ...

    def wake(self, token: int) -> list[Output]:
        """A ``Wake`` this connection asked for is due."""
        ...


@dataclass(frozen=True, slots=True)
class Relay:
    """What a recorder passes on: bytes for the real dependency and bytes for the client
    (usually exactly what arrived; a recorder may answer a handshake step itself, such as
    Postgres' ``SSLRequest``)."""

    to_upstream: bytes = b""
    to_client: bytes = b""


class RecorderConnection(Protocol):
    """Observes one relayed connection in both directions and turns it into stored
    objects (readable JSON, not yet redacted: the recorder's writer redacts)."""

    def from_client(self, data: bytes) -> Relay: ...

    def from_upstream(self, data: bytes) -> Relay: ...

    def take_stored(self) -> list[dict[str, Any]]:
        """Stored objects completed since the last call (written at once: crash-safe)."""
        ...

    def close(self) -> list[dict[str, Any]]:
        """The connection ended: whatever is still open, stored as incomplete."""
        ...


# ---------------------------------------------------------------- the kind


# the field name a kind gives ``redact_value`` for source code (a Lua script, a function
# body): only what a secret's format gives away is replaced there, as in an HTTP body of
# JavaScript. The text rules read ``token = redis.call('get', ...)`` as a secret's
# assignment and cut redis-py's lock script in two
CODE_FIELD = "\x00code"
# the field name for a protocol's own credential (Redis ``AUTH``'s password): always
# redacted whole, whatever the profile keeps or turns off (``[redact] keep = ["password"]``
# keeps a test user's hash in a column, never the server's password)
CREDENTIAL_FIELD = "\x00credential"


@dataclass(frozen=True, slots=True)
class MockOptions:
    """What the profile says about one mocked dependency, kind-independent."""

    name: str
    on_miss: str = "fail"  # fail | passthrough | record
    timing: str = "none"  # none | recorded | "<factor>x"
    match: Mapping[str, Any] = field(default_factory=dict)
    # the recorder's redaction of one value (``redact_value(field_name, value)``): a kind
    # whose recordings hold redaction placeholders applies it to live requests before
    # matching, so a redacted recording still matches
    redact_value: Callable[[str, str], str] | None = None


def timing_factor(timing: str) -> float | None:
    """``MockOptions.timing`` as a factor on recorded delays: None for none."""
    if timing == "recorded":
        return 1.0
    if timing.endswith("x"):
        try:
            return float(timing[:-1])
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the engine, the fleet, the recorders and the CLI ask of a kind beyond the five
    pieces, so that none of them branches on its name. A kind without a ``capabilities``
    attribute has these defaults (``registry.capabilities`` supplies them): the generic
    loops, no linked calls, no resolution check. ``http`` is the one that differs today."""

    # served by devbox's HTTP edges rather than the generic loops: the fleet's
    # ``MockServer`` (prebuilt bytes per hit, admin API with journal and misses), the HTTP
    # recording proxy (forward proxy, correlation header), and recordings in
    # ``devbox.store``'s exchange files. False: ``WireMock`` and ``WireRecorder`` drive the
    # kind's connection objects over ``devbox.wire.tcp`` and its files are object streams.
    http_edges: bool = False
    # its recordings link each call to the inbound request that caused it (``parent``) and
    # its mock's journal is read over the admin API: the engine builds replay's sequence
    # lanes from the links and ``replay --check-outbound`` compares the journal with them
    linked_calls: bool = False
    # ``devbox record`` refuses to start when the upstream's host does not resolve here (a
    # compose service name): its proxy would store one DNS error per request. A kind whose
    # relay fails the connection itself, with nothing stored, leaves it False.
    resolve_upstream: bool = False
    # its mock can serve connections from several processes (``workers`` in the profile,
    # ``devbox.mock.workers``): its index has ``sequences`` (a ``devbox.wire.sequences.
    # Sequences``, the only state its connections share) and ``sequence_keys()`` (the
    # keys with more than one answer), and loading the same stored objects gives the
    # same keys in every process
    workers: bool = False


class Index(Protocol):
    """The match index a kind builds from stored objects (opaque to everyone else)."""

    def __len__(self) -> int: ...


class Kind(Protocol):
    """A dependency kind. Registered in ``devbox.wire.registry``."""

    # Read-only members, so that frozen dataclasses (PostgresKind...) are Kinds for mypy:
    # a plain ``name: str`` member would ask for a settable attribute.
    @property
    def name(self) -> str:
        """The profile's ``kind``."""
        ...

    @property
    def schemes(self) -> tuple[str, ...]:
        """URL schemes of its upstream (``redis``, ``postgresql``...); the first is the
        one a dependency without ``upstream`` is wired with."""
        ...

    @property
    def default_port(self) -> int: ...

    def load(self, stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> Index:
        """Build the index from (file, line, object) triples; raise ``ConfigError``
        naming file, line and field for an object it cannot read."""
        ...

    def mock_connection(self, index: Index, options: MockOptions) -> MockConnection: ...

    def recorder_connection(self) -> RecorderConnection: ...

    def redact(
        self, stored: dict[str, Any], redact_value: Callable[[str, str], str]
    ) -> dict[str, Any]:
        """Apply ``redact_value(field_name, value) -> value`` to every value a secret could
        hide in (arguments, parameters, row values), keeping the object's shape."""
        ...

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        """The address the service is given: the upstream URL with host and port
        swapped for the mock's or the recording proxy's (scheme, user, path kept).
        ``tls`` False: devbox's listener takes no TLS it would otherwise take (``devbox
        record --no-intercept``, ``devbox export k8s``); a kind whose listeners decide TLS
        by themselves ignores it."""
        ...
