"""Every value rule: a positive and a near-miss negative; contexts, shapes, encodings."""

from __future__ import annotations

import base64
import json
import random
import re
from urllib.parse import quote, urlsplit

import pytest
from gitleaks_ids import GITLEAKS
from secret_corpus import KEYWORD_SPECS, SPECS, jwt, keyword_name, near_miss, pem, sample

from devbox.core.model import Request, Response
from devbox.core.profile import RedactRules
from devbox.core.redact import PLACEHOLDER_RE, Redactor
from devbox.core.secret_formats import (
    FORMAT_RULES,
    GATE_CHARS,
    MIN_LENGTH,
    RULES_BY_ID,
    format_of,
    looks_random,
)
from devbox.core.secret_keywords import RULES_BY_ID as KEYWORD_RULES_BY_ID
from devbox.core.secret_keywords import keyword_rule

KEY = b"rules-key"


def red(rules: RedactRules | None = None) -> Redactor:
    return Redactor(rules, key=KEY)


def kinds(text: str, *, code: bool = False) -> set[str]:
    return {k for _, _, k in red().find(text, code=code)}


def test_every_format_rule_has_a_sample() -> None:
    assert set(SPECS) == {r.id for r in FORMAT_RULES}
    assert set(KEYWORD_SPECS) == set(KEYWORD_RULES_BY_ID)
    assert not set(SPECS) & set(KEYWORD_SPECS)  # one id, one rule: ids are placeholder kinds
    assert len(FORMAT_RULES) + len(KEYWORD_RULES_BY_ID) >= 180


@pytest.mark.parametrize("rule_id", sorted(SPECS))
def test_each_format_passes_the_length_gate(rule_id: str) -> None:
    """The format table's prefilter assumes every secret opens with MIN_LENGTH characters
    of GATE_CHARS (see secret_formats): a rule outside it would never match."""
    secret = sample(rule_id, random.Random(rule_id))
    assert re.match(f"[A-Za-z0-9_]{GATE_CHARS}{{{MIN_LENGTH - 1}}}", secret), secret
    width = re._parser.parse(RULES_BY_ID[rule_id].pattern).getwidth()[0]  # type: ignore[attr-defined]
    assert width >= MIN_LENGTH


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
        password = urlsplit(url).password
        assert password is not None
        assert password not in out and PLACEHOLDER_RE.fullmatch(parts.password or "")
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


@pytest.mark.parametrize("rule_id", sorted(KEYWORD_SPECS))
def test_keyword_rule_positive_and_near_miss(rule_id: str) -> None:
    rng = random.Random(rule_id)
    secret, name = sample(rule_id, rng), keyword_name(rule_id)
    assert keyword_rule(name, secret) == KEYWORD_RULES_BY_ID[rule_id]
    camel = "".join(w.capitalize() for w in name.split("_"))
    for text, code in (
        (f"{name}={secret}", False),
        (f"{name.upper()}: {secret}", False),
        (f'{{"{camel}": "{secret}"}}', False),
        (f'const {camel[0].lower()}{camel[1:]} = "{secret}";', True),
        (f"  {name}: '{secret}'", True),
    ):
        assert rule_id in kinds(text, code=code), text
    r = red()
    out = r.request(
        Request(
            "POST",
            "/",
            ((name, secret),),
            ((f"X-{camel}", secret),),
            json.dumps({"cfg": {name: secret}}).encode(),
        )
    )
    assert secret not in repr(out), out
    assert f"<redacted:{rule_id}:" in out.query[0][1]
    # the near miss: the same name with a value of the wrong shape, and the same value
    # under a name whose keyword does not start a word ("x" + keyword)
    miss = near_miss(rule_id, rng)
    assert rule_id not in kinds(f"{name}={miss}") | kinds(f'{name} = "{miss}"', code=True)
    assert keyword_rule(name, miss) is None
    assert keyword_rule("x" + name, secret) is None and keyword_rule("ref", secret) is None


def test_keywords_start_words_and_words_are_not_keys() -> None:
    assert keyword_rule("global_blob_id", "live_" + "0a" * 17 + "1") is None  # "lob" mid-word
    assert keyword_rule("lobApiKeyRef", "live_" + "0a" * 17 + "1") is not None
    assert keyword_rule("NEW_RELIC_ACCOUNT", "a" * 64) is None  # a word, no digit
    for name, value in (
        ("algolia_index", "products_production"),
        ("heroku_region", "eu"),
        ("datadog_site", "datadoghq.eu"),
        ("twitter_handle", "@devbox_project_official"),
        ("discord_invite", "https://discord.gg/abcdefgh"),
    ):
        assert keyword_rule(name, value) is None
        assert red().text(f"{name}={value}") == f"{name}={value}"


def test_every_gitleaks_default_rule_has_a_rule_here() -> None:
    """gitleaks' default rule ids (config/gitleaks.toml, 222 rules when this was written)
    and the rule here that finds the same secrets; the few left out say why."""
    ours = (
        {r.id for r in FORMAT_RULES}
        | set(KEYWORD_RULES_BY_ID)
        | {"private-key", "jwt", "generic-secret", "url-credentials", "secret-field"}
        | {"authorization"}
    )
    for theirs, mine in GITLEAKS.items():
        assert mine in ours or mine.startswith("not covered:"), (theirs, mine)
    covered = [t for t, m in GITLEAKS.items() if not m.startswith("not covered:")]
    assert len(GITLEAKS) >= 220 and len(covered) >= 215


def test_basic_credentials_and_curl_users_in_text() -> None:
    r = red()
    basic = base64.b64encode(b"deploy:Xk29vLq7Tz").decode()
    for text in (
        f'curl -H "Authorization: Basic {basic}" https://api.example.test/v1',
        "curl -X POST -u 'deploy:Xk29vLq7Tz' https://api.example.test",
        "curl --user=deploy:Xk29vLq7Tz https://api.example.test",
    ):
        for out in (r.text(text), r.code(text)):
            assert "Xk29vLq7Tz" not in out and basic not in out and "<redacted:" in out, out
    # near misses: prose, and a Basic token that is no user:password
    for text in ("Basic authentication is supported", "Basic Zm9vYmFyYmF6cXV4"):
        assert r.text(text) == text and r.code(text) == text


def test_the_redaction_docs_list_every_rule() -> None:
    from conftest import ROOT

    doc = (ROOT / "docs" / "redaction.md").read_text()
    missing = [r for r in [*SPECS, *KEYWORD_SPECS] if f"| `{r}` |" not in doc]
    assert missing == []
