"""Dotted names are not tokens. A recorded JSON value such as ``"Buffer.writeUInt16LE"``,
``"ssl.PROTOCOL_TLS_CLIENT"`` or ``"CLIENT_INFO_1.transformReply"`` (a stack frame, an
event type, a class name a service reports) mixes upper case, lower case and digits
with high entropy, so ``looks_random`` took it for an opaque token and the recording
said ``<redacted:token:…>`` where a reviewer needed the name. The names here come from
real producers: the Python interpreter's own modules and classes, and Node's ``Buffer``
and ``crypto`` APIs as a running ``node`` lists them. Tokens with dots in them (Google's
``ya29.…``, pieces joined by dots) stay tokens."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from node_support import node

from devbox.core.redact import Redactor
from devbox.core.secret_formats import looks_random

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# run apart: importing every standard module must not touch the test session
_LIST_NAMES = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore")
skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}
names = set()
for m in sorted(sys.stdlib_module_names):
    if m.startswith("_") or m in skip:
        continue
    try:
        mod = importlib.import_module(m)
    except Exception:
        continue  # a module this platform lacks (winreg, msvcrt...)
    for n in dir(mod):
        if n.startswith("__"):
            continue
        names.add(f"{m}.{n}")
        obj = getattr(mod, n, None)
        if isinstance(obj, type):
            names.update(f"{m}.{n}.{a}" for a in dir(obj) if not a.startswith("__"))
print(json.dumps(sorted(names)))
"""


def _python_names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _LIST_NAMES],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    names: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return names


def test_the_interpreters_dotted_names_are_not_tokens() -> None:
    names = _python_names()
    assert len(names) > 10_000
    taken = [n for n in names if looks_random(n)]
    # before: 577 of 24,535 (2.4%); the rest (95) are names like ipaddress.IPv6Network
    # and socket.J1939_PGN_MAX, whose parts mix single letters and digits as tokens do
    assert len(taken) <= len(names) // 200, taken[:20]
    for name in ("ssl.PROTOCOL_TLS_CLIENT", "codecs.BOM_UTF8", "http.HTTPStatus.UNAUTHORIZED"):
        assert not looks_random(name)


def test_nodes_buffer_and_crypto_names_are_not_tokens() -> None:
    script = (
        "const c = require('crypto');"
        "const n = [...Object.getOwnPropertyNames(Buffer.prototype).map(x => 'Buffer.' + x),"
        " ...Object.keys(c).map(x => 'crypto.' + x)];"
        "console.log(JSON.stringify(n));"
    )
    out = subprocess.run([node(), "-e", script], capture_output=True, text=True, timeout=60)
    names = json.loads(out.stdout)
    assert "Buffer.writeUInt16LE" in names and "crypto.createHmac" in names
    taken = [n for n in names if looks_random(n)]
    # X509: a single capital before digits, as random parts have them too
    assert set(taken) <= {"crypto.X509Certificate"}, taken
    r = Redactor()
    body = json.dumps({"frames": names}).encode()
    assert r.value("", "Buffer.writeBigUInt64LE") == "Buffer.writeBigUInt64LE"
    assert r.text(body.decode()) == body.decode()


def test_tokens_with_dots_stay_tokens() -> None:
    """Each token is compared with what ``looks_random`` says of it with its dots replaced
    by a character no dotted name has. A long random part parses as a name next to
    never; short ones joined by dots now and then do (0.16% of these): the price of
    keeping names, which fill recordings far more often."""
    rng = random.Random(18)

    def b64url(n: int) -> str:
        return "".join(rng.choice(_B64URL) for _ in range(n))

    google = ["ya29." + b64url(60) for _ in range(2000)]
    for t in google:
        assert looks_random(t) == looks_random(t.replace(".", "~")), t
    joined = [
        ".".join(b64url(rng.choice((8, 11, 16, 22))) for _ in range(rng.choice((2, 3))))
        for _ in range(20_000)
    ]
    tokens = [t for t in joined if looks_random(t.replace(".", "~"))]
    kept = [t for t in tokens if not looks_random(t)]
    assert len(tokens) > 19_000
    assert len(kept) <= len(tokens) // 200, kept[:10]


def test_dotted_tokens_made_to_pass_for_names_stay_tokens() -> None:
    """Found by an adversarial run: parts all shorter than four characters passed for a
    name whatever they held, and long runs of capitals and digits read as acronyms and
    numbers."""
    rng = random.Random(7)
    caps36 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for _ in range(500):
        short = ".".join("".join(rng.choice(_B64URL) for _ in range(3)) for _ in range(8))
        if looks_random(short.replace(".", "~")):
            assert looks_random(short), short
        live = "live." + "".join(rng.choice(caps36) for _ in range(32))
        assert looks_random(live), live


def test_long_keys_without_a_digit_are_tokens_and_names_without_one_are_not() -> None:
    """A letters-only key was never taken for a token: a digit was required. Now one of
    32 characters or more with no separator is, unless it reads as words run together.
    Shorter or separated values with no digit stay names: a first version took any
    that did not read as words, and an adversarial scan of installed sources and docs
    found 1 to 2% of harmless names among them (the examples below)."""
    rng = random.Random(11)
    letters = _B64URL[:52]
    keys = ["".join(rng.choice(letters) for _ in range(32)) for _ in range(2000)]
    assert sum(map(looks_random, keys)) >= 0.85 * len(keys)  # 89%; before, none
    for harmless in (
        "X-Content-Type-Options",
        "X-GitHub-Api-Version",
        "ReadDirectoryChangesW",
        "E-combining-dot-below",
        "Objective-C-Quelltext",
        "PyUnicode_FromFormatV",
        "EAWiFiUnconfiguredAccessory",
        "doc/changelogs/CHANGELOG_V10.md",
        "src/x86/getcontext-linux.S",
        "docs/libcurl/opts/CURLOPT_PREREQFUNCTION.3",
        "SO=/tmp/expect-read1.",
    ):
        assert not looks_random(harmless), harmless
    script = (
        "const n = new Set();"
        "for (const o of [Object, Array.prototype, String.prototype, Promise, Reflect,"
        " Intl, require('fs'), require('http'), require('events').prototype,"
        " require('stream').Readable.prototype, process])"
        " for (const k of Object.getOwnPropertyNames(o)) n.add(k);"
        "console.log(JSON.stringify([...n]));"
    )
    out = subprocess.run([node(), "-e", script], capture_output=True, text=True, timeout=60)
    names = [n for n in json.loads(out.stdout) if len(n) >= 20 and not any(c.isdigit() for c in n)]
    assert "getOwnPropertyDescriptors" in names
    assert [n for n in names if looks_random(n)] == []
    for name in ("ThisIsAnOrdinaryCamelCaseIdentifier", "BinaryToTextEncoding", "isReservedId"):
        assert not looks_random(name)
