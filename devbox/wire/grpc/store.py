"""gRPC recordings as readable JSON, one object per call, and the mock's match index.

A call object::

    {"connection": 1, "seq": 3, "at_ms": 120.5, "latency_ms": 1.9,
     "service": "routeguide.RouteGuide", "method": "ListFeatures",
     "metadata": {"x-tenant": "acme"},
     "request": [{"1": {"1": 400000000, "2": -750000000}}],
     "response_metadata": {"x-served-by": "a"},
     "response": [{"1": "Patriots Path", "2": {"1": 407838351}}, ...],
     "response_at_ms": [0.9, 1.2, ...],
     "status": 0, "status_name": "OK", "grpc_message": "...", "trailers": {...}}

Messages are ``devbox.wire.grpc.protobuf``'s readable form (``{"base64": ...}`` when a
message has none, ``{"compressed": true, "base64": ...}`` for a compressed answer, or a
request compressed in an encoding devbox cannot inflate).
``response_at_ms`` is when each response message arrived, counted from the call's
start. Optional: ``request_open`` (the client had not half-closed; with a ``status``,
the server answered first: ``request_unfinished`` is the announced length of the message
then on its way; with answers and the client's reset, the client had what it wanted),
``reset`` (an
RST_STREAM code instead of trailers; ``reset_by``: ``"client"`` when the client
cancelled, ``"server"``), ``incomplete`` (the connection ended first),
``http_status`` (not 200), ``response_encoding`` (the response's ``grpc-encoding``),
``request_encoding`` (the request's; its messages are stored inflated all the same),
``trailers_only`` (the answer was one HEADERS block, status included).

The index maps (path, request messages with the profile's ``ignore_body`` paths removed)
to the recorded calls in order; the n-th identical call gets the n-th recorded answer,
then the last one again (counters shared by all connections; ``reset`` restarts them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from devbox.core import redact_grpc
from devbox.core.match_keys import Step, drop_paths, parse_json_path
from devbox.errors import ConfigError
from devbox.wire.contract import Hit
from devbox.wire.grpc import codec, protobuf
from devbox.wire.grpc.schema import Schema

Key = tuple[str, bytes]


class StoreError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded answer: what the mock sends, ready to go."""

    hit: Hit
    headers: list[tuple[str, str]]
    messages: tuple[tuple[float, bytes], ...]  # (seconds after the previous part, frame)
    trailers: list[tuple[str, str]]
    trailers_delay_s: float
    latency_s: float
    reset: int | None = None
    # the client reset the stream itself (cancel, deadline): the mock sends what had
    # arrived by then and leaves the stream open for the client to end it again
    client_ended: bool = False
    # not a gRPC answer (a gateway's 502, no grpc-status): ``headers`` alone, ending
    # the stream, their ``:status`` the recorded one
    headers_only: bool = False
    # the recorded answer was one HEADERS block ending the stream: ``headers`` and
    # ``trailers`` go together, as it came
    trailers_only: bool = False
    # a conversation (``request_at_ms``): when each request and response message came,
    # ms after the call's start; the mock answers it message by message
    request_at: tuple[float, ...] = ()
    response_at: tuple[float, ...] = ()

    def begins_with(self, sent: Sequence[bytes]) -> bool:
        """Whether this answer's first messages are ``sent`` (frames as sent)."""
        return len(self.messages) >= len(sent) and all(
            self.messages[i][1] == data for i, data in enumerate(sent)
        )


def label(path: str, messages: Sequence[Any], limit: int = 160) -> str:
    body = " ".join(orjson.dumps(m).decode() for m in messages)
    line = f"{path} {body}" if body else path
    return line if len(line) <= limit else line[: limit - 1] + "…"


def canonical(messages: Sequence[Any], ignore: Sequence[tuple[Step, ...]]) -> bytes:
    if ignore:
        messages = [drop_paths(orjson.loads(orjson.dumps(m)), ignore) for m in messages]
    return orjson.dumps(list(messages), option=orjson.OPT_SORT_KEYS)


