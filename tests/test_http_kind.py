"""The ``http`` kind behind the wire contract: its MockConnection driven with raw bytes
(against a real HAR fixture imported and written by devbox's own writer), its
RecorderConnection fed the bytes of a real exchange with a real ``http.server``, and a
differential check that the pure connection answers byte for byte as a running
``MockServer`` does."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mock_helpers import running, send_raw

from devbox.core.har import import_har
from devbox.core.model import Direction
from devbox.core.profile import Dependency
from devbox.core.recording import exchange_from_dict
from devbox.core.wiring import Endpoint, service_url
from devbox.mock.answer import MockSpec
from devbox.mock.http_conn import Http1MockConnection, HttpIndex, read_stored
from devbox.mock.http_kind import HTTP
from devbox.store import write_recording
from devbox.wire import registry
from devbox.wire.contract import Capabilities, Fault, Forward, Hit, Miss, MockOptions, Output, Reply

DATA = Path(__file__).parent / "data"
NAME = "payments"
HOST = "Host: payments.internal:8081\r\n"
CHARGE = f"GET /charges/ch_1?expand=customer HTTP/1.1\r\n{HOST}\r\n".encode()


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    """mitmproxy's HAR (tests/data/proxy.har) imported and written as `devbox import` does."""
    har = orjson.loads((DATA / "proxy.har").read_bytes())
    imported = import_har(har, source=NAME, filename="proxy.har")
    directory = tmp_path / "recordings" / NAME
    directory.mkdir(parents=True)
    write_recording(
        directory / "recording-1.json", NAME, Direction.OUTBOUND, imported.exchanges, "har"
    )
    return directory


def index_of(directory: Path) -> HttpIndex:
    kind = HTTP.for_spec(MockSpec(dependency=Dependency(name=NAME)))
    return kind.load(read_stored(directory))


def connect(index: HttpIndex) -> Http1MockConnection:
    conn = HTTP.mock_connection(index, MockOptions(name=NAME))
    assert isinstance(conn, Http1MockConnection)
    return conn


def replies(outputs: list[Output]) -> list[bytes]:
    return [o.data for o in outputs if isinstance(o, Reply | Miss)]


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_http_is_a_registered_kind_and_says_what_it_needs() -> None:
    assert registry.get("http") is HTTP and "http" in registry.names()
    caps = registry.capabilities("http")
    assert caps.http_edges and caps.linked_calls and caps.resolve_upstream
    # the other kinds take the defaults: the generic loops, nothing linked or resolved;
    # postgres's mock can also serve from worker processes
    assert all(registry.capabilities(k) == Capabilities() for k in ("redis", "grpc"))
    assert registry.capabilities("postgres") == Capabilities(workers=True)
    dep = Dependency(name="pay", upstream="https://pay.example:8443/v1")
    assert service_url(dep, Endpoint("127.0.0.1", 9)) == "https://127.0.0.1:9/v1"
    assert service_url(dep, Endpoint("127.0.0.1", 9), tls=False) == "http://127.0.0.1:9/v1"
    assert service_url(Dependency(name="pay"), Endpoint("h", 9)) == "http://h:9"
    assert registry.upstream_problem("http", "payments:80") is not None


def test_a_recorded_request_is_a_hit(recordings: Path) -> None:
    index = index_of(recordings)
    assert len(index) == 3
    out = connect(index).data_received(CHARGE)
    assert isinstance(out[0], Hit) and out[0].request == "GET /charges/ch_1?expand=customer"
    assert isinstance(out[1], Reply) and not out[1].close
    assert status_of(out[1].data) == 200
    assert index.state.hits == 1


def test_a_miss_names_the_nearest_recording(recordings: Path) -> None:
    conn = connect(index_of(recordings))
    (out,) = conn.data_received(f"GET /charges/ch_2 HTTP/1.1\r\n{HOST}\r\n".encode())
    assert isinstance(out, Miss) and status_of(out.data) == 502
    assert out.request == "GET /charges/ch_2" and out.nearest is not None
    assert "/charges/ch_1" in out.nearest
    body = orjson.loads(out.data.partition(b"\r\n\r\n")[2])
    assert body["explanation"] == out.explanation and body["dependency"] == NAME


