"""``devbox.core.generated`` on its own: what counts as a generated value, and bindings
that never tie one live value to two recorded ones (or two live values to one)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core.generated import Bindings, runs, shape


def test_what_is_generated_and_what_is_data() -> None:
    u = str(uuid.uuid4()).encode()
    assert runs(u) == [u] and runs(b"session:" + u) == [u]
    assert runs(uuid.uuid4().hex.encode()) != []  # redis-py's lock token
    assert runs(b"app.models.Customer:01HV3X9QK2M8Z7R4T6Y1B5N0CD") == [
        b"01HV3X9QK2M8Z7R4T6Y1B5N0CD"
    ]
    for data in (
        b"1234567890123456789",  # a bigint id
        b"00000000000000000042",
        b"DE89370400440532013000",  # an IBAN
        b"\\x0001abcdef0123456789abcdef0123",  # a value asyncpg sent in binary
        b"<redacted:email:0123456789ab>",  # another customer, not a fresh value
        b"getUserProfileByIdentifier",
    ):
        assert runs(data) == [], data


def test_a_redacted_jwt_is_generated_as_its_claims_and_signature() -> None:
    """A JWT signed at each login (its iat, exp, jti) is redacted to placeholders of its
    claims and signature; those bind as a token's do. Its header is the same each time."""
    claims, sig = b"<redacted:jwt:0123456789ab>", b"<redacted:jwt-sig:ba9876543210>"
    head = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}
    assert runs(b"session:" + head + b"." + claims + b"." + sig) == [claims, sig]


def test_clock_readings_are_generated_chosen_dates_are_data() -> None:
    for stamp in (
        b"2026-12-07T21:37:06.712974+00:00",  # Python's isoformat()
        b"2026-12-07 21:37:06.712974+00",  # Postgres's text, psycopg's
        b"2026-12-07T21:37:06.712Z",  # JavaScript's toISOString()
        b"2026-12-07T21:37:06.712974",  # naive
        b"2026-12-07T21:37:06.712974123+0530",
    ):
        assert runs(stamp) == [stamp], stamp
        assert runs(b"VALUES ('" + stamp + b"'::timestamptz)") == [stamp]
    for data in (
        b"2026-12-07",  # a due date, a birthday
        b"2026-12-07 21:37:06",  # a time to the second: may have been chosen
        b"2026-12-07T21:37:06+00:00",
        b"release 2026-12-07.1234",
        b"12026-12-07T21:37:06.712",  # not a date
    ):
        assert runs(data) == [], data
    b = Bindings()
    sql = b"INSERT INTO t VALUES ('%s'::uuid, '%s'::timestamptz)"
    live_id, rec_id = (str(uuid.uuid4()).encode() for _ in range(2))
    live = sql.replace(b"%s", live_id, 1).replace(b"%s", b"2026-12-07T21:37:06.712974+00:00")
    rec = sql.replace(b"%s", rec_id, 1).replace(b"%s", b"2026-12-01T08:00:00.000001+00:00")
    assert shape(live) == shape(rec)
    assert b.match([live], [rec])
    assert b.translate(b"WHERE id = '" + live_id + b"'") == b"WHERE id = '" + rec_id + b"'"


def test_a_value_binds_once_and_both_ways() -> None:
    b = Bindings()
    a1, a2, r1, r2 = (str(uuid.uuid4()).encode() for _ in range(4))
    assert b.match([b"lock", a1], [b"lock", r1])
    assert b.translate(b"key:" + a1) == b"key:" + r1
    assert not b.match([b"lock", a2], [b"lock", r1])  # r1 is a1's
    assert not b.match([b"lock", a1], [b"lock", r2])  # a1 is r1's
    assert not b.match([b"other", a2], [b"lock", r2])  # not the same but for the id
    assert b.match([b"lock", a2], [b"lock", r2])
    # one live value where the recording has two: no binding can say both
    a3, r3 = (str(uuid.uuid4()).encode() for _ in range(2))
    assert not b.match([a3, a3], [r3, a3])
    b.reset()
    assert b.translate(a1) == a1


def test_django_signed_values_are_generated_other_triples_are_not() -> None:
    sig = b"9Wcq4n2jWOW1gmZKXA3bZpC361kWGO_NtjGYJpoZ_o0"
    for payload in (
        b"e30",
        b"eyJfYXV0aF91c2VyX2lkIjoiMSJ9",
        b".eJyrVkrOzytJzSvRUVAqSsxLzVWyUlAqSS0qUaoFAFyVBz4",
    ):
        signed = payload + b":1xahyP:" + sig
        assert runs(signed) == [signed], signed
    # a user id, then a token: no signed value (another user's key bound to the recorded one)
    assert runs(b"auth:100042:" + sig) == [sig]


