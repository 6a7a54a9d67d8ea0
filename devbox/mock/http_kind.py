"""The ``http`` dependency kind: what ``devbox.wire.registry`` hands out for ``kind = "http"``.

The fleet still serves HTTP dependencies with ``MockServer`` (httptools, prebuilt bytes
per hit, admin API) and ``devbox record`` still records them with its proxy; this object
is how everything else asks about HTTP (``Capabilities``), and the contract's pieces over
the same parts those fast paths use:

* ``load``: the exchanges of HTTP recordings (``devbox.core.recording``'s objects) in a
  ``MockState``, the match index and prepared bytes the mock answers from;
* ``mock_connection``: a pure HTTP/1.1 ``MockConnection``, the one reader
  (``devbox.wire.http1``) in front of the mock's answer step (``devbox.mock.answer``), so
  HTTP answering is tested in-process with bytes like every other kind;
* ``recorder_connection``: ``devbox.wire.http_recorder.Http1Recorder``.

It lives in ``devbox.mock`` because its mock connection is the mock's answer step, which
the wire layer may not import (an import contract); the registry imports it by name.
The index and the connection are in ``devbox.mock.http_conn``, imported when first used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from devbox.core.wiring import swap_host_port
from devbox.wire.contract import (
    Capabilities,
    Index,
    MockConnection,
    MockOptions,
    RecorderConnection,
)

if TYPE_CHECKING:
    from devbox.mock.answer import Limits, MockSpec
    from devbox.mock.http_conn import HttpIndex

# MockServer and the recording proxy serve it; calls link to inbound requests; a compose
# service name as upstream would record one DNS error per request
_CAPABILITIES = Capabilities(http_edges=True, linked_calls=True, resolve_upstream=True)


@dataclass(frozen=True, slots=True)
class HttpKind:
    name: str = "http"
    schemes: tuple[str, ...] = ("http", "https")
    default_port: int = 80
    capabilities: Capabilities = _CAPABILITIES
    # the dependency served (match rules, timing, faults, upstream) with the profile's
    # redaction and correlation header; None: a bare dependency named "http"
    spec: MockSpec | None = None
    limits: Limits | None = None  # None: the mock's defaults

    # The pieces import what they use when first used: asking the kind a question (the
    # profile, the wiring, a recorder) must not import matching and the reader.

    def for_dependency(self, dependency: Any, root: Path) -> HttpKind:
        """This kind for one dependency (``registry.for_dependency``)."""
        from devbox.mock.answer import MockSpec

        return self.for_spec(MockSpec(dependency=dependency))

    def for_spec(self, spec: MockSpec) -> HttpKind:
        """This kind for one mock as the fleet configures it (redaction, link header)."""
        return HttpKind(spec=spec, limits=self.limits)

    def load(self, stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> HttpIndex:
        from devbox.mock.http_conn import load_index

        return load_index(stored, self.name, self.spec, self.limits)

    def mock_connection(self, index: Index, options: MockOptions) -> MockConnection:
        """A connection answered from ``index``; ``options.on_miss`` sets the mock's mode
        (matching, timing and faults are the dependency's: see ``for_dependency``)."""
        from devbox.mock.http_conn import connect

        return connect(index, options)

    def recorder_connection(self) -> RecorderConnection:
        from devbox.wire.http_recorder import Http1Recorder

        return Http1Recorder()

    def redact(
        self, stored: dict[str, Any], redact_value: Callable[[str, str], str]
    ) -> dict[str, Any]:
        from devbox.mock.http_conn import redact_exchange

        return redact_exchange(stored, redact_value)

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        """Keep the path; ``https`` stays ``https`` (the mock and the recording proxy take
        TLS on the same port) unless ``tls`` is off, anything else becomes ``http``."""
        scheme = "https" if tls and urlsplit(upstream).scheme == "https" else "http"
        return swap_host_port(upstream, host, port, scheme=scheme)


HTTP = HttpKind()