def test_pipelined_requests_are_answered_in_order(recordings: Path) -> None:
    conn = connect(index_of(recordings))
    miss = f"GET /nope HTTP/1.1\r\n{HOST}\r\n".encode()
    last = f"GET /charges/ch_1?expand=customer HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n"
    out = conn.data_received(CHARGE + miss + last.encode())
    assert [type(o).__name__ for o in out] == ["Hit", "Reply", "Miss", "Hit", "Reply"]
    assert [status_of(d) for d in replies(out)] == [200, 502, 200]
    assert isinstance(out[-1], Reply) and out[-1].close
    assert conn.data_received(CHARGE) == []  # closed: nothing more is read


def test_a_malformed_request_is_answered_400_and_closes(recordings: Path) -> None:
    conn = connect(index_of(recordings))
    out = conn.data_received(CHARGE + b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n" + CHARGE)
    assert [type(o).__name__ for o in out] == ["Hit", "Reply", "Reply"]
    bad = out[2]
    assert isinstance(bad, Reply) and bad.close and status_of(bad.data) == 400
    assert orjson.loads(bad.data.partition(b"\r\n\r\n")[2])["status"] == 400
    assert conn.data_received(CHARGE) == []


def test_a_chunked_body_arriving_in_pieces_matches(recordings: Path) -> None:
    index = index_of(recordings)
    recorded = next(
        p.exchange for p in index.state.prepared if p.exchange.request.path == "/legacy/receipt"
    )
    body = recorded.request.body
    head = f"POST /legacy/receipt HTTP/1.1\r\n{HOST}Content-Type: text/plain; charset=shift_jis\r\n"
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (3, body[:3], len(body) - 3, body[3:])
    wire = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunked
    conn = connect(index)
    out: list[Output] = []
    for i in range(len(wire)):  # one byte at a time: the reader resumes anywhere
        out += conn.data_received(wire[i : i + 1])
    assert isinstance(out[0], Hit) and out[0].request == "POST /legacy/receipt"
    assert [status_of(d) for d in replies(out)] == [200]


def test_a_recorded_network_error_resets(recordings: Path) -> None:
    conn = connect(index_of(recordings))
    body = b'{"amount": 1999, "card": "4242424242424242", "email": "jane.doe+shop@example.com"}'
    wire = (
        f"POST /charges HTTP/1.1\r\n{HOST}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = conn.data_received(wire)
    assert isinstance(out[-1], Fault) and out[-1].kind == "reset"


def test_the_mock_connection_answers_as_the_running_server_does(recordings: Path) -> None:
    """Differential: the same recording and bytes, MockServer over a socket (httptools,
    its hot path for the keep-alive hit) and the pure connection, byte for byte."""
    receipt = index_of(recordings).state.prepared[1].exchange.request.body
    wire = (
        CHARGE
        + f"GET /charges/ch_9 HTTP/1.1\r\n{HOST}\r\n".encode()
        + f"HEAD /charges/ch_1?expand=customer HTTP/1.1\r\n{HOST}\r\n".encode()
        + f"POST /legacy/receipt HTTP/1.1\r\n{HOST}Content-Length: {len(receipt)}\r\n".encode()
        + b"Content-Type: text/plain; charset=shift_jis\r\n\r\n"
        + receipt
        + f"GET /charges/ch_1?expand=customer HTTP/1.1\r\n{HOST}Accept-Encoding: gzip\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    pure = b"".join(replies(connect(index_of(recordings)).data_received(wire)))
    with running(recordings=recordings, name=NAME) as (_fleet, port):
        served = send_raw(port, wire)
    assert status_of(pure) == 200 and pure.count(b"HTTP/1.1 ") == 5
    assert served == pure


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = b'{"got": %d, "path": "%s"}' % (len(body), self.path.encode())
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def exchange_bytes(port: int, request: bytes) -> bytes:
    """What a real server sends back for ``request`` (it asks to close after answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)  # no more requests: the server closes after answering
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_recorder_connection_stores_what_loads_and_matches(
    echo_server: int, tmp_path: Path
) -> None:
    body = b'{"amount": 5}'
    request = (
        b"POST /orders?src=test HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json"
        b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    response = exchange_bytes(echo_server, request)
    rec = HTTP.recorder_connection()
    # the bytes in the pieces a relay would see them, each passed on unchanged
    assert rec.from_client(request[:20]).to_upstream == request[:20]
    rec.from_client(request[20:])
    assert rec.take_stored() == []
    assert rec.from_upstream(response[:7]).to_client == response[:7]
    rec.from_upstream(response[7:])
    stored = rec.take_stored() + rec.close()
    assert len(stored) == 1
    obj = stored[0]
    assert obj["request"]["url"] == "http://shop.test/orders?src=test"
    assert obj["response"]["status"] == 201
    assert obj["response"]["body"]["json"] == {"got": 13, "path": "/orders?src=test"}
    # written by devbox's writer, read back as the kind reads recordings, answered
    directory = tmp_path / "shop"
    directory.mkdir()
    exchange = exchange_from_dict({"source": "shop", **obj})
    write_recording(directory / "recording-1.json", "shop", Direction.OUTBOUND, [exchange])
    index = HTTP.load(read_stored(directory))
    assert isinstance(index, HttpIndex)
    out = HTTP.mock_connection(index, MockOptions(name="shop")).data_received(request)
    assert isinstance(out[0], Hit)
    reply = out[1]
    assert isinstance(reply, Reply) and reply.close and status_of(reply.data) == 201
    assert reply.data.endswith(b'{"got": 13, "path": "/orders?src=test"}')


def test_a_passthrough_miss_relays_the_real_upstream_and_keeps_the_order(
    recordings: Path, echo_server: int
) -> None:
    upstream = f"http://127.0.0.1:{echo_server}"
    dep = Dependency(name=NAME, upstream=upstream, on_miss="passthrough")
    kind = HTTP.for_spec(MockSpec(dependency=dep))
    conn = kind.mock_connection(
        kind.load(read_stored(recordings)), MockOptions(name=NAME, on_miss="passthrough")
    )
    post = b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    out = conn.data_received(post + CHARGE)
    assert [type(o).__name__ for o in out] == ["Forward"]  # the hit waits behind it
    forward = out[0]
    assert isinstance(forward, Forward) and forward.data == post and not forward.record
    back = conn.upstream_data(exchange_bytes(echo_server, forward.data))
    assert [type(o).__name__ for o in back] == ["Reply", "Hit", "Reply"]
    assert isinstance(back[0], Reply) and status_of(back[0].data) == 201
    assert back[0].data.endswith(b'{"got": 2, "path": "/new"}')
    assert isinstance(back[2], Reply) and status_of(back[2].data) == 200


def test_an_unanswered_request_is_stored_as_incomplete() -> None:
    rec = HTTP.recorder_connection()
    rec.from_client(b"GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    (obj,) = rec.close()
    assert "response" not in obj and obj["error"].startswith("connection closed")


def test_redaction_reaches_headers_query_and_json_values() -> None:
    stored: dict[str, Any] = {
        "id": "x",
        "request": {
            "method": "GET",
            "url": "http://a.test/p?token=abc&page=2",
            "headers": [["Authorization", "Bearer abc"]],
            "body": {"json": {"password": "abc", "n": 1}},
        },
        "response": {"status": 200, "headers": [["Set-Cookie", "s=abc"]]},
    }

    def hide(field: str, value: str) -> str:
        return "<redacted>" if "abc" in value else value

    out = HTTP.redact(stored, hide)
    assert out["request"]["url"] == "http://a.test/p?token=%3Credacted%3E&page=2"
    assert out["request"]["headers"] == [["Authorization", "<redacted>"]]
    assert out["request"]["body"] == {"json": {"password": "<redacted>", "n": 1}}
    assert out["response"]["headers"] == [["Set-Cookie", "<redacted>"]]
    assert stored["request"]["headers"] == [["Authorization", "Bearer abc"]]  # not changed
