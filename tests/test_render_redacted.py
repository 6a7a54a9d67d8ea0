"""Redaction damages nothing a person sees: a real API-explorer page (swagger-ui from npm,
rendering an OpenAPI spec full of `password` and `api_key` schema) is captured by a real
producer (Chromium's own HAR through Playwright, or mitmproxy in front of the site),
imported with the default redaction, served by `devbox mock` from the redacted recording,
and rendered by headless Chromium: the screenshot is pixel-identical to the one of the
live site. The site also hands out secrets (a session cookie, an API key header, a token
in a script comment): the recording must not hold them, so redaction had work to do."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import producers as P
import pytest
from conftest import ROOT, free_port
from secret_corpus import sample

pytestmark = pytest.mark.slow
DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
NPM = ROOT / ".cache" / "npm-corpus" / "node_modules"
UI = NPM / "swagger-ui-dist"
SPEC = NPM / "@readme/oas-examples/3.0/json/petstore.json"
UI_FILES = (
    "index.html",
    "index.css",
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
)
RNG = random.Random(21)
COMMENT_TOKEN = sample("github-pat", RNG)
SESSION = sample("stripe-secret-key", RNG)
API_KEY = "Zq8" + sample("github-pat", RNG)[4:30]
# our own initializer (the npm one loads its spec from the Internet): the local spec, no
# validator badge (another Internet fetch), and a deploy token left in a comment
INITIALIZER = f"""window.onload = function() {{
  // deploy token for the docs bucket: {COMMENT_TOKEN}
  window.ui = SwaggerUIBundle({{
    url: "/petstore.json",
    dom_id: '#swagger-ui',
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  }});
}};
"""
# resolves once the operations are on screen and fonts and images are done (bounded)
RENDERED = """() => new Promise(resolve => {
  const t0 = Date.now();
  const tick = () => {
    const done = document.querySelectorAll('.opblock').length > 0
      && document.fonts.status === 'loaded';
    if (done || Date.now() - t0 > 20000) {
      setTimeout(resolve, 300, done);
    } else {
      setTimeout(tick, 50);
    }
  };
  tick();
})"""


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        # a secret on every response, and headers named like credentials that are none
        self.send_header("Set-Cookie", f"session={SESSION}; Path=/; HttpOnly")
        self.send_header("X-Api-Key", API_KEY)
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [f for f in UI_FILES if not (UI / f).is_file()] + ([] if SPEC.is_file() else [SPEC])
    assert not missing, f"run scripts/setup (npm corpus): missing {missing}"
    root = tmp_path_factory.mktemp("site")
    for f in UI_FILES:
        shutil.copy(UI / f, root / f)
    shutil.copy(SPEC, root / "petstore.json")
    (root / "swagger-initializer.js").write_text(INITIALIZER)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def render(url: str, out: Path, *, har: Path | None = None) -> bytes:
    """A screenshot of the page once rendered (and its HAR, by Chromium, when asked)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = P.launch_chromium(p)
        try:
            extra: dict[str, Any] = {}
            if har is not None:
                extra = {"record_har_path": str(har), "record_har_content": "embed"}
            ctx = browser.new_context(viewport={"width": 1000, "height": 1400}, **extra)
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            assert page.evaluate(RENDERED), f"{url} did not render its operations"
            data: bytes = page.screenshot(path=str(out), animations="disabled", caret="hide")
            ctx.close()
        finally:
            browser.close()
    return data


def capture(producer: str, site: str, har: Path, out: Path) -> bytes:
    if producer == "chromium":
        return render(f"{site}/index.html", out, har=har)
    with P.mitmdump(site, har) as port:
        return render(f"http://127.0.0.1:{port}/index.html", out)


def wait_port(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    raise AssertionError("devbox mock did not listen")


@pytest.mark.parametrize("producer", ["chromium", "mitmproxy"])
def test_page_served_from_the_redacted_recording_renders_pixel_identical(
    tmp_path: Path, site: str, producer: str
) -> None:
    har = tmp_path / f"{producer}.har"
    original = capture(producer, site, har, tmp_path / "original.png")
    text = har.read_text()
    assert COMMENT_TOKEN in text and SESSION in text and API_KEY in text  # the HAR carries them
    r = subprocess.run(
        [*DEVBOX, "import", str(har), "--into", "mocks/p/site"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (recording,) = (tmp_path / "mocks").rglob("*.json")
    stored = recording.read_text()
    for secret in (COMMENT_TOKEN, SESSION, API_KEY):
        assert secret not in stored
    assert "ghp_<redacted:github-pat:" in stored  # the comment was redacted in the script
    port = free_port()
    mock = subprocess.Popen(
        [*DEVBOX, "mock", "--recording", str(recording), "--port", str(port), "-q"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port, mock)
        served = render(f"http://127.0.0.1:{port}/index.html", tmp_path / "served.png")
    finally:
        mock.send_signal(signal.SIGINT)
        try:
            mock.wait(timeout=30)
        except subprocess.TimeoutExpired:
            mock.kill()
            mock.wait()
    assert served == original, f"screenshots differ: see {tmp_path}"
