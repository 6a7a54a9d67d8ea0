"""Values a client makes up afresh on every run, bound to the recording's so that the calls
carrying them still find their recordings (the Redis and Postgres mocks).

redis-py's ``Lock`` takes a lock with ``SET name <uuid1 hex> NX PX ms`` and frees it with
``EVALSHA <sha> 1 name <that token>``; a session store writes ``session:<uuid4>``; an ORM
inserts a row whose key is a ``uuid4`` made by the client, then reads it back by that key.
The value is new on each run, so the exact match key never equals the recording's and
every such call missed: the service's lock failed, its inserts were refused.

Only a *write* may introduce a value (``Bindings.match``): a call that misses, that the
mock's kind counts as a write, and that equals a recorded write but for its generated
values (a UUID, 24 or more hexadecimal digits mixing letters and digits, an opaque
random token, a clock reading to a fraction of a second, or the redaction placeholder of
a token, a JWT or a value redacted by its name) binds each of its values to the
recorded one at the same place, if neither is bound to another yet. The recorded writes
are taken in their order, each once, so a second lock or insert binds to the second one
recorded. From then on every call of this run has its bound values replaced by the
recorded ones before it is matched, exactly (``translate``): the release, the read by
id. A read never binds: asked for a customer by an id that no write of this run made, a
mock misses rather than hand back another customer's row. Bindings start again with the
mock's sequences (``reset``). Pure.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Reversible, Sequence
from typing import TypeVar

from devbox.core import serialized
from devbox.core.redact_text import PLACEHOLDER_RE
from devbox.core.secret_formats import looks_random

# a date and a time to a fraction of a second (see ``_RUNS``); express-session's
# cookie's ``originalMaxAge``, the milliseconds left when the session was saved: its
# max age less a millisecond now and then (every store of the usual Express sessions,
# connect-pg-simple, connect-redis, writes it; one run in ten missed on it); and a Unix
# time, in seconds (a fraction allowed) or milliseconds, under a JSON key that says it is
# one (``_at``, ``At``: Sidekiq's jobs carry ``"created_at":1796708648.396183``, and every
# enqueue missed). A bare number is not one: it may be an id
_CLOCK_READING = (
    rb"(?:[0-9]{4}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]{3,9}"
    rb"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
    rb'|"originalMaxAge":[0-9]{1,15}'
    rb'|"[A-Za-z_]{0,40}(?:_at|At)":[0-9]{10}(?:[0-9]{3})?(?:\.[0-9]{1,9})?)'
)
_CLOCK = re.compile(_CLOCK_READING)
# a password hash: Django's (``pbkdf2_sha256$<n>$<salt>$<hash>``, ``argon2$…``,
# ``bcrypt_sha256$…``), crypt's (``$2b$12$…``, PHP's ``$2y$``, ``$argon2id$…``) and
# passlib's (``$pbkdf2-sha256$…``, ``$bcrypt-sha256$v=2,…``, ``$scrypt$…``)
_PASSWORD_HASH = (
    rb"(?:pbkdf2_sha(?:1|256)|argon2|bcrypt(?:_sha256)?|scrypt)\$[!-&(-~]{20,}"
    rb"|\$(?:2[abxy]|argon2id|argon2i|5|6|pbkdf2(?:-sha(?:1|256|512))?|bcrypt-sha256|scrypt)"
    rb"\$[!-&(-~]{20,}"
)
_HASHED = re.compile(_PASSWORD_HASH)


def is_password_hash(value: str) -> bool:
    """A whole value that is a password hash: redacted as a secret wherever it is (a
    bcrypt hash under ``SET user:42:pw`` went to disk), a generated value once redacted."""
    return value.startswith(("$", "pbkdf2", "argon2", "bcrypt", "scrypt")) and bool(
        _HASHED.fullmatch(value.encode("utf-8", "surrogatepass"))
    )


_RUNS = re.compile(
    rb"(?<![0-9A-Za-z])(?:"
    rb"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"  # a UUID
    # an id's hex (a uuid4's, an ObjectId): letters and digits mixed, so no decimal
    # number (an amount, a bigint id) and few words are taken for one
    rb"|(?=(?:[0-9]*[a-fA-F]){3})(?=(?:[a-fA-F]*[0-9]){3})[0-9a-fA-F]{24,}"
    # a ULID (redis-om's keys): a time, then randomness, in Crockford's base 32
    rb"|[0-7](?=(?:[A-Z]*[0-9]){3})(?=(?:[0-9]*[A-Z]){3})[0-9A-HJKMNP-TV-Z]{25}"
    # a session key as Django makes them: 32 lower-case letters and digits, mixed
    rb"|(?=(?:[a-z]*[0-9]){4})(?=(?:[0-9]*[a-z]){4})[0-9a-z]{32}"
    # a value Django signed with the time (``signing.dumps``: a session's data): its
    # JSON payload (an object, ``{}`` for an empty session, or compressed), the second it
    # was signed in base 62, an HMAC
    rb"|(?:eyJ|e30|\.eJ)[A-Za-z0-9_\-]*:[0-9A-Za-z]{6}:[A-Za-z0-9_\-]{43}"
    # a password hash with its fresh salt (``_PASSWORD_HASH``)
    rb"|" + _PASSWORD_HASH +
    # PHP's session id as Debian's php.ini makes it (26 characters of 0-9a-v)
    rb"|(?=(?:[a-v]*[0-9]){3})(?=(?:[0-9]*[a-v]){3})[0-9a-v]{26}"
    # a clock reading (``datetime.now()``, ``new Date().toISOString()``) written into a
    # row or a message: a date and a time to a fraction of a second. A date alone, or a
    # time to the second, may be a value someone chose (a due date, a birthday): data
    rb"|" + _CLOCK_READING +
    # the placeholder of an opaque random token (its hash is the token's), of a value
    # redacted by its name (a password hash: a fresh salt each run), or of a JWT's claims
    # and signature (signed afresh at each login: its iat, exp and jti change). Not that
    # of an e-mail or a card: those are data, and another one is another customer
    rb"|<redacted:(?:token|secret|jwt|jwt-sig):[0-9a-f]{6,}>"
    rb")(?![0-9A-Za-z])"
)
# Django's cache session keys: the key glued to its prefix
_GLUED = re.compile(
    rb"(?:(?<=django\.contrib\.sessions\.cache)|(?<=django\.contrib\.sessions\.cached_db))"
    rb"[0-9a-z]{32}(?![0-9A-Za-z])"
)
# an opaque random token within a value (``session:<token_urlsafe>``), whole or between
# separators, as ``looks_random`` tells one
_TOKENS = re.compile(rb"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{20,512}(?![A-Za-z0-9_\-])")


def _spans(value: bytes) -> list[tuple[int, int]]:
    """Where the generated values of ``value`` are, in order."""
    if len(value) < 20 or value.startswith(b"\\x"):  # (Postgres's form of binary values)
        return []
    # base64 that encodes text (celery's task arguments, a JSON body stored encoded) is
    # data: another job's arguments must miss, not bind to the recorded job's. It counts
    # as one generated value only when its text holds some, and then shapes as that text
    # does (``_blank``): the same task for a fresh order id binds, another task misses
    encoded = list(_encoded(value))
    found = [m.span() for m in _RUNS.finditer(value)]
    found = [span for span in found if not _within(span, encoded)]
    found += [(a, b) for a, b, holds in encoded if holds and not _within((a, b), found)]
    if b"sessions.cache" in value:
        found += [m.span() for m in _GLUED.finditer(value)]
    if value.isascii() and (b"+" in value or b"/" in value or b"=" in value):
        # standard base64 of random bytes (``randomBytes(24).toString('base64')``, a
        # session id): one token, not the pieces between its ``+`` and ``/``
        found += [
            m.span()
            for m in _STD_B64.finditer(value)
            if not _within(m.span(), found) and looks_random(m.group(0).decode("ascii"))
        ]
    taken = sorted([*found, *((a, b) for a, b, _ in encoded)])
    starts = [a for a, _ in taken]
    reach = list(itertools.accumulate((b for _, b in taken), max))  # furthest end so far
    for m in _TOKENS.finditer(value) if value.isascii() else ():
        a, b = m.span()
        i = bisect.bisect_left(starts, b)  # the intervals starting before this token ends
        if i and reach[i - 1] > a:
            continue  # one of them overlaps it
        if looks_random(m.group(0).decode("ascii")):
            found.append((a, b))
    return sorted(found)


def _within(span: tuple[int, int], spans: Sequence[tuple[int, ...]]) -> bool:
    a, b = span
    return any(x <= a and b <= y for x, y, *_ in spans)


# a run of standard base64 with a ``+`` or a ``/`` in it, or padded
_STD_B64 = re.compile(
    rb"(?<![A-Za-z0-9+/=_\-])(?:(?=[A-Za-z0-9]*[+/])[A-Za-z0-9+/]{20,512}={0,2}"
    rb"|[A-Za-z0-9]{20,512}={1,2})(?![A-Za-z0-9+/=_\-])"
)
# a run of base64 (either alphabet), whole
_B64_RUN = re.compile(rb"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{24,}={0,2}(?![A-Za-z0-9+/_\-=])")
_UNREADABLE = bytes(c for c in range(256) if not (32 <= c < 127 or c in (9, 10, 13)))


def _encoded(value: bytes) -> Iterator[tuple[int, int, bool]]:
    """(start, end, whether its text holds generated values) of each base64 run of
    ``value`` that encodes readable text."""
    if not value.isascii():
        return
    for m in _B64_RUN.finditer(value):
        text = _decoded_text(m.group(0))
        if text is not None:
            yield m.start(), m.end(), bool(_spans(text))


def _decoded_text(run: bytes) -> bytes | None:
    """``run`` decoded when it is base64 of readable text, else None."""
    if len(run) < 24:
        return None
    body = run.rstrip(b"=")
    body += b"=" * (-len(body) % 4)
    alt = b"-_" if b"-" in body or b"_" in body else None
    try:
        raw = base64.b64decode(body, altchars=alt, validate=True)
    except ValueError:
        return None
    if len(raw.translate(None, _UNREADABLE)) < 0.95 * len(raw):
        return None
    return raw


def runs(value: bytes) -> list[bytes]:
    """The generated values in ``value``."""
    return [value[a:b] for a, b in _spans(value)]


def _splice(value: bytes, spans: list[tuple[int, int]], put: Callable[[bytes], bytes]) -> bytes:
    """``value`` with each span's bytes replaced by ``put`` of them."""
    out, at = [], 0
    for a, b in spans:
        out += [value[at:a], put(value[a:b])]
        at = b
    out.append(value[at:])
    return b"".join(out)


