"""Values that stand under a credential's name in text and are plainly not credentials.

The name rules of free text (``token=…``, ``key:…``, ``password: …``) read a name and
replace the value after it. In text the name is a guess: ``key:__rand_int__`` is a Redis
key (``redis-benchmark``'s workload), ``api_key:lookup`` a cache entry, ``token={id}`` a
template. Like gitleaks' generic rule (a keyword is evidence only when the value looks
like a secret: its allowlist skips placeholders and values of letters alone), a value is
left as it is when it is plainly an identifier or a placeholder:

* a **placeholder** under any name: ``__rand_int__``, ``${DB_PASSWORD}``, ``{{token}}``,
  ``{id}``, ``%s``, ``$1``, masks (``***``, ``xxxx``), ``null``, ``none``...;
* under the name of a **machine credential** (a key, token, secret, signature: made by a
  program, so never a dictionary word), an **identifier**: words and short numbers joined
  by ``: . _ - /`` (``lookup``, ``profile:42``, ``session_cache``, ``000000042317``,
  ``lastSeen``). A token has letters and digits mixed inside one run (``a8f3k2``,
  ``7Hq2LmX9``), and that is still redacted;
* under the name of a **human secret** (a password, a PIN: chosen by people, so a word is
  a plausible value), only a placeholder, or, after ``name:`` with no space, a key path of
  two or more identifier segments (``password:reset:42`` is a Redis key; a password
  ``reset:42`` is not what such text holds).

Values a format rule recognises are found by those rules whatever their name; only the
name rules consult this module, and names the profile adds itself (``[redact] names``)
never do. Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache

from devbox.core.redact_names import words_of

# chosen by people: a plain word is a plausible password or PIN
_HUMAN = frozenset(
    {"password", "passwd", "passphrase", "pwd", "pin", "cvc", "cvv", "cvv2", "cvn", "ssn"}
)

_PLACEHOLDER = re.compile(
    r"""
    __[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*__       # __rand_int__ (redis-benchmark), __name__
    | \$\{[^{}]{1,64}\} | \$\([^()]{1,64}\)  # ${VAR}, $(cmd)
    | \$[A-Z_][A-Z0-9_]{0,63} | \$\d{1,2}     # $API_KEY, $1 (not $ecretPa55)
    | \{\{[^{}]{1,64}\}\}                     # {{token}}
    | \{(?:[a-z_][a-z0-9_.]{0,63}|[A-Z_][A-Z0-9_.]{0,63})?\}   # {id}, {USER_ID}, {}
    | %(?:\([A-Za-z_][A-Za-z0-9_]*\))?[sdrif]    # %s, %(key)s
    | \*+ | [xX]{3,} | \.{3,} | \?+                  # masks and elisions
    | (?i:null|none|nil|undefined|true|false|empty|redacted|masked|hidden)
    """,
    re.X,
)
# one segment of an identifier: a word (lower, UPPER, Capitalised, camelCase), a number of
# at most 12 digits (redis-benchmark's keys are 12), or a placeholder
_CAMEL = r"(?:[A-Z][a-z]{2,19}){0,4}"  # lastSeen, UserName: humps of real words
_WORD = rf"[a-z]{{1,20}}{_CAMEL}|[A-Z]{{1,20}}|[A-Z][a-z]{{1,19}}{_CAMEL}"
_DUNDER = r"__[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*__"
_SEGMENT = rf"(?:{_WORD}|[0-9]{{1,12}}|{_DUNDER}|\{{[A-Za-z0-9_]{{1,40}}\}})"
_IDENTIFIER = re.compile(rf"{_SEGMENT}(?:[:._\-/]{_SEGMENT}){{0,15}}")
_KEY_PATH = re.compile(rf"{_SEGMENT}(?::{_SEGMENT}){{1,15}}")


def is_placeholder(value: str) -> bool:
    """A template variable, a mask or a null word, not a value (``__rand_int__``)."""
    return _PLACEHOLDER.fullmatch(value) is not None


def is_identifier(value: str) -> bool:
    """Words and short numbers joined by ``: . _ - /`` (``profile:42``, ``lookup``)."""
    return _IDENTIFIER.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _human(name: str) -> bool:
    return bool(_HUMAN.intersection(words_of(name)))


def plainly_not_secret(name: str, value: str, *, joined: bool = False) -> bool:
    """Whether ``value``, found after the credential name ``name`` in text, is plainly an
    identifier or a placeholder rather than the credential. ``joined``: the value follows
    ``name:`` with no space (``key:__rand_int__``), the way key paths are written."""
    if len(value) > 256:
        return False
    if is_placeholder(value):
        return True
    if _human(name):
        return joined and _KEY_PATH.fullmatch(value) is not None
    return is_identifier(value)
