"""The recording worker: a child process that turns captures into redacted recordings.

Theory of operation
-------------------
The proxy's event loop must relay bytes and nothing else: redacting a large JSON
body or serializing an exchange there would stall every other connection. So the
proxy hands each finished exchange, as a compact ``marshal`` frame of raw bytes
(parsed heads as they crossed the wire, capped bodies, timings), down a pipe to this
process, which parses, redacts (``devbox.core.redact``), serializes and appends
(``RecordingSink``). Secrets travel only through memory and a pipe, never a file.

Crash safety: the proxy writes the frame to the pipe *before* it relays the
response's last bytes, so an exchange a client has seen complete is in the pipe
or already on disk. If the proxy process dies (even ``kill -9``), this process
reads the pipe to its end, writes everything, closes the files and exits: it
ignores SIGINT/SIGTERM, which a terminal or a process-group kill sends to both,
and ends only on a ``commit``/``close`` frame or end of input. A full pipe blocks
the proxy: memory stays bounded when the disk is slower than the traffic.

Frames (little-endian u32 length, then ``marshal.dumps(tuple)``):
``("x", source, direction, id, parent, scheme, host, method, target, version,
request_headers, request_body, request_truncated, (status, reason, version, headers) |
None, response_body, response_truncated, started_at, duration_ms, wait_ms | None,
error | None)`` (headers as sent upstream, already parsed by the proxy) and
``("end", commit)``. An intercepted HTTP/1.1 connection the proxy relays verbatim
(``devbox.record.tee``) comes as ``("o", ...)``, ``("d", ...)`` and ``("c", ...)`` frames
of its bytes, which ``devbox.record.streams`` reads into exchanges here. Several frames
go as one ``("batch", (frame, ...))``.
The worker answers on stdout: one ``ready`` line; ``c [[source, method, path, status,
error, duration_ms], ...]`` lines for the exchanges it read itself, at most every
``REPORT_S`` (the live view); then one JSON summary line.
"""

from __future__ import annotations

import gc
import io
import marshal
import os
import select
import signal
import sys
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from devbox.core.model import Direction, Exchange, Request, Response, Timing, parse_query
from devbox.record.capture import split_target
from devbox.record.frames import FRAME
from devbox.record.streams import Streams

if TYPE_CHECKING:
    from devbox.record.sink import RecordingSink

ORIGIN = "devbox record"
REPORT_S = 0.05
NAP_S = 0.002
NAP_BELOW = 64 * 1024

_DIRECTIONS = {d.value: d for d in Direction}
# traffic repeats its query strings; the parsed pairs are immutable, so one parse serves all
_parse_query = lru_cache(maxsize=4096)(parse_query)


def exchange_of(msg: tuple[Any, ...]) -> Exchange:
    (
        _,
        source,
        direction,
        xid,
        parent,
        scheme,
        host,
        method,
        target,
        version,
        req_headers,
        req_body,
        req_trunc,
        resp,
        resp_body,
        resp_trunc,
        started_at,
        duration_ms,
        wait_ms,
        error,
    ) = msg
    path, query = split_target(target)
    # the query as sent is kept, so the target is written back byte for byte
    request = Request(
        method,
        path,
        _parse_query(query) if query else (),
        tuple(req_headers),
        req_body,
        scheme,
        host,
        version,
        query or None,
    )
    response = None
    if resp is not None:
        # (status, reason, version, headers[, trailers]): trailers only where some came
        status, reason, resp_version, resp_headers, *more = resp
        trailers = tuple(more[0]) if more else ()
        response = Response(status, tuple(resp_headers), resp_body, reason, resp_version, trailers)
    return Exchange(
        xid,
        _DIRECTIONS[direction],
        source,
        request,
        response,
        Timing(started_at, duration_ms, wait_ms),
        parent,
        error,
        req_trunc,
        resp_trunc,
        ORIGIN,
    )


