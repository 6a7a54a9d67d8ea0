"""The proof of redaction: a corpus of ~400 secrets in 190 formats (every token format of
secret_formats, every keyword rule of secret_keywords under its provider's name, PEM keys,
URL passwords, JWTs, opaque tokens), carried in every placement (header, query, nested JSON,
form, multipart, text, code, base64 and URL-encoded text) through real HTTP, lands on disk
in no form at all (raw, JSON-escaped, URL-encoded, base64): after `devbox import` of a HAR
written by mitmproxy, and after `devbox record`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT, free_port
from producers import mitmdump
from secret_corpus import KEYWORD_SPECS, SPECS, corpus, keyword_corpus, leaks, pems, url_passwords

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
CLIENT = str(ROOT / "tests" / "corpus_client.py")
SECRETS = (
    corpus() + url_passwords() + pems() + [(rule, secret) for rule, _, secret in keyword_corpus()]
)


class Echo(BaseHTTPRequestHandler):
    """Answers every request with its own body, content type and secrets: the response
    side of each exchange carries the corpus too."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type", "text/plain"))
        if self.headers.get("X-Custom-Data"):
            self.send_header("X-Echo", self.headers["X-Custom-Data"])
        if self.headers.get("Cookie"):
            self.send_header("Set-Cookie", self.headers["Cookie"].split(";")[0] + "; HttpOnly")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_corpus_is_big_enough() -> None:
    assert len(SECRETS) >= 200 and len({f for f, _ in SECRETS}) >= 180
    assert len(SPECS) + len(KEYWORD_SPECS) >= 180


def test_no_secret_survives_an_import_of_a_mitmproxy_har(tmp_path: Path, echo: int) -> None:
    har = tmp_path / "capture.har"
    with mitmdump(f"http://127.0.0.1:{echo}", har) as port:
        r = subprocess.run(
            [sys.executable, CLIENT, f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
    assert har.exists()
    # the secrets are in the HAR, in clear: the test carries what it claims to
    har_text = har.read_text()
    assert sum(s in har_text for _, s in SECRETS if "\n" not in s) > 200
    r = subprocess.run(
        [*DEVBOX, "import", str(har), "--into", "mocks/p/api"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    written = tmp_path / "mocks"
    assert len(list(written.rglob("*.json"))) == 1
    assert leaks(SECRETS, written) == []


def test_no_secret_survives_a_recording_of_live_traffic(tmp_path: Path, echo: int) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.toml").write_text(
        f'name = "p"\n[service]\nport = {echo}\ncommand = ["true"]\n'
        f'[[dependency]]\nname = "api"\nupstream = "http://127.0.0.1:{echo}"\n'
        f'env = "API_URL"\nport = {free_port()}\n'
    )
    r = subprocess.run(
        [
            *DEVBOX,
            "record",
            "p",
            "--no-service",
            "--json",
            "--",
            sys.executable,
            CLIENT,
            "{inbound}",
            "{api}",
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    client_line, _, summary = r.stdout.partition("\n")
    assert json.loads(client_line)["secrets"] == len(SECRETS)
    sources = json.loads(summary)["sources"]
    assert sources["inbound"]["exchanges"] > 0 and sources["api"]["exchanges"] > 0
    assert leaks(SECRETS, tmp_path / "mocks") == []