def test_a_uuid_is_one_value_however_it_is_spelled() -> None:
    b = Bindings()
    live, rec = uuid.uuid4(), uuid.uuid4()
    assert b.match([b"{" + live.hex.encode() + b"}"], [b"{" + rec.hex.encode() + b"}"])
    assert b.translate(str(live).encode()) == str(rec).encode()
    assert b.translate(str(live).upper().encode()) == str(rec).upper().encode()
    assert b.back(b"id=" + rec.hex.encode()) == b"id=" + live.hex.encode()


def test_a_recorded_value_sent_back_binds_nothing() -> None:
    """A worker pops a job id from a reply (the recorded one) and writes under it and a
    fresh id of its own; the client that made the job binds its own id afterwards."""
    b = Bindings()
    made, rec_job, fresh, rec_exec = (str(uuid.uuid4()).encode() for _ in range(4))
    assert b.match([b"SET", b"job:" + made], [b"SET", b"job:" + rec_job])  # the client
    # the worker, with the id the mock's reply gave it, and one of its own
    assert b.match(
        [b"HSET", b"exec:" + rec_job + b":" + fresh],
        [b"HSET", b"exec:" + rec_job + b":" + rec_exec],
    )
    assert b.translate(b"exec:" + fresh) == b"exec:" + rec_exec
    b.reset()
    # the other order: the worker first, then the client binds the job id
    assert b.match(
        [b"SETEX", b"meta-" + rec_job + b":" + fresh],
        [b"SETEX", b"meta-" + rec_job + b":" + rec_exec],
    )
    assert b.match([b"LPUSH", b"q", made], [b"LPUSH", b"q", rec_job])
    assert b.translate(made) == rec_job


values = st.one_of(
    st.binary(max_size=80),
    st.uuids().map(lambda u: str(u).encode()),
    st.tuples(st.sampled_from([b"s:", b"", b"x-"]), st.uuids()).map(
        lambda t: t[0] + t[1].hex.encode()
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(values, max_size=4), st.lists(values, max_size=4), values)
def test_anything_binds_or_not_without_error(
    live: list[bytes], rec: list[bytes], other: bytes
) -> None:
    b = Bindings()
    bound = b.match(live, rec)
    assert bound is (bound and len(live) == len(rec))
    for v in (*live, other):
        assert isinstance(b.translate(v), bytes)
        assert shape(shape(v)) == shape(v)
    if bound:  # what it bound translates the live arguments into the recorded ones
        assert [b.translate(v) for v in live] == rec


def test_passlib_password_hashes_are_generated() -> None:
    """passlib's own formats (FastAPI's tutorial hashes with it): a fresh salt each run."""
    for h in (
        b"$pbkdf2-sha256$29000$N2YuJYSQUgpBCKGUkjImZA$jMJdNlTeuAeaIw4bQ.vA1Jg8VXAW/GZmLqcG3UGwYJk",
        b"$bcrypt-sha256$v=2,t=2b,r=12$n79VH.0Q2TMWmt3Oqt9uku$Kq4Noyk3094Y2QlB8NdRT8SvGiI4ft2",
        b"$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
    ):
        assert runs(h) == [h], h


def test_clock_readings_bind_nothing_so_two_writes_may_share_one() -> None:
    """Two writes stamped in one millisecond (a fast replay) stood for two recorded in
    two: one-to-one binding refused the second (a Node service's ``new Date()``)."""
    first, second = b"2026-12-07T21:37:06.712Z", b"2026-12-07T21:37:06.713Z"
    now = b"2026-12-08T10:00:00.001Z"
    b = Bindings()
    assert b.match([b"INSERT a " + now], [b"INSERT a " + first])
    assert b.match([b"INSERT b " + now], [b"INSERT b " + second])
    b = Bindings()  # and the other way round
    assert b.match([b"INSERT a " + first], [b"INSERT a " + now])
    assert b.match([b"INSERT b " + second], [b"INSERT b " + now])
    assert not b.match([b"INSERT b " + now], [b"INSERT c " + now])  # the rest still counts


def test_a_standard_base64_token_is_one_value() -> None:
    """``crypto.randomBytes(n).toString('base64')``: its ``+``, ``/`` and padding cut it
    into pieces too short to read as tokens, and the write missed."""
    import base64
    import random

    rng = random.Random(7)  # fixed: a random id may lack a digit, and then reads as a word
    for size in (16, 24, 32):
        live, rec = (b"sess:" + base64.b64encode(rng.randbytes(size)) for _ in range(2))
        assert b"+" in live + rec or b"/" in live + rec or b"=" in live
        assert Bindings().match([live], [rec]), (live, rec)
    assert runs(base64.b64encode(b'{"user": 42, "cart": [1, 2, 3]}')) == []  # data
