"""What the recording says about the server's side of a connection's set-up, for the
commands a Redis mock answers itself (``HELLO``, ``CLIENT SETINFO``…): a client must get
what the recorded server gave it, not what a recent Redis would give.

* ``HELLO`` is answered with the recorded server's fields (version, mode, role,
  modules), this connection's protocol and its id; a server that refused ``HELLO`` (older
  than 6, or a proxy) refuses it again, and the client stays in RESP2.
* Client ids are the recorded ones: the n-th connection to the mock gets the id the
  server gave the n-th recorded connection, so an id a client passes on
  (``CLIENT TRACKING … REDIRECT id``) matches what was recorded.
* The ``CLIENT`` subcommands a library sends on connect are refused as the recorded
  server refused them (``SETINFO`` before Redis 7.2), from the recording when it holds
  the command, else from the recorded server's version.
"""

from __future__ import annotations

import bisect
import re

from devbox.wire.redis.resp import Value, error, serialize

# the version that introduced a set-up subcommand: older servers answer "unknown
# subcommand" (MAINT_NOTIFICATIONS came after 7.2; when exactly does not matter here)
_CLIENT_SINCE = {
    b"SETINFO": (7, 2),
    b"NO-TOUCH": (7, 2),
    b"NO-EVICT": (7, 0),
    b"MAINT_NOTIFICATIONS": (7, 4),
}
_VERSION = re.compile(rb"redis_version:([0-9][0-9.]*)")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"[0-9]+", text)[:3])


def unknown_command(args: list[bytes]) -> bytes:
    """redis-server's (7.x) words for a command it does not have."""
    shown = ""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'" + a[: 128 - len(shown)].decode("utf-8", "replace") + "' "
    name = args[0].decode("utf-8", "replace")
    return error(f"ERR unknown command '{name}', with args beginning with: {shown}")


def unknown_subcommand(args: list[bytes]) -> bytes:
    sub = args[1].decode("utf-8", "replace")
    return error(f"ERR unknown subcommand '{sub}'. Try {args[0].decode()} HELP.")


