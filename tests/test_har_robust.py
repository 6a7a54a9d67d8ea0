"""HAR loader under hostile input: per-entry warnings, --strict, one clean error, fuzzing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import run_devbox
from har_fuzz import check_document, har_documents
from hypothesis import HealthCheck, given, settings

from devbox.core.har import import_har

ROOT = Path(__file__).resolve().parent.parent


def devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return run_devbox(cwd, *args, timeout=60, env=env)


def _doc(*urls: str) -> dict[str, object]:
    # hostile input for the loader, not a stand-in for a producer's output
    return {
        "log": {
            "entries": [
                {"request": {"method": "GET", "url": u}, "response": {"status": 200}} for u in urls
            ]
        }
    }


def test_bad_urls_skip_the_entry_with_a_warning() -> None:
    result = import_har(_doc("http://[::1", "http://h/ok", "http://[zz]/x"), source="s")
    assert [e.request.url for e in result.exchanges] == ["http://h/ok"]
    assert [(w.entry.split()[0], w.field, w.skipped) for w in result.warnings] == [
        ("log.entries[0]", "request.url", True),
        ("log.entries[2]", "request.url", True),
    ]
    assert "http://[::1" in result.warnings[0].entry


def test_cli_import_and_mock_give_one_line_errors(tmp_path: Path) -> None:
    for url in ("http://[::1", "http://[zz]/x"):
        har = tmp_path / "bad.har"
        har.write_text(json.dumps(_doc(url)))
        for args in (
            ("import", str(har), "--into", str(tmp_path / "out")),
            ("mock", "--har", str(har), "--port", "0"),
        ):
            r = devbox(*args, cwd=tmp_path)
            assert r.returncode == 2, (args, r.stderr)
            assert "Traceback" not in r.stderr and "ValueError" not in r.stderr
            err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
            assert len(err) == 1 and "log.entries[0]" in err[0] and url in err[0], r.stderr


def test_cli_import_warns_and_strict_refuses(tmp_path: Path) -> None:
    har = tmp_path / "mixed.har"
    har.write_text(json.dumps(_doc("http://h/a", "http://[::1", "http://h/b")))
    r = devbox("import", str(har), "--into", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "log.entries[1] GET http://[::1: skipped: request.url" in r.stderr
    assert "imported 2 exchanges" in r.stdout and "1 skipped" in r.stdout
    r = devbox("import", str(har), "--into", str(tmp_path / "out2"), "--strict", cwd=tmp_path)
    assert r.returncode == 2 and "log.entries[1].request.url" in r.stderr, r.stderr
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=har_documents)
def test_fuzz_har_loader(doc: object) -> None:
    """Bounded in the suite; the long run is ``python -m bench.fidelity.fuzz_har``."""
    check_document(doc, strict=False)
    check_document(doc, strict=True)
