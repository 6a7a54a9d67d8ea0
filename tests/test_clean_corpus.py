"""Content that holds no secret passes redaction untouched: real third-party files from
npm (scripts/setup installs them into .cache/npm-corpus) served over HTTP, captured by
mitmproxy into a HAR, imported and exported: every body and header comes back byte for
byte (a bundle rewritten by a name rule would no longer parse; a page would render blank)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from producers import mitmdump

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
MODULES = ROOT / ".cache" / "npm-corpus" / "node_modules"
FILES = [
    "swagger-ui-dist/swagger-ui-bundle.js",  # minified, `Y.password=…` inside
    "swagger-ui-dist/swagger-ui.css",
    "swagger-ui-dist/index.html",
    "swagger-ui-dist/oauth2-redirect.html",
    "bootstrap/dist/css/bootstrap.css",
    "bootstrap/dist/js/bootstrap.js",  # unminified
    "jquery/dist/jquery.js",
    "bootstrap/README.md",  # documentation with maintainers' addresses
    "@readme/oas-examples/3.0/json/petstore.json",  # OpenAPI: apiKey schemes, passwords
    "@readme/oas-examples/3.0/json/security.json",
    "@readme/oas-examples/3.0/json/readme-extensions.json",
]


class Quiet(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".md": "text/markdown",
        ".js": "application/javascript",
        ".json": "application/json",
    }

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        # headers named like credentials that are none
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Allow-Headers", "Authorization, X-Api-Key")
        super().end_headers()


@pytest.fixture
def site() -> Iterator[int]:
    missing = [f for f in FILES if not (MODULES / f).is_file()]
    assert not missing, f"run scripts/setup (npm corpus): missing {missing}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(MODULES)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _entries(har: Path) -> dict[str, tuple[list[tuple[str, str]], bytes]]:
    out = {}
    for e in json.loads(har.read_text())["log"]["entries"]:
        c = e["response"]["content"]
        text = c.get("text", "")
        body = base64.b64decode(text) if c.get("encoding") == "base64" else text.encode()
        headers = [(h["name"].lower(), h["value"]) for h in e["response"]["headers"]]
        out[e["request"]["url"].split("/", 3)[3]] = (headers, body)
    return out


def test_import_then_export_changes_no_byte(tmp_path: Path, site: int) -> None:
    har = tmp_path / "site.har"
    with mitmdump(f"http://127.0.0.1:{site}", har) as port:
        for f in FILES:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{f}", timeout=30) as r:
                assert r.read() == (MODULES / f).read_bytes()
    r = subprocess.run(
        [*DEVBOX, "import", str(har), "--into", "mocks/p/site"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.har"
    r = subprocess.run(
        [*DEVBOX, "export", "mocks/p/site", "--har", str(out)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    before, after = _entries(har), _entries(out)
    assert set(before) == set(after) == set(FILES)
    # headers as mitmproxy saw them; bodies as they were on the wire, which is the files
    # themselves (mitmproxy stores a text body without a declared charset as latin-1 text:
    # import undoes that, so the export carries the real bytes)
    changed: list[Any] = [
        f for f in FILES if before[f][0] != after[f][0] or after[f][1] != (MODULES / f).read_bytes()
    ]
    assert changed == []
