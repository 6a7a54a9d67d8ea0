"""Real HAR producers over a small local site: headless Chromium (Playwright) and mitmproxy.

The site (``Site``) serves the classes of traffic that broke fidelity: an ISO-8859-1 page
declared in the header, one declared only in ``<meta>``, gzip/br/zstd bodies, a PNG, a
redirect, 204, an ETag answered 304 on revalidation, ``Range`` answered 206, a binary
upload, and a request to a closed port (a failed request). ``chromium_har`` drives
Debian's chromium through Playwright (no browser download) and returns the HAR Playwright
wrote; ``mitmproxy_har`` sends requests through ``mitmdump --set hardump=FILE`` in reverse
mode. Nothing here writes HAR JSON: the producers do. Used by the suite's fixtures and by
``bench/fidelity/corpus.py``.
"""

from __future__ import annotations

import gzip
import http.client
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import zstandard
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MITMDUMP = ROOT / ".tools" / "mitmproxy" / "bin" / "mitmdump"

LATIN1_TEXT = "Caf\u00e9 \u00a9 2024 \u2013 na\u00efve".replace("\u2013", "-")
LATIN1_PAGE = (
    "<!doctype html><html><head><title>latin</title></head>"
    f"<body><h1>{LATIN1_TEXT}</h1></body></html>"
).encode("iso-8859-1")
META_PAGE = (
    '<!doctype html><html><head><meta charset="iso-8859-1"><title>meta</title></head>'
    f"<body><p>{LATIN1_TEXT} \u00fc\u00f6\u00e4</p></body></html>"
).encode("iso-8859-1")
CSS = b"body { font-family: sans-serif; color: #223; } h1 { color: #a33; }\n" * 20
SCRIPT = b"document.title = document.title + ' ok';\n" + b"// padding\n" * 200
DATA_JSON = (
    b'{"items": [' + b",".join(b'{"id": %d, "name": "item %d"}' % (i, i) for i in range(60)) + b"]}"
)
VIDEO = bytes(range(256)) * 64  # 16 KiB of "media"
ETAG = '"v1-etag"'


