"""A tiny two-service project for the first-hour tests: ``web`` (a stdlib HTTP server run
as a process) calls ``analytics`` at exactly the URL in ``$ANALYTICS_URL``; the real
analytics is a server in the test that answers only on its own paths."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import ROOT, free_port

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}

APP = """\
import json, os, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok"
        else:
            try:
                with urllib.request.urlopen(os.environ["ANALYTICS_URL"], timeout=5) as r:
                    status, got = r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                status, got = e.code, ""
            except OSError as e:
                status, got = 0, str(e)
            body = json.dumps({"analytics": status, "body": got, "shipping": 5}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

CLIENT = (
    "import sys, urllib.request\n"
    "for _ in range(3):\n"
    "    urllib.request.urlopen(sys.argv[1] + '/hit', timeout=10).read()\n"
)


@dataclass
class PathServer:
    """Answers ``routes[path]`` = (status, body); 404 elsewhere; remembers the paths."""

    routes: dict[str, tuple[int, bytes]]
    seen: list[str] = field(default_factory=list)
    port: int = 0


@contextmanager
def path_server(routes: dict[str, tuple[int, bytes]]) -> Iterator[PathServer]:
    ps = PathServer(routes)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            ps.seen.append(self.path)
            status, body = ps.routes.get(self.path, (404, b'{"error": "not found"}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ps.port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield ps
    finally:
        server.shutdown()
        server.server_close()


def write_project(root: Path, upstream: str, *, service_env: str = "") -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src/app.py").write_text(APP)
    (root / "client.py").write_text(CLIENT)
    (root / "profiles").mkdir(exist_ok=True)
    env = f"env = {{ {service_env} }}\n" if service_env else ""
    (root / "profiles/web.toml").write_text(
        f"""name = "web"
[service]
name = "web"
port = {free_port()}
command = ["{sys.executable}", "app.py"]
cwd = "src"
ready = {{ http = "/healthz", timeout_s = 20 }}
runtime = "process"
{env}
[service.watch]
sync = ["src/**/*.py"]

[[dependency]]
name = "analytics"
upstream = {json.dumps(upstream)}
env = "ANALYTICS_URL"
"""
    )
    return root / "profiles/web.toml"
