"""What the wire kinds' value redaction takes for a secret and what it leaves as data.

From running Node, async Python, PHP-style clients through devbox and two adversarial
reviews: session ids under neutral names went to disk; taking every random-looking wire
value for a token then damaged stored data (a payment intent's id, a nanoid, a flag's
name, a pickled session); base64 of credentials must stay a token.
"""

from __future__ import annotations

import base64
import pickle
import zlib

from devbox.core.profile_model import RedactRules
from devbox.core.redact import Redactor
from devbox.core.secret_formats import looks_random
from devbox.wire.files import value_redactor
from devbox.wire.redis.store import redact_args

RED = value_redactor(None)
SID = "3sUgTMr67mQHyyi3nCYUBvaS16lj7raF"  # uid-safe's shape: connect-pg-simple's sid


def test_a_session_id_is_a_token_under_a_sessions_name_and_data_elsewhere() -> None:
    for name in ("sid", "session_id", "sess", "PHPSESSID"):
        assert RED(name, SID).startswith("<redacted:token:"), name
    for name in ("$1", "", "payment_intent", "flag"):
        assert RED(name, SID) == SID, name  # stored data: an id, a flag, a payload
    for value in ("pi_3MtwBwLkdIwHu7ix28a3tqPa", "newCheckoutFlowV2Enabled2024"):
        assert RED("", value) == value


def test_a_redis_keys_parts_are_named_by_the_part_before() -> None:
    def key(k: str) -> str:
        return redact_args([b"GET", k.encode()], RED)[1].decode()

    assert key(f"sess:{SID}").startswith("sess:<redacted:token:")  # connect-redis
    assert key(f"PHPREDIS_SESSION:{SID}").startswith("PHPREDIS_SESSION:<redacted:token:")
    for k in (f"user:{SID}", "user:V1StGXR8_Z5jdHi6B-myT", "rq:job:0b7e5f0c-8d9a-4c1e-9b2f"):
        assert key(k) == k  # an entity's id is no credential


def test_a_hash_value_is_named_by_its_field() -> None:
    for args in (
        [b"HSET", b"u:1", b"password", b"hunter2 horse", b"name", b"ada"],
        [b"HSETEX", b"u:1", b"EX", b"60", b"FIELDS", b"1", b"password", b"hunter2 horse"],
    ):
        out = redact_args(args, RED)
        assert b"hunter2 horse" not in out and (b"ada" in out) == (b"ada" in args)


def test_base64_of_serialized_data_is_data_and_of_a_credential_a_token() -> None:
    pickled = base64.b64encode(pickle.dumps({"cart": [1, 2]}, protocol=5)).decode()
    packed = base64.b64encode(zlib.compress(b'{"cart": [1, 2, 3, 4, 5]}' * 3)).decode()
    document = base64.b64encode(b'{"user": 42, "roles": ["admin", "ops"]}').decode()
    for data in (pickled, packed, document):
        assert not looks_random(data), data
    for secret in (b"admin:S3cr3tP@ssw0rd!", b"Zx9kQ2mLp7Vb4Rt8Wy1N3cXaD5eF6gH0"):
        assert looks_random(base64.b64encode(secret).decode()), secret


def test_key_alone_is_a_credential_only_when_its_value_could_be_one() -> None:
    r = Redactor()
    assert r.value("key", "theme") == "theme"
    assert r.value("Key", "feature.new-checkout") == "feature.new-checkout"
    assert r.value("key", "AIzaSyB-9xK2mQ7pL4vR8tW1nY5cZ3dF6gH0jS") != (
        "AIzaSyB-9xK2mQ7pL4vR8tW1nY5cZ3dF6gH0jS"
    )
    assert r.value("api_key", "theme") != "theme"  # a qualified key is one whatever it holds
    kept = Redactor(RedactRules(keep=("key",)))
    assert kept.value("key", "AIzaSyB-9xK2mQ7pL4vR8tW1nY5cZ3dF6gH0jS").startswith("AIza")


