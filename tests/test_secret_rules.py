"""Every value rule: a positive and a near-miss negative; contexts, shapes, encodings."""

from __future__ import annotations

import base64
import json
import random
from urllib.parse import quote, urlsplit

import pytest
from secret_corpus import SPECS, jwt, near_miss, pem, sample

from devbox.core.model import Request, Response
from devbox.core.profile import RedactRules
from devbox.core.redact import PLACEHOLDER_RE, Redactor
from devbox.core.secret_formats import FORMAT_RULES, format_of, looks_random

KEY = b"rules-key"


def red(rules: RedactRules | None = None) -> Redactor:
    return Redactor(rules, key=KEY)


def kinds(text: str, *, code: bool = False) -> set[str]:
    return {k for _, _, k in red().find(text, code=code)}


def test_every_format_rule_has_a_sample() -> None:
    assert set(SPECS) == {r.id for r in FORMAT_RULES}
    assert len(FORMAT_RULES) >= 60


@pytest.mark.parametrize("rule_id", sorted(SPECS))
def test_format_rule_positive_and_near_miss(rule_id: str) -> None:
    rng = random.Random(rule_id)
    secret = sample(rule_id, rng)
    assert format_of(secret) is not None and format_of(secret).id == rule_id  # type: ignore[union-attr]
    for text in (secret, f"note: the value is {secret} here", f'{{"x": "{secret}"}}'):
        assert rule_id in kinds(text) | kinds(text, code=True), text
    out = red().text(f"v {secret} v")
    assert secret not in out and PLACEHOLDER_RE.search(out)
    miss = near_miss(rule_id, rng)
    assert rule_id not in kinds(f"v {miss} v") | kinds(f"v {miss} v", code=True), miss
    # glued into a longer word it is not that token either
    assert rule_id not in kinds(f"v x{secret} v", code=True)


def test_keys_keep_their_prefix_and_placeholders_are_stable() -> None:
    key = "sk_live_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    out = red().text(f"key {key}")
    assert out.startswith("key sk_live_<redacted:stripe-secret-key:")
    assert red().text(f"key {key}") == out  # same secret, same placeholder, new redactor
    assert red().text(out) == out  # idempotent


def test_jwt_keeps_three_parts() -> None:
    token = jwt(random.Random(1))
    out = red().text(f"id_token={token}")
    value = out.split("=", 1)[1]
    assert token not in out and len(value.split(".")) == 3
    assert value.split(".")[0] == token.split(".")[0]  # the header (alg, typ) stays
    assert red().text("eyJhbGciOi") == "eyJhbGciOi"  # a lone header part is no token


def test_url_credentials_keep_a_url() -> None:
    r = red()
    for url in (
        "postgres://app:s3cr3t-Pa55@db.internal:5432/orders",
        "redis://:hunter2hunter2@127.0.0.1:6379/0",
        "amqp://guest:guest123@rabbit/vhost",
    ):
        out = r.text(f"DATABASE_URL {url} ok")
        new = out.split()[1]
        parts = urlsplit(new)
        assert parts.hostname == urlsplit(url).hostname and parts.port == urlsplit(url).port
        assert parts.username == urlsplit(url).username
        assert urlsplit(url).password not in out and PLACEHOLDER_RE.fullmatch(parts.password or "")
    assert r.text("see https://example.com:8080/path") == "see https://example.com:8080/path"


def test_pem_block_keeps_its_armour() -> None:
    key = pem(random.Random(2))
    out = red().text(f"key:\n{key}\n")
    assert key.splitlines()[1] not in out
    assert "-----BEGIN RSA PRIVATE KEY-----\n<redacted:private-key:" in out
    assert "-----END RSA PRIVATE KEY-----" in out
    near = (
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"
        "-----END PUBLIC KEY-----"
    )
    assert red().text(near) == near


def test_encoded_secrets_are_redacted_in_their_encoding() -> None:
    r = red()
    secret = sample("github-pat", random.Random(3))
    text = f"token: {secret} and more text"
    for enc, dec in (
        (base64.b64encode, base64.b64decode),
        (base64.urlsafe_b64encode, base64.urlsafe_b64decode),
    ):
        blob = enc(text.encode()).decode()
        out = r.text(f"payload {blob} end")
        new = out.split()[1]
        assert secret not in dec(new).decode() and "ghp_<redacted:github-pat:" in dec(new).decode()
    pct = quote(f"https://x/cb?state={secret}&x=1", safe="")
    out = r.text(f"next={pct}")
    assert secret not in out and quote(secret) not in out and "%3A%2F%2F" in out
    # near miss: base64 of ordinary text stays byte for byte
    plain = base64.b64encode(b"just some ordinary words here, nothing secret").decode()
    assert r.text(f"payload {plain}") == f"payload {plain}"


