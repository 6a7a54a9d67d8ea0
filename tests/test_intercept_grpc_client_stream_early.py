"""A gRPC client stream answered after its first message, through ``devbox record``'s
forward proxy (HTTPS_PROXY). Real parts: a grpcio server on TLS, whose grpc-core then
resets the rest of the stream with NO_ERROR, as nginx's early answers do (the HTTP/2
relay's stop-sending grace, e46851e), and a grpcio client, directly and through the proxy.

The client gets through the proxy what it gets directly (the answers, or the same
status), a few messages or many, small or of megabytes, at once or trickled, and each
call is recorded once. This held before e46851e too: it guards the grace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_support import make_test_ca
from record_helpers import exchanges, forward_recorder
from test_grpc_redaction_adversarial import tls_serving

# room for the 2 MB messages (grpc's default limit is 4 MB a message, both ways)
LIMITS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def _first(requests: Iterator[bytes], context: Any) -> bytes:
    return next(iter(requests)) + b"!"


def _requests(n: int, gap: float, size: int) -> Iterator[bytes]:
    for i in range(n):
        yield (b"%d:" % i) + b"x" * size
        if gap:
            time.sleep(gap)


def _collect_twice(
    port: int, root: Path, options: list[tuple[str, Any]], n: int, gap: float, size: int
) -> list[Any]:
    """Two client streams on one channel: each answer's first bytes, or the status."""
    creds = grpc.ssl_channel_credentials(root.read_bytes())
    try:
        with grpc.secure_channel(f"localhost:{port}", creds, options=options) as ch:
            call = ch.stream_unary("/x.Y/Collect")
            return [call(_requests(n, gap, size), timeout=15)[:3] for _ in range(2)]
    except grpc.RpcError as e:
        return [str(e.code())]


@pytest.mark.parametrize(
    "n,gap,size", [(3, 0.0, 10), (20, 0.1, 10), (5, 0.0, 2_000_000), (40, 0.05, 100_000)]
)
def test_client_stream_answered_early(
    tmp_path: Path, devbox_ca: Path, n: int, gap: float, size: int
) -> None:
    ca = make_test_ca(tmp_path / "ca")
    handler = grpc.method_handlers_generic_handler(
        "x.Y", {"Collect": grpc.stream_unary_rpc_method_handler(_first)}
    )
    with tls_serving(ca, lambda s: s.add_generic_rpc_handlers((handler,)), options=LIMITS) as port:
        # grpcio would take a proxy from the environment: direct means direct
        direct = _collect_twice(port, ca.ca, [*LIMITS, ("grpc.enable_http_proxy", 0)], n, gap, size)
        rec = forward_recorder(tmp_path, f"https://localhost:{port}", ca.ca)
        proxy = [("grpc.http_proxy", rec.listener("forward").url), ("grpc.enable_http_proxy", 1)]
        try:
            proxied = _collect_twice(port, devbox_ca, [*LIMITS, *proxy], n, gap, size)
        finally:
            rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "shop", partial=True)
    recorded = [(len(e.request.body), e.request_truncated, e.error) for e in saved]
    assert proxied == direct, recorded
    assert len(saved) == 2, recorded
