"""Stored objects of a Postgres recording and the match index built from them.

Two object types, one per JSON object in the recording file:

``{"type": "connection", "conn": 1, "user": ..., "database": ..., "auth": "md5",
"server": {ParameterStatus name: value}}``
    once per recorded connection, when the server first said ReadyForQuery;

``{"type": "query", "conn": 1, "seq": 3, "protocol": "simple"|"extended", "statement":
name, "sql": ..., "params": [{"type": "int4", "format": "binary", "value": 42}],
"results": [{"columns": [...], "rows": [[...]], "tag": "SELECT 1"} | {"error": {...}} |
{"copy": "in"|"out", ...}], "notices": [...]}``
    once per executed query (a simple Query with all its statements, or one Execute).

Matching key: the normalised SQL plus every parameter's value (``types.canonical``), so
two queries that differ only in a parameter never share an answer. Repeated keys answer
in recorded order, the last one repeating (nth-call sequences). When the recording holds
connections to more than one database, the SQL in the key carries the database its
connection started up with (``sql.scoped``): the same query in two databases has two
answers, each for connections to its own database.
"""

from __future__ import annotations

import difflib
import struct
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from devbox.core import generated
from devbox.errors import ConfigError
from devbox.wire.postgres import cursors, startup, types
from devbox.wire.postgres.clock_params import timeless
from devbox.wire.postgres.sql import normalise, scope, scoped, unscoped
from devbox.wire.sequences import Sequences

ERROR_FIELDS: dict[str, str] = {
    "S": "severity",
    "V": "severity_nonlocalized",
    "C": "sqlstate",
    "M": "message",
    "D": "detail",
    "H": "hint",
    "P": "position",
    "p": "internal_position",
    "q": "internal_query",
    "W": "where",
    "s": "schema",
    "t": "table",
    "c": "column",
    "d": "data_type",
    "n": "constraint",
    "F": "file",
    "L": "line",
    "R": "routine",
}
_ERROR_CODES = {v: k for k, v in ERROR_FIELDS.items()}


def readable_fields(items: Mapping[str, str]) -> dict[str, str]:
    return {ERROR_FIELDS.get(k, k): v for k, v in items.items()}


def wire_fields(items: Mapping[str, Any]) -> dict[str, str]:
    return {_ERROR_CODES.get(k, k): str(v) for k, v in items.items()}


Key = tuple[str, tuple[str, ...]]


def param_key(params: Sequence[Mapping[str, Any]], norm: str) -> tuple[str, ...]:
    """What the parameters of ``norm`` are matched by (a Unix time set aside)."""
    return timeless(norm, tuple(types.canonical(p.get("value")) for p in params))


# the first words of statements that only read: they never bind a generated value
_READS = ("select", "show", "fetch", "explain", "table", "values")


def writes(norm: str) -> bool:
    """Whether a statement (normalised SQL) may write, and so bind a generated value."""
    word = unscoped(norm)[0].lstrip("(").split(" ", 1)[0]
    if word == "with":  # a writing CTE says so
        return any(w in norm for w in (" insert ", " update ", " delete ", " merge "))
    return word not in _READS


def _b(v: str) -> bytes:
    return v.encode("utf-8", "surrogatepass")


def _s(v: bytes) -> str:
    return v.decode("utf-8", "surrogatepass")


def _no_rows(obj: Mapping[str, Any]) -> bool:
    """A recorded answer that found nothing: results without a row, no error."""
    results = obj.get("results") or []
    return bool(results) and all("columns" in r and not r.get("rows") for r in results)


def _shape(norm: str, params: tuple[bytes, ...]) -> Key | None:
    """The key of ``norm`` and ``params`` (as bytes) with their generated values blanked;
    None when they hold none. The SQL text's too: psycopg2 (and so Django and SQLAlchemy
    on it) and psycopg's ``ClientCursor`` write every value into the text itself."""
    text = _shaped_text(norm)
    shaped = tuple(generated.shape(v) for v in params)
    if shaped == params and text is None:
        return None
    return (norm if text is None else text, tuple(_s(v) for v in shaped))


@lru_cache(maxsize=8192)
def _shaped_text(norm: str) -> str | None:
    """``norm`` with its generated values blanked, None if none (read once per text)."""
    text = _b(norm)
    shaped = generated.shape(text)
    return None if shaped == text else _s(shaped)


# where an answer failed before its statement ran (``stage``): no cursor opened
_NOT_RUN = ("parse", "describe")