def png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (red/blue checks), made here rather than shipped."""
    rows = b"".join(
        b"\x00"
        + b"".join((b"\xff\x00\x00" if (x + y) % 2 else b"\x00\x00\xff") for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()

INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>fidelity</title>
<link rel="stylesheet" href="/style.css"><script src="/app.js"></script></head>
<body><h1>Fidelity \xe2\x9c\x93</h1><img src="/logo.png" width="64" height="64">
<script>
// read every body: Chromium keeps in the HAR only the bodies the page consumed
async function get(url, opts) { const r = await fetch(url, opts); await r.arrayBuffer(); return r; }
window.done = (async () => {
  const out = [];
  out.push((await get('/data.json')).status);
  out.push((await get('/etag.txt')).status);
  out.push((await get('/etag.txt', {cache: 'no-cache'})).status);
  out.push((await get('/video.bin', {headers: {Range: 'bytes=0-1023'}})).status);
  out.push((await get('/video.bin')).status);
  out.push((await get('/nocontent', {method: 'DELETE'})).status);
  out.push((await get('/redirect')).status);
  out.push((await get('/upload', {method: 'POST',
    headers: {'Content-Type': 'application/octet-stream'},
    body: new Uint8Array([0, 255, 1, 254, 128, 10, 13])})).status);
  out.push((await get('/api/items?q=a:b%20c&tag=x%2Fy')).status);
  try { await fetch('http://127.0.0.1:CLOSED/gone'); } catch (e) { out.push('failed'); }
  return out;
})();
</script></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    site: Site

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _encoded(self, body: bytes, ctype: str, coding: str) -> None:
        accept = self.headers.get("Accept-Encoding", "")
        if coding not in accept:
            self._send(200, [("Content-Type", ctype)], body)
            return
        if coding == "gzip":
            data = gzip.compress(body, mtime=0)
        elif coding == "br":
            data = brotli.compress(body)
        else:
            data = zstandard.ZstdCompressor().compress(body)
        self._send(
            200,
            [("Content-Type", ctype), ("Content-Encoding", coding), ("Vary", "Accept-Encoding")],
            data,
        )

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(n)
        if self.path == "/upload":
            self._send(201, [("Content-Type", "application/json")], b'{"received": %d}' % len(got))
        else:
            self._send(404, [("Content-Type", "text/plain")], b"no")

    def do_DELETE(self) -> None:
        self._send(204, [("Access-Control-Allow-Origin", "*")])

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = INDEX.replace(b"CLOSED", str(self.site.closed_port).encode())
            body = body.replace(b"<title>fidelity", b"<title>" + self.site.name.encode())
            self._send(200, [("Content-Type", "text/html; charset=utf-8")], body)
        elif path == "/latin1.html":
            self._send(200, [("Content-Type", "text/html; charset=iso-8859-1")], LATIN1_PAGE)
        elif path == "/meta.html":
            self._send(200, [("Content-Type", "text/html")], META_PAGE)
        elif path == "/app.js":
            self._encoded(SCRIPT, "application/javascript", "gzip")
        elif path == "/style.css":
            self._encoded(CSS, "text/css", "br")
        elif path == "/data.json":
            self._encoded(DATA_JSON, "application/json", "zstd")
        elif path == "/api/items":
            self._encoded(DATA_JSON, "application/json", "gzip")
        elif path == "/logo.png":
            self._send(200, [("Content-Type", "image/png")], PNG)
        elif path == "/redirect":
            self._send(302, [("Location", "/latin1.html")], b"")
        elif path == "/etag.txt":
            if self.headers.get("If-None-Match") == ETAG:
                self._send(304, [("ETag", ETAG)])
            else:
                self._send(
                    200,
                    [("Content-Type", "text/plain"), ("ETag", ETAG), ("Cache-Control", "no-cache")],
                    b"versioned text\n",
                )
        elif path == "/video.bin":
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                lo, hi = int(a), min(int(b or len(VIDEO) - 1), len(VIDEO) - 1)
                self._send(
                    206,
                    [
                        ("Content-Type", "application/octet-stream"),
                        ("Accept-Ranges", "bytes"),
                        ("Content-Range", f"bytes {lo}-{hi}/{len(VIDEO)}"),
                    ],
                    VIDEO[lo : hi + 1],
                )
            else:
                self._send(
                    200,
                    [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")],
                    VIDEO,
                )
        else:
            self._send(404, [("Content-Type", "text/plain")], b"not here")


class Site:
    """The local site, on a free port; ``closed_port`` is a port nothing listens on."""

    def __init__(self, name: str = "fidelity") -> None:
        self.name = name
        handler = type("Handler", (_Handler,), {"site": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.closed_port = s.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


NPM_CORPUS = ROOT / ".cache" / "npm-corpus" / "node_modules"


class ThirdPartySite:
    """Third-party content as its package ships it, served as static files on a free port:
    swagger-ui-dist's API explorer (npm) showing the Petstore spec of @readme/oas-examples
    (npm), both installed by scripts/setup into .cache/npm-corpus. The only byte changed is
    the explorer's spec URL (the package points at a public host; here it is local)."""

    PAGES = ("/swagger/index.html",)
    # rendered when the explorer has fetched and laid out the spec
    READY = ".swagger-ui .info .title"

    def __init__(self, root: Path) -> None:
        dist = NPM_CORPUS / "swagger-ui-dist"
        spec = NPM_CORPUS / "@readme" / "oas-examples" / "3.0" / "json" / "petstore.json"
        if not dist.exists() or not spec.exists():
            raise RuntimeError(f"{NPM_CORPUS} lacks swagger-ui-dist: run scripts/setup")
        shutil.copytree(dist, root / "swagger", ignore=shutil.ignore_patterns("*.map"))
        init = root / "swagger" / "swagger-initializer.js"
        text = init.read_text()
        init.write_text(
            text.replace("https://petstore.swagger.io/v2/swagger.json", "/specs/petstore.json")
        )
        (root / "specs").mkdir()
        shutil.copy(spec, root / "specs" / "petstore.json")
        import functools
        from http.server import SimpleHTTPRequestHandler

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThirdPartySite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def third_party_capture(site: ThirdPartySite, har: Path) -> Path:
    return chromium_har([site.base + p for p in site.PAGES], har, wait_for=site.READY)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def chromium_har(
    urls: list[str], har: Path, *, wait_js: str | None = None, wait_for: str | None = None
) -> Path:
    """Load each URL in headless Chromium with Playwright recording a HAR (bodies embedded)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            ctx = browser.new_context(record_har_path=str(har), record_har_content="embed")
            page = ctx.new_page()
            for url in urls:
                page.goto(url, wait_until="load")
                if wait_js:
                    page.evaluate(wait_js)
                if wait_for:
                    page.wait_for_selector(wait_for, timeout=30_000)
                    page.wait_for_load_state("networkidle")
            ctx.close()
        finally:
            browser.close()
    return har


def screenshot(
    url: str, out: Path, *, proxy: str | None = None, wait_for: str | None = None
) -> bytes:
    """A PNG of *url* in headless Chromium (optionally through an HTTP proxy)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            ctx = browser.new_context(
                viewport={"width": 640, "height": 400},
                proxy={"server": proxy, "bypass": "<-loopback>"} if proxy else None,
            )
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            if wait_for:
                page.wait_for_selector(wait_for, timeout=30_000)
                page.wait_for_load_state("networkidle")
            data: bytes = page.screenshot(path=str(out))
            ctx.close()
        finally:
            browser.close()
    return data