def test_a_password_hash_is_a_secret_wherever_it_is() -> None:
    """PHP's ``password_hash`` under ``SET user:42:pw`` went to disk: no name said so."""
    hashed = "$2y$10$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
    for args in ([b"SET", b"user:42:pw", hashed.encode()], [b"LPUSH", b"audit", hashed.encode()]):
        assert hashed.encode() not in redact_args(args, RED)
    assert RED("", "$2y$ is bcrypt's PHP prefix") == "$2y$ is bcrypt's PHP prefix"


def test_phps_session_id_is_a_token_under_its_prefix_and_a_generated_value() -> None:
    """Debian's php.ini makes session ids of 26 characters of 0-9a-v (5 bits each): not
    mixed case, so neither a random token nor a generated value before."""
    from devbox.core.generated import Bindings

    live, recorded = "k3m9q2lp7vb4rt8u1n3c5a0d6e", "a1b2c3d4e5f6g7h8i9j0k1l2m3"
    key = redact_args([b"GET", f"PHPREDIS_SESSION:{live}".encode()], RED)[1]
    assert key.startswith(b"PHPREDIS_SESSION:<redacted:token:")
    assert Bindings().match(
        [f"SETEX PHPREDIS_SESSION:{live} 1440 x".encode()],
        [f"SETEX PHPREDIS_SESSION:{recorded} 1440 x".encode()],
    )


def test_a_bare_secret_name_names_the_value_after_it() -> None:
    """A stream entry's fields (``XADD``, and ``XRANGE``'s reply), a key named ``token``:
    the value after a secret's name went to disk whole."""
    from devbox.wire.redis.store import redact_reply

    out = redact_args([b"XADD", b"s", b"*", b"user", b"ada", b"password", b"hunter2 horse"], RED)
    assert out[:6] == [b"XADD", b"s", b"*", b"user", b"ada", b"password"]
    assert out[6].startswith(b"<redacted:secret:")
    entry = ("array", [("bulk", b"password"), ("bulk", b"hunter2 horse"), ("bulk", b"ada")])
    replied = redact_reply(("array", [("bulk", b"1-0"), entry]), RED)
    assert b"hunter2 horse" not in repr(replied).encode() and b"ada" in repr(replied).encode()
    assert redact_args([b"SET", b"greeting", b"hello world"], RED)[2] == b"hello world"


def test_hash_reads_that_name_their_fields_in_arguments_or_replies() -> None:
    """``HGETDEL``/``HGETEX`` name the fields in the command; ``HSCAN`` and
    ``HRANDFIELD … WITHVALUES`` return them beside the values."""
    from devbox.wire.redis.store import redact_reply, reply_names

    values = ("array", [("bulk", b"hunter2 horse"), ("bulk", b"ada")])
    for command in (b"HGETDEL", b"HGETEX"):
        names = reply_names([command, b"u:1", b"FIELDS", b"2", b"password", b"name"])
        assert repr(redact_reply(values, RED, names)).count("hunter2") == 0
    scanned = ("array", [("bulk", b"0"), ("array", [("bulk", b"password"), values[1][0]])])
    assert "hunter2" not in repr(redact_reply(scanned, RED))


def test_a_quoted_secret_with_escapes_in_it_is_redacted_whole() -> None:
    """A JSON string in a value (a Redis value, a jsonb parameter) whose secret holds an
    escape (``\\"``, ``\\u00e9``, ``\\\\``) was redacted up to the backslash only."""
    for text, secret in (
        ('{"password": "Tr0ub\\"4dor&3horse"}', "4dor&3horse"),
        ('{"password": "p\\u00e9ss w\\\\rd", "x": 1}', "ss w"),
    ):
        out = RED("", text)
        assert secret not in out and out.startswith('{"password": "<redacted:secret:'), out
    nested = 'msg="{\\"password\\": \\"hunter2 horse\\", \\"x\\": 1}"'  # JSON in a string
    out = RED("", nested)
    assert "hunter2" not in out and '\\"x\\": 1}"' in out, out