# a kept turn as another process can take it: (match key, which of its answers, the
# Bind's result-format bytes, transaction status, the messages after the Bind, the Hit,
# the Reply) -- ``devbox.wire.postgres.turns.keep`` makes them
Kept = tuple[Key, int, bytes, str, bytes, Any, Any]


def room(index: Index, cache: dict[Any, Any]) -> dict[Any, Any]:
    """``cache``, emptied if full: a client can ask one recorded answer in endless ways
    (statement names, result-format codes), each a new entry of the mock's caches
    (kept turns, encoded answers, descriptions); they only save work, so starting them
    again loses nothing but time."""
    if len(cache) >= 4 * len(index.entries) + 1024:
        cache.clear()
    return cache


@dataclass(slots=True)
class Index:
    """What a mock answers from. Counters are shared by every connection of one mock:
    the nth identical query answers with the nth recorded answer, whichever connection
    asks it (a pool hands queries to any connection)."""

    entries: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    # the keys whose parameters hold values a client makes up each run (a uuid4 id), by
    # their shape, in recorded order (ordered sets), and the live values of this run
    # bound to theirs (``devbox.core.generated``): looked in when the exact key misses
    shaped: dict[Key, dict[Key, None]] = field(default_factory=dict)
    bindings: generated.Bindings = field(default_factory=generated.Bindings)
    aside: set[Key] = field(default_factory=set)  # recorded reads taken so, this run
    written: generated.Written = field(default_factory=generated.Written)
    by_sql: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # normalised SQL that failed at Parse (or Describe) while recording -> the outcome of
    # each Parse of it in recorded order, the error or None (parsed): the nth Parse gets
    # the nth, as answers do, so a query that failed until a migration created its table
    # fails only as often as it did (``parse_error``)
    parse_steps: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    # Parses that succeeded of SQL that has not failed (yet): where its first error goes
    ok_parses: dict[str, int] = field(default_factory=dict)
    # (where: file and connection, SQL) -> the names of its statements parsed there:
    # executing one again is no new Parse, so it is no new step (by connection number
    # alone, two files' connection 1 were one connection, and a Parse went uncounted)
    parsed: dict[tuple[Hashable, str], set[str]] = field(default_factory=dict)
    connections: list[dict[str, Any]] = field(default_factory=list)
    # each of ``connections`` as start-up matching reads it, and a client start-up
    # (``startup.client_key``) -> the ParameterStatus values it gets (made once)
    started: list[startup.Recorded] = field(default_factory=list)
    welcomes: dict[Any, dict[str, str]] = field(default_factory=dict)
    # where a connection was recorded -> the database it started up with, when the
    # recording holds more than one (``build``); empty: keys are not scoped by database
    databases: dict[Hashable, str] = field(default_factory=dict)
    # nth-call counters; ``devbox.mock.workers`` swaps in counters shared by processes
    sequences: Sequences = field(default_factory=Sequences)
    has_placeholders: bool = False
    sql_placeholders: bool = False  # the same in SQL texts (``redaction.redact_literals``)
    # normalised SQL of every stored query -> its original text (for explanations)
    originals: dict[str, str] = field(default_factory=dict)
    # (id of a stored answer, result formats) -> its encoded rows and tag (the mock's cache)
    encoded: dict[tuple[int, tuple[int, ...]], bytes] = field(default_factory=dict)
    # (id of a stored answer, result formats or None: as recorded) -> its RowDescription
    descriptions: dict[tuple[int, tuple[int, ...] | None], bytes] = field(default_factory=dict)
    # a whole extended-query turn -> its reply bytes (``devbox.wire.postgres.turns``)
    turns: dict[tuple[int, bytes, str, bytes], Any] = field(default_factory=dict)
    # a turn's bytes -> (statement name, its SQL, its parameter types, match key, result
    # formats, the messages after the Bind): what reading those bytes again would give
    raw_turns: dict[bytes, Any] = field(default_factory=dict)
    # normalised SQL -> the answer a Describe of a statement of it gets, once the server's
    # "cached plan must not change result type" was replayed (``replanned``)
    described: dict[str, dict[str, Any]] = field(default_factory=dict)
    # normalised SQL of a DECLARE -> the recorded Describe of the cursor it opened (a
    # psycopg named cursor describes it as a portal); the first recorded one answers
    cursor_described: dict[str, dict[str, Any]] = field(default_factory=dict)
    # where a query was recorded (file, connection) -> its cursors' ordinals so far: a
    # cursor's name in a match key is its ordinal (``cursors.Ordinals``), as on the mock
    ordinals: dict[Hashable, cursors.Ordinals] = field(default_factory=dict)
    # normalised SQL -> the recorded Describe of a statement of it ("describe":
    # "statement"): the answer when no execution of it was recorded; the first answers
    statement_described: dict[str, dict[str, Any]] = field(default_factory=dict)
    # id of a stored answer -> the mock's ``Hit`` for it (made once, not per query)
    hits: dict[int, Any] = field(default_factory=dict)
    # id of a stored answer -> the notifications (LISTEN/NOTIFY) that followed it while
    # recording: (seconds after the previous one, NotificationResponse bytes)
    notifications: dict[int, list[tuple[float, bytes]]] = field(default_factory=dict)
    # told of every turn kept (``Kept``): a worker process passes them to its siblings,
    # which ``adopt`` them instead of each answering every turn the long way once
    on_keep: Callable[[Kept], None] | None = None

    def __len__(self) -> int:  # every recorded answer (``entries`` folds repeats)
        return sum(len(v) for v in self.by_sql.values())

    def add(self, obj: dict[str, Any], where: Hashable = None) -> None:
        """Index ``obj``; ``where`` names its connection across files (default: its
        connection number). A connection's objects come in the order it sent them."""
        if obj.get("type") == "connection":
            self.connections.append(obj)
            self.started.append(startup.Recorded.of(obj))
            return
        if where is None:
            where = obj.get("conn", obj.get("connection"))
        suffix = self.scope(self.databases.get(where))
        if obj.get("describe") == "cursor":  # no answer of the DECLARE: no step, no entry
            self.originals.setdefault(scoped(normalise(obj["sql"]), suffix), obj["sql"])
            self.cursor_described.setdefault(scoped(cursors.anonymous(obj["sql"]), suffix), obj)
            return
        # a statement parsed or described but not executed opened no cursor (the mock
        # keys a prepared DECLARE anew at each Bind of it, as the server opens one)
        runs = obj.get("describe") != "statement" and obj.get("stage") not in _NOT_RUN
        ordinals = self.ordinals.setdefault(where, cursors.Ordinals())
        if obj.get("portal") and not obj.get("stage"):  # executed (the mock counts so)
            ordinals.executed(str(obj["portal"]))
        if runs:
            norm, saved = ordinals.attempt(obj["sql"])
            if cursors.failed(obj):  # the server opened no cursor: no ordinal taken
                ordinals.undo(saved)
        else:
            norm = ordinals.key(obj["sql"], run=False)
        norm = scoped(norm, suffix)
        self.originals.setdefault(norm, obj["sql"])
        if obj.get("describe") == "statement":  # its Parse is counted by its Execute's
            self.statement_described.setdefault(norm, obj)
            return
        if obj.get("stage") in ("parse", "describe"):
            if _aborted_answer(obj):  # the mock makes its own 25P02 (at the Bind)
                self._count_parse(obj, norm, where)
                return
            steps = self.parse_steps.setdefault(norm, [None] * self.ok_parses.pop(norm, 0))
            steps.append(obj)
            # a failed Parse leaves no statement: the client parses it again
            self.parsed.pop((where, norm), None)
            return
        self._count_parse(obj, norm, where)
        if _aborted_answer(obj):
            # the server's "transaction is aborted": the mock makes its own whenever its
            # transaction has failed, without taking an answer; kept in the sequence, it
            # came out later instead of rows (the same query after ROLLBACK)
            return
        params = obj.get("params") or []
        key = (norm, param_key(params, norm))
        self.entries.setdefault(key, []).append(obj)
        shape = _shape(norm, tuple(_b(v) for v in key[1]))
        if shape is not None:
            self.shaped.setdefault(shape, {})[key] = None
            if writes(norm):
                self.written.add((_b(norm), *map(_b, key[1])))
        self.by_sql.setdefault(norm, []).append(obj)
        if not self.has_placeholders and "<redacted:" in str(params):
            self.has_placeholders = True
        if not self.sql_placeholders and "<redacted:" in norm:
            self.sql_placeholders = True

    def _count_parse(self, obj: Mapping[str, Any], norm: str, where: Hashable) -> None:
        """Count the Parse an extended query's answer implies: the unnamed statement is
        parsed for each query (psycopg, libpq), a named one once per connection."""
        if obj.get("protocol") != "extended":
            return
        name = str(obj.get("statement") or "")
        if name:
            names = self.parsed.setdefault((where, norm), set())
            if name in names:
                return
            names.add(name)
        steps = self.parse_steps.get(norm)
        if steps is not None:
            steps.append(None)
        else:
            self.ok_parses[norm] = self.ok_parses.get(norm, 0) + 1

    def parse_error(self, norm: str) -> dict[str, Any] | None:
        """The recorded error the next Parse of ``norm`` gets, None when it parses."""
        steps = self.parse_steps.get(norm)
        if steps is None:
            return None
        return steps[self.sequences.take(("parse", norm), len(steps))]

    def scope(self, database: str | None) -> str:
        """The suffix of the keys of queries run in ``database`` (``sql.scoped``): none
        unless the recording holds several databases. A database no recorded connection
        used (or a connection the recording does not say) has its own, which no
        recorded query has: its queries miss, naming the databases recorded."""
        if not self.databases:
            return ""
        return scope(database if database is not None else "")

    def parameter_status(
        self, client: Mapping[str, str], redact: Callable[[str, str], str]
    ) -> dict[str, str]:
        """The ParameterStatus values a client whose start-up packet was ``client``
        gets (``devbox.wire.postgres.startup``)."""
        key = startup.client_key(client, redact)
        found = self.welcomes.get(key)
        if found is None:
            found = startup.parameter_status(self.started, client, key)
            room(self, self.welcomes)[key] = found
        return found

    def sequence_keys(self) -> list[Hashable]:
        """The keys with more than one recorded answer: the only counters that matter."""
        keys: list[Hashable] = [key for key, answers in self.entries.items() if len(answers) > 1]
        return keys + [("parse", norm) for norm, st in self.parse_steps.items() if len(st) > 1]

    def adopt(self, kept: Sequence[Kept]) -> None:
        """Keep turns another process kept from the same stored objects: the same key's
        nth answer is the same answer there as here, so its reply bytes are too."""
        for key, n, formats, status, rest, hit, reply in kept:
            answers = self.entries.get(key)
            if answers is None or not 0 <= n < len(answers):
                continue  # not this index's (never sent so: a load changes the generation)
            recorded = answers[n]
            self.hits.setdefault(id(recorded), hit)
            room(self, self.turns)[(id(recorded), formats, status, rest)] = reply

    def reset(self) -> None:  # (also the bindings of generated values)
        """Start every nth-call sequence again (a new replay iteration)."""
        self.sequences.clear()
        self.described.clear()
        self.bindings.reset()
        self.aside.clear()

    def replanned(self, failed: dict[str, Any], suffix: str = "") -> None:
        """After ``failed``, the server's refusal of a plan whose columns changed (a
        migration between two runs of a prepared query), a client prepares the query
        again: describe it by the first later run that has columns, not the first run.
        ``suffix``: the asking connection's ``scope``."""
        error = (failed.get("results") or [{}])[0].get("error") or {}
        if error.get("sqlstate") != "0A000" or "result type" not in str(error.get("message")):
            return
        norm = scoped(normalise(failed["sql"]), suffix)
        same = self.by_sql.get(norm) or []
        later = same[next((i for i, o in enumerate(same) if o is failed), len(same)) :]
        found = next((o for o in later if _columns(o) is not None), None)
        if found is not None:
            self.described[norm] = found

    def take(self, key: Key) -> dict[str, Any] | None:
        found = self.entries.get(key)
        if not found:
            return None
        return found[self.sequences.take(key, len(found))]

    def take_bound(self, key: Key) -> dict[str, Any] | None:
        """The next answer for the recorded key ``key`` stands for once the generated
        values bound in this run are set aside; a write binds its own (``devbox.core.
        generated``: only a write may, so a read by an id no write made misses)."""
        if not self.shaped:
            return None
        # the SQL text first, as one more value: a value inlined there binds as a
        # parameter's does
        live = (_b(key[0]), *(_b(v) for v in key[1]))
        shape = _shape(key[0], live[1:])
        if shape is None:
            return None
        known = tuple(self.bindings.translate(v) for v in live)
        if known != live:
            rec = (_s(known[0]), tuple(_s(v) for v in known[1:]))
            if rec in self.entries:
                return self.take(rec)
        if not writes(key[0]):
            # a read asked as of now (``generated.Bindings.as_of_now``), or of a fresh
            # value no write made, as recorded for the same read of its fresh value if
            # that found no row (a new key checked free before the INSERT, Django's
            # sessions): nobody's row goes out, nothing is bound. The recorded reads it
            # may stand for go each once in recorded order, then the last again: the nth
            # session load of a run gets the nth recorded one
            def stands_for(rec: Key) -> bool:
                old = (_b(rec[0]), *map(_b, rec[1]))
                return self.bindings.as_of_now(known, old) or (
                    _no_rows(self.peek(rec) or {})
                    and self.written.holds(old)
                    and self.bindings.fresh(live, old)
                )

            recs = self.shaped.get(shape) or {}
            found = generated.standing_read(recs, self.aside.__contains__, stands_for)
            if found is None:
                return None
            self.aside.add(found)
            return self.take(found)
        for rec in self.shaped.get(shape) or ():
            if self.bindings.match(live, (_b(rec[0]), *(_b(v) for v in rec[1]))):
                return self.take(rec)
        return None

    def peek(self, key: Key) -> dict[str, Any] | None:
        """The answer ``take`` would give next, without taking it."""
        found = self.entries.get(key)
        if not found:
            return None
        return found[self.sequences.peek(key, len(found))]

    def stage(self, key: Key) -> str:
        """Where the next answer to ``key`` failed on the real server ("" if it did not
        fail before Execute), without taking it."""
        nxt = self.peek(key)
        return "" if nxt is None else str(nxt.get("stage", ""))

    def describe(self, norm: str, key: Key | None = None) -> dict[str, Any] | None:
        """The next answer to ``key`` (a portal's: what its Execute will send) when it has
        columns, as a migration between two runs of one query changes them; else any
        recorded execution of this SQL that has a result description."""
        nxt = None if key is None else self.peek(key)
        if nxt is not None and _columns(nxt) is not None:
            return nxt
        found = self.by_sql.get(norm) or []
        # one whose parameter types the server told: psycopg declares 0 ("unknown") and
        # never asks; asyncpg, told 0 for the same SQL, looks the type up and misses
        for obj in found:
            types = obj.get("param_types")
            if types and 0 not in types:
                return obj
        for obj in found:
            if obj.get("param_types") is not None or _columns(obj) is not None:
                return obj
        # a statement prepared and described but never executed (recordings made before
        # these were stored have none: the answer is as it was)
        described = self.statement_described.get(norm) or (found[0] if found else None)
        if described is None and key is not None and self.shaped:
            # values written into the text (ActiveRecord without prepared statements,
            # ``exec_params(sql, [])``): a portal is described before its Execute binds
            # them, by a recorded execution of the same shape (the same columns)
            shape = _shape(norm, tuple(_b(v) for v in key[1]))
            for rec in (self.shaped.get(shape) or {}) if shape is not None else ():
                return self.entries[rec][0]
        return described

    def explain(self, norm: str, params: tuple[str, ...]) -> tuple[str, str | None]:
        """Why nothing matched: the nearest recorded query and the differing parameter."""
        same = self.by_sql.get(norm)
        if same:
            best, best_score = same[0], -1
            for obj in same[:5000]:
                rec = param_key(obj.get("params") or [], norm)
                score = sum(1 for a, b in zip(rec, params, strict=False) if a == b)
                if score > best_score:
                    best, best_score = obj, score
            rec = param_key(best.get("params") or [], norm)
            if len(rec) != len(params):
                why = f"recorded with {len(rec)} parameters, asked with {len(params)}"
            elif rec == params:  # every recorded answer of it was taken: a write binds once
                why = "its recorded answers were taken (generated values bind a write once)"
            else:
                diffs = [i for i, (a, b) in enumerate(zip(rec, params, strict=True)) if a != b]
                # one that differs only in generated values (a fresh uuid) could bind: the
                # one that cannot is the reason (a Unix time, another hash format)
                i = next((i for i in diffs if not _could_bind(params[i], rec[i])), diffs[0])
                why = f"${i + 1} = {_show(params[i])} here, recorded {_show(rec[i])}"
            return f"same query recorded with other parameter values: {why}", best["sql"]
        bare, database = unscoped(norm)
        if database is not None:
            elsewhere = sorted(
                {db for db in self.databases.values() if scoped(bare, scope(db)) in self.by_sql}
            )
            if elsewhere:
                named = ", ".join(repr(db) for db in elsewhere)
                why = f"recorded in database {named}, not in {database!r} (this connection's)"
                return why, self.originals[scoped(bare, scope(elsewhere[0]))]
        keys = list(self.originals)[:2000]
        close = difflib.get_close_matches(norm, keys, n=1, cutoff=0.4)
        if close:
            return "query text never recorded", self.originals[close[0]]
        return "query text never recorded (no similar query either)", None


