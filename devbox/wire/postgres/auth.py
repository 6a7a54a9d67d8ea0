"""The mock's side of SCRAM-SHA-256: it proves to the client that it knows the password
it was told (``MockOptions.match["password"]``); the client's proof is not checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from devbox.wire.contract import RemoteProtocolError
from devbox.wire.postgres import messages as m

SALT = b"devbox-mock-salt"
ITERATIONS = 4096


@lru_cache(maxsize=16)
def _salted(password: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ITERATIONS)


def scram_first(body: bytes) -> tuple[str, str]:
    """The client's SASLInitialResponse -> (its client-first-message-bare, the
    server-first-message to send)."""
    r = m.Reader(body)
    mech = r.cstr()
    if mech != "SCRAM-SHA-256":
        raise RemoteProtocolError(f"unsupported SASL mechanism {mech}", code="28000")
    first = r.take(r.i32()).decode()
    bare = first.split(",", 2)[2]
    cnonce = dict(kv.split("=", 1) for kv in bare.split(","))["r"]
    nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
    return bare, f"r={nonce},s={base64.b64encode(SALT).decode()},i={ITERATIONS}"


def scram_final(body: bytes, scram: tuple[str, str], password: str) -> bytes:
    """The client's final message -> the server-final-message (its signature)."""
    without_proof = body.decode().rsplit(",p=", 1)[0]
    auth_message = f"{scram[0]},{scram[1]},{without_proof}".encode()
    server_key = hmac.digest(_salted(password), b"Server Key", "sha256")
    sig = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    return f"v={sig}".encode()
