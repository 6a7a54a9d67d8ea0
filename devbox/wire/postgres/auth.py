"""The mock's side of SCRAM-SHA-256: it proves to the client that it knows the password
it was told (``MockOptions.match["password"]``); the client's proof is not checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from functools import lru_cache

from devbox.wire.contract import RemoteProtocolError
from devbox.wire.postgres import messages as m

SALT = b"devbox-mock-salt"
ITERATIONS = 4096


@lru_cache(maxsize=16)
def _salted(password: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ITERATIONS)


def _malformed() -> RemoteProtocolError:
    """What the server answers a SCRAM message it cannot read, word for word, before it
    closes the connection."""
    return RemoteProtocolError("malformed SCRAM message", code="08P01")


def scram_first(body: bytes) -> tuple[str, str]:
    """The client's SASLInitialResponse -> (its client-first-message-bare, the
    server-first-message to send). A message that is not one raises
    ``RemoteProtocolError`` (the mock answers ErrorResponse and closes)."""
    r = m.Reader(body)
    mech = r.cstr()
    if mech != "SCRAM-SHA-256":
        raise RemoteProtocolError(f"unsupported SASL mechanism {mech}", code="28000")
    try:
        size = r.i32()
        first = r.take(size).decode() if size >= 0 else ""
    except (RemoteProtocolError, ValueError, struct.error) as exc:  # shorter than it says
        raise _malformed() from exc
    # gs2-header (channel binding flag, authzid), then client-first-message-bare
    parts = first.split(",", 2)
    if len(parts) < 3 or parts[0][:1] not in ("n", "y", "p"):
        raise _malformed()  # no GS2 header
    bare = parts[2]
    attrs = dict(kv.split("=", 1) for kv in bare.split(",") if "=" in kv)
    cnonce = attrs.get("r", "")
    if not cnonce:
        raise _malformed()  # no client nonce (a KeyError here once ended the mock's task)
    nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
    return bare, f"r={nonce},s={base64.b64encode(SALT).decode()},i={ITERATIONS}"


def scram_final(body: bytes, scram: tuple[str, str], password: str) -> bytes:
    """The client's final message -> the server-final-message (its signature)."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise _malformed() from exc
    if ",p=" not in text:
        raise _malformed()
    without_proof = text.rsplit(",p=", 1)[0]
    auth_message = f"{scram[0]},{scram[1]},{without_proof}".encode()
    server_key = hmac.digest(_salted(password), b"Server Key", "sha256")
    sig = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    return f"v={sig}".encode()
