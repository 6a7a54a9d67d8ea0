"""HTTP/1.1 bytes for the mock: recorded responses serialised once, small helpers.

A recorded response is turned into its exact wire bytes when the recordings are
loaded (``Prepared``), so answering a matched request is one ``transport.write``.
Recorded bodies are stored decoded: if the recorded headers say the upstream
sent gzip, deflate, br or zstd, the body is encoded again (deterministically, so the
same recording always serves the same bytes; ``devbox.core.codings``) and served that
way to clients that accept it; a client that does not, or a coding we cannot produce,
gets the identity body without the Content-Encoding header. Content-Length is
always recomputed and hop-by-hop headers (Transfer-Encoding, Connection, ...)
are never replayed.
"""

from __future__ import annotations

import base64
from http import HTTPStatus
from typing import Any

import orjson

from devbox.core import codings
from devbox.core.model import Exchange, Headers, Response
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.http1_syntax import ProtocolError, parse_response_head

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
ENCODERS = ("gzip", "x-gzip", "deflate", "br", "zstd")


def reason_phrase(status: int, reason: str = "") -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _clean(text: str) -> bytes:
    # a recording is user-editable text: never let it split a response
    text = text.replace("\r", " ").replace("\n", " ")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def encode_body(body: bytes, encoding: str) -> bytes:
    return codings.encode_one(body, encoding) if encoding in ENCODERS else body


def decode_body(body: bytes, encoding: str) -> bytes:
    """Undo the codings an upstream applied; bytes not valid in them are left as they are."""
    return codings.decode_lenient(body, encoding)


def accepts(accept_encoding: str | None, encoding: str) -> bool:
    """Whether an Accept-Encoding header value admits ``encoding`` (q=0 refuses)."""
    if not accept_encoding:
        return False
    want = "gzip" if encoding == "x-gzip" else encoding
    star = False
    for item in accept_encoding.lower().split(","):
        token, _, params = item.strip().partition(";")
        token = token.strip()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 1.0
        if token in (want, "x-" + want):
            return q > 0
        if token == "*":
            star = q > 0
    return star


def no_body_status(status: int) -> bool:
    return status < 200 or status in (204, 304)


