"""TLS on a connection that has already delivered bytes, and telling protocols apart by
their first bytes.

``asyncio`` starts TLS only on a fresh transport (``create_server(ssl=...)``) or before
any byte was read (``start_tls``). devbox needs it later: a mock's one port serves
plain HTTP/1.1, h2c and TLS, told apart by the first bytes a client sends (already read
by then), and the recording proxy intercepts the bytes that follow a ``CONNECT``. So
``TlsBridge`` terminates TLS itself over ``ssl.MemoryBIO``: it becomes the raw
transport's protocol, is handed the bytes read so far, and gives the protocol chosen
after the handshake (by ALPN) a transport of its own (``TlsTransport``).

``sniff`` classifies a connection's first bytes: ``0x16`` is a TLS handshake record (a
ClientHello), ``PRI * HTTP/2.0`` the h2c preface (prior knowledge), anything else
HTTP/1.x.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

TLS = "tls"
H2C = "h2c"
HTTP1 = "http1"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_READ = 256 * 1024


def sniff(first: bytes) -> str | None:
    """The protocol a connection's first bytes start, or None until there are enough."""
    if not first:
        return None
    if first[0] == 0x16:
        return TLS
    n = min(len(first), len(H2_PREFACE))
    if first[:n] == H2_PREFACE[:n]:
        return H2C if n == len(H2_PREFACE) else None
    return HTTP1


class TlsTransport(asyncio.Transport):
    """What the protocol inside the TLS session writes to and controls."""

    def __init__(self, bridge: TlsBridge) -> None:
        super().__init__()
        self._bridge = bridge

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._bridge.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._bridge.write(b"".join(list_of_data))

    def close(self) -> None:
        self._bridge.close()

    def linger(self, seconds: float) -> None:
        """Close, but read on (and drop) what the client still sends for up to
        ``seconds`` (``TlsBridge.close``)."""
        self._bridge.close(seconds)

    def abort(self) -> None:
        self._bridge.abort()

    def is_closing(self) -> bool:
        return self._bridge.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        b = self._bridge
        if name == "ssl_object":
            return b.sslobj
        if name == "alpn":
            return b.alpn
        if name == "server_hostname":
            return b.sni
        return b.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._bridge.raw.pause_reading()

    def resume_reading(self) -> None:
        self._bridge.raw.resume_reading()

    def is_reading(self) -> bool:
        return bool(self._bridge.raw.is_reading())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._bridge.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return int(self._bridge.raw.get_write_buffer_size())

    def can_write_eof(self) -> bool:
        return False  # a TLS close_notify ends both directions

    def write_eof(self) -> None:
        self._bridge.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._bridge.inner = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        inner = self._bridge.inner
        assert inner is not None
        return inner


# (alpn, sni, transport) -> the protocol that speaks inside the session
Chooser = Callable[[str | None, str | None, TlsTransport], asyncio.Protocol]


