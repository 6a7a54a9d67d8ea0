"""The ParameterStatus set a mock connection's start-up gets, from the recorded ones.

A server reports its session settings (``TimeZone``, ``DateStyle``...) once start-up is
done, and what it reports depends on what the client asked for: libpq's ``options``
(``-c TimeZone=UTC``, ``--datestyle=SQL``), any other start-up key (asyncpg's
``server_settings``, ``application_name``), and the role's and database's own defaults
(``ALTER ROLE/DATABASE ... SET``). So the mock answers with what the server told a
recorded connection that started up the same way:

1. a recorded connection with the same user, database and settings (``options`` read
   as the settings it sets, so ``-c timezone=UTC`` and ``--TimeZone=UTC`` are one):
   its ParameterStatus values, in the order the server sent them;
2. otherwise the nearest one (same database first, then same user, then the most
   settings in common; the latest on a tie), with each setting the client asked for
   reported as the server reported that value to another recorded connection (it
   writes ``iso, dmy`` as ``ISO, DMY``), else as the client wrote it; and each setting
   that connection asked for and this client did not, as a connection that did not
   ask for it got it (the server's default; when none did, as that connection got it);
3. no recorded connection (or none that kept its ParameterStatus): devbox's defaults
   with the client's settings over them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from devbox.wire.postgres import messages as m

# start-up keys that are not settings (``_pq_.``: protocol options)
_NOT_SETTINGS = frozenset({"user", "database", "options", "replication"})
# what a PostgreSQL 15 server reports (GUC_REPORT): a client's setting of another
# name (``search_path``) changes no ParameterStatus
_REPORTED = (
    *m.DEFAULT_SERVER,
    "application_name",
    "default_transaction_read_only",
    "in_hot_standby",
    "session_authorization",
)

Settings = tuple[tuple[str, str], ...]

# The server's names of the client encodings (``pg_enc2name_tbl``) and the other names it
# takes for them (``pg_encname_tbl``), each as the server compares names: lower case, no
# character but letters and digits (``clean_encoding_name``). So asyncpg's quoted
# ``'utf-8'``, libpq's ``utf8`` and ``UTF8`` are one setting, which the server reports as
# ``UTF8``.
_ENCODINGS = (
    "SQL_ASCII EUC_JP EUC_CN EUC_KR EUC_TW EUC_JIS_2004 UTF8 MULE_INTERNAL LATIN1 LATIN2 "
    "LATIN3 LATIN4 LATIN5 LATIN6 LATIN7 LATIN8 LATIN9 LATIN10 WIN1256 WIN1258 WIN866 "
    "WIN874 KOI8R WIN1251 WIN1252 ISO_8859_5 ISO_8859_6 ISO_8859_7 ISO_8859_8 WIN1250 "
    "WIN1253 WIN1254 WIN1255 WIN1257 KOI8U SJIS BIG5 GBK UHC GB18030 JOHAB SHIFT_JIS_2004"
).split()
_ALIASES = {
    "unicode": "UTF8",
    "koi8": "KOI8R",
    "alt": "WIN866",
    "win": "WIN1251",
    "mskanji": "SJIS",
    "shiftjis": "SJIS",
    "tcvn": "WIN1258",
    "tcvn5712": "WIN1258",
    "vscii": "WIN1258",
    "abc": "WIN1258",
    **{f"iso8859{n}": f"LATIN{i}" for i, n in enumerate((1, 2, 3, 4, 9, 10, 13, 14, 15, 16), 1)},
    **{f"windows{n}": f"WIN{n}" for n in (866, 874, *range(1250, 1259))},
}


def _clean(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())


_ENCODING_NAMES = {**{_clean(e): e for e in _ENCODINGS}, **_ALIASES}


def encoding_name(value: str) -> str:
    """A ``client_encoding`` as the server names it (``'utf-8'`` -> ``UTF8``); a name it
    does not know (it refuses the connection) upper-cased."""
    return _ENCODING_NAMES.get(_clean(value), value.upper())


def split_options(options: str) -> list[str]:
    """libpq's ``options`` as the server splits it: on spaces, a backslash escaping the
    next character (``-c search_path=a\\ b``)."""
    words: list[str] = []
    word: list[str] = []
    escaped = started = False
    for ch in options:
        if escaped:
            word.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = started = True
        elif ch.isspace():
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(ch)
            started = True
    if started:
        words.append("".join(word))
    return words


def settings(startup: Mapping[str, str]) -> dict[str, str]:
    """The settings a start-up packet asks for: lower-cased name -> value. A start-up
    key of its own wins over the same name in ``options``, as the server applies them."""
    out: dict[str, str] = {}
    words = split_options(startup.get("options", ""))
    i = 0
    while i < len(words):
        word = words[i]
        pair = ""
        if word == "-c" and i + 1 < len(words):
            pair, i = words[i + 1], i + 1
        elif word.startswith("--"):
            pair = word[2:]
        elif word.startswith("-c"):
            pair = word[2:]
        i += 1
        name, eq, value = pair.partition("=")
        if eq and name:
            # the server reads ``--name`` with dashes as underscores (ParseLongOption)
            out[name.replace("-", "_").lower()] = value
    for key, value in startup.items():
        if key not in _NOT_SETTINGS and not key.startswith("_pq_."):
            out[key.lower()] = value
    if "client_encoding" in out:  # one setting however it is spelled, as on the server
        out["client_encoding"] = encoding_name(out["client_encoding"])
    return out


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded connection as start-up matching reads it."""

    user: str
    database: str
    settings: Settings  # sorted (name, value): what it asked for
    others: Settings  # sorted (key, value) of start-up keys that are not settings
    # the ParameterStatus values the server sent, in its order; empty: not recorded
    server: tuple[tuple[str, str], ...]
    # recordings made before start-up keys were kept: its settings are unknown
    known: bool

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Recorded:
        raw = obj.get("startup")
        startup = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        server = obj.get("server")
        user = str(obj.get("user") or "")
        return cls(
            user,
            str(obj.get("database") or user),
            tuple(sorted(settings(startup).items())),
            _others(startup),
            tuple((str(k), str(v)) for k, v in server.items()) if isinstance(server, dict) else (),
            isinstance(raw, dict),
        )


