"""docs/troubleshooting.md lists every DevboxError message in the source with its fix.

The messages are found with ``ast`` (devbox.cli.reference.error_sites); the test fails
when one has no entry, naming the file and line of the raise."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

from devbox.cli.reference import (
    TROUBLE_PAGE,
    ErrorSite,
    entry_matches,
    error_sites,
    message_pattern,
    missing_entries,
    troubleshooting_entries,
)


def test_every_error_message_has_an_entry() -> None:
    sites, _dynamic = error_sites()
    missing = missing_entries(sites, TROUBLE_PAGE.read_text(encoding="utf-8"))
    assert not missing, (
        "error messages without an entry in docs/troubleshooting.md (add a `### `pattern`` "
        "heading with the fix; list them with `python -m devbox.cli.reference --errors --check`):"
        "\n" + "\n".join(f"  {s.where}: {s.pattern}" for s in missing)
    )


def test_scanner_finds_literal_f_string_and_profile_errors() -> None:
    sites, _ = error_sites()
    by_pattern = {s.pattern: s for s in sites}
    s = by_pattern["no profile named * (looked for *)"]
    assert (s.file, s.kind) == ("devbox/core/profile.py", "NotFoundError")
    assert by_pattern["missing [service] table"].kind == "ConfigError"  # ctx.error(...)
    assert "unknown key *" in by_pattern  # self.error(...) inside the validator
    assert all(not p.file.startswith("devbox/errors.py") for p in sites)
    # only DevboxError subclasses: a ValueError raised for a programming mistake is not listed
    assert not any(p.kind in ("ValueError", "RuntimeError", "AssertionError") for p in sites)


def test_matching_is_on_a_stable_prefix_with_wildcards() -> None:
    assert entry_matches("no profile named * (looked for *)", "no profile named * (looked for *)")
    # the tail of a message may change without breaking the page
    assert entry_matches(
        "port * is already in use on 127.0.0.1 (stop it)", "port * is already in use on 127.0.0.1"
    )
    # a new beginning does not match
    assert not entry_matches("no profile called *", "no profile named * (looked for *)")
    # an entry too general to identify anything matches only itself
    assert not entry_matches("cannot start *: *", "*: *")
    assert entry_matches("*: *", "*: *")


def test_a_removed_entry_is_reported() -> None:
    page = TROUBLE_PAGE.read_text(encoding="utf-8")
    entries = troubleshooting_entries(page)
    assert "missing [service] table" in entries
    cut = page.replace("### `missing [service] table`", "### (removed)")
    sites, _ = error_sites()
    missing = missing_entries(sites, cut)
    assert [m.pattern for m in missing] == ["missing [service] table"]
    fake = ErrorSite("devbox/x.py", 1, "UsageError", "a brand new message about *")
    assert missing_entries([fake], page) == [fake]


def test_message_pattern() -> None:
    import ast

    def pat(src: str) -> str | None:
        return message_pattern(ast.parse(src, mode="eval").body)

    assert pat("'plain'") == "plain"
    assert pat("f'no {a!r} in {b}'") == "no * in *"
    assert pat("'one ' + f'{x}' + ' two'") == "one * two"
    assert pat("name") is None


def test_cli_check_mode() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "devbox.cli.reference", "--errors", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "devbox.cli.reference", "--errors"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert "devbox/core/profile.py:" in r.stdout
    assert "\tno profile named * (looked for *)" in r.stdout