def test_opaque_tokens_as_whole_values_but_not_ids_or_words() -> None:
    assert looks_random("q8ZtL0x3VbN7mK2pR9sW4yF6hJ1cD5gA")
    for not_secret in (
        "550e8400-e29b-41d4-a716-446655440000",  # a UUID
        "33a64df551425fcc55e4d42a148795d9f25f89d4",  # a hash / ETag
        "application/vnd.api+json",
        "ThisIsAnOrdinaryCamelCaseIdentifier2",
        "sha512-q8ZtL0x3VbN7mK2pR9sW4yF6hJ1cD5gA",
        "2026-11-26T07:30:12Z",
    ):
        assert not looks_random(not_secret), not_secret
    r = red()
    out = r.request(Request("GET", "/s", (("q", "q8ZtL0x3VbN7mK2pR9sW4yF6hJ1cD5gA"),), ()))
    assert PLACEHOLDER_RE.fullmatch(out.query[0][1])


def test_name_rules_apply_to_data_not_to_code() -> None:
    r = red()
    js = b'function f(Y,e){Y.password=e;Y.token=e.token;var apiKey="api_key";return Y}'
    css = b".password-field{color:red}.token{font:12px mono}"
    html = b"<p>Write to maintainer@example.org</p><input name=password value=''>"
    for ctype, body in (
        ("application/javascript", js),
        ("text/css", css),
        ("text/html; charset=utf-8", html),
    ):
        assert r.response(Response(200, (("Content-Type", ctype),), body)).body == body
    # a secret by format in code is still a secret
    key = sample("stripe-secret-key", random.Random(4))
    out = r.response(
        Response(200, (("Content-Type", "application/javascript"),), f'const k="{key}";'.encode())
    ).body
    assert key.encode() not in out and b'const k="sk_live_<redacted:' in out
    # and the keyword-plus-entropy rule stands in for names there
    out = r.response(
        Response(
            200,
            (("Content-Type", "application/javascript"),),
            b'var apiKey = "f3Xk9Qm2Lp7Zr4Tb8Wn1Yc6V";',
        )
    ).body
    assert b"f3Xk9Qm2" not in out
    # e-mails in documents: a profile choice
    out = (
        red(RedactRules(document_emails=True))
        .response(Response(200, (("Content-Type", "text/html"),), html))
        .body
    )
    assert b"maintainer@example.org" not in out
    # in data, names decide: log text, XML, form
    log = b"level=info password=hunter2 user=bob\n<apiKey>abc123</apiKey>"
    out = r.response(Response(200, (("Content-Type", "text/plain"),), log)).body
    assert b"hunter2" not in out and b"abc123" not in out and b"user=bob" in out


def test_schema_is_not_data() -> None:
    spec = {
        "openapi": "3.0.0",
        "components": {
            "securitySchemes": {"api_key": {"type": "apiKey", "name": "api_key", "in": "header"}},
            "schemas": {
                "User": {"properties": {"password": {"type": "string", "format": "password"}}}
            },
        },
    }
    body = json.dumps(spec).encode()
    r = red()
    assert r.response(Response(200, (("Content-Type", "application/json"),), body)).body == body
    # a schema object inside data is schema too; the data beside it is still data
    data = {
        "password": {"type": "string"},
        "token_type": "bearer",
        "password_policy": "strong",
        "key_id": "k-1",
        "secret": "hunter2",
    }
    out = json.loads(r.response(Response(200, (), json.dumps(data).encode())).body)
    assert out["password"] == {"type": "string"} and out["token_type"] == "bearer"
    assert out["password_policy"] == "strong" and out["key_id"] == "k-1"
    assert PLACEHOLDER_RE.fullmatch(out["secret"])


def test_headers_follow_their_meaning() -> None:
    r = red()
    headers = (
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Headers", "Authorization, X-Api-Key"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("X-Custom-Auth", "opaque"),
        ("X-Api-Key", "k"),
    )
    out = dict(r.response(Response(200, headers, b"")).headers)
    assert out["Access-Control-Allow-Credentials"] == "true"
    assert out["Access-Control-Allow-Headers"] == "Authorization, X-Api-Key"
    assert out["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert out["Idempotency-Key"] == "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert PLACEHOLDER_RE.fullmatch(out["X-Custom-Auth"])
    assert PLACEHOLDER_RE.fullmatch(out["X-Api-Key"])
