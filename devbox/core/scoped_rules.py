"""Ignore rules scoped to a route: ``"POST /orders $.id"`` ignores ``$.id`` only in the
responses to ``POST /orders``. Pure.

A rule is ``[METHOD] PATH RULE`` or a bare ``RULE`` (``$.a.b``, ``header:date``) that
applies to every request. ``PATH`` is a glob on the request's path (``/posts/*``), as
``--route`` takes; ``METHOD`` may be ``*``. A ``PATH`` with a query (``/comments?postId=2``)
is matched against the whole request target instead: learning narrows a rule that far
when the path alone would also cover a value that was stable. Noise learning writes
scoped rules for what varied on some routes only, so a value that is noise on one route
cannot hide a real change of the same path on another (docs/replay.md).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScopedRule:
    method: str | None  # None or "*": any method
    path: str | None  # a glob on the request path; None: any request
    rule: str  # "$.a", "header:date"

    def applies(self, method: str, path: str, target: str | None = None) -> bool:
        if self.path is None:
            return True
        if self.method not in (None, "*") and self.method != method.upper():
            return False
        if "?" in self.path and not self.path.startswith("?"):
            return target is not None and (
                target == self.path or fnmatch.fnmatchcase(target, self.path)
            )
        return fnmatch.fnmatchcase(path, self.path)


def is_bare(text: str) -> bool:
    t = text.strip()
    return t.startswith("$") or t.lower().startswith("header:")


def parse_rule(text: str) -> ScopedRule:
    """``"POST /orders $.id"`` -> (POST, /orders, $.id); a bare rule has no scope.
    Raises ValueError naming what is wrong (the profile loader turns it into a ConfigError)."""
    t = text.strip()
    if is_bare(t):
        return ScopedRule(None, None, t)
    head, sep, rule = t.partition(" $")
    if sep:
        rule = "$" + rule
    else:
        head, sep, rule = t.rpartition(" ")
        if not sep or not rule.lower().startswith("header:"):
            raise ValueError(
                f"expected a JSON path ($.a.b), header:NAME, or a route before one "
                f'("POST /orders $.id"), got {text!r}'
            )
    parts = head.split()
    if len(parts) == 1 and parts[0].startswith("/"):
        return ScopedRule(None, parts[0], rule.strip())
    if len(parts) == 2 and parts[1].startswith("/") and parts[0].replace("*", "").isalpha():
        return ScopedRule(parts[0].upper(), parts[1], rule.strip())
    raise ValueError(f'expected "[METHOD] /path RULE" before the rule, got {text!r}')


def bare_rules(rules: Iterable[str]) -> tuple[str, ...]:
    """Every rule without its scope (to validate the JSON paths and header names)."""
    return tuple(parse_rule(r).rule for r in rules)


def rules_for(
    rules: Sequence[str], method: str, path: str, target: str | None = None
) -> tuple[str, ...]:
    """The bare rules that apply to a request of ``method`` on ``path`` (``target``: path
    and query as sent, for rules scoped to one query)."""
    out = []
    for r in rules:
        sr = parse_rule(r)
        if sr.applies(method, path, target):
            out.append(sr.rule)
    return tuple(out)


def scoped(route: str | None, rule: str) -> str:
    """The text of ``rule`` scoped to ``route`` ("GET /posts"), or bare."""
    return f"{route} {rule}" if route else rule


def has_scopes(rules: Iterable[str]) -> bool:
    return any(not is_bare(r) for r in rules)
