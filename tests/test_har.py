"""HAR 1.2 import and export: real browser/proxy shapes, round trips, and the CLI commands."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from conftest import run_devbox

from devbox.core.har import exchanges_to_har, har_to_exchanges, import_har, parse_har
from devbox.core.model import Direction, Exchange
from devbox.errors import RecordingError
from devbox.store import load_dir, load_file, write_recording

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def load(name: str) -> dict[str, Any]:
    return parse_har((DATA / name).read_bytes(), name)


def imported(name: str, source: str = "api") -> list[Exchange]:
    return har_to_exchanges(load(name), source=source, filename=name)


def devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return run_devbox(cwd, *args, timeout=60, env=env)


# ---------------------------------------------------------------- Chrome


def test_chrome_export_imports() -> None:
    exs = imported("chrome.har")
    assert len(exs) == 11
    assert all(e.source == "api" and e.direction is Direction.OUTBOUND for e in exs)
    assert {e.origin for e in exs} == {"har:WebInspector"}
    first = exs[0]
    assert first.request.method == "GET" and first.request.host == "api.shop.example"
    assert first.request.scheme == "https" and first.request.http_version == "HTTP/2"
    assert first.request.query == (("page", "1"), ("per_page", "20"))
    names = [k for k, _ in first.request.headers]
    assert not any(n.startswith(":") for n in names)  # HTTP/2 pseudo-headers dropped
    assert "authorization" in names and "cookie" in names
    assert first.response is not None and first.response.status == 200
    assert json.loads(first.response.body)["items"][0]["sku"] == "KB-101"
    # startedDateTime, time and timings.wait
    assert first.timing.started_at == datetime.fromisoformat("2024-03-01T09:15:02.114Z").timestamp()
    assert first.timing.duration_ms == 41.0 and first.timing.wait_ms == 38.5


def test_chrome_bodies() -> None:
    exs = imported("chrome.har")
    by_path: dict[str, list[Exchange]] = {}
    for e in exs:
        by_path.setdefault(e.request.path, []).append(e)
    png = by_path["/img/logo.png"][0].response
    assert png is not None and png.body.startswith(b"\x89PNG\r\n\x1a\n")  # base64 content
    session = by_path["/v1/session"][0].response
    # base64 of gzip bytes with content-encoding: gzip -> the decoded body
    assert session is not None and json.loads(session.body)["session"]["region"] == "eu-west-1"
    assert session.header("content-encoding") == "gzip"  # headers as the peer sent them
    legacy = by_path["/info"][0].response
    # text in a declared latin-1 charset becomes the latin-1 bytes that were on the wire
    assert legacy is not None and b"Caf\xe9 M\xfcller" in legacy.body
    js = by_path["/static/js/app.4f9c2.js"][0]
    assert js.response is not None and js.response.body == b"" and js.response_truncated
    checkout = by_path["/v1/checkout"][0]
    # postData with params only (no text): rebuilt as a form body
    assert parse_qsl(checkout.request.body.decode()) == [
        ("card_number", "4242 4242 4242 4242"),
        ("cvc", "737"),
        ("qty", "2"),
        ("note", "leave at door"),
    ]
    assert checkout.response is not None and checkout.response.status == 303


def test_failed_requests_and_duplicates() -> None:
    exs = imported("chrome.har")
    failed = [e for e in exs if e.response is None]
    assert len(failed) == 1 and failed[0].error == "net::ERR_CONNECTION_REFUSED"
    assert not failed[0].ok
    orders = [e for e in exs if e.request.path == "/v1/orders/42"]
    assert len(orders) == 2  # the same request twice: both kept, in order (nth call)
    assert orders[0].id != orders[1].id
    assert [json.loads(o.response.body)["status"] for o in orders if o.response] == [
        "shipped",
        "delivered",
    ]
    # ids are stable: importing the same file again gives the same ids
    assert [e.id for e in imported("chrome.har")] == [e.id for e in exs]
    assert len({e.id for e in exs}) == len(exs)


# ---------------------------------------------------------------- Firefox and proxies


def test_firefox_export_imports() -> None:
    exs = imported("firefox.har")
    assert len(exs) == 5 and exs[0].origin == "har:Firefox"
    # "+01:00" offsets: the same instant as UTC
    assert (
        exs[0].timing.started_at
        == datetime.fromisoformat("2024-03-02T09:20:30.125+00:00").timestamp()
    )
    assert exs[0].request.header("Host") == "api.shop.example"
    put = exs[1]
    assert put.request.method == "PUT" and json.loads(put.request.body)["card"]
    assert put.response is not None and put.response.status == 204 and put.response.body == b""
    redirect = exs[2]
    assert redirect.response is not None and redirect.response.status == 301
    assert redirect.request.http_version == "HTTP/1.1"
    font = exs[3].response
    assert font is not None and font.body == bytes(range(256)) * 2
    bare = exs[4]  # no cookies, queryString, headersSize, redirectURL
    assert bare.request.method == "DELETE" and bare.response is not None
    assert bare.response.body == b'{"removed":true}'


def test_proxy_export_imports() -> None:
    exs = imported("proxy.har", source="payments")
    assert exs[0].origin == "har:mitmproxy har_dump"
    charge = exs[0]
    assert charge.request.host == "payments.internal:8081"
    assert charge.response is not None
    assert charge.response.body == b'{"ok": true, "note": "gzip bytes stored as-is by the proxy"}'
    receipt = exs[1]
    # a non-UTF-8 request body in its declared charset, byte for byte
    assert receipt.request.body == "\u6ce8\u6587\u756a\u53f7: 1234 \u6771\u4eac".encode("shift_jis")
    assert receipt.response is not None and receipt.response.body == b"\xff\xfe\x00\x81"
    assert receipt.timing.wait_ms is None  # -1: not available
    timeout = exs[2]
    assert timeout.response is None and timeout.error == "timeout after 30s"
    assert timeout.timing.duration_ms == 30000.0


def test_inbound_source_gives_inbound_direction() -> None:
    exs = imported("firefox.har", source="inbound")
    assert {e.direction for e in exs} == {Direction.INBOUND}


def _har(entry: dict[str, Any]) -> dict[str, Any]:
    return {"log": {"version": "1.2", "entries": [entry]}}


def test_multipart_params_and_cookie_arrays() -> None:
    entry = {
        "startedDateTime": "2024-01-01T00:00:00Z",
        "request": {
            "method": "post",
            "url": "https://up.example/upload",
            "cookies": [{"name": "sid", "value": "abc"}],
            "postData": {
                "mimeType": "multipart/form-data; boundary=----X",
                "params": [
                    {"name": "title", "value": "hello"},
                    {
                        "name": "file",
                        "fileName": "a.txt",
                        "contentType": "text/plain",
                        "value": "content",
                    },
                ],
            },
        },
        "response": {"status": 200, "content": {"size": 0}},
    }
    (e,) = har_to_exchanges(_har(entry), source="up")
    assert e.request.method == "POST"
    assert e.request.header("cookie") == "sid=abc"  # the cookies array was on the wire
    body = e.request.body.decode()
    assert body.startswith("------X\r\n")
    assert 'name="file"; filename="a.txt"' in body and "\r\n\r\ncontent\r\n" in body
    assert body.endswith("------X--\r\n")


def test_lenient_with_missing_optional_fields() -> None:
    entry = {"request": {"method": "GET", "url": "http://h/x"}, "response": {"status": 200}}
    (e,) = har_to_exchanges(_har(entry), source="s")
    assert e.timing.started_at == 0.0 and e.response is not None and e.response.body == b""
    (e,) = har_to_exchanges(_har({"request": {"method": "GET", "url": "http://h/"}}), source="s")
    assert e.response is None and e.error == "no response recorded"
    assert har_to_exchanges({"log": {"entries": []}}, source="s") == []


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"entries": []}, "log", "not a HAR file"),
        ({"log": {"entries": {}}}, "log.entries", "expected a list"),
        (_har({"response": {}}), "log.entries[0].request", "missing request"),
        (_har({"request": {"url": "http://h/"}}), "log.entries[0].request.method", "missing"),
        (
            _har({"request": {"method": "GET", "url": "nope"}}),
            "log.entries[0].request.url",
            "not a URL",
        ),
        (
            _har(
                {
                    "request": {"method": "GET", "url": "http://h/"},
                    "response": {"status": 200, "content": {"text": "@@", "encoding": "base64"}},
                }
            ),
            "log.entries[0].response.content.text",
            "not valid base64",
        ),
        (
            _har(
                {"request": {"method": "GET", "url": "http://h/"}, "startedDateTime": "yesterday"}
            ),
            "log.entries[0].startedDateTime",
            "not an ISO 8601 date",
        ),
        (
            _har({"request": {"method": "GET", "url": "http://h/"}, "response": {"status": "ok"}}),
            "log.entries[0].response.status",
            "expected an HTTP status",
        ),
        (
            _har({"request": {"method": "GET", "url": "http://h/", "headers": [{"value": 1}]}}),
            "log.entries[0].request.headers[0]",
            "expected {name, value}",
        ),
    ],
)
def test_errors_name_the_entry(doc: dict[str, Any], field: str, message: str) -> None:
    """Strict: one clean error naming the entry's field. Lenient (the default): a file-level
    problem is still that error; an entry-level one is a warning naming the entry."""
    with pytest.raises(RecordingError) as info:
        import_har(doc, source="s", filename="x.har", strict=True)
    assert info.value.field == field and message in info.value.message
    assert info.value.file == "x.har"
    if field == "log" or field == "log.entries":
        return
    result = import_har(doc, source="s", filename="x.har")
    assert len(result.warnings) == 1
    w = result.warnings[0]
    assert message in w.reason and f"{w.entry.split()[0]}.{w.field}" == field
    assert w.one_line("x.har").startswith("x.har: log.entries[0]")


def test_parse_har_names_the_line() -> None:
    with pytest.raises(RecordingError) as info:
        parse_har(b'{"log": {\n  "entries": [\n    {,}\n]}}', "bad.har")
    assert info.value.line == 3 and info.value.one_line().startswith("bad.har:3: invalid JSON")
    with pytest.raises(RecordingError, match="expected a JSON object"):
        parse_har(b"[]", "list.har")


# ---------------------------------------------------------------- export and round trips


REQUIRED_ENTRY = {"startedDateTime", "time", "request", "response", "cache", "timings"}
REQUIRED_REQUEST = {
    "method",
    "url",
    "httpVersion",
    "cookies",
    "headers",
    "queryString",
    "headersSize",
    "bodySize",
}
REQUIRED_RESPONSE = {
    "status",
    "statusText",
    "httpVersion",
    "cookies",
    "headers",
    "content",
    "redirectURL",
    "headersSize",
    "bodySize",
}


def assert_valid_har(doc: dict[str, Any]) -> None:
    log = doc["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "devbox"
    assert isinstance(log["entries"], list)
    for e in log["entries"]:
        assert REQUIRED_ENTRY <= e.keys()
        assert REQUIRED_REQUEST <= e["request"].keys()
        assert REQUIRED_RESPONSE <= e["response"].keys()
        assert {"size", "mimeType"} <= e["response"]["content"].keys()
        t = e["timings"]
        assert all(t[k] >= 0 for k in ("send", "wait", "receive"))
        datetime.fromisoformat(e["startedDateTime"])
        if "postData" in e["request"]:
            assert "mimeType" in e["request"]["postData"]


def _decoded(c: dict[str, Any]) -> bytes:
    text: str | None = c.get("text")
    if text is None:
        return b""
    if c.get("encoding") == "base64":
        return base64.b64decode(text)
    mime = c.get("mimeType", "")
    charset = mime.split("charset=")[1] if "charset=" in mime else "utf-8"
    return text.encode(charset)


def _same_url(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc, pa.path) == (pb.scheme, pb.netloc, pb.path) and parse_qsl(
        pa.query, keep_blank_values=True
    ) == parse_qsl(pb.query, keep_blank_values=True)


@pytest.mark.parametrize("name", ["chrome.har", "firefox.har", "proxy.har"])
def test_har_devbox_har_round_trip(tmp_path: Path, name: str) -> None:
    original = load(name)
    exs = har_to_exchanges(original, source="api", filename=name)
    write_recording(tmp_path / "api" / "x.json", "api", Direction.OUTBOUND, exs)
    back = exchanges_to_har(load_dir(tmp_path / "api"))
    assert_valid_har(back)
    orig_entries, new_entries = original["log"]["entries"], back["log"]["entries"]
    assert len(new_entries) == len(orig_entries)
    for o, n in zip(orig_entries, new_entries, strict=True):
        assert n["request"]["method"] == o["request"]["method"].upper()
        assert _same_url(n["request"]["url"], o["request"]["url"])
        o_headers = [
            (h["name"], h["value"])
            for h in o["request"].get("headers", [])
            if not h["name"].startswith(":")
        ]
        n_headers = [(h["name"], h["value"]) for h in n["request"]["headers"]]
        assert n_headers[: len(o_headers)] == o_headers
        if o["request"].get("postData", {}).get("text"):
            assert _decoded(n["request"]["postData"]) == _decoded(o["request"]["postData"])
        assert n["response"]["status"] == o["response"]["status"]
        if o["response"]["status"]:
            assert [(h["name"], h["value"]) for h in n["response"]["headers"]] == [
                (h["name"], h["value"]) for h in o["response"]["headers"]
            ]
            if o["response"]["content"].get("encoding") != "base64":
                assert _decoded(n["response"]["content"]) == _decoded(o["response"]["content"])
        else:
            assert n["response"]["_error"]
        assert datetime.fromisoformat(n["startedDateTime"]) == datetime.fromisoformat(
            o["startedDateTime"]
        )
        assert n["time"] == pytest.approx(o["time"], abs=0.001)
        if o.get("timings", {}).get("wait", -1) >= 0:
            assert n["timings"]["wait"] == pytest.approx(o["timings"]["wait"], abs=0.001)
    # and back into devbox: every exchange identical, ids and all (the _devbox field)
    assert har_to_exchanges(back, source="api") == exs


def test_export_details() -> None:
    exs = imported("chrome.har")
    har = exchanges_to_har(exs)
    entries = har["log"]["entries"]
    cookies = entries[0]["request"]["cookies"]
    assert [c["name"] for c in cookies] == ["sid", "csrftoken", "theme"]
    login = entries[1]["response"]
    assert login["cookies"][0]["name"] == "sid" and login["cookies"][0]["httpOnly"] is True
    png = entries[2]["response"]["content"]
    assert png["encoding"] == "base64" and base64.b64decode(png["text"]).startswith(b"\x89PNG")
    form = entries[5]["request"]["postData"]
    assert form["mimeType"] == "application/x-www-form-urlencoded"
    assert {"name": "qty", "value": "2"} in form["params"]
    assert entries[5]["response"]["redirectURL"] == "/v1/orders/43"
    failed = entries[6]["response"]
    assert failed["status"] == 0 and failed["_error"] == "net::ERR_CONNECTION_REFUSED"
    latin = entries[8]["response"]["content"]
    assert "encoding" not in latin and "Caf\u00e9 M\u00fcller" in latin["text"]
    orjson.dumps(har)  # JSON-ready


# ---------------------------------------------------------------- the CLI


def test_cli_import_then_export(tmp_path: Path) -> None:
    r = devbox("import", str(DATA / "chrome.har"), "--into", "mocks/shop/api", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "imported 11 exchanges" in r.stdout and "redacted:" in r.stdout
    written = tmp_path / "mocks/shop/api/chrome.json"
    d = load_file(written).decoded
    assert len(d.exchanges) == 11 and d.header.source == "api"

    # never overwritten silently: the same HAR again is refused, another HAR gets a new file
    again = devbox("import", str(DATA / "chrome.har"), "--into", "mocks/shop/api", cwd=tmp_path)
    assert again.returncode == 2 and "already in" in again.stderr and "--replace" in again.stderr
    assert "Traceback" not in again.stderr
    (tmp_path / "chrome.har").write_bytes((DATA / "firefox.har").read_bytes())
    other = devbox("import", "chrome.har", "--into", "mocks/shop/api", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "mocks/shop/api/chrome-2.json").exists()
    assert "exists; wrote a new file instead" in other.stderr
    replaced = devbox(
        "import",
        str(DATA / "chrome.har"),
        "--into",
        "mocks/shop/api",
        "--replace",
        "--json",
        cwd=tmp_path,
    )
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["replaced"] == "mocks/shop/api/chrome.json"
    assert len(load_dir(tmp_path / "mocks/shop/api")) == 16

    out = devbox("export", "mocks/shop/api", "--har", "out.har", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    har = json.loads((tmp_path / "out.har").read_text())
    assert_valid_har(har)
    assert len(har["log"]["entries"]) == 16
    refused = devbox("export", "mocks/shop/api", "--har", "out.har", cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    stdout = devbox("export", "mocks/shop/api/chrome.json", "--har", "-", cwd=tmp_path)
    assert len(json.loads(stdout.stdout)["log"]["entries"]) == 11


def test_cli_import_filters_hosts_and_uses_profile_dirs(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/shop.toml").write_text(
        '[service]\nport = 8000\nimage = "shop"\n[[dependency]]\nname = "api"\n'
        '[redact]\njson = ["tracking"]\n'
    )
    r = devbox(
        "import",
        str(DATA / "chrome.har"),
        "--profile",
        "shop",
        "--source",
        "api",
        "--host",
        "api.shop.example",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["imported"] == 7 and report["hosts"] == {"api.shop.example": 7}
    assert report["redacted"]["profile:json"] == 2  # the profile's own rule applied too
    text = (tmp_path / "mocks/shop/api/chrome.json").read_text()
    assert "1Z999AA10123456784" not in text
    none = devbox(
        "import", str(DATA / "chrome.har"), "--into", "x", "--host", "nowhere.example", cwd=tmp_path
    )
    assert none.returncode == 2 and "hosts in the file: api.shop.example (7)" in none.stderr
    nowhere = devbox("import", str(DATA / "chrome.har"), cwd=tmp_path)
    assert nowhere.returncode == 2 and "--into" in nowhere.stderr
