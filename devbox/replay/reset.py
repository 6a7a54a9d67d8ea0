"""Before a replay: reset the running mocks it depends on, through their admin API.

A replay compares the service's answers with recorded ones; the mocks behind the service
answer the n-th call of a request with its n-th recorded response and draw faults from a
seeded generator. A mock left mid-sequence by an earlier run (or by ``devbox up``'s own
replay) answers differently, so every replay starts by ``POST /__devbox/reset`` on each
dependency's mock, sending the project's admin token (``X-Devbox-Token``: state-changing
admin calls require it). A mock that is not running is reported, not an error: the
service may not use it, and replay says so.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from devbox.wire.admin_token import HEADER


@dataclass(frozen=True, slots=True)
class ResetResult:
    name: str
    url: str
    ok: bool
    detail: str  # "reset", "not running", "refused: 403 ..."


def reset_mock(name: str, url: str, token: str | None, timeout_s: float = 3.0) -> ResetResult:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    headers = {HEADER: token} if token else {}
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("POST", "/__devbox/reset", body=b"", headers=headers)
        resp = conn.getresponse()
        body = resp.read(300)
    except ConnectionRefusedError:
        return ResetResult(name, url, False, "not running")
    except OSError as exc:
        return ResetResult(name, url, False, f"unreachable: {exc}")
    finally:
        conn.close()
    if resp.status == 200:
        return ResetResult(name, url, True, "reset")
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:120]
    return ResetResult(name, url, False, f"refused: {resp.status} {text}")


def reset_mocks(mocks: dict[str, str], token: str | None) -> list[ResetResult]:
    """Reset each mock (name -> base URL); every result, in the order given."""
    return [reset_mock(name, url, token) for name, url in mocks.items()]


__all__ = ["ResetResult", "reset_mock", "reset_mocks"]
