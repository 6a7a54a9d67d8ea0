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
where that matters. Long random tokens cannot be brute-forced either way.

Redaction is idempotent: a placeholder is never redacted again, so re-importing an
exported recording, or redacting an already redacted request, changes nothing.

Pure: no I/O (the key override is read from the environment once, in the constructor).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache, partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import orjson

from devbox.core.model import Exchange, Headers, Request, Response, header_get
from devbox.errors import ConfigError

if TYPE_CHECKING:
    # profile.py imports DEFAULT_RULES from here to validate ``[redact] disable``
    from devbox.core.profile import RedactRules

# Every default rule, by the name used in ``[redact] disable = [...]`` and in ``stats``.
RULE_DESCRIPTIONS: Mapping[str, str] = {
    "authorization": "Authorization and Proxy-Authorization credentials (the scheme is kept), "
    "and user:password@ in URLs",
    "cookie": "Cookie and Set-Cookie values (cookie names and attributes are kept)",
    "token-header": "headers named like credentials: x-api-key, x-auth-token, *-token, *-secret, "
    "*-api-key, *-password",
    "secret-query": "query parameters and form fields named like secrets (token, secret, "
    "password, key, api_key, access_token, client_secret, ...), also name=value inside text",
    "secret-field": "JSON fields named like secrets (same names as secret-query)",
    "bearer": "Bearer tokens anywhere in text",
    "jwt": "JSON Web Tokens (eyJ….eyJ….sig) anywhere in text",
    "email": "e-mail addresses anywhere in text",
    "card-number": "payment card numbers: 13-19 digits with a card-network prefix that pass "
    "the Luhn check, optionally grouped with spaces or dashes",
    "aws-access-key": "AWS access key ids (AKIA…, ASIA…)",
}
DEFAULT_RULES: tuple[str, ...] = tuple(RULE_DESCRIPTIONS)

DEFAULT_KEY = b"devbox-redact-v1"
KEY_ENV = "DEVBOX_REDACT_KEY"
HASH_HEX = 12
PLACEHOLDER_RE = re.compile(r"<redacted:[a-z0-9-]{1,40}:[0-9a-f]{12}>")

# ---------------------------------------------------------------- names that mean "secret"

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
    }
)


@lru_cache(maxsize=8192)
def is_secret_name(name: str) -> bool:
    """Whether a header, query parameter or JSON field name denotes a credential."""
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_LAST or _SECRET_ANY.intersection(words):
        return True
    if last == "key":
        return len(words) == 1 or words[-2] in _KEY_QUALIFIERS
    return False


# ---------------------------------------------------------------- text patterns

_BEARER = r"(?P<bearer>\b[Bb]earer\s+)(?P<bearer_tok>[A-Za-z0-9\-._~+/]{8,}=*)"
_JWT = r"(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
_AWS = (
    r"(?P<aws>(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])"
    r"[A-Z0-9]{16}(?![A-Z0-9]))"
)
_EMAIL = (
    r"(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
    r"[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b)"
)
# 13-19 digits, optionally grouped by single spaces or dashes, not glued to other digits/words
_CARD = r"(?P<card>(?<![\w.,])\d(?:[ -]?\d){12,18}(?!\w|[.,]\d))"
_SECRET_KV = (
    r"(?P<kv>(?<![A-Za-z0-9_.\-])(?P<kv_name>[A-Za-z][A-Za-z0-9_.\-]{0,63})=)"
    r"(?P<kv_val>[^&#\s\"'<>;,]+)"
)

_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("bearer", _BEARER),
    ("jwt", _JWT),
    ("aws-access-key", _AWS),
    ("email", _EMAIL),
    ("card-number", _CARD),
    ("secret-query", _SECRET_KV),
)

_DIGITS = str.maketrans("", "", "0123456789")
_TRIGGER = re.compile(r"[@=]|eyJ|earer|A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|3T)")


# The same test over a whole ASCII JSON body: a string can only hold 13 digits (grouped by
# single spaces or dashes, the card rule) or a trigger if the raw bytes do, since JSON
# escapes other than \uXXXX decode to characters that are neither digits nor triggers.
_BODY_TRIGGER = re.compile(
    rb"[@=]|eyJ|earer|A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|3T)|\\u|\d(?:[ -]?\d){12}"
)