class GrpcIndex:
    def __init__(self, ignore: Sequence[str] = (), schema: Schema | None = None) -> None:
        self.schema = schema
        self.table: dict[Key, list[Entry]] = {}
        self.calls: dict[Key, int] = {}
        self.by_path: dict[str, list[tuple[Key, list[Any]]]] = {}
        self.redacted = False
        self.ignore = tuple(parse_json_path(p) for p in ignore)
        self._variants: dict[tuple[str, ...], GrpcIndex] = {}
        # calls the server answered before the client finished sending: (path, the
        # messages it had, the announced length of the one on its way or None, entry)
        self.early: list[tuple[str, list[Any], int | None, Entry]] = []
        self._early: dict[Key, list[Entry]] = {}
        self._early_longest: dict[str, int] = {}  # per path, the most messages one had
        # conversations per path: (each request message's key, the call, its messages)
        self.talks: dict[str, list[tuple[list[bytes], Entry, list[Any]]]] = {}
        # how often each conversation was followed (by id): the n-th identical one the
        # n-th time, then the last again, as ``calls`` does for whole requests
        self.talk_uses: dict[int, int] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.table.values()) + len(self.early)

    def key(self, path: str, messages: Sequence[Any]) -> Key:
        return (path, canonical(messages, self.ignore))

    def add(self, path: str, messages: list[Any], entry: Entry) -> None:
        key = self.key(path, messages)
        entries = self.table.get(key)
        if entries is None:
            self.table[key] = [entry]
            self.by_path.setdefault(path, []).append((key, messages))
        else:
            entries.append(entry)

    def message_keys(self, messages: Sequence[Any]) -> list[bytes]:
        """Each message as matching compares it (the profile's ``ignore_body`` paths out)."""
        return [canonical([m], self.ignore) for m in messages]

    def add_talk(self, path: str, messages: list[Any], entry: Entry) -> None:
        self.talks.setdefault(path, []).append((self.message_keys(messages), entry, messages))

    def talk(
        self, path: str, heard: list[bytes], sent: Sequence[bytes] = ()
    ) -> tuple[list[bytes], Entry] | None:
        """The recorded conversation to follow after ``heard`` (its messages' keys), whose
        answers begin with the ones ``sent`` already: of those that begin so, the first
        not followed yet, else the last (identical conversations in turn, then the last
        again, as identical whole calls are answered)."""
        last: tuple[list[bytes], Entry] | None = None
        n = len(heard)
        for recorded, entry, _messages in self.talks.get(path, ()):
            if recorded[:n] != heard or not entry.begins_with(sent):
                continue
            if not self.talk_uses.get(id(entry), 0):
                return recorded, entry
            last = (recorded, entry)
        return last

    def _early_key(self, path: str, messages: Sequence[Any], pending: int | None) -> Key:
        # "|" keeps these keys apart from the whole requests' (canonical JSON never ends so)
        return (
            path,
            canonical(messages, self.ignore) + b"|%d" % (-1 if pending is None else pending),
        )

    def add_early(self, path: str, messages: list[Any], pending: int | None, entry: Entry) -> None:
        """A call the server answered having seen ``messages`` (and the announced length
        ``pending`` of the next one, when it had begun): the answer of every request
        that starts so, since the server decided on no more."""
        self.early.append((path, messages, pending, entry))
        self._early_longest[path] = max(self._early_longest.get(path, 0), len(messages))
        self._early.setdefault(self._early_key(path, messages, pending), []).append(entry)

    def take(self, key: Key) -> Entry | None:
        return self._next(self.table, key)

    def take_early(self, path: str, messages: Sequence[Any], sizes: Sequence[int]) -> Entry | None:
        """The answer of a call recorded as answered early whose messages begin
        ``messages`` (``sizes``: their lengths on the wire), the longest such first."""
        longest = self._early_longest.get(path)
        if longest is None:
            return None
        # no longer prefix than was recorded: a long client stream costs no more
        for n in range(min(len(messages), longest), -1, -1):
            pending = (sizes[n], None) if n < len(messages) else (None,)
            for size in pending:
                found = self._next(self._early, self._early_key(path, messages[:n], size))
                if found is not None:
                    return found
        return None

    def _next(self, table: dict[Key, list[Entry]], key: Key) -> Entry | None:
        entries = table.get(key)
        if entries is None:
            return None
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        return entries[n] if n < len(entries) else entries[-1]

    def reset(self) -> None:
        self.calls.clear()
        self.talk_uses.clear()
        for variant in self._variants.values():
            variant.reset()

    def with_ignore(self, ignore: Sequence[str]) -> GrpcIndex:
        """The same calls keyed without the ``ignore`` paths (the profile's match rules)."""
        if not ignore:
            return self
        made = self._variants.get(tuple(ignore))
        if made is not None:
            return made  # one per rule set, so every connection shares its counters
        out = self._variants[tuple(ignore)] = GrpcIndex(ignore, self.schema)
        out.redacted = self.redacted
        for path, items in self.by_path.items():
            for key, messages in items:
                for entry in self.table[key]:
                    out.add(path, messages, entry)
        for path, messages, pending, entry in self.early:
            out.add_early(path, messages, pending, entry)
        for path, talks in self.talks.items():
            for _keys, entry, messages in talks:
                out.add_talk(path, messages, entry)
        return out

    def explain(self, path: str, messages: list[Any]) -> tuple[int, str, str | None]:
        """(status to answer, explanation, nearest recorded request) for a miss."""
        items = self.by_path.get(path)
        if not items:
            known = sorted(self.by_path)
            listed = ", ".join(known[:8]) + (" …" if len(known) > 8 else "")
            text = f"no recorded call of {path}" + (
                f"; recorded methods: {listed}" if known else "; nothing was recorded"
            )
            return codec.UNIMPLEMENTED, text, None
        got = orjson.loads(canonical(messages, self.ignore))
        best: tuple[int, str, list[Any]] | None = None
        for _key, recorded in items[:2000]:
            want = orjson.loads(canonical(recorded, self.ignore))
            diffs: list[str] = []
            _diff(want, got, "$", diffs)
            if best is None or len(diffs) < best[0]:
                best = (len(diffs), "; ".join(diffs[:3]), recorded)
        assert best is not None
        nearest = label(path, best[2])
        text = f"no recorded call of {path} with this request; nearest recorded differs: {best[1]}"
        return codec.NOT_FOUND, text, nearest


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:39] + "…"