class TlsBridge(asyncio.Protocol):
    """The server side of a TLS session over an already-open transport. ``on_failure``
    hears of a handshake the client gave up after it had devbox's answer (an alert, or a
    hang-up): what a client that does not trust the certificate does."""

    def __init__(
        self,
        context: ssl.SSLContext,
        choose: Chooser,
        *,
        on_failure: Callable[[ssl.SSLError | OSError], None] | None = None,
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        # the C object under ``ssl.SSLObject``, whose read/write/pending are thin Python
        # wrappers (~0.3 µs a call, three calls per request); the wrapper where absent
        self._c: Any = getattr(self.sslobj, "_sslobj", self.sslobj)
        self.choose = choose
        self.on_failure = on_failure
        self.raw: asyncio.Transport = None  # type: ignore[assignment]  # set by start()
        self.inner: asyncio.Protocol | None = None
        self.transport = TlsTransport(self)
        self.handshaken = False
        # our answer to the client's hello (our certificate) went out: a handshake that
        # fails from now on failed on what the client saw of us
        self.answered = False
        self.closing = False
        self.reading = False
        self.alpn: str | None = None
        self.sni: str | None = None

    def start(self, raw: asyncio.Transport, first: bytes, timeout_s: float | None = None) -> None:
        """Take over ``raw`` (whose protocol this becomes) with the bytes read so far; a
        handshake not done within ``timeout_s`` closes the connection."""
        self.raw = raw
        raw.set_protocol(self)
        if timeout_s:
            asyncio.get_running_loop().call_later(timeout_s, self._handshake_timeout)
        if first:
            self.data_received(first)

    def _handshake_timeout(self) -> None:
        if not self.handshaken and not self.closing:
            self.abort()

    # ------------------------------------------------------------ from the raw side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # start() is how a bridge gets its transport

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # closed lingering: what the client still sends is dropped
        self.incoming.write(data)
        if not self.handshaken:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self.answered = self.answered or self.outgoing.pending > 0
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                self._flush()  # the alert, if any
                self.closing = True
                self.raw.close()
                self._fail(exc)
                return
            self.handshaken = True
            self._flush()
            self.alpn = self.sslobj.selected_alpn_protocol()
            self.sni = getattr(self.sslobj, "server_hostname", None)
            self.inner = self.choose(self.alpn, self.sni, self.transport)
            self.inner.connection_made(self.transport)
        self._read()

    def _read(self) -> None:
        # answers written while reading go out in one raw write at the end (pipelined
        # requests: one send for all of them)
        self.reading = True
        try:
            self._decrypt()
        finally:
            self.reading = False
        self._flush()

    def _decrypt(self) -> None:
        # every record this read brought goes to the inner protocol at once: a client
        # writes a request's HEADERS and its first DATA as two records, which a
        # verbatim relay would send upstream in two writes, where the client's own
        # send would have brought them to the server together
        read, incoming, sslobj = self._c.read, self.incoming, self._c
        chunks: list[bytes] = []
        end = None
        while True:
            try:
                chunk = read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                end = self._eof
                break
            except (ssl.SSLError, OSError):
                end = self.abort
                break
            if not chunk:
                end = self._eof
                break
            chunks.append(chunk)
            if not incoming.pending and not sslobj.pending():
                # nothing left to decrypt: skip the read that would only raise
                # SSLWantReadError (an exception per request, ~1 µs)
                break
        if chunks and self.inner is not None and not self.closing:
            self.inner.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if end is not None and not self.closing:
            end()  # (an inner protocol that closed itself has had its end)

    def _eof(self) -> None:
        inner = self.inner
        if inner is not None and not inner.eof_received():
            self.close()

    def eof_received(self) -> bool | None:
        if self.closing:
            return False  # closed lingering: the client is done too
        inner = self.inner
        if inner is None:
            self._fail(ConnectionResetError("the client hung up during the TLS handshake"))
            return False
        return inner.eof_received()

    def _fail(self, exc: ssl.SSLError | OSError) -> None:
        # only a client that got our certificate can have refused it: bytes that were
        # never a TLS hello (plain HTTP, garbage) or a hang-up before one are that one
        # connection's failure, not a verdict on devbox's CA
        if not self.handshaken and self.answered and self.on_failure is not None:
            on_failure, self.on_failure = self.on_failure, None
            on_failure(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshaken:
            self._fail(ConnectionResetError("the client hung up during the TLS handshake"))
        self.closing = True
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # ------------------------------------------------------------ from the inner side

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or not data:
            return
        try:
            n = self._c.write(data)  # a memory BIO takes it whole; the loop is for safety
            if n < len(data):
                view = memoryview(data)[n:]
                while view:
                    view = view[self._c.write(view) :]
        except (ssl.SSLError, OSError):
            self.abort()
            return
        if not self.reading or self.outgoing.pending >= _READ:
            # (a large answer goes out at once even while reading: the raw transport
            # must see it to pause the inner protocol, whose client may not be reading)
            self._flush()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out and not self.raw.is_closing():
            self.raw.write(out)

    def close(self, linger_s: float = 0.0) -> None:
        """Our close_notify (the peer's is not waited for), then the TCP close. With
        ``linger_s``: a FIN instead, and the client's bytes are read and dropped until
        it closes too, for up to ``linger_s``. Closing a socket whose unread input holds
        bytes sends a reset, and a reset makes the client's kernel drop what it had not
        yet read of ours: a client still uploading when the answer came (an upstream's
        413, then its close) would lose the answer (RFC 9112 9.6, nginx's lingering
        close)."""
        if self.closing:
            return
        self.closing = True
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, OSError):
            pass
        self._flush()
        raw = self.raw
        if linger_s and raw.can_write_eof():
            raw.write_eof()
            raw.resume_reading()
            asyncio.get_running_loop().call_later(linger_s, raw.close)
        else:
            raw.close()

    def abort(self) -> None:
        self.closing = True
        self.raw.abort()
