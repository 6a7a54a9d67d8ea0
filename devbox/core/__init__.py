"""The pure core: traffic model, profiles, recording format, matching, diff, redaction.

Nothing under ``devbox.core`` opens a socket, a file watcher, a container or a
terminal; the import-linter contract in pyproject.toml and tests/test_layering.py
keep it that way.
"""