@contextmanager
def mitmdump(upstream: str | None, har: Path) -> Iterator[int]:
    """``mitmdump`` in reverse mode in front of *upstream* (or a forward proxy with None),
    writing *har* when it stops."""
    if not MITMDUMP.exists():
        raise RuntimeError(f"{MITMDUMP} missing: run scripts/setup")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(MITMDUMP),
            *(["--mode", f"reverse:{upstream}"] if upstream else []),
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--set",
            f"hardump={har}",
            "-q",
            "--set",
            "confdir=" + str(har.parent / ".mitmproxy"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None  # stderr=PIPE
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"mitmdump exited: {proc.stderr.read()!r}") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)  # hardump is written on shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mitmproxy_har(site: Site, har: Path) -> Path:
    """Plain HTTP clients through mitmdump: the codings, 304, 206, 204, binary, upload."""
    with mitmdump(site.base, har) as port:

        def call(
            method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
        ) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            r.read()
            conn.close()
            return r.status

        call("GET", "/", {"Accept-Encoding": "gzip"})
        call("GET", "/latin1.html")
        call("GET", "/meta.html")
        call("GET", "/app.js", {"Accept-Encoding": "gzip"})
        call("GET", "/style.css", {"Accept-Encoding": "br"})
        call("GET", "/data.json", {"Accept-Encoding": "zstd"})
        call("GET", "/api/items?q=a:b%20c&tag=x%2Fy", {"Accept-Encoding": "gzip"})
        call("GET", "/logo.png")
        call("GET", "/etag.txt")
        call("GET", "/etag.txt", {"If-None-Match": ETAG})
        call("GET", "/video.bin", {"Range": "bytes=0-1023"})
        call("GET", "/video.bin")
        call("DELETE", "/nocontent")
        call("GET", "/redirect")
        call(
            "POST",
            "/upload",
            {"Content-Type": "application/octet-stream"},
            bytes([0, 255, 1, 254, 128, 10, 13]),
        )
    deadline = time.monotonic() + 30
    while not har.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return har


def mitmproxy_origins_har(sites: list[Site], har: Path) -> Path:
    """mitmdump as a forward proxy, the same paths fetched from several origins."""
    with mitmdump(None, har) as port:
        for site in sites:
            for path in ("/", "/latin1.html", "/etag.txt"):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", f"{site.base}{path}")
                conn.getresponse().read()
                conn.close()
        # a path only the first origin served
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"{sites[0].base}/logo.png")
        conn.getresponse().read()
        conn.close()
    deadline = time.monotonic() + 30
    while not har.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return har


def browser_capture(site: Site, har: Path) -> Path:
    return chromium_har(
        [f"{site.base}/", f"{site.base}/latin1.html", f"{site.base}/meta.html"],
        har,
        wait_js="window.done || null",
    )


__all__ = [
    "CHROMIUM",
    "MITMDUMP",
    "Site",
    "ThirdPartySite",
    "browser_capture",
    "chromium_har",
    "mitmdump",
    "mitmproxy_har",
    "mitmproxy_origins_har",
    "screenshot",
    "third_party_capture",
]