def _diff(want: Any, got: Any, path: str, out: list[str]) -> None:
    if len(out) > 20:
        return
    if isinstance(want, dict) and isinstance(got, dict):
        for k in want:
            if k not in got:
                out.append(f"{path}.{k} recorded {_short(want[k])}, absent now")
            else:
                _diff(want[k], got[k], f"{path}.{k}", out)
        for k in got:
            if k not in want:
                out.append(f"{path}.{k} absent when recorded, now {_short(got[k])}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            out.append(f"{path} had {len(want)} items when recorded, now {len(got)}")
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            _diff(a, b, f"{path}[{i}]", out)
    elif want != got:
        out.append(f"{path} recorded {_short(want)}, now {_short(got)}")


# ---------------------------------------------------------------- loading


def coders(
    schema: Schema | None, path: str, response: bool
) -> tuple[codec.Encoder | None, codec.Decoder | None]:
    """The named form's encoder and decoder for one side of ``path`` (None without
    descriptors)."""
    if schema is None:
        return None, None
    known = schema

    def encode(value: dict[str, Any], where: str) -> bytes:
        return known.encode(path, response, value, where)

    def decode(payload: bytes) -> dict[str, Any] | None:
        return known.decode(path, response, payload)

    return encode, decode


def build_index(
    stored: Sequence[tuple[str, int, Mapping[str, Any]]], schema: Schema | None = None
) -> GrpcIndex:
    """The index; with ``schema``, every message is keyed by its named form (whichever
    form the file holds), as live requests are decoded the same way."""
    index = GrpcIndex(schema=schema)
    for file, line, obj in stored:
        try:
            _add(index, obj)
        except (StoreError, protobuf.ProtobufError) as exc:
            raise ConfigError(str(exc), file=file, line=line, field=exc.field) from None
    return index


def _num(obj: Mapping[str, Any], key: str) -> float:
    v = obj.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e15:
        raise StoreError("expected a number >= 0", key)
    return float(v)


def call_path(obj: Mapping[str, Any]) -> str:
    """``/service/method`` of a stored call, or StoreError naming the missing field."""
    service, method = obj.get("service"), obj.get("method")
    if not isinstance(service, str) or not service:
        raise StoreError("expected the service name, such as helloworld.Greeter", "service")
    if not isinstance(method, str) or not method:
        raise StoreError("expected the method name, such as SayHello", "method")
    return f"/{service}/{method}"


def request_encoding(obj: Mapping[str, Any]) -> str | None:
    """The ``grpc-encoding`` a stored call's client compressed its requests with."""
    value = obj.get("request_encoding")
    if value is not None and not isinstance(value, str):
        raise StoreError("expected a grpc-encoding, such as gzip", "request_encoding")
    return value


def _gap(ms: float) -> float:
    # sub-millisecond spacing is the recorder's own scheduling: sent at once
    return ms / 1000.0 if ms >= 1.0 else 0.0


def _request(index: GrpcIndex, obj: Mapping[str, Any], path: str) -> list[Any]:
    """The request messages of a stored call, as the form a live request decodes to now
    (the key), whatever form the file holds."""
    request = obj.get("request", [])
    if not isinstance(request, list):
        raise StoreError("expected a list of messages", "request")
    req_coders = coders(index.schema, path, False)
    encoding = request_encoding(obj)
    request = [
        codec.stored_json(m, f"request[{i}]", req_coders, encoding, request=True)
        for i, m in enumerate(request)
    ]
    if any(b"<redacted:" in orjson.dumps(m) for m in request):
        index.redacted = True
    return request


def _unfinished(obj: Mapping[str, Any]) -> int | None:
    pending = obj.get("request_unfinished")
    if pending is not None and (isinstance(pending, bool) or not isinstance(pending, int)):
        raise StoreError("expected the length of a message", "request_unfinished")
    return pending


def _times(obj: Mapping[str, Any], name: str) -> list[float]:
    at = obj.get(name, [])
    # (an integer too large for a float would raise OverflowError)
    if not isinstance(at, list) or any(
        isinstance(x, bool) or not isinstance(x, int | float) or not -1e15 < x < 1e15 for x in at
    ):
        raise StoreError("expected a list of times in ms", name)
    return [float(x) for x in at]


def _add(index: GrpcIndex, obj: Mapping[str, Any]) -> None:
    # a call the client had not finished sending is served only when the server had
    # answered it all the same (a message over its limit, an error after the first), or
    # answered enough for the client, which then cancelled (grpcio-reflection's client
    # reads one answer and drops the stream, its half-close sometimes still unsent)
    gave_up = obj.get("reset_by") == "client" and bool(obj.get("response"))
    early = bool(obj.get("request_open")) and ("status" in obj or gave_up)
    if obj.get("incomplete") or (obj.get("request_open") and not early):
        return
    pending = _unfinished(obj)
    path = call_path(obj)
    request = _request(index, obj, path)
    encode_resp, _ = coders(index.schema, path, True)
    response = obj.get("response", [])
    at = _times(obj, "response_at_ms")
    if not isinstance(response, list):
        raise StoreError("expected a list of messages", "response")
    frames = []
    prev = 0.0
    for i, m in enumerate(response):
        t = float(at[i]) if i < len(at) else prev
        data = codec.message_bytes(m, f"response[{i}]", encode_resp)
        frames.append((_gap(t - prev) if i else 0.0, data))
        prev = t
    request_at = _times(obj, "request_at_ms")
    latency = _num(obj, "latency_ms")
    status = obj.get("status", 0)
    if isinstance(status, bool) or not isinstance(status, int):
        raise StoreError("expected a gRPC status code (0 is OK)", "status")
    trailers = [("grpc-status", str(status))]
    text = obj.get("grpc_message", "")
    if not isinstance(text, str):
        raise StoreError("expected text", "grpc_message")
    if text:
        trailers.append(("grpc-message", codec.encode_grpc_message(text)))
    trailers += codec.metadata_headers(obj.get("trailers"))
    http_status = obj.get("http_status", 200)
    if isinstance(http_status, bool) or not isinstance(http_status, int):
        raise StoreError("expected an HTTP status code", "http_status")
    headers = [(":status", str(http_status)), ("content-type", "application/grpc")]
    encoding = obj.get("response_encoding")
    if encoding is None and any(data[0] == 1 for _gap_s, data in frames):  # compressed flag
        encoding = "gzip"  # recorded before ``response_encoding``: what grpc servers use
    if encoding is not None:
        if not isinstance(encoding, str) or not encoding.isascii():
            raise StoreError("expected a grpc-encoding, such as gzip", "response_encoding")
        # without it a client fails a compressed message: "Compression bit set but no
        # encoding configured" (INTERNAL)
        headers.append(("grpc-encoding", encoding))
    headers += codec.metadata_headers(obj.get("response_metadata"))
    if obj.get("no_grpc_status"):  # not a gRPC answer: its status and metadata, no more
        headers = [headers[0], *codec.metadata_headers(obj.get("response_metadata"))]
    reset = obj.get("reset")
    ident = f"{obj.get('connection', 0)}.{obj.get('seq', 0)}"
    same = index.table.get(index.key(path, request))
    request_label = same[0].hit.request if same else label(path, request)
    entry = Entry(
        hit=Hit(request_label, ident),
        headers=headers,
        messages=tuple(frames),
        trailers=trailers,
        trailers_delay_s=_gap(latency - prev) if frames else 0.0,
        latency_s=latency / 1000.0,
        reset=reset if isinstance(reset, int) and not isinstance(reset, bool) else None,
        client_ended=obj.get("reset_by") == "client",
        headers_only=bool(obj.get("no_grpc_status")),
        trailers_only=obj.get("trailers_only") is True and not frames,
        request_at=tuple(request_at) if len(request_at) == len(request) else (),
        response_at=tuple(at[i] if i < len(at) else 0.0 for i in range(len(frames))),
    )
    talk = entry.request_at and frames and not entry.headers_only
    if talk and (entry.reset is None or entry.client_ended):
        index.add_talk(path, request, entry)  # answered message by message too
    if early:
        index.add_early(path, request, pending, entry)
    else:
        index.add(path, request, entry)


# ---------------------------------------------------------------- redaction


def redact_object(
    stored: dict[str, Any], redact_value: Callable[[str, str], str]
) -> dict[str, Any]:
    """Metadata by name (``authorization`` is a secret whatever it holds) and text rules;
    message strings by the text rules (field numbers are no names), inside compressed
    messages too (``devbox.core.redact_grpc``)."""
    out = dict(stored)
    for key in ("metadata", "response_metadata", "trailers"):
        meta = stored.get(key)
        if isinstance(meta, dict):
            out[key] = {k: _redact_meta(k, v, redact_value) for k, v in meta.items()}
    for key in ("request", "response"):
        msgs = stored.get(key)
        encoding = stored.get(f"{key}_encoding")
        if isinstance(msgs, list):
            out[key] = [_redact_stored(m, encoding, redact_value) for m in msgs]
    if isinstance(stored.get("grpc_message"), str):
        out["grpc_message"] = redact_value("grpc-message", stored["grpc_message"])
    return out


def _redact_meta(name: str, value: Any, redact_value: Callable[[str, str], str]) -> Any:
    if isinstance(value, list):
        return [_redact_meta(name, v, redact_value) for v in value]
    return redact_value(name, value) if isinstance(value, str) else value


def _redact_stored(value: Any, encoding: Any, redact_value: Callable[[str, str], str]) -> Any:
    if isinstance(value, dict) and value.get("compressed") is True:
        enc = encoding if isinstance(encoding, str) else None
        return redact_grpc.redact_stored_compressed(value, enc, redact_value)
    return redact_grpc.redact_message(value, "", redact_value)