def _blank(run: bytes) -> bytes:
    # encoded text stands for its shape: equal but for its generated values, or not
    text = _decoded_text(run) if len(run) >= 24 else None
    return b"\x00" if text is None else b"\x00" + shape(text) + b"\x00"


def shape(value: bytes) -> bytes:
    """``value`` with its generated values blanked: two values of one shape may bind."""
    spans = _spans(value)
    return _splice(value, spans, _blank) if spans else value


def _pairs(live: bytes, recorded: bytes) -> list[tuple[bytes, bytes]] | None:
    """The generated values of ``live`` beside ``recorded``'s at the same places, when the
    two are equal but for them; else None."""
    if live == recorded:  # its values, if any, stand for themselves
        return [(v, v) for v in runs(live)]
    mine, theirs = _spans(live), _spans(recorded)
    if not mine or len(mine) != len(theirs):
        return None
    if _splice(live, mine, _blank) != _splice(recorded, theirs, _blank):
        return None
    return [(live[a:b], recorded[c:d]) for (a, b), (c, d) in zip(mine, theirs, strict=True)]


def _replaced(value: bytes, table: dict[bytes, bytes], words: dict[bytes, bytes]) -> bytes:
    """``value`` with each generated value found in ``table`` (by ``_value``) replaced by
    its entry, as it was spelled when bound (``words``), or a uuid spelled as the one it
    replaces when that is spelled otherwise."""
    if not table or len(value) < 20:
        return value
    spans = _spans(value)
    if not spans:
        return value

    def put(run: bytes) -> bytes:
        key = _value(run)
        found = table.get(key)
        if found is None:
            return run
        other = words.get(found, found)
        # spelled as when bound, the other as it was then; else as this one is spelled
        return other if words.get(key, key) == run else _spelled(other, run)

    return _splice(value, spans, put)


