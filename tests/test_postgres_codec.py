"""The sans-IO parts of the postgres kind: framing, values by type, SQL normalisation,
loading a recording, the service URL."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.errors import ConfigError
from devbox.wire.contract import MockOptions, RemoteProtocolError, Reply
from devbox.wire.postgres import messages as m
from devbox.wire.postgres import types
from devbox.wire.postgres.kind import POSTGRES
from devbox.wire.postgres.mock import PostgresMockConnection
from devbox.wire.postgres.sql import normalise
from devbox.wire.registry import get


def _startup(user: str = "u") -> bytes:
    body = struct.pack("!i", m.PROTOCOL_3) + m.cstr("user") + m.cstr(user) + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def _ssl() -> bytes:
    return struct.pack("!ii", 8, m.SSL_REQUEST)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_the_framer_reassembles_messages_cut_anywhere(cuts: list[int]) -> None:
    stream = _ssl() + _startup() + m.msg(b"Q", m.cstr("SELECT 1")) + m.msg(b"S") + m.msg(b"X")
    framer = m.Framer(startup=True)
    got: list[tuple[bytes, bytes]] = []
    prev = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        got.extend(framer.feed(stream[prev:cut]))
        prev = cut
    assert [t for t, _ in got] == [m.SSL, m.STARTUP, b"Q", b"S", b"X"]
    assert m.parse_startup(got[1][1]) == {"user": "u"}


def test_bad_lengths_are_protocol_errors_with_a_sqlstate() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.Framer(startup=True).feed(struct.pack("!ii", 4, 0))
    assert info.value.code == "08P01"
    with pytest.raises(RemoteProtocolError):
        m.Framer(startup=False).feed(b"Q" + struct.pack("!i", 2))


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just(23), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just(20), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just(701), st.floats(allow_nan=False)),
        st.tuples(st.just(25), st.text()),
        st.tuples(st.just(16), st.booleans()),
        st.tuples(st.just(17), st.binary(max_size=20)),
        st.tuples(st.just(99999), st.binary(max_size=20)),
    )
)
def test_binary_values_round_trip_exactly(case: tuple[int, object]) -> None:
    oid, value = case
    raw = bytes(value) if isinstance(value, bytes) else types.encode(value, oid, 1)
    assert raw is not None
    assert types.encode(types.decode(raw, oid, 1), oid, 1) == raw


def test_special_floats_are_stored_as_postgres_spells_them() -> None:
    nan = struct.pack("!d", float("nan"))
    assert types.decode(nan, 701, 1) == "NaN"
    assert types.encode("NaN", 701, 1) == nan
    assert types.decode(struct.pack("!d", float("-inf")), 701, 1) == "-Infinity"


def test_normalisation_ignores_layout_and_case_but_never_constants() -> None:
    a = normalise("SELECT id FROM Users WHERE id = $1;")
    assert a == normalise("select  id\n  from users -- who\n where /* x */ id=$1")
    assert normalise("SELECT * FROM t WHERE id = 1") != normalise("SELECT * FROM t WHERE id = 2")
    assert normalise("SELECT 'A'") != normalise("SELECT 'a'")
    assert normalise('SELECT "Id" FROM t') != normalise("SELECT id FROM t")


def test_a_bad_recording_object_names_file_line_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        POSTGRES.load([("db.json", 12, {"type": "query", "sql": "SELECT 1", "params": 3})])
    assert info.value.one_line() == "db.json:12: params: 'params' must be a list of objects"
    with pytest.raises(ConfigError, match="unknown postgres object type"):
        POSTGRES.load([("db.json", 3, {"type": "nope"})])


def test_the_registry_knows_the_kind_and_the_service_gets_a_url_of_the_same_scheme() -> None:
    assert get("postgres") is POSTGRES
    url = "postgresql://app:pw@db.internal:5432/shop?sslmode=prefer"
    assert POSTGRES.service_url(url, "127.0.0.1", 6543) == (
        "postgresql://app:pw@127.0.0.1:6543/shop?sslmode=prefer"
    )
    assert POSTGRES.service_url("postgres://db/app", "127.0.0.1", 1) == "postgres://127.0.0.1:1/app"


def test_ssl_and_gss_encryption_are_refused_and_the_client_continues_in_clear() -> None:
    index = POSTGRES.load([])
    conn = PostgresMockConnection(index, MockOptions("db"))  # type: ignore[arg-type]
    gss = struct.pack("!ii", 8, m.GSSENC_REQUEST)
    out = conn.data_received(gss + _ssl())
    assert out == [Reply(b"NN")]
    out = conn.data_received(_startup())
    reply = out[-1]
    assert isinstance(reply, Reply)
    types_seen = [t for t, _ in m.Framer(startup=False).feed(reply.data)]
    assert types_seen[0] == b"R" and types_seen[-1] == b"Z" and b"K" in types_seen
    # an empty query and a miss keep the connection usable; the miss is an error, no rows
    out = conn.data_received(m.msg(b"Q", m.cstr("")) + m.msg(b"Q", m.cstr("SELECT 1")))
    data = b"".join(o.data for o in out if isinstance(o, Reply))
    seen = m.Framer(startup=False).feed(data)
    assert [t for t, _ in seen] == [b"I", b"Z", b"E", b"Z"]
    assert m.parse_fields(seen[2][1])["C"] == "DX404"
    assert b"D" not in [t for t, _ in seen]
