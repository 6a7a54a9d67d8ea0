"""The mock's admin API (``/__devbox/``): who may use it, and what each endpoint does.

A web page in the developer's browser can reach ``127.0.0.1:<port>``, so the admin
API defends itself the way a local development server must:

* only a loopback ``Host`` is served (``localhost``, ``127.0.0.1``, ``[::1]``, with any
  port); any other name is a DNS-rebinding attempt and gets 421;
* a request carrying a non-loopback ``Origin`` (a page on another site, or ``null``
  from a sandboxed frame) gets 403, whatever the method;
* every state-changing endpoint (anything but GET and HEAD: mode, reset, reload)
  requires the project's admin token in ``X-Devbox-Token`` (``devbox.wire.admin_token``;
  the process that starts the mock hands it over), else 403.

Reads (stats, misses, journal) stay open to loopback clients: devbox's replay reads
the journal, and a browser page cannot read them across origins (no CORS headers).

The endpoints work through ``AdminTarget``, a narrow view of the server: this
module knows nothing of connections, and the server nothing of the endpoints.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from devbox.wire.admin_token import HEADER as TOKEN_HEADER

ADMIN_PREFIX = "/__devbox/"
_LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1", "[::1]"))
_READS = frozenset(("GET", "HEAD"))
RELOAD = "reload"  # the answer of the one endpoint that completes later

__all__ = [
    "ADMIN_PREFIX",
    "RELOAD",
    "TOKEN_HEADER",
    "AdminTarget",
    "answer",
    "is_admin",
    "refusal",
]


class AdminTarget(Protocol):
    """What the admin endpoints may see and do of a mock server."""

    name: str
    mode: str
    seq: int  # the journal's last sequence number

    def stats_dict(self) -> dict[str, Any]: ...

    def misses_since(self, after: int) -> list[dict[str, Any]]: ...

    def journal_dict(self, after: int, limit: int) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def clear_journal(self) -> None: ...

    def set_mode(self, mode: str) -> None: ...


def is_admin(target: str) -> bool:
    return target.startswith(ADMIN_PREFIX) or target == ADMIN_PREFIX[:-1]


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def loopback_host(host: str | None) -> bool:
    """A ``Host`` header naming this machine; absent (HTTP/1.0 tools) counts as local:
    a browser always sends one."""
    if host is None:
        return True
    name = _host_name(host)
    return name in _LOOPBACK_NAMES or (
        name.startswith("127.") and name[4:].replace(".", "").isdigit()
    )


def loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return loopback_host(parts.netloc)


def refusal(
    method: str, headers: Mapping[str, str | None], token: str | None
) -> tuple[int, str] | None:
    """(status, reason) when this admin request must not be served; None to serve it.
    ``headers`` maps lower-case names to values (``host``, ``origin``, the token)."""
    if not loopback_host(headers.get("host")):
        return 421, "the admin API answers only to a loopback Host (localhost, 127.0.0.1, [::1])"
    origin = headers.get("origin")
    if origin is not None and not loopback_origin(origin):
        return 403, f"the admin API refuses requests from web pages (Origin {origin[:80]})"
    if method in _READS:
        return None
    sent = headers.get(TOKEN_HEADER.lower())
    if token is None:
        return 403, "this mock has no admin token: change it through devbox, not over HTTP"
    if sent is None or not hmac.compare_digest(sent.strip().encode(), token.encode()):
        what = "missing" if sent is None else "wrong"
        return 403, (
            f"{method} on the admin API needs the project's admin token in {TOKEN_HEADER} "
            f"({what}); devbox keeps it in .devbox/admin-token"
        )
    return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


ENDPOINTS = {
    "GET /__devbox/stats": "hits, misses, per-route counts",
    "GET /__devbox/misses?after=SEQ": "unmatched requests with explanations",
    "GET /__devbox/journal?after=SEQ&limit=N": "every request received, in order",
    "POST /__devbox/reload": "re-read the recordings from disk (token)",
    "POST /__devbox/reset": "restart recorded sequences (n-th call answers) (token)",
    "POST /__devbox/mode?mode=replay|passthrough|record": "change the miss policy (token)",
}


def answer(server: AdminTarget, method: str, target: str) -> tuple[int, Any] | str:
    """(status, JSON payload) for an admin request already allowed by ``refusal``, or
    ``RELOAD`` for the caller to reload and answer when done."""
    path, _, qs = target.partition("?")
    name = path[len(ADMIN_PREFIX) :].strip("/") if path.startswith(ADMIN_PREFIX) else ""
    params = dict(parse_qsl(qs))
    route = (name, method)
    if route == ("", "GET"):
        return 200, {"dependency": server.name, "endpoints": ENDPOINTS}
    if route == ("stats", "GET"):
        return 200, server.stats_dict()
    if route == ("misses", "GET"):
        after = _int(params.get("after"), 0)
        return 200, {"dependency": server.name, "misses": server.misses_since(after)}
    if route == ("journal", "GET"):
        return 200, server.journal_dict(
            _int(params.get("after"), 0), _int(params.get("limit"), 1000)
        )
    if route == ("reset", "POST"):
        server.reset()
        if params.get("journal") in ("1", "true", "yes"):
            server.clear_journal()
        return 200, {"reset": True, "next": server.seq}
    if route == ("mode", "POST"):
        try:
            server.set_mode(params.get("mode", ""))
        except ValueError as exc:
            return 409 if "needs" in str(exc) else 400, {"error": str(exc)}
        return 200, {"dependency": server.name, "mode": server.mode}
    if route == ("reload", "POST"):
        return RELOAD
    if name in ("stats", "misses", "journal", "reset", "mode", "reload", ""):
        return 405, {"error": f"method {method} not allowed on {path}"}
    return 404, {"error": f"no admin endpoint {path}", "see": ADMIN_PREFIX}
