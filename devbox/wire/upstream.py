"""An HTTP(S) upstream named by a URL: parsed once, for the mock (passthrough, record on
miss) and the recording proxy alike."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Upstream:
    scheme: str
    host: str
    port: int
    prefix: str = ""  # path prefix of the upstream URL, prepended on the way up

    @classmethod
    def parse(cls, url: str) -> Upstream:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        prefix = u.path.rstrip("/")
        return cls(u.scheme, u.hostname, port, prefix)

    @classmethod
    def origin_of(cls, url: str) -> Upstream:
        """The origin (scheme, host, port) of an absolute URL, without its path."""
        u = cls.parse(url)
        return cls(u.scheme, u.host, u.port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host.lower(), self.port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.prefix}"
