"""Fidelity on traffic nobody here wrote: HARs made by headless Chromium (Playwright) and
mitmproxy over a local site import, serve and round-trip with the bytes of the wire.

The captures are made by the fixtures below with the real producers (``producers.py``);
the site's own bytes are the truth every comparison is made against.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import producers as P
import pytest
import zstandard
from conftest import run_devbox
from mock_helpers import call, running

from devbox.core.har import HarImport, import_har, parse_har
from devbox.core.model import Exchange
from devbox.errors import RecordingError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return run_devbox(cwd, *args, timeout=120, env=env)


TRUTH = {
    "/latin1.html": P.LATIN1_PAGE,
    "/meta.html": P.META_PAGE,
    "/app.js": P.SCRIPT,
    "/style.css": P.CSS,
    "/data.json": P.DATA_JSON,
    "/api/items": P.DATA_JSON,
    "/logo.png": P.PNG,
    "/video.bin": P.VIDEO,
}


@pytest.fixture(scope="module")
def site() -> Iterator[P.Site]:
    with P.Site() as s:
        yield s


@pytest.fixture(scope="module")
def captures(site: P.Site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("captures")
    return {
        "chromium": P.browser_capture(site, out / "chromium.har"),
        "mitmproxy": P.mitmproxy_har(site, out / "mitmproxy.har"),
    }


def load(path: Path, **kw: bool) -> HarImport:
    return import_har(
        parse_har(path.read_bytes(), path.name), source="site", filename=path.name, **kw
    )


def full(exs: tuple[Exchange, ...], path: str) -> Exchange:
    """The 200 of *path* whose body the producer kept (Chromium does not keep the body of
    a fetch whose body the page never read: that entry is marked truncated)."""
    fulls = [
        e
        for e in exs
        if e.request.path == path and e.response is not None and e.response.status == 200
    ]
    kept = [e for e in fulls if not e.response_truncated]
    return kept[0] if kept else fulls[0]


@pytest.mark.parametrize("producer", ["chromium", "mitmproxy"])
def test_real_captures_import_every_entry(captures: dict[str, Path], producer: str) -> None:
    result = load(captures[producer])
    assert result.skipped == 0
    if producer == "chromium":
        # Playwright: a refused fetch is status -1 with _failureText; a binary upload is
        # written as an empty text with bodySize 7
        failed = [e for e in result.exchanges if e.response is None]
        assert [e.error for e in failed] == ["net::ERR_CONNECTION_REFUSED"]
        assert [(w.field, w.skipped) for w in result.warnings] == [("request.postData", False)]
        upload = next(e for e in result.exchanges if e.request.path == "/upload")
        assert upload.request_truncated and upload.request.body == b""
        with pytest.raises(RecordingError) as info:
            load(captures[producer], strict=True)
        assert re.fullmatch(r"log\.entries\[\d+\]\.request\.postData", info.value.field or "")
    else:
        assert result.warnings == ()
        upload = next(e for e in result.exchanges if e.request.path == "/upload")
        assert upload.request.body == bytes([0, 255, 1, 254, 128, 10, 13])


@pytest.mark.parametrize("producer", ["chromium", "mitmproxy"])
def test_bodies_are_the_bytes_of_the_wire(captures: dict[str, Path], producer: str) -> None:
    """Header charset, <meta> charset, latin-1 guesses of mitmproxy, br/zstd/gzip decoded,
    binary kept binary: every body equals what the site sent (before any coding)."""
    exs = load(captures[producer]).exchanges
    for path, truth in TRUTH.items():
        assert full(exs, path).response.body == truth, path  # type: ignore[union-attr]
    css = full(exs, "/style.css").response
    assert css is not None and css.header("content-encoding") == "br"


def test_mock_serves_the_wire_bytes_and_codings(captures: dict[str, Path]) -> None:
    exs = [e for e in load(captures["mitmproxy"]).exchanges if e.response is not None]
    plain = [e for e in exs if e.response and e.response.status in (200, 201, 204, 302)]
    with running(plain) as (_, port):
        status, headers, body = call(port, "GET", "/latin1.html")
        assert status == 200 and body == P.LATIN1_PAGE
        assert headers["content-type"] == "text/html; charset=iso-8859-1"
        assert call(port, "GET", "/meta.html")[2] == P.META_PAGE
        _, headers, body = call(port, "GET", "/style.css", headers={"Accept-Encoding": "br"})
        assert headers["content-encoding"] == "br" and brotli.decompress(body) == P.CSS
        _, headers, body = call(port, "GET", "/data.json", headers={"Accept-Encoding": "zstd"})
        assert headers["content-encoding"] == "zstd"
        assert zstandard.ZstdDecompressor().decompress(body) == P.DATA_JSON
        _, headers, body = call(port, "GET", "/data.json")
        assert "content-encoding" not in headers and body == P.DATA_JSON
        assert call(port, "GET", "/logo.png")[2] == P.PNG


# ---------------------------------------------------------------- HTTP semantics


def test_304_and_206_answer_only_their_own_requests(captures: dict[str, Path]) -> None:
    """mitmproxy's capture holds GET /etag.txt as a 200 and as a 304 to If-None-Match, and
    /video.bin as a 206 to Range and as a 200: each request gets its own answer."""
    exs = list(load(captures["mitmproxy"]).exchanges)
    assert {e.response.status for e in exs if e.response} >= {200, 206, 304}
    with running(exs) as (_, port):
        for _ in range(2):
            status, _, body = call(port, "GET", "/etag.txt")
            assert status == 200 and body == b"versioned text\n"
            status, _, body = call(port, "GET", "/etag.txt", headers={"If-None-Match": P.ETAG})
            assert status == 304 and body == b""
            status, _, body = call(port, "GET", "/video.bin")
            assert status == 200 and body == P.VIDEO
            status, _, body = call(port, "GET", "/video.bin", headers={"Range": "bytes=0-1023"})
            assert status == 206 and body == P.VIDEO[:1024]
            # another range than the recorded one: the full response is a correct answer
            assert call(port, "GET", "/video.bin", headers={"Range": "bytes=5-9"})[0] == 200


def test_only_a_304_recorded_is_a_miss_explained(captures: dict[str, Path]) -> None:
    exs = [
        e
        for e in load(captures["mitmproxy"]).exchanges
        if e.response is not None and e.response.status in (304, 206)
    ]
    with running(exs) as (_, port):
        status, _, body = call(port, "GET", "/etag.txt")
        assert status != 200
        explanation = json.loads(body)["explanation"]
        assert "only 304 Not Modified for If-None-Match" in explanation
        assert "needs the full response" in explanation
        status, _, body = call(port, "GET", "/video.bin")
        assert "only 206 Partial Content for Range: bytes=0-1023" in json.loads(body)["explanation"]
        assert call(port, "GET", "/etag.txt", headers={"If-None-Match": P.ETAG})[0] == 304


def test_origin_is_part_of_the_match(tmp_path: Path) -> None:
    with P.Site("alpha") as a, P.Site("beta") as b:
        har = P.mitmproxy_origins_har([a, b], tmp_path / "origins.har")
    exs = list(load(har).exchanges)
    assert len({e.request.host for e in exs}) == 2
    with running(exs) as (_, port):
        for site in (a, b):
            _, _, body = call(port, "GET", "/", headers={"Host": f"127.0.0.1:{site.port}"})
            assert f"<title>{site.name}".encode() in body
            # through the mock as a proxy (absolute-form target)
            _, _, body = call(port, "GET", f"{site.base}/")
            assert f"<title>{site.name}".encode() in body
        status, _, body = call(port, "GET", "/logo.png", headers={"Host": f"127.0.0.1:{b.port}"})
        assert status != 200
        assert "origin is part of the match: 2 origins recorded" in json.loads(body)["explanation"]
        status, _, body = call(port, "GET", "/logo.png", headers={"Host": f"127.0.0.1:{a.port}"})
        assert status == 200 and body == P.PNG


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("producer", ["chromium", "mitmproxy"])
def test_import_then_export_gives_back_the_entries(
    captures: dict[str, Path], producer: str, tmp_path: Path
) -> None:
    """devbox import -> devbox export: method, URL (bytes: ':' and '%20' untouched), status,
    headers and bodies equal to the producer's, except values redaction replaced."""
    src = captures[producer]
    r = devbox("import", str(src), "--into", str(tmp_path / "site"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "back.har"
    r = devbox("export", str(tmp_path / "site"), "--har", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    orig = json.loads(src.read_bytes())["log"]["entries"]
    back = json.loads(out.read_bytes())["log"]["entries"]
    assert len(back) == len(orig)
    assert any("q=a:b%20c&tag=x%2Fy" in e["request"]["url"] for e in back)
    for o, n in zip(orig, back, strict=True):
        assert n["request"]["method"] == o["request"]["method"]
        assert n["request"]["url"] == o["request"]["url"]
        status = o["response"]["status"]
        assert n["response"]["status"] == max(status, 0)
        if status <= 0:
            continue
        want = [(h["name"], h["value"]) for h in o["response"]["headers"]]
        got = [(h["name"], h["value"]) for h in n["response"]["headers"]]
        assert [k for k, _ in got] == [k for k, _ in want]
        for (_, a), (_, b) in zip(want, got, strict=True):
            assert a == b or "REDACTED" in b.upper() or "«" in b
        # a body is compared by its bytes on the wire (the charset each producer used)
        imported = load(src).exchanges
        ex = next(e for e in imported if e.request.url == o["request"]["url"])
        if not ex.response_truncated and ex.response is not None and ex.response.body:
            again = import_har(json.loads(out.read_bytes()), source="s").exchanges
            same = [e for e in again if e.request.url == o["request"]["url"]]
            assert any(e.response and e.response.body == ex.response.body for e in same)


def test_third_party_api_explorer_is_pixel_identical_through_the_mock(tmp_path: Path) -> None:
    """swagger-ui-dist (npm) rendering a Petstore spec (npm), captured by headless
    Chromium: every entry served byte-identical by the mock, and the page loaded with the
    mock as the browser's proxy gives the same PNG as the page from the site."""
    with P.ThirdPartySite(tmp_path / "site") as site:
        har = P.third_party_capture(site, tmp_path / "swagger.har")
        exs = [e for e in import_har(parse_har(har.read_bytes()), source="s").exchanges]
        assert {e.request.path for e in exs} >= {
            "/swagger/index.html",
            "/swagger/swagger-ui-bundle.js",
            "/specs/petstore.json",
        }
        with running([e for e in exs if e.response is not None]) as (_, port):
            for e in exs:
                assert e.response is not None
                status, _, body = call(port, e.request.method, e.request.target)
                assert (status, body) == (e.response.status, e.response.body), e.request.target
            for page in site.PAGES:
                direct = P.screenshot(site.base + page, tmp_path / "a.png", wait_for=site.READY)
                mocked = P.screenshot(
                    site.base + page,
                    tmp_path / "b.png",
                    proxy=f"http://127.0.0.1:{port}",
                    wait_for=site.READY,
                )
                assert direct == mocked, page
