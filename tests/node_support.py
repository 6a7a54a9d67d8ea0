"""Node.js (Debian's, installed by scripts/setup) as a real peer for the tests: ``node``
and a server script run with ``node -e``, given the test CA's leaf, which prints the port
it listens on; stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import stop_process
from grpc_support import TestCa


def node() -> str:
    exe = shutil.which("node")
    assert exe, "node is missing: scripts/setup installs nodejs"
    return exe


@contextmanager
def node_server(script: str, ca: TestCa) -> Iterator[str]:
    """``script`` (argv: key, certificate) serving TLS on 127.0.0.1; yields its URL."""
    proc = subprocess.Popen(
        [node(), "-e", script, str(ca.key), str(ca.cert)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), f"node's server did not start: {port!r}"
        yield f"https://localhost:{port}"
    finally:
        stop_process(proc)
