"""Which names mean "credential": field, query, header names, and what is not data.

Name rules replace a whole value because of the name it is stored under (``password``,
``api_key``, ``X-Auth-Token``). They apply to *data*: headers, query strings, form and
multipart fields, JSON and XML payloads, logs. Three things look like data by name and are
not, and this module says which:

* names whose words say they describe a secret rather than hold one: ``token_type``,
  ``password_policy``, ``key_id``, ``secret_length``;
* headers whose meaning is not a credential although their name sounds like one
  (``Access-Control-Allow-Credentials: true``, ``Sec-WebSocket-Key``, ``Idempotency-Key``);
* JSON Schema and OpenAPI objects (``"password": {"type": "string", "format": "password"}``):
  a description of data, not data.

Also here, as the other half of "which field is this": the profile's JSON paths
(``$.customer.ssn``) and re-serializing a redacted JSON body in the style it came in.

Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from devbox.core.secret_formats import is_uuid

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# a name whose last word is one of these is a secret: access_token, client_secret, db_password
_SECRET_LAST = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "apikey",
        "credential",
        "credentials",
        "authorization",
        "sig",
        "signature",
        "sessionid",
        # card verification values, PINs and social security numbers are personal secrets
        "cvc",
        "cvv",
        "cvv2",
        "cvn",
        "pin",
        "ssn",
    }
)
# these are secrets wherever they appear in a name: password_confirmation, secret_value
_SECRET_ANY = frozenset({"password", "passwd", "passphrase", "secret"})
# ...unless the name's last word says it describes the secret rather than holds it
_DESCRIBES = frozenset(
    {
        "type",
        "types",
        "policy",
        "policies",
        "length",
        "len",
        "min",
        "max",
        "hint",
        "rules",
        "rule",
        "strength",
        "required",
        "enabled",
        "expires",
        "expiry",
        "expiration",
        "ttl",
        "url",
        "uri",
        "endpoint",
        "id",
        "ids",
        "name",
        "names",
        "format",
        "count",
        "at",
        "set",
        "changed",
        "updated",
        "created",
        "reset",
        "scope",
        "scopes",
        "location",
        "header",
        "method",
        "algorithm",
        "alg",
        "version",
        "status",
        "label",
        "placeholder",
        "field",
        "pattern",
        "prefix",
    }
)
# "key" alone is a secret (?key=AIza…); "xxx_key" only when xxx says what kind of key
_KEY_QUALIFIERS = frozenset(
    {
        "api",
        "secret",
        "private",
        "access",
        "client",
        "auth",
        "signing",
        "encryption",
        "master",
        "license",
        "subscription",
        "session",
        "app",
        "account",
        "storage",
        "shared",
    }
)


def words_of(name: str) -> tuple[str, ...]:
    """The lower-case words of a name: ``X-Api-Key``, ``apiKey``, ``api_key`` -> api, key.
    ``passWord`` and ``PassPhrase`` are one word, as ``password`` is (legacy and SOAP
    APIs write them so, and they went to disk as "pass" and "word")."""
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    for i in range(len(words) - 1, 0, -1):
        if words[i - 1] == "pass" and words[i] in _PASS_WORDS:
            words[i - 1 : i + 1] = ["pass" + words[i]]
    return tuple(words)


_PASS_WORDS = frozenset({"word", "phrase", "code", "wd"})


@lru_cache(maxsize=8192)
def is_secret_name(name: str) -> bool:
    """Whether a header, query parameter or JSON field name denotes a credential."""
    words = words_of(name)
    if not words:
        return False
    last = words[-1]
    if last in _DESCRIBES and len(words) > 1:
        return False
    if last in _SECRET_LAST or _SECRET_ANY.intersection(words):
        return True
    if last == "key":
        return len(words) == 1 or words[-2] in _KEY_QUALIFIERS
    return False


# names that hold a credential only sometimes: ``?key=AIza…``, but also a map entry's or a
# settings row's name (``{"Key": "env", "Value": "prod"}``, ``SELECT key, value``)
_WEAK_NAMES = frozenset({"key"})
_WORDS_ONLY = re.compile(r"[A-Za-z]+(?:[._:/\-][A-Za-z]+)*")


def secret_named(name: str, value: object) -> bool:
    """Whether ``value`` is a credential by ``name`` (``is_secret_name``); under a name that
    holds one only sometimes (``key``), only a value that could be one: a string of 8 or
    more characters, no whitespace, not words (``feature.new-checkout``), not a uuid. An
    AWS tag's ``Key``, a key/value table's ``key`` column were redacted whole, the data
    damaged."""
    if not is_secret_name(name):
        return False
    if name.lower() not in _WEAK_NAMES:
        return True
    if not isinstance(value, str) or len(value) < 8 or any(c.isspace() for c in value):
        return False
    return not (_WORDS_ONLY.fullmatch(value) or is_uuid(value))


# a session's id is a bearer credential, whatever its name's last word says
_SESSION_WORDS = frozenset(
    {"sess", "session", "sessions", "sid", "sessid", "sessionid", "phpsessid", "jsessionid"}
)


def session_named(name: str) -> bool:
    """Whether ``name`` (a column, a Redis key's prefix) says it holds a session's id."""
    return not _SESSION_WORDS.isdisjoint(words_of(name))


def is_weak_name(name: str) -> bool:
    return name.lower() in _WEAK_NAMES


# ---------------------------------------------------------------- headers

# Headers named like credentials whose value is not one: CORS flags and header lists, the
# WebSocket handshake nonce, idempotency and cache keys, challenges (WWW-Authenticate
# names a scheme and a realm). Their values still go through the format rules.
_NOT_CREDENTIAL_PREFIXES = ("access-control-", "sec-websocket-", "sec-fetch-", "sec-ch-")
_NOT_CREDENTIAL = frozenset(
    {
        "idempotency-key",
        "x-idempotency-key",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "x-cache-key",
        "cache-key",
        "x-content-type-options",
        "content-security-policy",
        "strict-transport-security",
        "x-session-affinity",
    }
)


def header_is_not_credential(name: str) -> bool:
    """Named like a credential, and by its meaning not one (lower-case name)."""
    return name in _NOT_CREDENTIAL or name.startswith(_NOT_CREDENTIAL_PREFIXES)


@lru_cache(maxsize=4096)
def header_is_credential(name: str) -> bool:
    """Whether a header (lower-case name) holds a credential by its meaning."""
    if name in _NOT_CREDENTIAL or name.startswith(_NOT_CREDENTIAL_PREFIXES):
        return False
    # X-Custom-Auth, X-Upstream-Auth: as a header's last word "auth" is the credential
    return is_secret_name(name) or name.endswith("-auth")


# ---------------------------------------------------------------- schema, not data

_SCHEMA_TYPES = frozenset(
    {
        "string",
        "number",
        "integer",
        "boolean",
        "object",
        "array",
        "null",
        # OpenAPI security scheme types
        "apiKey",
        "http",
        "oauth2",
        "openIdConnect",
        "mutualTLS",
    }
)
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "title",
        "example",
        "examples",
        "default",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "nullable",
        "readOnly",
        "writeOnly",
        "deprecated",
        "items",
        "properties",
        "required",
        "additionalProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "$ref",
        "xml",
        "in",
        "name",
        "scheme",
        "bearerFormat",
        "flows",
        "openIdConnectUrl",
        "schema",
        "style",
        "explode",
        "x-nullable",
    }
)


def is_schema_object(value: Any) -> bool:
    """A JSON Schema / OpenAPI object (``{"type": "string", "format": "password"}``,
    ``{"$ref": ...}``, ``{"type": "apiKey", "in": "header", ...}``): every key a schema
    keyword, and a schema ``type`` or a ``$ref``."""
    if not isinstance(value, Mapping) or ("type" not in value and "$ref" not in value):
        return False
    if not all(isinstance(k, str) and (k in _SCHEMA_KEYS or k.startswith("x-")) for k in value):
        return False
    t = value.get("type")
    if isinstance(t, list):
        return all(isinstance(x, str) and x in _SCHEMA_TYPES for x in t)
    return (isinstance(t, str) and t in _SCHEMA_TYPES) or isinstance(value.get("$ref"), str)


def is_schema_document(value: Any) -> bool:
    """A whole OpenAPI / Swagger / JSON Schema document: its names are documentation."""
    return isinstance(value, Mapping) and (
        "openapi" in value or "swagger" in value or "$schema" in value
    )


# ---------------------------------------------------------------- custom JSON paths

_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\*\]|\.\*")
Step = str | int


def parse_path(path: str) -> tuple[Step | None, ...]:
    """``$.a.items[*].b`` -> ("a", "items", None, "b"); None is a wildcard."""
    steps: list[Step | None] = []
    for m in _PATH_TOKEN.finditer(path, 1):
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(None)
    return tuple(steps)


def path_matches(pattern: tuple[Step | None, ...], here: tuple[Step, ...]) -> bool:
    if len(pattern) != len(here):
        return False
    return all(p is None or p == h for p, h in zip(pattern, here, strict=True))


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` (parsed JSON) with ``leaf`` applied to every scalar in it: the very same
    object wherever nothing changed, so a caller tells "untouched" by identity and writes
    the original bytes back."""
    if isinstance(value, dict):
        out = {k: map_leaves(v, leaf) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [map_leaves(v, leaf) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return leaf(value)


def kind_of(name: str) -> str:
    kind = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return kind or "custom"


def reserialize(original: bytes, old: Any, new: Any) -> bytes:
    """Re-encode in the style the body came in, so a redacted body still reads the same."""
    if orjson.dumps(old) == original:
        return bytes(orjson.dumps(new))
    for ensure_ascii in (True, False):
        if json.dumps(old, ensure_ascii=ensure_ascii).encode("utf-8") == original:
            return json.dumps(new, ensure_ascii=ensure_ascii).encode("utf-8")
    for indent in (2, 4):
        if json.dumps(old, indent=indent, ensure_ascii=False).encode("utf-8") == original.strip():
            return json.dumps(new, indent=indent, ensure_ascii=False).encode("utf-8")
    return bytes(orjson.dumps(new))
