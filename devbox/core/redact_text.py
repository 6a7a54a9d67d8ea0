"""Finding secrets in free text: one compiled scanner per context.

Theory of operation
-------------------
A ``TextScanner`` is one regular expression made of every enabled rule (the token formats
of ``secret_formats``, PEM private keys, credentials in URLs, bearer tokens, JWTs, e-mail
addresses, card numbers, and the name rules: ``name=value``, ``"name": "value"``,
``name: value``, ``<name>value</name>``), plus a decoding pass for base64, base64url and
URL-encoded text: a candidate run is decoded, scanned, and when the decoded text held a
secret, the redacted text is encoded back the way it came, so a consumer that decodes it
still reads the same document with placeholders in it.

The context decides the rules. *Data* (headers, query strings, form fields, JSON and XML
payloads, logs) gets all of them. *Code and documents* (JavaScript, CSS, HTML, Markdown)
get only what a secret's format gives away: ``Y.password=e`` in a bundle is a program, not
a password, and a maintainer's address in documentation is public (e-mails there are a
profile choice). A keyword-plus-entropy rule (``apiKey = "f3Xk…"``) stands in for the
name rules there, as gitleaks' generic rule does for source code.

A cheap trigger test rules out most short strings (ids, timestamps, words) before the big
expression runs: every rule needs one of its alternatives to match at all.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote, unquote, unquote_plus

from devbox.core.redact_names import is_secret_name
from devbox.core.redact_values import plainly_not_secret
from devbox.core.secret_formats import (
    formats_alternation,
    kept_prefix,
    rule_of_group,
    shannon_entropy,
)
from devbox.core.secret_keywords import VALUE_AFTER_NAME, keyword_rule, name_before

PLACEHOLDER_RE = re.compile(r"<redacted:[a-z0-9-]{1,40}:[0-9a-f]{12}>")

# hit(rule, kind, secret) -> placeholder; rule is the name counted in stats
Hit = Callable[[str, str, str], str]

_PEM = (
    r"(?P<pem>-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----)(?P<pem_body>[\s\S]{16,}?)"
    r"(?P<pem_end>-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----)"
)
_URLCRED = (
    r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/@\"'<>\\]{0,128}:)"
    r"(?P<url_pw>[^\s@/\"'<>\\]{1,256})(?=@)"
)
_BEARER = r"(?P<bearer>\b[Bb]earer\s+)(?P<bearer_tok>[A-Za-z0-9\-._~+/]{8,}=*)"
# Basic credentials written out (a curl command line, a log, a how-to): the token is only
# taken when it decodes to "user:password", so "Basic authentication" stays prose
_BASIC = r"(?P<basic>\b[Bb]asic[ \t]+)(?P<basic_tok>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])"
# curl -u user:password / --user=user:password
_CURL = (
    r"(?P<curl>\bcurl\b[^\n]{0,300}?[ \t](?:-u|--user)(?:=|[ \t]+)[\"']?[^\s:\"']{1,64}:)"
    r"(?P<curl_pw>[^\s\"']{3,128})"
)
_JWT = (
    r"(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.)(?P<jwt_payload>eyJ[A-Za-z0-9_-]{4,})"
    r"(?P<jwt_sig>\.[A-Za-z0-9_-]*)"
)
_EMAIL = (
    r"(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
    r"[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b)"
)
# 13-19 digits, optionally grouped by single spaces or dashes, not glued to other digits/words
_CARD = r"(?P<card>(?<![\w.,])\d(?:[ -]?\d){12,18}(?!\w|[.,]\d))"
_KV = (
    # spaces around "=" and a quote before the value, as config files write them
    # (``db_password = 'letmein'``); the value stops at the closing quote
    r"(?P<kv>(?<![A-Za-z0-9_.\-])(?P<kv_name>[A-Za-z][A-Za-z0-9_.\-]{0,63})[ \t]*=[ \t]*[\"']?)"
    r"(?!=)(?P<kv_val>(?:<redacted:[a-z0-9-]{1,40}:[0-9a-f]{12}>|(?!-----BEGIN)[^&#\s\"'<>;,])+)"
)
_JSON_KV = (
    # a value with escapes in it (``\"``, ``\u00e9``) runs to its closing quote: it stopped
    # at the first backslash and the rest went to disk. In JSON quoted inside a string
    # (``\"password\": \"…\"``) a backslash ends it, as before
    r"(?P<jk>\\?\"(?P<jk_name>[A-Za-z_][A-Za-z0-9_.\-]{0,63})\\?\"\s*:\s*(?P<jk_q>\\)?\")"
    r"(?P<jk_val>(?(jk_q)[^\"\\]{1,1024}"
    r"|(?=[^\"])[^\"\\]{0,1024}(?:\\[^\n][^\"\\]{0,1024}){0,64}))"
)
_COLON_KV = (
    r"(?P<ck>(?<![A-Za-z0-9_.\-:<])(?P<ck_name>[A-Za-z][A-Za-z0-9_.\-]{0,63}):[ \t]*)"
    r"(?![Bb]earer\s|[Bb]asic\s|[Dd]igest\s|//|-----BEGIN)"
    r"(?P<ck_val>(?:<redacted:[a-z0-9-]{1,40}:[0-9a-f]{12}>|[^\s\"'<>,;&]){1,512})"
)
_XML_KV = (
    r"(?P<xk><(?P<xk_name>[A-Za-z_][A-Za-z0-9_.\-:]{0,63})(?:\s[^<>]{0,256})?>)"
    r"(?P<xk_val>[^<>]{1,1024})(?=</(?P=xk_name)>)"
)
# The match starts at the keyword, not at the start of the identifier that holds it: the
# identifier's head stays as it is either way, and a pattern that could start at any
# identifier character cost ~0.4 µs per byte of code.
_GENERIC = (
    r"(?P<gk>(?i:secret|token|passw(?:or)?d|api_?key|access_?key|auth_?key|private_?key"
    r"|credentials?)[A-Za-z0-9_]{0,10}[\"']?\s*(?::=|=>|:|=)\s*[\"'`])"
    r"(?P<gk_val>[A-Za-z0-9_\-+/=.~]{16,256})(?=[\"'`])"
)

_NAME_GROUPS = frozenset({"kv_val", "jk_val", "ck_val", "xk_val"})
# the assignments of free text (name=value, name: value), where a name is only a guess:
# their values must look like a credential (redact_values); "name": "value" and
# <name>value</name> are fields, as in a JSON or XML body
_ASSIGNMENTS = frozenset({"kv_val", "ck_val"})
# Every rule needs one of these to match at all; plain substring tests (a few tens of
# nanoseconds each) rule out most strings long before the big expression would.
_LITERALS = (
    "@",
    "=",
    "earer",
    "-----begin",
    "pass",
    "secret",
    "token",
    "key",
    "auth",
    "pwd",
    "curl",
    # the other words a secret's name can end in (redact_names._SECRET_LAST): without
    # them ``pin: 1234`` never reached the rules
    "sig",
    "session",
    "cred",
    "cvc",
    "cvv",
    "cvn",
    "pin",
    "ssn",
)
_RUN14 = re.compile(r"[a-z0-9_\-+/.~%]{14}")
_DIGITS13 = re.compile(r"[0-9][0-9 \-]{12}")
_BLITERALS = (b"\\", *(x.encode("ascii") for x in _LITERALS))
_BRUN14 = re.compile(_RUN14.pattern.encode("ascii"))
_BDIGITS13 = re.compile(_DIGITS13.pattern.encode("ascii"))


def may_hold_secret(s: str) -> bool:
    """False when no text rule can match anywhere in ``s`` (a cheap test)."""
    low = s.lower()
    for lit in _LITERALS:
        if lit in low:
            return True
    return _RUN14.search(low) is not None or _DIGITS13.search(low) is not None


def body_may_hold_secret(body: bytes) -> bool:
    """The same test over the raw bytes of a JSON body: a string in it can only hold a
    trigger if the bytes do, when they are ASCII and no escape (a backslash) can split
    or make one."""
    if not body.isascii():
        return True
    low = body.lower()
    for lit in _BLITERALS:
        if lit in low:
            return True
    return _BRUN14.search(low) is not None or _BDIGITS13.search(low) is not None


_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{24,}={0,2}(?![A-Za-z0-9+/=_\-])")
_PCT_RUN = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
_HASHLIKE = re.compile(r"(?:sha|md)\d*[-=]", re.I)

FAMILY_OF_FORMAT_DEFAULT = "secret-format"


def _family(rule_id: str) -> str:
    # the AWS key id rule predates the table; its own name stays a rule of its own
    return "aws-access-key" if rule_id == "aws-access-key" else FAMILY_OF_FORMAT_DEFAULT


def _has(literal: str) -> Callable[[str], bool]:
    return lambda s: literal in s


def _always(s: str) -> bool:
    return True


def _card_trigger(s: str) -> bool:
    return _DIGITS13.search(s) is not None


_GENERIC_WORDS = ("secret", "token", "passw", "pwd", "key", "credential")


def _generic_trigger(s: str) -> bool:
    low = s.lower()
    return any(w in low for w in _GENERIC_WORDS)


_UNSET: re.Pattern[str] | None = re.compile("unset")


@dataclass(frozen=True, slots=True)
class Context:
    """Which rules run: ``data`` adds name rules, e-mails, cards and the encoded pass."""

    data: bool = True
    emails: bool = True


# ---------------------------------------------------------------- cards


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


def is_card_number(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return (
        13 <= len(digits) <= 19
        and digits.isdigit()
        and _CARD_PREFIX.match(digits) is not None
        and luhn_ok(digits)
    )


def _card_span(text: str) -> tuple[int, int] | None:
    """Where the card number is in a run of grouped digits ("qty 2 4111 1111 1111 1111 12")."""
    if is_card_number(text):
        return 0, len(text)
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
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


# ---------------------------------------------------------------- the scanner


def _is_redacted(value: str) -> bool:
    """Already holds a placeholder (whole, or shaped: ``sk_live_<redacted:…>``)."""
    return "<redacted:" in value and PLACEHOLDER_RE.search(value) is not None


_JWT_WHOLE = re.compile(r"(eyJ[A-Za-z0-9_-]{4,}\.)eyJ[A-Za-z0-9_-]{4,}\.([A-Za-z0-9_-]*)")


def shaped(value: str, hit: Hit, rule: str, kind: str) -> str:
    """A whole value that is a secret (by its name): shaped like its format when it has
    one, so ``sk_live_<redacted:…>`` keeps its prefix and a JWT keeps three parts."""
    from devbox.core.secret_formats import format_of

    fmt = format_of(value)
    if fmt is not None:
        return kept_prefix(fmt.id, value) + hit(rule, fmt.id, value)
    m = _JWT_WHOLE.fullmatch(value)
    if m is not None:
        sig = m.group(2)
        tail = hit(rule, "jwt-sig", sig) if sig else ""
        return m.group(1) + hit(rule, "jwt", value) + "." + tail
    return hit(rule, kind, value)


class TextScanner:
    """The text rules of one context, as one expression; see the module doc."""

    def __init__(
        self,
        enabled: frozenset[str],
        context: Context,
        extra_names: frozenset[str] = frozenset(),
    ) -> None:
        self.enabled = enabled
        self.context = context
        self._extra_names = extra_names
        # (trigger, pattern): an alternative whose trigger is absent from a text cannot
        # match in it, so it is left out of the expression for that text (see ``_rx``)
        parts: list[tuple[Callable[[str], bool], str]] = []
        if "private-key" in enabled:
            parts.append((_has("-----BEGIN"), _PEM))
        if "url-credentials" in enabled:
            parts.append((_has("://"), _URLCRED))
        if "jwt" in enabled:
            parts.append((_has("eyJ"), _JWT))
        if "bearer" in enabled:
            parts.append((_has("earer"), _BEARER))
        if "authorization" in enabled:
            parts.append((_has("asic"), _BASIC))
            parts.append((_has("curl"), _CURL))
        from devbox.core.secret_formats import FORMAT_RULES

        formats = tuple(r for r in FORMAT_RULES if _family(r.id) in enabled)
        if formats:
            parts.append((_always, formats_alternation(formats)))
        if context.emails and "email" in enabled:
            parts.append((_has("@"), _EMAIL))
        if context.data:
            if "card-number" in enabled:
                parts.append((_card_trigger, _CARD))
            if "secret-query" in enabled or extra_names:
                parts.extend(
                    (
                        (_has('"'), _JSON_KV),
                        (_has("</"), _XML_KV),
                        (_has("="), _KV),
                        (_has(":"), _COLON_KV),
                    )
                )
        elif "generic-secret" in enabled:
            parts.append((_generic_trigger, _GENERIC))
        self._parts = tuple(parts)
        self._compiled: dict[int, re.Pattern[str] | None] = {}
        self._re = re.compile("|".join(p for _, p in parts)) if parts else None
        self._encoded = context.data and "encoded" in enabled
        self._keywords = "secret-format" in enabled

    def _rx(self, s: str) -> re.Pattern[str] | None:
        """The expression of the alternatives whose trigger ``s`` holds, in the table's
        order (so the first-listed rule still wins a tie, as in one big expression).
        Python's engine tries every alternative at every position; leaving out the ones
        that cannot match is what keeps a hundred rules cheap on ordinary text."""
        mask = 0
        for i, (trigger, _) in enumerate(self._parts):
            if trigger(s):
                mask |= 1 << i
        rx = self._compiled.get(mask, _UNSET)
        if rx is _UNSET:
            chosen = [p for i, (_, p) in enumerate(self._parts) if mask >> i & 1]
            rx = re.compile("|".join(chosen)) if chosen else None
            self._compiled[mask] = rx
        return rx

    def sub(self, s: str, hit: Hit, depth: int = 0) -> str:
        """``s`` with every secret replaced by ``hit``'s placeholder."""
        if self._re is None or not s or not may_hold_secret(s):
            return s
        rx = self._rx(s)
        out = rx.sub(lambda m: self._one(m, hit), s) if rx is not None else s
        if self._keywords and len(out) >= 16:
            out = self._keyword_values(out, hit)
        if self._encoded and depth < 2:
            out = self._decoded(out, hit, depth)
        return out

    def find(self, s: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) of each secret in ``s``, as ``sub`` would replace it."""
        if self._re is None or not s or not may_hold_secret(s):
            return []
        found: list[tuple[int, int, str]] = []
        rx = self._rx(s)
        for m in rx.finditer(s) if rx is not None else ():
            kinds: list[str] = []

            def note(rule: str, kind: str, secret: str, kinds: list[str] = kinds) -> str:
                kinds.append(kind)
                return "<redacted:x:000000000000>"

            if self._one(m, note) != m.group(0) and kinds:
                found.append((m.start(), m.end(), kinds[0]))
        if self._keywords:
            for m in VALUE_AFTER_NAME.finditer(s):
                kw = keyword_rule(name_before(s, m.start()), m.group("value"))
                if kw is not None:
                    found.append((m.start("value"), m.end("value"), kw.id))
        if self._encoded:
            for rx in (_B64_RUN, _PCT_RUN):
                for m in rx.finditer(s):
                    run = m.group(0)
                    if self._decoded(run, lambda r, k, x: "<redacted:x:000000000000>", 0) != run:
                        found.append((m.start(), m.end(), "encoded"))
        return sorted(found)

    def _keyword_values(self, s: str, hit: Hit) -> str:
        """Quoted values under a provider's name (``DATADOG_API_KEY = "…"``): the rules
        of ``secret_keywords``, in data and in code alike."""

        def one(m: re.Match[str]) -> str:
            value = m.group("value")
            rule = keyword_rule(name_before(s, m.start()), value)
            if rule is None:
                return m.group(0)
            cut = m.start("value") - m.start()
            return m.group(0)[:cut] + hit(FAMILY_OF_FORMAT_DEFAULT, rule.id, value)

        return VALUE_AFTER_NAME.sub(one, s)

    # ------------------------------------------------------------ one match

    def _named(self, name: str) -> bool:
        return ("secret-query" in self.enabled and is_secret_name(name)) or (
            name.lower() in self._extra_names
        )

    def _plainly_not_secret(self, name: str, val: str, head: str) -> bool:
        """A value that is plainly an identifier or a placeholder (``redact_values``);
        never for a name the profile made a secret itself."""
        if self._extra_names and name.lower() in self._extra_names:
            return False
        return plainly_not_secret(name, val, joined=head.endswith(":"))

    def _one(self, m: re.Match[str], hit: Hit) -> str:
        group = m.lastgroup
        whole = m.group(0)
        if group is None:
            return whole
        if group == "pem_end":
            body = m.group("pem_body")
            if _is_redacted(body):
                return whole
            # keep the line breaks around the body so the block still reads as PEM
            lead = body[: len(body) - len(body.lstrip())]
            trail = body[len(body.rstrip()) :]
            ph = hit("private-key", "private-key", body.strip())
            return m.group("pem") + lead + ph + trail + m.group("pem_end")
        if group == "url_pw":
            return m.group("url") + hit("url-credentials", "password", m.group("url_pw"))
        if group == "jwt_sig":
            sig = m.group("jwt_sig")[1:]
            out = m.group("jwt") + hit("jwt", "jwt", whole)
            return out + "." + (hit("jwt", "jwt-sig", sig) if sig else "")
        if group == "bearer_tok":
            tok = m.group("bearer_tok")
            return m.group("bearer") + self._token(tok, hit, "bearer", "token")
        if group == "basic_tok":
            tok = m.group("basic_tok")
            try:
                plain = base64.b64decode(tok + "=" * (-len(tok) % 4)).decode("utf-8")
            except (binascii.Error, ValueError):
                return whole
            if ":" not in plain or not plain.isprintable():
                return whole
            return m.group("basic") + hit("authorization", "auth", tok)
        if group == "curl_pw":
            return m.group("curl") + hit("authorization", "password", m.group("curl_pw"))
        if group == "email":
            return hit("email", "email", whole)
        if group == "card":
            span = _card_span(whole)
            if span is None:
                return whole
            s, e = span
            return whole[:s] + hit("card-number", "card", whole[s:e]) + whole[e:]
        if group in ("kv_val", "jk_val", "ck_val", "xk_val"):
            prefix = group[:-4]
            name, val = m.group(prefix + "_name"), m.group(group)
            if not self._named(name) or not val.strip():
                kw = keyword_rule(name, val) if self._keywords else None
                if kw is not None:
                    return m.group(prefix) + hit(FAMILY_OF_FORMAT_DEFAULT, kw.id, val)
                # not a secret name: the value may still hold something by its format
                return m.group(prefix) + self._values_only(val, hit)
            if _is_redacted(unquote_plus(val)):
                return whole
            if group in _ASSIGNMENTS and self._plainly_not_secret(name, val, m.group(prefix)):
                # key:__rand_int__, api_key:lookup, token={id}: a key or a placeholder
                return m.group(prefix) + self._values_only(val, hit)
            return m.group(prefix) + self._token(val, hit, "secret-query", "secret")
        if group == "gk_val":
            val = m.group("gk_val")
            if shannon_entropy(val) < 3.5 or not any(c.isdigit() for c in val):
                return whole
            return m.group("gk") + hit("generic-secret", "secret", val)
        rule = rule_of_group(group)
        if rule is not None:
            return kept_prefix(rule.id, whole) + hit(_family(rule.id), rule.id, whole)
        return whole

    def _token(self, tok: str, hit: Hit, rule: str, kind: str) -> str:
        return shaped(tok, hit, rule, kind)

    def _values_only(self, val: str, hit: Hit) -> str:
        rx = self._rx(val) if self._re is not None else None
        if rx is None:
            return val
        # the name alternative consumed this value; rescan it ("cb?access_token=…" in a
        # URL), reading "name: value" inside it as neutral: out of its context a
        # placeholder's "secret:0a1b…" would read as one. Each value is strictly shorter
        # than the match it came from, so this ends
        return rx.sub(lambda m: self._neutral(m, hit), val)

    def _neutral(self, m: re.Match[str], hit: Hit) -> str:
        if m.lastgroup == "ck_val":
            return m.group("ck") + self._values_only(m.group("ck_val"), hit)
        return self._one(m, hit)

    # ------------------------------------------------------------ encoded text

    def _decoded(self, s: str, hit: Hit, depth: int) -> str:
        if len(s) >= 24:
            s = _B64_RUN.sub(lambda m: self._b64(m.group(0), hit, depth), s)
        if "%" in s:
            s = _PCT_RUN.sub(lambda m: self._pct(m.group(0), hit, depth), s)
        return s

    def _b64(self, run: str, hit: Hit, depth: int) -> str:
        if _HASHLIKE.match(run):
            return run
        urlsafe = "-" in run or "_" in run
        if urlsafe and ("+" in run or "/" in run):
            return run
        body = run.rstrip("=")
        if len(body) % 4 == 1:
            return run
        padded = body + "=" * (-len(body) % 4)
        try:
            raw = (base64.urlsafe_b64decode if urlsafe else base64.b64decode)(padded)
            text = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            return run
        if not text or sum(c.isprintable() or c in "\r\n\t" for c in text) < 0.95 * len(text):
            return run
        red = self.sub(text, hit, depth + 1)
        if red == text:
            return run
        enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
        out = enc(red.encode("utf-8")).decode("ascii")
        return out if run.endswith("=") or len(body) % 4 == 0 else out.rstrip("=")

    def _pct(self, run: str, hit: Hit, depth: int) -> str:
        text = unquote(run)
        if text == run:
            return run
        red = self.sub(text, hit, depth + 1)
        if red == text:
            return run
        safe = "".join(sorted({c for c in run if c != "%" and not c.isalnum()}))
        return quote(red, safe=safe)


# ---------------------------------------------------------------- profile patterns


def apply_patterns(s: str, patterns: tuple[re.Pattern[str], ...], hit: Hit) -> str:
    """The profile's ``[redact] patterns``: each match replaced; with capture groups only
    the groups (``ssn=(\\d+)`` keeps "ssn="). Never inside a placeholder."""

    def one(m: re.Match[str], spans: list[tuple[int, int]]) -> str:
        whole = m.group(0)
        a, b = m.span()
        if PLACEHOLDER_RE.fullmatch(whole) or any(x < b and a < y for x, y in spans):
            return whole
        if m.re.groups == 0:
            return hit("profile:patterns", "custom", whole)
        out, pos, base = [], 0, m.start()
        for i in range(1, m.re.groups + 1):
            gs, ge = m.span(i)
            if gs < 0 or gs < pos + base:
                continue
            out.append(whole[pos : gs - base])
            out.append(hit("profile:patterns", "custom", m.group(i)))
            pos = ge - base
        out.append(whole[pos:])
        return "".join(out)

    for rx in patterns:
        # a user pattern may match inside a placeholder ("[0-9a-f]{12}"): leave those
        spans = [m.span() for m in PLACEHOLDER_RE.finditer(s)] if "<redacted:" in s else []
        s = rx.sub(partial(one, spans=spans), s)
    return s
