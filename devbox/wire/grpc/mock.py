"""One client connection to a gRPC mock: pure, HTTP/2 bytes in, ``Output`` actions out.

A call is answered once the client has sent its whole request (unary and server
streaming at once; client streaming and bidirectional streaming when the client
half-closes): matched on its path and request messages, it gets the recorded response
metadata, messages (the gaps between streamed messages as recorded; the first one after
the recorded latency only with ``timing``), status, message and trailers. A miss answers
``UNIMPLEMENTED`` (no call of that method was recorded) or ``NOT_FOUND`` (none with this
request), with the explanation in ``grpc-message``. A call recorded as a conversation
(the server answered before the client's last message) is also answered message by
message while the client's messages follow it, so a client that waits for each answer
before asking on is served.

Calls on one connection run side by side, as on the server: each answered stream keeps
its steps still to come (headers and first message, each later message, trailers, each
after its recorded gap) and asks the loop to wake it when the next is due
(``contract.Wake``). A step's frames are made when it is due, so HPACK's header blocks
leave in the order they were encoded, flow control is the window of that moment, and a
stream the client reset is not played on.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.wire import files
from devbox.wire.contract import (
    Miss,
    MockOptions,
    Output,
    RemoteProtocolError,
    Reply,
    Wake,
    timing_factor,
)
from devbox.wire.grpc import codec, store
from devbox.wire.grpc.http2 import Request, ServerConnection

_IDS = itertools.count(1)
# (seconds after the step before it, what to send then)
Step = tuple[float, Callable[[], None]]


@dataclass(slots=True)
class _Talk:
    """A stream answered message by message, as the recorded conversation went."""

    entry: store.Entry
    recorded: list[bytes]  # the recorded request messages' keys
    heard: list[bytes] = field(default_factory=list)  # the keys of what came so far
    sent: int = 0  # response messages sent
    over: bool = False  # the client left the recorded conversation: answered with a miss

    def answered(self) -> list[bytes]:
        return [data for _gap, data in self.entry.messages[: self.sent]]


class _Refused(Exception):
    """A request a gRPC server refuses as it is (broken framing, an encoding it lacks)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class GrpcMockConnection:
    def __init__(self, index: store.GrpcIndex, options: MockOptions) -> None:
        self.index = index
        self.options = options
        self.id = next(_IDS)
        self._h2 = ServerConnection()
        self._factor = timing_factor(options.timing)
        self._redact = files.redactor_of(options) if index.redacted else None
        self._steps: dict[int, deque[Step]] = {}  # per answered stream, still to come
        self._talks: dict[int, _Talk] = {}  # streams answered message by message
        self._whole: set[int] = set()  # streams begun unlike any recorded conversation

    def data_received(self, data: bytes) -> list[Output]:
        try:
            requests = self._h2.receive(data)
        except RemoteProtocolError:
            return [Reply(self._h2.take(), close=True)]
        out: list[Output] = []
        for req in requests:
            self._answer(req, out)
        self._flush(out)
        return out

    def eof_received(self) -> list[Output]:
        return []

    def upstream_data(self, data: bytes) -> list[Output]:
        return []

    def wake(self, token: int) -> list[Output]:
        """Stream ``token``'s next step is due: it and those due right after it."""
        out: list[Output] = []
        steps = self._steps.get(token)
        if steps:
            if self._h2.is_open(token):
                steps.popleft()[1]()
                self._advance(token, out)
            else:  # the client reset it meanwhile (its cancel, its deadline)
                del self._steps[token]
        self._flush(out)
        return out

    # ------------------------------------------------------------ answering

    def _flush(self, out: list[Output]) -> None:
        """What the connection has to send now, as one reply."""
        data = self._h2.take()
        if data:
            out.append(Reply(data))

    def _answer(self, req: Request, out: list[Output]) -> None:
        fields = dict(req.headers)
        path = fields.get(":path", "")
        sid = req.stream_id
        if req.partial:
            if path in self.index.talks and sid not in self._whole:
                self._heard(sid, path, fields, req.body, out)
            return
        self._whole.discard(sid)
        talk = self._talks.pop(sid, None)
        if talk is not None and talk.over:
            return  # answered already: the conversation left the recorded one
        if req.refused is not None:
            # as a gRPC server does: the status at once, then RST_STREAM so the client
            # stops sending what nobody reads
            self._trailers_only(sid, codec.RESOURCE_EXHAUSTED, req.refused, talk)
            self._h2.reset(sid, 0)
            return
        try:
            messages, sizes = self._messages(path, fields, req.body)
        except _Refused as refused:
            self._trailers_only(sid, refused.code, refused.text, talk)
            return
        if talk is not None:
            self._talk_end(sid, path, talk, messages, sizes, out)
            return
        self._play(sid, path, messages, self._recorded(path, messages, sizes), out)

    def _recorded(self, path: str, messages: list[Any], sizes: list[int]) -> store.Entry | None:
        """The recorded answer of a whole request (``sizes``: its messages' lengths on
        the wire), or of one the server answered before it ended."""
        entry = self.index.take(self.index.key(path, messages))
        if entry is None:
            entry = self.index.take_early(path, messages, sizes)
        return entry

    def _play(
        self,
        sid: int,
        path: str,
        messages: list[Any],
        entry: store.Entry | None,
        out: list[Output],
    ) -> None:
        """A whole request's recorded answer played, or a miss."""
        if entry is None:
            code, text, nearest = self.index.explain(path, messages)
            self._flush(out)
            self._trailers_only(sid, code, "devbox: " + text)
            out.append(
                Miss(
                    self._h2.take(),
                    request=store.label(path, messages),
                    explanation=text,
                    nearest=nearest,
                )
            )
            return
        out.append(entry.hit)
        first = entry.latency_s * self._factor if self._factor is not None else 0.0
        msgs = entry.messages
        if entry.reset is not None and not entry.client_ended:
            self._steps[sid] = deque([(first, lambda: self._h2.reset(sid, entry.reset or 0))])
            self._advance(sid, out)
            return
        if entry.client_ended and not msgs:
            return  # nothing had come when the client gave up: its deadline or cancel ends it
        if entry.headers_only or entry.trailers_only:
            block = entry.headers if entry.headers_only else [*entry.headers, *entry.trailers]
            self._steps[sid] = deque([(first, lambda: self._h2.send_trailers_only(sid, block))])
            self._advance(sid, out)
            return

        def head() -> None:
            self._h2.send_headers(sid, entry.headers)
            if msgs:
                self._h2.send_data(sid, msgs[0][1])

        steps: deque[Step] = deque([(first, head)])
        steps.extend(
            (gap, functools.partial(self._h2.send_data, sid, data)) for gap, data in msgs[1:]
        )
        if not entry.client_ended:  # else the client's own cancel or deadline ends it
            delay = entry.trailers_delay_s if msgs else 0.0
            steps.append((delay, lambda: self._h2.send_trailers(sid, entry.trailers)))
        self._steps[sid] = steps
        self._advance(sid, out)

    def _messages(
        self, path: str, fields: dict[str, str], body: bytes
    ) -> tuple[list[Any], list[int]]:
        """The request's messages as stored (decoded, redacted) and their lengths on the
        wire; ``_Refused`` with the status a gRPC server answers a broken one with."""
        try:
            frames, rest = codec.split_messages(body)
        except RemoteProtocolError as exc:
            code = exc.code if isinstance(exc.code, int) else codec.INTERNAL
            raise _Refused(code, str(exc)) from None
        if rest:  # matching the complete messages alone could answer another call
            raise _Refused(codec.INTERNAL, "the request ends inside a message")
        if any(c for c, _ in frames) and fields.get("grpc-encoding", "identity") == "identity":
            # what grpc-core answers; without it such a request would only miss
            raise _Refused(codec.INTERNAL, "Compression bit set but no encoding configured")
        _enc, decode = store.coders(self.index.schema, path, False)
        encoding = fields.get("grpc-encoding")
        try:
            messages: list[Any] = [codec.request_json(c, p, encoding, decode) for c, p in frames]
        except RemoteProtocolError as exc:  # inflates beyond what a gRPC server takes
            code = exc.code if isinstance(exc.code, int) else codec.INTERNAL
            raise _Refused(code, str(exc)) from None
        if self._redact is not None:
            messages = store.redact_object({"request": messages}, self._redact)["request"]
        return messages, [len(p) for _c, p in frames]

    # ------------------------------------------------------------ conversations

    def _heard(
        self, sid: int, path: str, fields: dict[str, str], body: bytes, out: list[Output]
    ) -> None:
        """Messages that came whole on a stream still open, on a path with recorded
        conversations: what the recorded server had sent before the client's next
        message goes now, so a client that waits for each answer is answered."""
        talk = self._talks.get(sid)
        if talk is not None and talk.over:
            return
        try:
            messages, _sizes = self._messages(path, fields, body)
        except _Refused:
            return  # answered when the request ends, as a whole one would be
        keys = self.index.message_keys(messages)
        if talk is None:
            # streams the client reset meanwhile are forgotten
            self._talks = {k: t for k, t in self._talks.items() if self._h2.is_open(k)}
            self._whole = {k for k in self._whole if self._h2.is_open(k)}
            found = self.index.talk(path, keys)
            if found is None:
                self._whole.add(sid)  # no conversation starts so: matched whole at its end
                return
            talk = self._talks[sid] = _Talk(found[1], found[0])
            self._follow(talk, talk.entry)
            out.append(talk.entry.hit)
            self._h2.send_headers(sid, talk.entry.headers)
        else:
            n = len(talk.heard)
            if talk.recorded[n : n + len(keys)] != keys and not self._switch(
                path, talk, talk.heard + keys
            ):
                self._left(sid, path, talk, n, messages, out)
                return
        talk.heard.extend(keys)
        self._say(sid, talk, len(talk.heard))

    def _switch(self, path: str, talk: _Talk, heard: list[bytes], whole: bool = False) -> bool:
        """Another recorded conversation that went as this one has so far, answers sent
        included (two recorded branches after a shared start): followed from here.
        ``whole``: one that ended right there."""
        found = self.index.talk(path, heard, talk.answered())
        if found is None or (whole and len(found[0]) != len(heard)):
            return False
        talk.recorded, entry = found
        self._follow(talk, entry)
        return True

    def _follow(self, talk: _Talk, entry: store.Entry) -> None:
        uses = self.index.talk_uses
        if entry is not talk.entry:
            # (the counts may have been reset since: the edit loop resets between replays)
            uses[id(talk.entry)] = max(0, uses.get(id(talk.entry), 0) - 1)
        talk.entry = entry
        uses[id(entry)] = uses.get(id(entry), 0) + 1

    def _say(self, sid: int, talk: _Talk, heard: int) -> None:
        """The answers the recorded server sent before the client's next message."""
        entry = talk.entry
        until = entry.request_at[heard] if heard < len(entry.request_at) else math.inf
        while talk.sent < len(entry.messages) and entry.response_at[talk.sent] < until:
            self._h2.send_data(sid, entry.messages[talk.sent][1])
            talk.sent += 1

    def _talk_end(
        self,
        sid: int,
        path: str,
        talk: _Talk,
        messages: list[Any],
        sizes: list[int],
        out: list[Output],
    ) -> None:
        """The client half-closed: the conversation's rest and its status. A request that
        is another recorded call whole (a one-question stream, where a conversation
        began with the same question) ends with that call's answer, if what was sent
        already is how it began."""
        keys = self.index.message_keys(messages)
        if keys != talk.recorded and not self._switch(path, talk, keys, whole=True):
            entry = self._recorded(path, messages, sizes)
            if (
                entry is None
                or entry.reset is not None
                or entry.headers_only
                or entry.trailers_only
                or not entry.begins_with(talk.answered())
            ):
                same = 0
                while (
                    same < min(len(keys), len(talk.recorded)) and keys[same] == talk.recorded[same]
                ):
                    same += 1
                self._left(sid, path, talk, same, messages[same:], out)
                return
            self._follow(talk, entry)
        self._say(sid, talk, len(keys))
        if not talk.entry.client_ended:  # else the client's own cancel or deadline ends it
            self._h2.send_trailers(sid, talk.entry.trailers)

    def _left(
        self,
        sid: int,
        path: str,
        talk: _Talk,
        at: int,
        messages: list[Any],
        out: list[Output],
    ) -> None:
        """The client said what the recorded one did not: the call ends with a miss."""
        talk.over = True
        text = f"the conversation left the recorded one at request message {at + 1}"
        self._flush(out)
        self._trailers_only(sid, codec.NOT_FOUND, "devbox: " + text, talk)
        request = store.label(path, messages)
        out.append(Miss(self._h2.take(), request=request, explanation=text))

    def _advance(self, sid: int, out: list[Output]) -> None:
        """Take the stream's steps due now; ask to be woken when the next one is."""
        steps = self._steps[sid]
        while steps and steps[0][0] <= 0:
            steps.popleft()[1]()
        if steps:
            out.append(Wake(steps[0][0], sid))
        else:
            del self._steps[sid]

    def _trailers_only(self, sid: int, code: int, text: str, talk: _Talk | None = None) -> None:
        status = [
            ("grpc-status", str(code)),
            ("grpc-message", codec.encode_grpc_message(text[:1000])),
        ]
        if talk is not None:  # a conversation's headers went already: trailers end it
            self._h2.send_trailers(sid, status)
            return
        headers = [(":status", "200"), ("content-type", "application/grpc"), *status]
        self._h2.send_trailers_only(sid, headers)