def _others(startup: Mapping[str, str]) -> Settings:
    return tuple(sorted((k, v) for k, v in startup.items() if k == "replication"))


def client_key(startup: Mapping[str, str], redact: Callable[[str, str], str]) -> Any:
    """What a client's start-up is matched by: its user, database (libpq's default, the
    user), settings and other keys, each value redacted as the recorder stores it."""
    user = startup.get("user", "")
    stored = {k: redact(k, v) for k, v in startup.items() if k not in ("user", "database")}
    return (
        user,
        startup.get("database") or user,
        tuple(sorted(settings(stored).items())),
        _others(stored),
    )


def parameter_status(
    recorded: Iterable[Recorded], startup: Mapping[str, str], key: Any
) -> dict[str, str]:
    """The ParameterStatus values (name -> value, in the order to send them) for a
    client whose start-up is ``startup`` (``key``: its ``client_key``)."""
    user, database, wanted, others = key
    candidates = [r for r in recorded if r.server]
    exact = [
        r
        for r in candidates
        if r.known
        and (r.user, r.database, r.settings, r.others) == (user, database, wanted, others)
    ]
    if exact:  # the server's own answer to this very start-up
        server = dict(exact[-1].server)
        _client_side(server, startup)
        return server
    asked: dict[str, str] = dict(wanted)
    written = settings(startup)  # as the client wrote them (``wanted`` is redacted)
    # nearest first; the latest recorded on a tie (``sorted`` is stable, so reversed)
    ranked = sorted(
        reversed(candidates),
        key=lambda r: (
            r.database != database,
            r.user != user,
            -len(set(r.settings) & set(wanted)),
            len(set(r.settings) ^ set(wanted)),
        ),
    )
    server = dict(ranked[0].server) if ranked else dict(m.DEFAULT_SERVER)
    for reported in m.DEFAULT_SERVER:
        server.setdefault(reported, m.DEFAULT_SERVER[reported])
    names = {n.lower(): n for n in (*_REPORTED, *server)}
    base = dict(ranked[0].settings) if ranked else {}
    for lowered in {*asked, *base}:
        name = names.get(lowered)
        if name is None:
            continue  # not reported: no ParameterStatus says it
        if lowered in asked:
            value = str(asked[lowered])
            server[name] = _as_reported(ranked, lowered, name, value, written.get(lowered, value))
        else:
            default = _default(ranked, lowered, name)
            if default is not None:
                server[name] = default
    _client_side(server, startup)
    return server


def _as_reported(ranked: list[Recorded], lowered: str, name: str, value: str, raw: str) -> str:
    """Setting ``name`` (``value`` as stored, ``raw`` as the client wrote it) as the
    server reported it to a recorded connection that asked for the same, else as the
    client wrote it (an encoding by the server's name for it: ``encoding_name``)."""
    for r in ranked:
        if dict(r.settings).get(lowered) == value:
            found = dict(r.server).get(name)
            if found is not None:
                return found
    if lowered == "client_encoding":
        return encoding_name(raw)
    return raw


def _default(ranked: list[Recorded], lowered: str, name: str) -> str | None:
    """What the server reports for ``name`` to a connection that did not ask for it."""
    for r in ranked:
        if r.known and lowered not in dict(r.settings):
            found = dict(r.server).get(name)
            if found is not None:
                return found
    return None  # nothing recorded says: as the nearest connection got it


def _client_side(server: dict[str, str], startup: Mapping[str, str]) -> None:
    """The client's own session user, whatever was recorded (the server reports the
    name the client logged in with; a recorded one may be redacted)."""
    server["session_authorization"] = startup.get("user", "")