# a uuid, dashed or not: one value however it is spelled (psycopg 3 sends a uuid[] as
# dash-less hex, one uuid parameter in binary, read back dashed)
_A_UUID = re.compile(
    rb"[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}"
)


def _is_uuid(run: bytes) -> bool:
    return len(run) in (32, 36) and _A_UUID.fullmatch(run) is not None


def _value(run: bytes) -> bytes:
    """What bindings are keyed by: a uuid's 32 hex digits in lower case, else ``run``."""
    return run.replace(b"-", b"").lower() if _is_uuid(run) else run


def _spelled(value: bytes, like: bytes) -> bytes:
    """``value`` (a binding's) spelled as ``like`` is, when both are uuids: dashed or not,
    upper case or not."""
    if not (_is_uuid(value) and _is_uuid(like)):
        return value
    value = _value(value)
    if len(like) == 36:
        value = b"-".join((value[:8], value[8:12], value[12:16], value[16:20], value[20:]))
    return value.upper() if like.upper() == like and like.lower() != like else value


def _differing(live: Sequence[bytes], recorded: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The generated values of ``live`` that differ from ``recorded``'s at the same places
    (live, recorded), when the two are equal but for generated values; else []."""
    if len(live) != len(recorded):
        return []
    out: list[tuple[bytes, bytes]] = []
    for a, b in zip(live, recorded, strict=True):
        pairs = _pairs(a, b)
        if pairs is None:
            return []
        out += [(lv, rv) for lv, rv in pairs if lv != rv]
    return out


class Bindings:
    """Live generated values -> the recorded ones they stand for, in one run."""

    __slots__ = ("live", "raw", "taken", "words")

    def __init__(self) -> None:
        # keyed and valued by ``_value`` (a uuid by its 32 hex digits, whatever spelling)
        self.live: dict[bytes, bytes] = {}
        self.taken: dict[bytes, bytes] = {}  # recorded -> live
        self.words: dict[bytes, bytes] = {}  # a uuid's value -> its spelling when bound
        self.raw: dict[bytes, bytes] = {}  # a live value's placeholder -> the value (learn)

    def reset(self) -> None:
        """A new run: nothing bound, nothing learnt (a run that never sent a token gets
        no value of an earlier run's back)."""
        self.live.clear()
        self.taken.clear()
        self.words.clear()
        self.raw.clear()

    @property
    def gives_back(self) -> bool:
        """Whether ``back`` may change anything."""
        return bool(self.taken or self.raw)

    def learn(self, raw: bytes, redacted: bytes) -> None:
        """A live value (``raw``) and what the mock made of it to look it up
        (``redacted``): each placeholder in it stands for the part of ``raw`` it replaced.
        A reply that holds the placeholder gives the client its own value back (a token
        it stored, read back), not the placeholder, which no client can use."""
        if len(self.raw) >= _LEARNED:
            self.raw.clear()
        self.raw.update(_unredacted(raw, redacted))

    def translate(self, value: bytes) -> bytes:
        """``value`` with each bound value replaced by its recorded one."""
        return _replaced(value, self.live, self.words)

    def back(self, value: bytes) -> bytes:
        """``value`` (a recorded reply's) with each recorded value bound in this run given
        back as its live one: a lock's token read back is the client's own; and each
        placeholder of a live value in it as that value (``learn``)."""
        if serialized.may_be(value):
            # a PHP or Marshal value: each string given back, its length made right
            # (one serialized inside another's string, as Laravel's cache keeps a session)
            whole = serialized.mapped(value, lambda _name, part: self.back(part))
            if whole is not None:
                return whole
        return self._back(value)

    def _back(self, value: bytes) -> bytes:
        out = _replaced(value, self.taken, self.words)
        if self.raw and b"<redacted:" in out:
            out = _PLACEHOLDER.sub(lambda m: self.raw.get(m.group(0), m.group(0)), out)
        return out

    def as_of_now(self, live: Sequence[bytes], recorded: Sequence[bytes]) -> bool:
        """Whether a read (``live``, bound values translated) equals ``recorded`` but for
        clock readings: the same question asked "as of now" (a session not expired, rows
        published before now). Its recorded answer is the answer; nothing is bound, and
        any other value that differs (an id no write made) still misses."""
        pairs = _differing(live, recorded)
        return bool(pairs) and all(_CLOCK.fullmatch(a) and _CLOCK.fullmatch(b) for a, b in pairs)

    def fresh(self, live: Sequence[bytes], recorded: Sequence[bytes]) -> bool:
        """Whether ``live`` equals ``recorded`` but for values of its own that nothing in
        this run bound (values it made up just now: a new key it checks is free), and
        values bound to the recorded ones there."""
        pairs = _differing(live, recorded)
        return bool(pairs) and all(
            self.live.get(_value(lv), _value(rv)) == _value(rv) for lv, rv in pairs
        )

    def match(self, live: Sequence[bytes], recorded: Sequence[bytes]) -> bool:
        """Whether ``live`` (a write's arguments) equals ``recorded`` but for generated
        values that can be bound to the recorded ones, consistently with those bound
        already; if so they are bound."""
        if len(live) != len(recorded):
            return False
        found: dict[bytes, bytes] = {}
        spellings: list[tuple[bytes, bytes]] = []
        clocks = False  # clock readings differ
        for a, b in zip(live, recorded, strict=True):
            pairs = _pairs(a, b)
            if pairs is None:
                return False
            for lv, rv in pairs:
                if _CLOCK.fullmatch(lv) and _CLOCK.fullmatch(rv):
                    # a reading stands for any other and binds nothing: two writes in one
                    # millisecond share one (a fast replay), two recorded ones did not,
                    # or the other way round, and one-to-one binding refused the second
                    clocks = clocks or lv != rv
                    continue
                if found.setdefault(_value(lv), _value(rv)) != _value(rv):
                    return False
            spellings += pairs
        if not clocks and all(lv == rv for lv, rv in found.items()):
            return False  # nothing to bind: equal, an exact match's business
        for lv, rv in found.items():
            if self.live.get(lv, rv) != rv:
                return False
            # a recorded value sent as it is (a reply handed it out: a job id a worker
            # popped) stands for itself and binds nothing: bound, it kept the value's
            # own live counterpart (the client that made the job) from binding to it
            if lv != rv and self.taken.get(rv, lv) != lv:
                return False
        for lv, rv in found.items():
            if lv != rv:
                self.live[lv] = rv
                self.taken[rv] = lv
        for word in (w for pair in spellings for w in pair if _is_uuid(w)):
            self.words.setdefault(_value(word), word)  # a uuid's spelling when bound
        return True


_LEARNED = 65536
_PLACEHOLDER = re.compile(PLACEHOLDER_RE.pattern.encode("ascii"))  # redaction's, in bytes


def _unredacted(raw: bytes, redacted: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(placeholder, the part of ``raw`` it replaced) for each placeholder of ``redacted``,
    where the text around them fixes that part; none where it does not (two placeholders
    side by side)."""
    if serialized.may_be(raw):
        # a PHP or Marshal value: its strings side by side (the lengths before each
        # differ between the two, so the text around a placeholder does not fix it)
        ours, theirs = serialized.strings(raw), serialized.strings(redacted)
        if ours is not None and theirs is not None and len(ours) == len(theirs):
            for part, red in zip(ours, theirs, strict=True):
                if part != red:
                    yield from _unredacted(part, red)
            return
    parts = _PLACEHOLDER.split(redacted)
    found = _PLACEHOLDER.findall(redacted)
    if not found or not raw.startswith(parts[0]) or not raw.endswith(parts[-1]):
        return
    pos, stop = len(parts[0]), len(raw) - len(parts[-1])
    for i, placeholder in enumerate(found):
        after = parts[i + 1]
        end = stop if i == len(found) - 1 else raw.find(after, pos) if after else -1
        if end < pos or end > stop:
            return
        yield placeholder, raw[pos:end]
        pos = end + len(after)


K = TypeVar("K")


def standing_read(
    recorded: Reversible[K], taken: Callable[[K], bool], stands_for: Callable[[K], bool]
) -> K | None:
    """Which recorded read (``recorded``, in recorded order) a live read that binds
    nothing stands for (``Bindings.as_of_now``, ``Bindings.fresh``): each once in order,
    those ``taken`` passed over without a look, then the last again once all were taken,
    so the nth such read of a run gets the nth recorded one. None if none stands for it."""
    found = next((r for r in recorded if not taken(r) and stands_for(r)), None)
    if found is None:
        found = next((r for r in reversed(recorded) if stands_for(r)), None)
    return found


class Written:
    """The generated values a recording wrote. A recorded read that found nothing for
    values the recording then wrote was its client checking them free (a new session key
    before its ``INSERT`` or ``SET``): the mocks answer a read of a fresh value as that
    read was answered (``Bindings.fresh``), and only then."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: set[bytes] = set()

    def add(self, values: Iterable[bytes]) -> None:
        """A recorded write's values."""
        self.runs.update(run for v in values for run in runs(v))

    def holds(self, values: Iterable[bytes]) -> bool:
        """Whether ``values`` (a recorded read's) hold generated values, all written."""
        found = [run for v in values for run in runs(v)]
        return bool(found) and all(run in self.runs for run in found)