def _could_bind(live: str, recorded: str) -> bool:
    return generated.shape(_b(live)) == generated.shape(_b(recorded))


def _show(v: str) -> str:
    if v == "\x00NULL":
        return "NULL"
    return repr(v if len(v) <= 60 else v[:57] + "...")


def _aborted_answer(obj: Mapping[str, Any]) -> bool:
    results = obj.get("results")
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
        return False
    error = results[0].get("error")
    return isinstance(error, dict) and error.get("sqlstate") == "25P02"


def _columns(obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    results = obj.get("results") or []
    if results and "columns" in results[0]:
        cols: list[dict[str, Any]] | None = results[0]["columns"]
        return cols
    return None


def _notification(filename: str, line: int, obj: Mapping[str, Any]) -> tuple[float, bytes]:
    for name, kind in (("channel", str), ("payload", str), ("after_seq", int)):
        if not isinstance(obj.get(name), kind):
            raise ConfigError(
                f"notification without {kind.__name__} '{name}'",
                file=filename,
                line=line,
                field=name,
            )
    after = obj.get("after_ms", 0)
    if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
        raise ConfigError("expected a number >= 0", file=filename, line=line, field="after_ms")
    pid = obj.get("pid", 0)
    body = struct.pack("!i", pid if isinstance(pid, int) else 0)
    # a LATIN1 client's payload holds bytes that are not UTF-8 (``messages.cstr``'s way)
    body += (obj["channel"] + "\x00" + obj["payload"] + "\x00").encode("utf-8", "surrogateescape")
    return after / 1000.0, b"A" + struct.pack("!i", len(body) + 4) + body


def build(stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> Index:
    index = Index()
    # first the databases: a connection's queries are keyed by its database only when
    # the recording holds more than one (a connection object comes before its queries,
    # but whether another database follows is known only at the end)
    databases: dict[Hashable, str] = {
        (filename, obj.get("conn", obj.get("connection"))): str(obj["database"])
        for filename, _line, obj in stored
        if obj.get("type") == "connection" and isinstance(obj.get("database"), str)
    }
    if len(set(databases.values())) > 1:
        index.databases = databases
    queries: dict[tuple[str, Any, Any], dict[str, Any]] = {}
    notes: list[tuple[tuple[str, Any, Any], tuple[float, bytes]]] = []
    for filename, line, obj in stored:
        typ = obj.get("type")
        if typ == "notification":
            key = (filename, obj.get("conn"), obj.get("after_seq"))
            notes.append((key, _notification(filename, line, obj)))
            continue
        if typ not in ("connection", "query"):
            raise ConfigError(
                f"unknown postgres object type {typ!r}", file=filename, line=line, field="type"
            )
        if typ == "query":
            if not isinstance(obj.get("sql"), str):
                raise ConfigError("query without 'sql'", file=filename, line=line, field="sql")
            params = obj.get("params", [])
            if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
                raise ConfigError(
                    "'params' must be a list of objects", file=filename, line=line, field="params"
                )
            if not isinstance(obj.get("results", []), list):
                raise ConfigError(
                    "'results' must be a list", file=filename, line=line, field="results"
                )
        copy = dict(obj)
        index.add(copy, (filename, obj.get("conn", obj.get("connection"))))
        if typ == "query":
            queries[(filename, obj.get("conn"), obj.get("seq"))] = copy
    # a notification follows the query its connection finished before it (the LISTEN, or
    # the NOTIFY of its own transaction); one that came before any query has none to follow
    for key, note in notes:
        query = queries.get(key)
        if query is not None:
            index.notifications.setdefault(id(query), []).append(note)
    _one_answer_for_repeats(index)
    return index


_WHERE = ("connection", "conn", "seq")  # where an answer was recorded, not what it says


def _one_answer_for_repeats(index: Index) -> None:
    """A query asked again with the same parameters usually got the same answer (a read
    workload). Such a sequence answers the same whatever its position, so it is kept as
    its first answer: a key with one answer needs no counter (none shared between
    worker processes, no lock) and its kept turn is the one-lookup fast path. The
    journal then names that first recording for every call of it."""
    for key, answers in index.entries.items():
        if len(answers) < 2 or any(id(a) in index.notifications for a in answers):
            continue
        first = {k: v for k, v in answers[0].items() if k not in _WHERE}
        if all({k: v for k, v in a.items() if k not in _WHERE} == first for a in answers[1:]):
            index.entries[key] = answers[:1]
