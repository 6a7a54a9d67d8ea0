"""The name rules of free text (``key:…``, ``token=…``, ``password: …``) leave values that
are plainly identifiers or placeholders as they are (issue 13: Redis keys such as
``redis-benchmark``'s ``key:__rand_int__`` were stored as ``key:<redacted:secret:…>``),
and still redact every value that looks like a credential."""

from __future__ import annotations

import pytest

from devbox.core.profile import RedactRules
from devbox.core.redact import PLACEHOLDER_RE, Redactor
from devbox.core.redact_values import is_identifier, is_placeholder, plainly_not_secret
from devbox.wire.files import value_redactor

KEY = b"test-key"
STRIPE = "sk_live_" + "51HqLyjWDarjtT1zdp7dcXkYzWpR0qL8bA3"


def red(rules: RedactRules | None = None) -> Redactor:
    return Redactor(rules, key=KEY)


KEYS = [
    "key:__rand_int__",  # redis-benchmark's workload
    "key:000000042317",  # ...with -r: __rand_int__ expanded to 12 digits
    "counter:__rand_int__",
    "user:1000:session",
    "cache:key:profile:42",
    "api_key:lookup",
    "api_key:lookup:users",
    "session_token:user:42",
    "secret:rotation:schedule",
    "token:lastSeen",
    "password:reset:42",  # a key path, not a password
]

PLACEHOLDERS = [
    "token={id}",
    "token={{token}}",
    "password=${DB_PASSWORD}",
    "password: %s",
    "api_key=$API_KEY",
    "secret: ***",
    "token=xxxxxxxx",
    "password=null",
    "key=__rand_int__",
]


@pytest.mark.parametrize("text", KEYS + PLACEHOLDERS)
def test_identifiers_and_placeholders_stay(text: str) -> None:
    r = red()
    assert r.text(text) == text
    assert r.text(f"GET {text} -> hit") == f"GET {text} -> hit"
    assert r.find(text) == []  # devbox scan reports nothing either
    # the Redis path: an argument is redacted by value, through the same text rules
    assert value_redactor(None)("arg", text) == text


SECRETS = [
    # (text, what must be gone)
    (f"api_key: {STRIPE}", STRIPE[8:]),
    (f"api_key:{STRIPE}", STRIPE[8:]),
    ("api_key=4f9a8b2c7d1e6f3a9b8c7d6e5f4a3b2c", "4f9a8b2c7d1e6f3a9b8c7d6e5f4a3b2c"),
    ("token=7Hq2LmX9", "7Hq2LmX9"),
    ("access_token=zzz123", "zzz123"),
    ("key:a8f3k2j9d8s7", "a8f3k2j9d8s7"),
    ("secret=AbCdEfGhIjKlMnOpQrSt", "AbCdEfGhIjKlMnOpQrSt"),
    ("client_secret: Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
    ("token:deadbeefcafe1234", "deadbeefcafe1234"),
    # passwords are chosen by people: a word is a password
    ("password: hunter2", "hunter2"),
    ("password=correcthorse", "correcthorse"),
    ("password:hunter", "hunter"),
    ("db_password=letmein", "letmein"),
    ("pin=1234", "1234"),
    ("password=$ecretPa55", "$ecretPa55"),
    ("password={Tr0ub4dor}", "Tr0ub4dor"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_values_that_look_like_credentials_are_still_redacted(text: str, secret: str) -> None:
    r = red()
    out = r.text(text)
    assert secret not in out and PLACEHOLDER_RE.search(out), out
    assert r.find(text) != []
    assert secret not in value_redactor(None)("arg", text)


def test_a_real_key_keeps_its_shape_and_a_key_name_beside_it_stays() -> None:
    out = red().text(f"GET key:__rand_int__ api_key: {STRIPE} user:1000:session")
    assert out.startswith("GET key:__rand_int__ api_key: sk_live_<redacted:stripe-secret-key:")
    assert out.endswith(" user:1000:session")


def test_a_name_the_profile_adds_is_redacted_whatever_its_value() -> None:
    r = red(RedactRules(query=("tenant",)))
    assert PLACEHOLDER_RE.search(r.text("tenant=acme"))
    assert PLACEHOLDER_RE.search(r.text("tenant=__rand_int__"))


def test_fields_of_structured_data_keep_the_whole_value_rule() -> None:
    # a JSON field or a query parameter named like a credential is one for sure
    r = red()
    assert PLACEHOLDER_RE.fullmatch(r.value("api_key", "lookup"))
    assert PLACEHOLDER_RE.search(r.text('{"token": "lookup"}'))


def test_the_classifier() -> None:
    assert is_placeholder("__rand_int__") and is_placeholder("${X}") and is_placeholder("%s")
    assert not is_placeholder("hunter2") and not is_placeholder("__x")
    assert is_identifier("profile:42") and is_identifier("lastSeen") and is_identifier("ABC_DEF")
    assert not is_identifier("a8f3k2") and not is_identifier("7Hq2LmX9")
    assert not is_identifier("1234567890123")  # longer than an id of redis-benchmark's
    assert plainly_not_secret("api_key", "lookup")
    assert not plainly_not_secret("password", "lookup")
    assert not plainly_not_secret("password", "reset:42")
    assert plainly_not_secret("password", "reset:42", joined=True)
    assert not plainly_not_secret("key", "x" * 300)