def serialize(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    reason: str = "",
    close: bool = False,
    head: bool = False,
    length: int | None = None,
    framed: bool = True,
    trailers: Headers = (),
) -> bytes:
    """One complete response. ``headers`` must not carry framing (see HOP_BY_HOP).
    ``framed=False``: no Content-Length (a HEAD answer whose server never said one).
    ``trailers`` (gRPC's status, a chunked body's fields) go after the body, which is
    then chunked: the one HTTP/1.1 framing that has room for them."""
    out = [f"HTTP/1.1 {status} {reason_phrase(status, reason)}\r\n".encode("latin-1", "replace")]
    for k, v in headers:
        out.append(_clean(k) + b": " + _clean(v) + b"\r\n")
    chunked = bool(trailers) and framed and length is None and not no_body_status(status)
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif framed and not no_body_status(status):
        out.append(b"Content-Length: %d\r\n" % (len(body) if length is None else length))
    # said on every response, as nginx does: an HTTP/1.0 client needs it to keep the
    # connection, an HTTP/1.1 one ignores it, and the hot path need not tell them apart
    out.append(b"Connection: close\r\n" if close else b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    if head or no_body_status(status):
        return b"".join(out)
    if not chunked:
        out.append(body)
        return b"".join(out)
    if body:
        out.append(b"%x\r\n%s\r\n" % (len(body), body))
    out.append(b"0\r\n")
    for k, v in trailers:
        out.append(_clean(k) + b": " + _clean(v) + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def rejection(status: int, message: str) -> bytes:
    """The mock's answer to a request it cannot read or serve (414, 431, 413, 505, 400...):
    the status and the reason as JSON, then the connection closes."""
    body = orjson.dumps({"error": message, "status": status})
    return serialize(status, (("Content-Type", "application/json"),), body, close=True)


class Prepared:
    """A recorded response as bytes, built once per exchange."""

    __slots__ = (
        "_variants",
        "body",
        "encoding",
        "exchange",
        "headers",
        "id",
        "identity_headers",
        "keepalive",
        "reset",
        "simple",
        "status",
        "wire_body",
    )

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.id = exchange.id
        resp: Response | None = exchange.response
        self._variants: dict[tuple[bool, bool, bool], bytes] = {}
        # a recorded network error (refused, reset, timeout) is replayed as a reset
        self.reset = resp is None
        if resp is None:
            self.status = 0
            self.headers: Headers = ()
            self.identity_headers: Headers = ()
            self.body = self.wire_body = b""
            self.encoding = ""
            self.keepalive = b""
            self.simple = False
            return
        self.status = resp.status
        kept = tuple((k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP)
        enc = (resp.header("content-encoding") or "").strip().lower()
        self.identity_headers = tuple((k, v) for k, v in kept if k.lower() != "content-encoding")
        if not resp.body:
            # nothing to decode or encode (a HEAD, 204 or 304 answer): its Content-Encoding
            # describes the representation a GET would get, and is replayed as it came
            self.identity_headers = kept
        self.body = resp.body
        if enc in ENCODERS and resp.body:
            self.encoding = enc
            self.headers = kept
            self.wire_body = encode_body(resp.body, enc)
        else:
            # identity, or an encoding we cannot reproduce: serve the decoded body, honestly
            self.encoding = ""
            self.headers = self.identity_headers
            self.wire_body = resp.body
        self.keepalive = serialize(
            self.status, self.headers, self.wire_body, reason=resp.reason, trailers=resp.trailers
        )
        # the keep-alive bytes fit every request but HEAD (HTTP/1.0 keep-alive included)
        self.simple = not self.encoding

    def bytes_for(self, accept_encoding: str | None, *, close: bool, head: bool) -> bytes:
        encoded = bool(self.encoding) and accepts(accept_encoding, self.encoding)
        if not close and not head and (encoded or not self.encoding):
            return self.keepalive
        variant = (encoded, close, head)
        data = self._variants.get(variant)
        if data is None:
            assert self.exchange.response is not None
            headers = self.headers if encoded else self.identity_headers
            body = self.wire_body if encoded else self.body
            length, framed = None, True
            if head and not body:
                # a recorded HEAD answer: its Content-Length is what GET would send, and
                # none was said when the GET would be chunked: then none is made up
                recorded = self.exchange.response.header("content-length")
                if recorded and recorded.isdigit():
                    length = int(recorded)
                else:
                    framed = False
            data = serialize(
                self.status,
                headers,
                body,
                reason=self.exchange.response.reason,
                close=close,
                head=head,
                length=length,
                framed=framed,
                trailers=self.exchange.response.trailers,
            )
            self._variants[variant] = data
        return data


# ---------------------------------------------------------------- upstream responses


class UpstreamProtocolError(RemoteProtocolError):
    """The real upstream answered something that is not HTTP/1.x."""


def split_response(data: bytes) -> tuple[int, Headers, bytes, Headers]:
    """A serialised HTTP/1.1 response as (status, headers, body, trailers), for a
    connection that speaks another framing (HTTP/2): the answering code builds HTTP/1.1
    bytes once and every protocol serves them. Framing headers (Connection,
    Transfer-Encoding) are dropped; Content-Length is kept (HTTP/2 allows it, and a HEAD
    answer needs it); a chunked body (``serialize``'s, for trailers) is taken apart."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise UpstreamProtocolError("a response without the end of its head")
    try:
        head = parse_response_head(data[: end + 4])
    except ProtocolError as exc:
        raise UpstreamProtocolError(str(exc)) from None
    kept = tuple(
        (k.lower(), v)
        for k, v in head.headers
        if k.lower() not in HOP_BY_HOP or k.lower() == "content-length"
    )
    rest = data[end + 4 :]
    if rest and any(k.lower() == "transfer-encoding" for k, _ in head.headers):
        return (head.status, kept, *_unchunk(rest))
    return head.status, kept, rest, ()


def _unchunk(data: bytes) -> tuple[bytes, Headers]:
    """``serialize``'s chunked body: (the body, its trailers)."""
    body, pos = bytearray(), 0
    while True:
        eol = data.find(b"\r\n", pos)
        try:
            if eol < 0:
                raise ValueError
            size = int(data[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise UpstreamProtocolError("a chunk without its size") from None
        pos = eol + 2
        if size == 0:
            break
        body += data[pos : pos + size]
        pos += size + 2
    trailers = []
    for line in data[pos:].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            trailers.append(
                (name.decode("latin-1").strip().lower(), value.decode("latin-1").strip())
            )
    return bytes(body), tuple(trailers)


def body_text(body: bytes) -> str:
    """A body for the admin journal: UTF-8 text, or base64 behind a ``base64:`` prefix."""
    if not body:
        return ""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode("ascii")


def json_response(status: int, payload: Any, keep: bool) -> bytes:
    """An admin answer: indented JSON, never cached (it is live state)."""
    return serialize(
        status,
        (("Content-Type", "application/json"), ("Cache-Control", "no-store")),
        orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS),
        close=not keep,
    )