class _Taker:
    """What each message from the proxy does: a capture is written, an intercepted
    connection's bytes are read (``Streams``), ``end`` says whether to commit."""

    def __init__(self, sink: RecordingSink, streams: Streams) -> None:
        self.sink = sink
        self.streams = streams
        self.failures: list[str] = []
        self.live: list[list[Any]] = []  # what the live view has not heard of yet
        self.commit: bool | None = None  # set by "end"

    def take(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "x":
            self.write(msg)
            return
        if kind == "end":
            self.commit = bool(msg[1])
            return
        try:
            captures = self.streams.take(msg)
        except Exception as exc:  # a reading bug loses that connection, not the rest
            self.streams.open.pop(msg[1], None)
            self._failed(f"connection {msg[1]}: {type(exc).__name__}: {exc}")
            return
        for capture in captures:
            self.write(capture)
            self.live.append(_live_line(capture))

    def write(self, msg: tuple[Any, ...]) -> None:
        try:
            self.sink.write(exchange_of(msg))
        except Exception as exc:  # one bad capture must not lose the others
            self._failed(f"{type(exc).__name__}: {exc}")

    def flush(self) -> None:
        """What was read so far, to disk (the sink defers: one write per file per read)."""
        try:
            self.sink.flush()
        except OSError as exc:
            self._failed(f"cannot write: {exc.strerror or exc}")

    def _failed(self, why: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(why)


def _readable(inp: BinaryIO, timeout: float) -> bool:
    """Input comes within ``timeout`` seconds (a file that is not a pipe: at once)."""
    try:
        return bool(select.select([inp], [], [], timeout)[0])
    except (OSError, ValueError, io.UnsupportedOperation):
        return True


def _report(out: BinaryIO, live: list[list[Any]]) -> bool:
    """False once the proxy can no longer hear (it died: its end of stdout is closed)."""
    try:
        out.write(b"c " + orjson.dumps(live) + b"\n")
        out.flush()
    except OSError:
        return False
    return True


def _live_line(c: tuple[Any, ...]) -> list[Any]:
    """What the live view shows of an exchange read here (``proxy_core.Captured``)."""
    resp = c[13]
    return [c[1], c[7], split_target(c[8])[0], resp[0] if resp else None, c[19], c[17]]


def run(config: dict[str, Any], inp: BinaryIO, out: BinaryIO) -> int:
    from devbox.core.profile import load_profile
    from devbox.core.redact import Redactor
    from devbox.record.sink import RecordingSink

    profile = load_profile(config["profile"])
    redactor = Redactor(profile.redact)
    sink = RecordingSink(
        profile,
        redactor,
        append=config["append"],
        fsync=config["fsync"],
        stamp=config["stamp"],
        sources={k: Direction(v) for k, v in config["sources"].items()},
        defer=True,
    )
    out.write(b"ready\n")
    out.flush()
    taker = _Taker(
        sink, Streams(config["stamp"], config.get("max_body", 1 << 20), config.get("correlation"))
    )
    buf = b""
    reported = time.monotonic()
    heard = True  # the proxy reads our reports (False: it is gone, the pipe is drained)
    while taker.commit is None:
        # the live view hears of what was read in one line every REPORT_S, or sooner
        # when the input goes quiet: a line per read would wake the proxy's reader
        # thread (and take the GIL from its event loop) thousands of times a second
        if taker.live:
            left = REPORT_S - (time.monotonic() - reported)
            if not heard:
                taker.live = []
            elif left <= 0 or not _readable(inp, left):
                # a proxy killed (-9) cannot hear: what it handed over is written all
                # the same, a broken pipe here must not end the draining
                heard = _report(out, taker.live)
                taker.live, reported = [], time.monotonic()
        chunk = inp.read1(1 << 20)  # type: ignore[attr-defined]
        if not chunk:
            break
        buf = buf + chunk if buf else chunk
        pos = 0
        while len(buf) - pos >= FRAME.size and taker.commit is None:
            (size,) = FRAME.unpack_from(buf, pos)
            if len(buf) - pos - FRAME.size < size:
                break
            msg = marshal.loads(buf[pos + FRAME.size : pos + FRAME.size + size])
            pos += FRAME.size + size
            if msg[0] == "batch":
                for m in msg[1]:
                    taker.take(m)
            else:
                taker.take(msg)
        buf = buf[pos:]
        taker.flush()
        if len(chunk) < NAP_BELOW and taker.commit is None:
            # keeping up: let the next frames gather before reading again. Every read
            # from an empty pipe puts this process to sleep, and each of the proxy's
            # writes would then have to wake it, which costs the proxy's loop more than
            # the write (a few thousand wake-ups a second under load)
            time.sleep(NAP_S)
    if taker.live and heard:
        heard = _report(out, taker.live)
    streams = taker.streams
    for capture in streams.end():
        taker.write(capture)
    taker.flush()
    failures = taker.failures
    commit = bool(taker.commit)
    if commit:
        result = sink.commit()
    else:
        sink.close()
        from devbox.record.sink import CommitResult

        result = CommitResult()
    summary = {
        "sources": [
            {
                "source": s.source,
                "direction": s.direction.value,
                "exchanges": s.exchanges,
                "errors": s.errors,
                "truncated": s.truncated,
                "bytes": s.bytes_written,
                "dropped": s.dropped,
                "path": str(s.path) if s.path else None,
            }
            for s in sink.stats()
        ],
        "redactions": dict(redactor.stats),
        "committed": result.committed,
        "files": [str(f) for f in result.files],
        "backup": str(result.backup) if result.backup else None,
        "kept": list(result.kept),
        "failures": failures,
        "linked": streams.correlation.linked,
        "unlinked": streams.correlation.ambiguous,
        "unread": streams.unread[:20],
        "unread_count": len(streams.unread),
    }
    if heard:
        _report_summary(out, summary)
    return 0


def _report_summary(out: BinaryIO, summary: dict[str, Any]) -> None:
    try:
        out.write(orjson.dumps(summary) + b"\n")
        out.flush()
    except OSError:
        pass  # the proxy died: the files are closed, nobody asks for the summary


def main() -> int:
    # a terminal's Ctrl-C and a process-group kill reach us too: the proxy decides when
    # recording ends; we end with its "end" frame or when its pipe closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # every exchange makes short-lived objects freed by reference counting; collecting
    # generation 0 every 700 allocations costs ~6% for nothing
    gc.set_threshold(100_000, 50, 100)
    config = orjson.loads(sys.argv[1])
    with os.fdopen(0, "rb", buffering=1 << 20) as inp:
        return run(config, inp, sys.stdout.buffer)


if __name__ == "__main__":
    raise SystemExit(main())
