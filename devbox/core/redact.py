"""Redaction: secrets and personal data replaced by stable placeholders before anything is written.

Theory of operation
-------------------
A secret becomes ``<redacted:KIND:HASH>`` where HASH is the first 12 hex digits of
HMAC-SHA256(key, secret). The same secret always yields the same placeholder, on every
machine using the same key, so:

* a mock can run the *same* Redactor over a live request and still match the redacted
  recording (the live ``Authorization: Bearer sk_live`` and the recorded one both become
  ``Bearer <redacted:auth:…>``);
* a reader of a recording sees that the token a login returned is the token later sent.

The key is a fixed public default (``DEFAULT_KEY``) unless ``DEVBOX_REDACT_KEY`` is set
(or ``key=`` given). With the public key a short, guessable secret (a 4-digit PIN, a
dictionary password) can be recovered by hashing candidates; set a team-wide private key
where that matters. Long random tokens cannot be brute-forced either way. Idempotent: a
placeholder is never redacted again (re-importing an export changes nothing). Pure: no
I/O (the key override is read from the environment once, in the constructor).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from devbox.core.charset import looks_binary, mime_charset
from devbox.core.model import Exchange, Headers, Request, Response, header_get
from devbox.core.redact_grpc import redact_grpc_body
from devbox.core.redact_multipart import map_multipart
from devbox.core.redact_names import (
    Step,
    header_is_credential,
    header_is_not_credential,
    is_schema_document,
    is_schema_object,
    is_secret_name,
    is_weak_name,
    kind_of,
    map_leaves,
    parse_path,
    path_matches,
    reserialize,
    secret_named,
)
from devbox.core.redact_rules import (
    DEFAULT_KEY,
    DEFAULT_RULES,
    HASH_HEX,
    KEY_ENV,
    RULE_DESCRIPTIONS,
)
from devbox.core.redact_text import (
    PLACEHOLDER_RE,
    Context,
    TextScanner,
    _is_redacted,
    apply_patterns,
    body_may_hold_secret,
    is_card_number,
    luhn_ok,
    shaped,
)
from devbox.core.secret_formats import looks_random
from devbox.core.secret_keywords import KEYWORD_MIN_VALUE, keyword_rule, rules_for_name
from devbox.errors import ConfigError

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_RULES",
    "KEY_ENV",
    "PLACEHOLDER_RE",
    "RULE_DESCRIPTIONS",
    "Redactor",
    "is_card_number",
    "is_secret_name",
    "luhn_ok",
    "redact_value",
]

if TYPE_CHECKING:
    # profile.py imports DEFAULT_RULES from here to validate ``[redact] disable``
    from devbox.core.profile import RedactRules


# ---------------------------------------------------------------- the redactor

_CLEAN_HEADERS_MAX = 4096
_CLEAN_TEXT_MAX = 4096
_CLEAN_TEXT_LEN = 512
_CLEAN_BODY = 8 * 1024  # bodies repeat (a polled answer): one left alone is left alone again
_PLAIN, _CUSTOM, _SECRET, _PROVIDER, _KEEP, _WEAK = range(6)  # what a JSON name asks for
_JSON_TYPES = ("json", "+json")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_TEXTUAL = ("text/", "xml", "javascript", "ecmascript", "graphql", "csv", "yaml", "html")
# source code and documents: only what a secret's format gives away is redacted there
_CODE = ("javascript", "ecmascript", "css", "html", "markdown", "typescript", "jsx")


def _content_type(headers: Headers) -> str:
    return (header_get(headers, "content-type") or "").split(";", 1)[0].strip().lower()


class Redactor:
    """Replaces secrets in requests, responses and exchanges with stable placeholders.

    ``rules`` adds the profile's own names, paths and patterns and turns default rules
    off (``RedactRules.disable``). ``stats`` counts replacements per rule name; profile
    rules count as ``profile:json``, ``profile:headers``, ``profile:query``,
    ``profile:patterns``.
    """

    def __init__(self, rules: RedactRules | None = None, key: bytes | None = None) -> None:
        if rules is None:
            from devbox.core.profile import RedactRules

            rules = RedactRules()
        unknown = [r for r in rules.disable if r not in RULE_DESCRIPTIONS]
        if unknown:
            raise ConfigError(
                f"unknown redaction rule {unknown[0]!r}",
                field="redact.disable",
                hint="default rules: " + ", ".join(DEFAULT_RULES),
            )
        if key is None:
            env = os.environ.get(KEY_ENV)
            key = env.encode("utf-8") if env else DEFAULT_KEY
        self._key = key
        self.enabled = frozenset(r for r in DEFAULT_RULES if r not in rules.disable)
        self.rules = rules
        self._counts: Counter[str] = Counter()
        # told of every replacement (rule, kind, secret): `devbox scan` reports from it
        self.on_hit: Callable[[str, str, str], None] | None = None
        self._cache: dict[str, str] = {}
        # (name, value) header pairs this redactor leaves as they are: traffic repeats the
        # same Content-Type, Host, Accept... on every exchange, so each is examined once.
        # Only unchanged pairs go in: a pair with a secret is redacted (and counted) each time.
        self._clean_headers: set[tuple[str, str]] = set()
        # the same for short data text (a path, a query value) and (name, value) pairs:
        # traffic repeats them, and a string the rules left alone is left alone again
        self._clean_text: set[str] = set()
        self._clean_values: set[tuple[str, str]] = set()
        self._clean_bodies: set[tuple[str | None, bytes]] = set()
        self._name_class: dict[str, int] = {}
        self._custom_headers = frozenset(h.lower() for h in rules.headers)
        self._custom_query = frozenset(q.lower() for q in rules.query)
        self._custom_json_names = frozenset(j.lower() for j in rules.json if not j.startswith("$"))
        self._custom_json_paths = tuple(
            (parse_path(j), kind_of(j.rsplit(".", 1)[-1])) for j in rules.json if j.startswith("$")
        )
        self._patterns = tuple(re.compile(p) for p in rules.patterns)
        self._keep = frozenset(k.lower() for k in rules.keep)
        self._data = TextScanner(self.enabled, Context(data=True), self._custom_query)
        self._code = TextScanner(self.enabled, Context(data=False, emails=rules.document_emails))
        self._keywords = "secret-format" in self.enabled

    # ------------------------------------------------------------ public API

    @property
    def stats(self) -> Mapping[str, int]:
        return MappingProxyType(self._counts)

    def placeholder(self, kind: str, secret: str) -> str:
        """The stable stand-in for ``secret``: same secret and key, same placeholder."""
        digest = self._cache.get(secret)
        if digest is None:
            mac = hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
            digest = mac.hexdigest()[:HASH_HEX]
            if len(self._cache) < 65536:
                self._cache[secret] = digest
        return f"<redacted:{kind}:{digest}>"

    def text(self, s: str) -> str:
        """Data text: every text rule (formats, name=value, e-mails, cards, encoded...)."""
        clean = self._clean_text
        if s in clean:
            return s
        out = self._patterned(self._data.sub(s, self._hit))
        if out == s and len(s) <= _CLEAN_TEXT_LEN:
            if len(clean) >= _CLEAN_TEXT_MAX:
                clean.clear()
            clean.add(s)
        return out

    def code(self, s: str) -> str:
        """Source code or a document: only secrets recognisable by their format."""
        return self._patterned(self._code.sub(s, self._hit))

    def find(self, s: str, *, code: bool = False) -> list[tuple[int, int, str]]:
        """(start, end, kind) of each secret the text rules would replace in ``s``."""
        return (self._code if code else self._data).find(s)

    def request(self, req: Request) -> Request:
        host = self._host(req.host)
        path = self.text(req.path)
        query = self._pairs(req.query, "secret-query")
        headers = self._headers(req.headers)
        body = self._body(req.body, req.headers)
        old = (req.host, req.path, req.query, req.headers, req.body)
        if (host, path, query, headers, body) == old:
            return req
        return replace(req, host=host, path=path, query=query, headers=headers, body=body)

    def response(self, resp: Response) -> Response:
        headers = self._headers(resp.headers)
        body = self._body(resp.body, resp.headers)
        trailers = self._headers(resp.trailers) if resp.trailers else resp.trailers
        if headers == resp.headers and body == resp.body and trailers == resp.trailers:
            return resp
        return replace(resp, headers=headers, body=body, trailers=trailers)

    def exchange(self, ex: Exchange) -> Exchange:
        request = self.request(ex.request)
        response = self.response(ex.response) if ex.response is not None else None
        error = self.text(ex.error) if ex.error else ex.error
        if request is ex.request and response is ex.response and error == ex.error:
            return ex
        return replace(ex, request=request, response=response, error=error)

    def exchanges(self, exchanges: Iterable[Exchange]) -> list[Exchange]:
        return [self.exchange(e) for e in exchanges]

    def keeps(self, name: str) -> bool:
        """Values under ``name`` are written as they are (``[redact] keep``)."""
        return name.lower() in self._keep

    def value(self, name: str, value: str) -> str:
        """One value of a named field, for protocols other than HTTP (a Redis key's value, a
        Postgres column or startup parameter, a message header): the whole value becomes a
        placeholder when ``name`` denotes a credential (``password``, ``api_key``, a profile
        ``[redact] json``/``query`` name), otherwise only the secrets found in it are
        replaced (by format, name=value inside it, e-mails, cards, URL credentials,
        encoded secrets, or the whole value when it is an opaque high-entropy token). A
        ``[redact] keep`` name keeps its value. An empty ``name``: value rules only.
        Idempotent, and stable like every placeholder (same secret, same placeholder)."""
        low = name.lower()
        if not value or _is_redacted(value) or low in self._keep:
            return value
        if low and (low in self._custom_json_names or low in self._custom_query):
            return self._hit("profile:json", kind_of(name), value)
        if low and "secret-field" in self.enabled and secret_named(name, value):
            return self._secret("secret-field", "secret", value)
        return self._data_value(value, name)

    # ------------------------------------------------------------ internals

    def _hit(self, rule: str, kind: str, secret: str) -> str:
        self._counts[rule] += 1
        if self.on_hit is not None:
            self.on_hit(rule, kind, secret)
        return self.placeholder(kind, secret)

    def _secret(self, rule: str, kind: str, value: str) -> str:
        """A whole value that is a secret by its name, shaped when it has a known format."""
        return shaped(value, self._hit, rule, kind)

    def _data_value(self, value: str, name: str = "") -> str:
        """A whole data value (header, query, form field, JSON string) under a neutral name
        (or under a provider's: ``algolia_app_key``, see ``secret_keywords``)."""
        if name and self._keywords:
            rule = keyword_rule(name, value)
            if rule is not None:
                return self._hit("secret-format", rule.id, value)
        clean = self._clean_values
        if (name, value) in clean:
            return value
        red = self.text(value)
        if red == value and "generic-secret" in self.enabled and looks_random(value):
            return self._hit("generic-secret", "token", value)
        if red == value and len(value) <= _CLEAN_TEXT_LEN:
            if len(clean) >= _CLEAN_TEXT_MAX:
                clean.clear()
            clean.add((name, value))
        return red

    def _patterned(self, s: str) -> str:
        return apply_patterns(s, self._patterns, self._hit) if self._patterns else s

    def _host(self, host: str) -> str:
        if "@" not in host or "url-credentials" not in self.enabled:
            return host
        userinfo, _, hostport = host.rpartition("@")
        if _is_redacted(userinfo):
            return host
        user, sep, password = userinfo.partition(":")
        if not sep:
            return self._hit("url-credentials", "auth", userinfo) + "@" + hostport
        return f"{user}:{self._hit('url-credentials', 'password', password)}@{hostport}"

    def _pairs(self, pairs: tuple[tuple[str, str], ...], rule: str) -> tuple[tuple[str, str], ...]:
        if not pairs:
            return pairs
        out = []
        for k, v in pairs:
            lk = k.lower()
            if not v or _is_redacted(v) or lk in self._keep:
                pass
            elif lk in self._custom_query:
                v = self._hit("profile:query", kind_of(k), v)
            elif rule in self.enabled and secret_named(k, v):
                v = self._secret(rule, "secret", v)
            else:
                v = self._data_value(v, k)
            out.append((k, v))
        result = tuple(out)
        return pairs if result == pairs else result

    def _headers(self, headers: Headers) -> Headers:
        if not headers:
            return headers
        clean = self._clean_headers
        out = []
        changed = False
        for pair in headers:
            if pair in clean:
                out.append(pair)
                continue
            k, v = pair
            nv = self._header(k, v)
            if nv == v:
                if len(clean) >= _CLEAN_HEADERS_MAX:
                    clean.clear()
                clean.add(pair)
                out.append(pair)
            else:
                out.append((k, nv))
                changed = True
        return tuple(out) if changed else headers

    def _header(self, name: str, value: str) -> str:
        low = name.lower()
        if not value or PLACEHOLDER_RE.fullmatch(value) or low in self._keep:
            return value
        if low in self._custom_headers:
            return self._hit("profile:headers", kind_of(low), value)
        if low in ("authorization", "proxy-authorization") and "authorization" in self.enabled:
            scheme, sep, cred = value.strip().partition(" ")
            if not sep:
                if _is_redacted(value):
                    return value
                return self._secret("authorization", "auth", value)
            cred = cred.strip()
            if _is_redacted(cred):
                return value
            return f"{scheme} {self._secret('authorization', 'auth', cred)}"
        if low == "cookie" and "cookie" in self.enabled:
            return "; ".join(self._cookie_pair(p.strip()) for p in value.split(";"))
        if low == "set-cookie" and "cookie" in self.enabled:
            first, sep, attrs = value.partition(";")
            return self._cookie_pair(first.strip()) + sep + attrs
        if "token-header" in self.enabled and header_is_credential(low):
            return value if _is_redacted(value) else self._secret("token-header", "token", value)
        if header_is_not_credential(low):
            return self.text(value)  # a nonce or a key that is no credential: formats only
        return self._data_value(value, name)

    def _cookie_pair(self, pair: str) -> str:
        name, sep, val = pair.partition("=")
        if not sep or not val or _is_redacted(val):
            return pair
        return f"{name}={self._secret('cookie', 'cookie', val)}"

    # ------------------------------------------------------------ bodies

    def _body(self, body: bytes, headers: Headers) -> bytes:
        if not body:
            return body
        key = (header_get(headers, "content-type"), body) if len(body) <= _CLEAN_BODY else None
        if key is not None and key in self._clean_bodies:
            return body
        out = self._any_body(body, headers)
        if out is body and key is not None:
            if len(self._clean_bodies) >= _CLEAN_TEXT_MAX:
                self._clean_bodies.clear()
            self._clean_bodies.add(key)
        return out

    def _any_body(self, body: bytes, headers: Headers) -> bytes:
        ctype = _content_type(headers)
        head = body.lstrip()[:1]
        if ctype.endswith(_JSON_TYPES) or (head in (b"{", b"[") and not ctype.startswith(_FORM)):
            out = self._json_body(body)
            if out is not None:
                return out
        if ctype == _FORM:
            out = self._form_body(body)
            if out is not None:
                return out
        if ctype == _MULTIPART:
            out = self._multipart_body(body, headers)
            if out is not None:
                return out
        return self._text_body(body, headers, ctype)

    def _text_body(self, body: bytes, headers: Headers, ctype: str) -> bytes:
        textual = any(t in ctype for t in _TEXTUAL)
        out = redact_grpc_body(body, headers, ctype, self.value, self.text)  # None: not gRPC
        if out is not None or (b"\x00" in body and not textual):
            return body if out is None else out  # (else binary)
        charset = mime_charset(header_get(headers, "content-type")) or "utf-8"
        try:
            text = body.decode(charset)
        except (UnicodeDecodeError, LookupError):
            if not textual or looks_binary(body):
                return body  # binary (whatever its type says), or a charset we do not guess
            # declared text in an undeclared 8-bit charset: latin-1 maps every byte
            # one-to-one, so e-mails and tokens (ASCII) are found and the rest survives
            charset = "latin-1"
            text = body.decode(charset)
        red = self.code(text) if any(c in ctype for c in _CODE) else self.text(text)
        if red == text:
            return body
        try:
            return red.encode(charset)
        except UnicodeEncodeError:
            return red.encode("utf-8")

    def _form_body(self, body: bytes) -> bytes | None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        pairs = tuple(parse_qsl(text, keep_blank_values=True))
        if not pairs:
            return None
        red = self._pairs(pairs, "secret-query")
        return body if red is pairs else urlencode(red).encode("ascii")

    def _multipart_body(self, body: bytes, headers: Headers) -> bytes | None:
        return map_multipart(body, header_get(headers, "content-type") or "", self._part)

    def _part(self, name: str, is_file: bool, ctype: str, text: str) -> str:
        if _is_redacted(text) or (not is_file and name.lower() in self._keep):
            return text
        if not is_file and name.lower() in self._custom_query:
            return self._hit("profile:query", "secret", text)
        if not is_file and "secret-query" in self.enabled and secret_named(name, text):
            return self._secret("secret-query", "secret", text)
        if "\x00" in text:
            return text
        if is_file:
            return self.code(text) if any(c in ctype for c in _CODE) else self.text(text)
        return self._data_value(text, name)

    def _json_body(self, body: bytes) -> bytes | None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if is_schema_document(value):
            # an OpenAPI / JSON Schema document: names are documentation, not data
            new = self._json_doc(value)
        elif not (self._patterns or self._custom_json_paths or body_may_hold_secret(body)):
            # no string in this body can hold what a text rule looks for: only names matter
            new = self._json_names(value)
        else:
            new = self._json(value, ())
        if new is value:
            return body
        return reserialize(body, value, new)

    def _json(self, value: Any, here: tuple[Step, ...]) -> Any:
        if isinstance(value, dict):
            if is_schema_object(value):
                return self._json_doc(value)
            changed = False
            out: dict[str, Any] = {}
            for k, v in value.items():
                nv = self._json_field(k, v, (*here, k))
                if nv is not v:
                    changed = True
                out[k] = nv
            return out if changed else value
        if isinstance(value, list):
            items = [self._json(v, (*here, i)) for i, v in enumerate(value)]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
            return value
        if isinstance(value, str):
            red = self._data_value(value)
            return value if red == value else red
        return value

    def _json_names(self, value: Any) -> Any:
        """``_json`` for a body whose strings hold nothing for the text rules, with no
        profile patterns or JSON paths: only fields named like secrets are replaced."""
        if isinstance(value, dict):
            if is_schema_object(value):
                return value
            out: dict[str, Any] | None = None
            classes = self._name_class
            for k, v in value.items():
                c = classes.get(k)
                if c is None:
                    c = self._classify(k)
                if c == _KEEP:
                    continue
                if c == _CUSTOM:
                    nv = self._wipe(v, "profile:json", kind_of(k))
                elif c == _SECRET or (c == _WEAK and secret_named(k, v)):
                    nv = v if is_schema_object(v) else self._wipe(v, "secret-field", "secret")
                elif isinstance(v, dict | list):
                    nv = self._json_names(v)
                elif c == _PROVIDER and isinstance(v, str) and len(v) >= KEYWORD_MIN_VALUE:
                    nv = self._data_value(v, k)
                else:
                    continue
                if nv is not v:
                    if out is None:
                        out = dict(value)  # same keys, same order
                    out[k] = nv
            return value if out is None else out
        if isinstance(value, list):
            items = [self._json_names(v) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
        return value

    def _classify(self, name: str) -> int:
        """What a JSON field name asks for (remembered per Redactor, bounded)."""
        if name.lower() in self._keep:
            c = _KEEP
        elif name.lower() in self._custom_json_names:
            c = _CUSTOM
        elif "secret-field" in self.enabled and is_secret_name(name):
            c = _WEAK if is_weak_name(name) else _SECRET
        elif self._keywords and rules_for_name(name):
            c = _PROVIDER
        else:
            c = _PLAIN
        if len(self._name_class) >= _CLEAN_TEXT_MAX:
            self._name_class.clear()
        self._name_class[name] = c
        return c

    def _json_doc(self, value: Any) -> Any:
        """A schema or an API description: only secrets recognisable by format."""

        def leaf(v: Any) -> Any:
            red = self.code(v) if isinstance(v, str) else v
            return v if red == v else red

        return map_leaves(value, leaf)

    def _json_field(self, key: str, v: Any, where: tuple[Step, ...]) -> Any:
        for pattern, kind in self._custom_json_paths:
            if path_matches(pattern, where):
                return self._wipe(v, "profile:json", kind)
        low = key.lower()
        if low in self._keep:
            return v
        if low in self._custom_json_names:
            return self._wipe(v, "profile:json", kind_of(key))
        if "secret-field" in self.enabled and secret_named(key, v) and not is_schema_object(v):
            return self._wipe(v, "secret-field", "secret")
        if isinstance(v, str) and v and self._keywords and not _is_redacted(v):
            return self._data_value(v, key)
        return self._json(v, where)

    def _wipe(self, v: Any, rule: str, kind: str) -> Any:
        """Every scalar under a secret name is replaced; booleans and null say nothing."""

        def leaf(x: Any) -> Any:
            if isinstance(x, str):
                return x if not x or _is_redacted(x) else self._secret(rule, kind, x)
            if isinstance(x, int | float) and not isinstance(x, bool):
                return self._hit(rule, kind, json.dumps(x))
            return x

        return map_leaves(v, leaf)


_DEFAULT_REDACTOR: list[Redactor] = []


def redact_value(name: str, value: str, redactor: Redactor | None = None) -> str:
    """Redact one value given the name of the field it is in: see ``Redactor.value``.

    The entry point for protocol kinds that are not HTTP. Pass the profile's redactor
    (``Redactor(profile.redact)``, made once per session: it caches) so the profile's
    own rules and key apply; without one, the default rules and key are used.
    """
    if redactor is None:
        if not _DEFAULT_REDACTOR:
            _DEFAULT_REDACTOR.append(Redactor())
        redactor = _DEFAULT_REDACTOR[0]
    return redactor.value(name, value)