def _may_hold_secret(s: str) -> bool:
    """A cheap test that rules out most header values and JSON strings before the regex
    of every text rule runs over them: each rule needs one of these to match at all."""
    return _TRIGGER.search(s) is not None or (
        len(s) >= 13 and len(s) - len(s.translate(_DIGITS)) >= 13
    )


# card-network prefixes (IIN ranges): an ordinary 13-19 digit number (a timestamp in ms,
# an order id) passes Luhn one time in ten, so the prefix check keeps those out
_CARD_PREFIX = re.compile(
    r"^(?:4\d{12}(?:\d{3}){0,2}"  # Visa 13/16/19
    r"|(?:5[1-5]\d{2}|222[1-9]|22[3-9]\d|2[3-6]\d{2}|27[01]\d|2720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # Amex
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"  # Diners
    r"|(?:6011|65\d{2}|64[4-9]\d)\d{12,15}"  # Discover
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|62\d{14,17}"  # UnionPay
    r"|(?:50|5[6-9]|6[0-9])\d{10,17})$"  # Maestro
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_span(text: str) -> tuple[int, int] | None:
    """Where the card number is in a run of grouped digits ("qty 2 4111 1111 1111 1111 12").

    The regex takes the longest run; the card may be any run of whole groups inside it.
    """
    if is_card_number(text):
        return 0, len(text)
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
    if len(groups) < 2:
        return None
    best: tuple[int, int] | None = None
    for i in range(len(groups)):
        for j in range(len(groups) - 1, i - 1, -1):
            s, e = groups[i][0], groups[j][1]
            if best is not None and e - s <= best[1] - best[0]:
                break
            if is_card_number(text[s:e]):
                best = (s, e)
                break
    return best


def is_card_number(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return (
        13 <= len(digits) <= 19
        and digits.isdigit()
        and _CARD_PREFIX.match(digits) is not None
        and luhn_ok(digits)
    )


# ---------------------------------------------------------------- custom JSON paths

_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\*\]|\.\*")
_Step = str | int


def _parse_path(path: str) -> tuple[_Step | None, ...]:
    """``$.a.items[*].b`` -> ("a", "items", None, "b"); None is a wildcard."""
    steps: list[_Step | None] = []
    for m in _PATH_TOKEN.finditer(path, 1):
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(None)
    return tuple(steps)


def _path_matches(pattern: tuple[_Step | None, ...], here: tuple[_Step, ...]) -> bool:
    if len(pattern) != len(here):
        return False
    return all(p is None or p == h for p, h in zip(pattern, here, strict=True))


def _kind_of(name: str) -> str:
    kind = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return kind or "custom"


# ---------------------------------------------------------------- the redactor

_CLEAN_HEADERS_MAX = 4096
_JSON_TYPES = ("json", "+json")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_TEXTUAL = ("text/", "xml", "javascript", "ecmascript", "graphql", "csv", "yaml", "html")


def _content_type(headers: Headers) -> str:
    return (header_get(headers, "content-type") or "").split(";", 1)[0].strip().lower()


def _charset(headers: Headers) -> str:
    m = re.search(r"charset=\"?([A-Za-z0-9_.:-]+)", header_get(headers, "content-type") or "", re.I)
    return m.group(1).lower() if m else "utf-8"


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
        self._cache: dict[str, str] = {}
        # (name, value) header pairs this redactor leaves as they are: traffic repeats the
        # same Content-Type, Host, Accept... on every exchange, so each is examined once.
        # Only unchanged pairs go in: a pair with a secret is redacted (and counted) each time.
        self._clean_headers: set[tuple[str, str]] = set()
        self._custom_headers = frozenset(h.lower() for h in rules.headers)
        self._custom_query = frozenset(q.lower() for q in rules.query)
        self._custom_json_names = frozenset(j.lower() for j in rules.json if not j.startswith("$"))
        self._custom_json_paths = tuple(
            (_parse_path(j), _kind_of(j.rsplit(".", 1)[-1]))
            for j in rules.json
            if j.startswith("$")
        )
        self._patterns = tuple(re.compile(p) for p in rules.patterns)
        text_rules = [rx for name, rx in _TEXT_RULES if name in self.enabled]
        self._text_re = re.compile("|".join(text_rules)) if text_rules else None

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
        """Apply the text rules (bearer, JWT, e-mail, cards, AWS keys, name=secret, patterns)."""
        if self._text_re is not None and s and _may_hold_secret(s):
            s = self._text_re.sub(self._text_sub, s)
        for rx in self._patterns:
            if "<redacted:" in s:
                # a user pattern may match inside a placeholder ("[0-9a-f]{12}"): leave those
                spans = [m.span() for m in PLACEHOLDER_RE.finditer(s)]
                s = rx.sub(partial(self._pattern_guarded, spans=spans), s)
            else:
                s = rx.sub(self._pattern_sub, s)
        return s

    def _pattern_guarded(self, m: re.Match[str], *, spans: list[tuple[int, int]]) -> str:
        a, b = m.span()
        if any(s < b and a < e for s, e in spans):
            return m.group(0)
        return self._pattern_sub(m)

    def request(self, req: Request) -> Request:
        host = self._host(req.host)
        path = self.text(req.path)
        query = self._pairs(req.query, "secret-query")
        headers = self._headers(req.headers)
        body = self._body(req.body, req.headers)
        if (host, path, query, headers, body) == (
            req.host,
            req.path,
            req.query,
            req.headers,
            req.body,
        ):
            return req
        return replace(req, host=host, path=path, query=query, headers=headers, body=body)

    def response(self, resp: Response) -> Response:
        headers = self._headers(resp.headers)
        body = self._body(resp.body, resp.headers)
        if headers == resp.headers and body == resp.body:
            return resp
        return replace(resp, headers=headers, body=body)

    def exchange(self, ex: Exchange) -> Exchange:
        request = self.request(ex.request)
        response = self.response(ex.response) if ex.response is not None else None
        error = self.text(ex.error) if ex.error else ex.error
        if request is ex.request and response is ex.response and error == ex.error:
            return ex
        return replace(ex, request=request, response=response, error=error)

    def exchanges(self, exchanges: Iterable[Exchange]) -> list[Exchange]:
        return [self.exchange(e) for e in exchanges]

    def value(self, name: str, value: str) -> str:
        """One value of a named field, for protocols other than HTTP (a Redis key's value, a
        Postgres column or startup parameter, a message header): the whole value becomes a
        placeholder when ``name`` denotes a credential (``password``, ``api_key``, a profile
        ``[redact] json``/``query`` name), otherwise only the secrets found in it by their
        format (tokens, keys, e-mails, cards, URL credentials) are replaced. An empty
        ``name`` means "no name": value rules only. Idempotent, stable like every
        placeholder."""
        if not value or PLACEHOLDER_RE.fullmatch(value):
            return value
        low = name.lower()
        if low and (low in self._custom_json_names or low in self._custom_query):
            return self._hit("profile:json", _kind_of(name), value)
        if low and "secret-field" in self.enabled and is_secret_name(name):
            return self._hit("secret-field", "secret", value)
        return self.text(value)

    # ------------------------------------------------------------ internals

    def _hit(self, rule: str, kind: str, secret: str) -> str:
        self._counts[rule] += 1
        return self.placeholder(kind, secret)

    def _text_sub(self, m: re.Match[str]) -> str:
        group = m.lastgroup
        whole = m.group(0)
        if group == "bearer_tok":
            tok = m.group("bearer_tok")
            return m.group("bearer") + self._hit("bearer", "token", tok)
        if group == "jwt":
            return self._hit("jwt", "jwt", whole)
        if group == "aws":
            return self._hit("aws-access-key", "aws-key", whole)
        if group == "email":
            return self._hit("email", "email", whole)
        if group == "card":
            span = _card_span(whole)
            if span is None:
                return whole
            s, e = span
            return whole[:s] + self._hit("card-number", "card", whole[s:e]) + whole[e:]
        if group == "kv_val":
            name, val = m.group("kv_name"), m.group("kv_val")
            if not (is_secret_name(name) or name.lower() in self._custom_query):
                # not a secret name: the value may still hold an e-mail or a card number
                return m.group("kv") + self._text_only_value(val)
            if PLACEHOLDER_RE.fullmatch(unquote_plus(val)):
                return whole
            return m.group("kv") + self._hit("secret-query", "secret", val)
        return whole

    def _text_only_value(self, val: str) -> str:
        if self._text_re is None:
            return val
        # the kv alternative consumed this value; rescan it without the kv rule
        return self._text_re.sub(
            lambda m: m.group(0) if m.lastgroup == "kv_val" else self._text_sub(m), val
        )

    def _pattern_sub(self, m: re.Match[str]) -> str:
        whole = m.group(0)
        if PLACEHOLDER_RE.fullmatch(whole):
            return whole
        if m.re.groups == 0:
            return self._hit("profile:patterns", "custom", whole)
        # with capture groups only the groups are secret: `ssn=(\d+)` keeps "ssn="
        out, pos, base = [], 0, m.start()
        for i in range(1, m.re.groups + 1):
            s, e = m.span(i)
            if s < 0 or s < pos + base:
                continue
            out.append(whole[pos : s - base])
            out.append(self._hit("profile:patterns", "custom", m.group(i)))
            pos = e - base
        out.append(whole[pos:])
        return "".join(out)

    def _host(self, host: str) -> str:
        if "@" not in host or "authorization" not in self.enabled:
            return host
        userinfo, _, hostport = host.rpartition("@")
        if PLACEHOLDER_RE.fullmatch(userinfo):
            return host
        return self._hit("authorization", "auth", userinfo) + "@" + hostport

    def _pairs(
        self, pairs: tuple[tuple[str, str], ...], rule: str
    ) -> tuple[tuple[str, str], ...]:
        if not pairs:
            return pairs
        out = []
        for k, v in pairs:
            lk = k.lower()
            if lk in self._custom_query and not PLACEHOLDER_RE.fullmatch(v):
                v = self._hit("profile:query", _kind_of(k), v)
            elif (
                rule in self.enabled
                and v
                and is_secret_name(k)
                and not PLACEHOLDER_RE.fullmatch(v)
            ):
                v = self._hit(rule, "secret", v)
            else:
                v = self.text(v)
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
        if not value or PLACEHOLDER_RE.fullmatch(value):
            return value
        if low in self._custom_headers:
            return self._hit("profile:headers", _kind_of(low), value)
        if low in ("authorization", "proxy-authorization") and "authorization" in self.enabled:
            scheme, sep, cred = value.strip().partition(" ")
            if not sep:
                return self._hit("authorization", "auth", value)
            cred = cred.strip()
            if PLACEHOLDER_RE.fullmatch(cred):
                return value
            return f"{scheme} {self._hit('authorization', 'auth', cred)}"
        if low == "cookie" and "cookie" in self.enabled:
            return "; ".join(self._cookie_pair(p.strip()) for p in value.split(";"))
        if low == "set-cookie" and "cookie" in self.enabled:
            first, sep, attrs = value.partition(";")
            return self._cookie_pair(first.strip()) + sep + attrs
        if "token-header" in self.enabled and is_secret_name(low):
            return self._hit("token-header", "token", value)
        return self.text(value)

    def _cookie_pair(self, pair: str) -> str:
        name, sep, val = pair.partition("=")
        if not sep or not val or PLACEHOLDER_RE.fullmatch(val):
            return pair
        return f"{name}={self._hit('cookie', 'cookie', val)}"

    # ------------------------------------------------------------ bodies

    def _body(self, body: bytes, headers: Headers) -> bytes:
        if not body:
            return body
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
        if b"\x00" in body and not textual:
            return body  # binary
        charset = _charset(headers)
        try:
            text = body.decode(charset)
        except (UnicodeDecodeError, LookupError):
            if not textual:
                return body  # binary, or a charset we do not guess at
            # declared text in an undeclared 8-bit charset: latin-1 maps every byte
            # one-to-one, so e-mails and tokens (ASCII) are found and the rest survives
            charset = "latin-1"
            text = body.decode(charset)
        red = self.text(text)
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
        m = re.search(r'boundary="?([^";]+)"?', header_get(headers, "content-type") or "")
        if not m:
            return None
        delim = b"--" + m.group(1).encode("latin-1")
        parts = body.split(delim)
        changed = False
        for i in range(1, len(parts)):
            part = parts[i]
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                continue
            tail = b"\r\n" if content.endswith(b"\r\n") else b""
            value = content[: len(content) - len(tail)]
            nm = re.search(rb'name="([^"]*)"', head)
            name = nm.group(1).decode("utf-8", "replace") if nm else ""
            is_file = b"filename=" in head
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if not is_file and (
                name.lower() in self._custom_query
                or ("secret-query" in self.enabled and is_secret_name(name))
            ):
                if PLACEHOLDER_RE.fullmatch(text):
                    continue
                rule = "profile:query" if name.lower() in self._custom_query else "secret-query"
                new = self._hit(rule, "secret", text)
            elif b"\x00" in value:
                continue
            else:
                new = self.text(text)
            if new != text:
                parts[i] = head + sep + new.encode("utf-8") + tail
                changed = True
        return delim.join(parts) if changed else body

    def _json_body(self, body: bytes) -> bytes | None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if (
            not self._patterns
            and not self._custom_json_paths
            and body.isascii()
            and _BODY_TRIGGER.search(body) is None
        ):
            # no string in this body can hold what a text rule looks for: only names matter
            new = self._json_names(value)
        else:
            new = self._json(value, ())
        if new is value:
            return body
        return _reserialize(body, value, new)

    def _json(self, value: Any, here: tuple[_Step, ...]) -> Any:
        if isinstance(value, dict):
            changed = False
            out: dict[str, Any] = {}
            for k, v in value.items():
                where = (*here, k)
                nv = self._json_field(k, v, where)
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
            red = self.text(value)
            return value if red == value else red
        return value

    def _json_names(self, value: Any) -> Any:
        """``_json`` for a body whose strings hold nothing for the text rules, with no
        profile patterns or JSON paths: only fields named like secrets are replaced."""
        if isinstance(value, dict):
            changed = False
            out: dict[str, Any] = {}
            for k, v in value.items():
                if k.lower() in self._custom_json_names:
                    nv = self._wipe(v, "profile:json", _kind_of(k))
                elif "secret-field" in self.enabled and is_secret_name(k):
                    nv = self._wipe(v, "secret-field", "secret")
                elif isinstance(v, dict | list):
                    nv = self._json_names(v)
                else:
                    nv = v
                if nv is not v:
                    changed = True
                out[k] = nv
            return out if changed else value
        if isinstance(value, list):
            items = [self._json_names(v) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
        return value

    def _json_field(self, key: str, v: Any, where: tuple[_Step, ...]) -> Any:
        for pattern, kind in self._custom_json_paths:
            if _path_matches(pattern, where):
                return self._wipe(v, "profile:json", kind)
        low = key.lower()
        if low in self._custom_json_names:
            return self._wipe(v, "profile:json", _kind_of(key))
        if "secret-field" in self.enabled and is_secret_name(key):
            return self._wipe(v, "secret-field", "secret")
        return self._json(v, where)

    def _wipe(self, v: Any, rule: str, kind: str) -> Any:
        """Every scalar under a secret name is replaced; booleans and null say nothing."""
        if isinstance(v, dict):
            out = {k: self._wipe(x, rule, kind) for k, x in v.items()}
            return v if all(out[k] is v[k] for k in v) else out
        if isinstance(v, list):
            items = [self._wipe(x, rule, kind) for x in v]
            return v if all(a is b for a, b in zip(items, v, strict=True)) else items
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, str):
            if not v or PLACEHOLDER_RE.fullmatch(v):
                return v
            return self._hit(rule, kind, v)
        if isinstance(v, int | float):
            return self._hit(rule, kind, json.dumps(v))
        return v


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


def _reserialize(original: bytes, old: Any, new: Any) -> bytes:
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