class Handshake:
    """Facts about the recorded server, gathered while a recording is loaded."""

    def __init__(self) -> None:
        self.version = "7.0.0"  # shown in HELLO when the recording never saw a version
        self.version_known = False
        self.hello: list[tuple[Value, Value]] | None = None  # a recorded HELLO's fields
        self.hello_unknown: Value | None = None  # the server had no HELLO at all
        self.refused_hello: dict[bytes, Value] = {}  # protocol version -> its refusal
        self.refused_client: dict[tuple[bytes, ...], Value] = {}  # CLIENT sub args -> error
        self.unknown_client: set[bytes] = set()  # CLIENT subcommands the server lacked
        # recorded connection number -> its id. The relay numbers connections as it
        # accepts them, counting every dependency's: the n-th Redis connection is the one
        # with the n-th number, not number n
        self.ids: dict[int, int] = {}
        self.conns: set[int] = set()
        self._known: list[tuple[int, int]] | None = None  # (place, id), made once
        self.connections = 0  # mock connections since the last reset

    # ------------------------------------------------------------ loading

    def learn(self, conn: int, args: list[bytes], reply: Value) -> None:
        """One recorded command of connection ``conn`` (name upper-cased) and its reply.
        With several recording files, the first to name a connection number wins."""
        self.seen(conn)
        name = args[0]
        tag = reply[0]
        if name == b"HELLO":
            self._learn_hello(conn, args, reply)
        elif name == b"CLIENT" and len(args) > 1:
            sub = args[1].upper()
            if sub == b"ID" and tag == "integer":
                self._id(conn, int(reply[1]))
            elif tag == "error" and sub in _CLIENT_SINCE:
                text = bytes(reply[1])
                if text.startswith(b"ERR unknown subcommand"):
                    self.unknown_client.add(sub)
                self.refused_client[(sub, *args[2:])] = reply
        elif name == b"INFO" and tag in ("bulk", "verbatim") and not self.version_known:
            body = reply[1][1] if tag == "verbatim" else reply[1]
            found = _VERSION.search(body)
            if found:
                self._set_version(found.group(1).decode())

    def seen(self, conn: int) -> None:
        if conn not in self.conns:
            self.conns.add(conn)
            self._known = None

    def _learn_hello(self, conn: int, args: list[bytes], reply: Value) -> None:
        if reply[0] == "error":
            text = bytes(reply[1])
            if text.startswith(b"ERR unknown command"):
                self.hello_unknown = reply
            elif text.startswith(b"NOPROTO"):  # not a bad password: that is this call's
                self.refused_hello[args[1] if len(args) > 1 else b""] = reply
            return
        pairs: list[tuple[Value, Value]] = []
        if reply[0] == "map":
            pairs = list(reply[1])
        elif reply[0] == "array" and len(reply[1]) % 2 == 0:  # HELLO 2: a flat array
            items = reply[1]
            pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
        fields = {bytes(k[1]): v for k, v in pairs if k[0] in ("bulk", "simple")}
        if not fields:
            return
        if self.hello is None:
            self.hello = pairs
        version = fields.get(b"version")
        if version is not None and version[0] in ("bulk", "simple"):
            self._set_version(bytes(version[1]).decode("utf-8", "replace"))
        ident = fields.get(b"id")
        if ident is not None and ident[0] == "integer":
            self._id(conn, int(ident[1]))

    def _id(self, conn: int, ident: int) -> None:
        if conn not in self.ids:
            self.ids[conn] = ident
            self._known = None

    def _set_version(self, version: str) -> None:
        self.version, self.version_known = version, True

    # ------------------------------------------------------------ serving

    def next_id(self) -> int:
        """The client id of the next mock connection: the recorded one of the connection
        that came in the same place, or counted on from the nearest one recorded."""
        self.connections += 1
        n = self.connections
        known = self._known
        if known is None:
            places = enumerate(sorted(self.conns), 1)
            known = self._known = [(p, self.ids[c]) for p, c in places if c in self.ids]
        if not known:
            return n
        at = bisect.bisect_right(known, (n, 1 << 62)) - 1  # the last known place <= n
        # a real server counts every connection: ids go up by one per connection
        place, ident = known[max(at, 0)]
        return max(1, ident + n - place)

    def reset(self) -> None:
        self.connections = 0

    def hello_refusal(self, args: list[bytes]) -> bytes | None:
        """The recorded server's refusal of this ``HELLO`` (an error line), or None."""
        if self.hello_unknown is not None:
            return unknown_command(args)
        refused = self.refused_hello.get(args[1] if len(args) > 1 else b"")
        return None if refused is None else serialize(refused, 2)

    def hello_fields(self, proto: int, ident: int) -> Value:
        pairs = self.hello or [
            (("bulk", b"server"), ("bulk", b"redis")),
            (("bulk", b"version"), ("bulk", self.version.encode())),
            (("bulk", b"proto"), ("integer", proto)),
            (("bulk", b"id"), ("integer", ident)),
            (("bulk", b"mode"), ("bulk", b"standalone")),
            (("bulk", b"role"), ("bulk", b"master")),
            (("bulk", b"modules"), ("array", [])),
        ]
        own = {b"proto": ("integer", proto), b"id": ("integer", ident)}
        return ("map", [(k, own.get(bytes(k[1]), v)) for k, v in pairs])

    def client_refusal(self, args: list[bytes]) -> bytes | None:
        """How the recorded server refused this set-up ``CLIENT`` subcommand (an error
        line), or None."""
        sub = args[1].upper()
        refused = self.refused_client.get((sub, *args[2:]))
        if refused is not None:
            return serialize(refused, 2)
        since = _CLIENT_SINCE.get(sub)
        if since is None:
            return None
        if sub in self.unknown_client or (self.version_known and _version(self.version) < since):
            return unknown_subcommand(args)
        return None
