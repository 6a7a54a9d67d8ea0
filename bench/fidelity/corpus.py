"""Fidelity corpus and measurements: ``.venv/bin/python -m bench.fidelity.corpus``.

Makes HARs with real producers (headless Debian chromium via Playwright, mitmproxy's
``hardump``) over the local fidelity site (tests/producers.py), writes them to
``bench/fidelity/out/`` (git-ignored), and measures, per producer:

* entries served byte-identical by a ``--har`` mock (the HAR imported in memory) and by a
  mock of the recording ``devbox import`` wrote;
* import -> export round trip (method, URL, status, headers, body);
* a headless screenshot of each page through the mock vs from the site (pixel-identical).

Prints a table (the figures in docs/fidelity.md).
"""

from __future__ import annotations

import http.client
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import producers as P  # noqa: E402
from mock_helpers import running  # noqa: E402

from devbox.core.har import exchanges_to_har, import_har, parse_har  # noqa: E402
from devbox.core.model import Exchange  # noqa: E402
from devbox.core.redact import Redactor  # noqa: E402

OUT = ROOT / "bench" / "fidelity" / "out"
PAGES = ["/", "/latin1.html", "/meta.html"]


def _get(port: int, ex: Exchange) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {
        k: v
        for k, v in ex.request.headers
        if k.lower() in ("if-none-match", "if-modified-since", "range", "content-type")
    }
    conn.request(
        ex.request.method, ex.request.target, body=ex.request.body or None, headers=headers
    )
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def served_identical(exs: list[Exchange]) -> tuple[int, int]:
    answered = [e for e in exs if e.response is not None and not e.response_truncated]
    same = 0
    with running(answered) as (_, port):
        for e in answered:
            assert e.response is not None
            status, body = _get(port, e)
            if status == e.response.status and (
                body == e.response.body or e.request.method == "HEAD"
            ):
                same += 1
    return same, len(answered)


def round_trip(exs: list[Exchange]) -> tuple[int, int]:
    back = import_har(exchanges_to_har(exs), source="s").exchanges
    same = sum(
        1
        for a, b in zip(exs, back, strict=True)
        if (a.request.method, a.request.url, a.request.body)
        == (b.request.method, b.request.url, b.request.body)
        and (a.response is None) == (b.response is None)
        and (
            a.response is None
            or b.response is None
            or (a.response.status, a.response.headers, a.response.body)
            == (b.response.status, b.response.headers, b.response.body)
        )
    )
    return same, len(exs)


def screenshots(
    base: str,
    exs: list[Exchange],
    pages: tuple[str, ...] | list[str] = tuple(PAGES),
    wait_for: str | None = None,
) -> tuple[int, int]:
    page_exs = [e for e in exs if e.response is not None and not e.response_truncated]
    same = 0
    with running(page_exs) as (_, port):
        for path in pages:
            name = path.replace("/", "_")
            a = P.screenshot(f"{base}{path}", OUT / f"site{name}.png", wait_for=wait_for)
            # the browser asks for the site's URL; the mock answers as its HTTP proxy
            b = P.screenshot(
                f"{base}{path}",
                OUT / f"mock{name}.png",
                proxy=f"http://127.0.0.1:{port}",
                wait_for=wait_for,
            )
            same += a == b
    return same, len(pages)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    with P.Site() as site:
        hars = {
            "chromium (Playwright)": P.browser_capture(site, OUT / "chromium.har"),
            "mitmproxy (hardump)": P.mitmproxy_har(site, OUT / "mitmproxy.har"),
        }
        for name, har in hars.items():
            result = import_har(parse_har(har.read_bytes()), source="site", filename=har.name)
            exs = list(result.exchanges)
            redacted = [Redactor(None).exchange(e) for e in exs]
            rows.append((name, "entries imported", len(exs), len(exs) + result.skipped))
            rows.append((name, "served identical (--har)", *served_identical(exs)))
            rows.append((name, "served identical (import -> mock)", *served_identical(redacted)))
            rows.append((name, "round trip import -> export", *round_trip(redacted)))
            rows.append((name, "pages pixel-identical", *screenshots(site.base, exs)))
    with tempfile.TemporaryDirectory() as tmp, P.ThirdPartySite(Path(tmp)) as third:
        name = "chromium, swagger-ui-dist"
        har = P.third_party_capture(third, OUT / "swagger.har")
        result = import_har(parse_har(har.read_bytes()), source="site", filename=har.name)
        exs = list(result.exchanges)
        redacted = [Redactor(None).exchange(e) for e in exs]
        rows.append((name, "entries imported", len(exs), len(exs) + result.skipped))
        rows.append((name, "served identical (--har)", *served_identical(exs)))
        rows.append((name, "served identical (import -> mock)", *served_identical(redacted)))
        rows.append((name, "round trip import -> export", *round_trip(redacted)))
        shots = screenshots(third.base, exs, third.PAGES, third.READY)
        rows.append((name, "pages pixel-identical", *shots))
    print(f"| {'producer':24} | {'measure':36} | result |")
    print(f"|{'-' * 26}|{'-' * 38}|--------|")
    for name, what, a, b in rows:
        print(f"| {name:24} | {what:36} | {a}/{b} ({100.0 * a / b if b else 100:.0f} %) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
