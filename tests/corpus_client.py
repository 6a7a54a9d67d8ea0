"""Send the secret corpus over HTTP: ``python corpus_client.py BASE_URL [BASE_URL...]``.

Each secret goes out in every placement: a header under a neutral name, the query (``q=``),
and one request per body kind: nested JSON, form, multipart, text, base64 text and
URL-encoded text. Opaque tokens (no format) go where only their place gives them away:
Authorization, Cookie, a whole query or field value, ``token=`` in text.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import uuid
from pathlib import Path
from urllib.parse import SplitResult, quote, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from secret_corpus import corpus, keyword_corpus, pems, url_passwords


def bodies(fmt: str, secret: str) -> list[tuple[str, bytes]]:
    if fmt == "url-password":
        secret_text = f"postgres://app:{secret}@db.internal:5432/orders"
    elif fmt == "opaque-token":
        secret_text = f"Authorization: Bearer {secret}"
    else:
        secret_text = secret
    field = secret if fmt == "opaque-token" else secret_text
    if fmt == "url-password":
        field = secret_text
    nested = {"data": {"items": [{"label": "x", "value": secret_text}], "n": 1}}
    if fmt == "opaque-token":
        nested = {"data": {"items": [{"label": "x", "value": secret}], "n": 1}}
    boundary = uuid.uuid4().hex
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\n'
        f"{secret if fmt == 'opaque-token' else secret_text}\r\n--{boundary}--\r\n"
    ).encode()
    text = f"line one\nthe value is {secret_text} here\nline three\n"
    cb = f"https://x.example/cb?{'access_token' if fmt == 'opaque-token' else 'v'}={field}"
    return [
        ("application/json", json.dumps(nested).encode()),
        ("application/x-www-form-urlencoded", urlencode({"comment": field, "a": "1"}).encode()),
        (f"multipart/form-data; boundary={boundary}", multipart),
        ("text/plain", text.encode()),
        ("text/plain", base64.b64encode(text.encode())),
        ("text/plain", ("next=" + quote(cb, safe="")).encode()),
    ]


def named_bodies(name: str, secret: str) -> list[tuple[str, bytes]]:
    """A secret that is one only under its provider's name: every placement names it."""
    boundary = uuid.uuid4().hex
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{secret}\r\n--{boundary}--\r\n"
    ).encode()
    text = f"line one\n{name}: {secret}\nline three\n"
    code = f'const cfg = {{ {name}: "{secret}", retries: 3 }};\n'
    cb = f"https://x.example/cb?{name}={secret}"
    return [
        ("application/json", json.dumps({"config": {"items": [{name: secret}]}}).encode()),
        ("application/x-www-form-urlencoded", urlencode({name: secret, "a": "1"}).encode()),
        (f"multipart/form-data; boundary={boundary}", multipart),
        ("text/plain", text.encode()),
        ("application/javascript", code.encode()),
        ("text/plain", base64.b64encode(text.encode())),
        ("text/plain", ("next=" + quote(cb, safe="")).encode()),
    ]


def send_named(targets: list[SplitResult], start: int) -> int:
    sent = 0
    for i, (_, name, secret) in enumerate(keyword_corpus(), start):
        target = targets[i % len(targets)]
        assert target.hostname is not None, f"no host in {target.geturl()}"
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        header = "X-" + "-".join(w.capitalize() for w in name.split("_"))
        for ctype, body in named_bodies(name, secret):
            query = "?" + urlencode({name: secret, "page": "2"})
            headers = {"Content-Type": ctype, header: secret}
            conn.request("POST", f"/echo/{i}{query}", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            sent += 1
        conn.close()
    return sent


def main() -> None:
    targets = [urlsplit(u) for u in sys.argv[1:]]
    sent = 0
    items = corpus() + url_passwords()
    for i, (fmt, secret) in enumerate(items + pems()):
        target = targets[i % len(targets)]
        assert target.hostname is not None, f"no host in {target.geturl()}"
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        one_line = "\n" not in secret
        for ctype, body in bodies(fmt, secret):
            headers = {"Content-Type": ctype}
            query = ""
            if one_line:
                value = f"postgres://app:{secret}@db/x" if fmt == "url-password" else secret
                headers["X-Custom-Data"] = value
                query = "?" + urlencode({"q": value, "page": "2"})
                if fmt == "opaque-token":
                    headers["Authorization"] = f"Bearer {secret}"
                    headers["Cookie"] = f"session={secret}; theme=dark"
            conn.request("POST", f"/echo/{i}{query}", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            sent += 1
        conn.close()
    sent += send_named(targets, len(items) + len(pems()))
    total = len(items) + len(pems()) + len(keyword_corpus())
    print(json.dumps({"sent": sent, "secrets": total}))


if __name__ == "__main__":
    main()
