"""The mock's answer step in-process, without a socket (as httpx's MockTransport tests a
client): a request and the mock's state in, one decision out."""

from __future__ import annotations

from mock_helpers import exchange

from devbox.core.profile import Dependency, Faults
from devbox.mock.answer import HttpRequest, Limits, MockSpec, MockState, answer
from devbox.wire.contract import Fault, Forward, Miss, Reply


def state(*exchanges: object, **dep: object) -> MockState:
    spec = MockSpec(dependency=Dependency(name="inv", **dep))  # type: ignore[arg-type]
    st = MockState(spec, Limits())
    st.install(list(exchanges))  # type: ignore[arg-type]
    return st


def test_a_recorded_request_gets_its_prepared_bytes_in_sequence() -> None:
    st = state(exchange(1, "GET", "/a"), exchange(2, "GET", "/a"))
    first, second, third = (answer(HttpRequest("GET", "/a"), st) for _ in range(3))
    assert isinstance(first, Reply) and first.data.endswith(b'{"n": 1}') and not first.close
    assert isinstance(second, Reply) and second.data.endswith(b'{"n": 2}')
    assert isinstance(third, Reply) and third.data == second.data  # the last one repeats
    assert (st.hits, st.misses, st.seq) == (3, 0, 3)


def test_head_of_a_recorded_get_has_the_headers_and_no_body() -> None:
    st = state(exchange(1, "GET", "/a"))
    out = answer(HttpRequest("HEAD", "/a", keep_alive=False), st)
    assert isinstance(out, Reply) and out.close
    head, _, body = out.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 8" in head and body == b""


def test_a_miss_explains_the_nearest_recording() -> None:
    st = state(exchange(1, "GET", "/items", query=(("page", "1"),)))
    out = answer(HttpRequest("GET", "/items?page=2"), st)
    assert isinstance(out, Miss) and out.data.startswith(b"HTTP/1.1 502 ")
    assert "query ?page" in out.explanation and out.nearest == "#1 GET /items"
    assert st.misses == 1 and st.miss_log[-1].action == "failed"


def test_a_recorded_network_error_is_a_reset() -> None:
    st = state(exchange(1, "GET", "/down", error="connection reset"))
    assert answer(HttpRequest("GET", "/down"), st) == Fault("reset", delay_s=0.0)


def test_passthrough_forwards_a_miss_with_the_parsed_request() -> None:
    st = state(exchange(1, "GET", "/a"), upstream="http://127.0.0.1:9", on_miss="passthrough")
    out = answer(HttpRequest("POST", "/new", b"{}", headers=(("Host", "x"),)), st)
    assert isinstance(out, Forward) and not out.record
    request, record, keep = out.message
    assert (request.method, request.path, request.body, keep) == ("POST", "/new", b"{}", True)
    assert record.action == "passthrough"


def test_injected_faults_follow_the_seed() -> None:
    faults = Faults(error_rate=0.5, error_status=503, delay_ms=20, seed=7)
    runs = []
    for _ in range(2):
        st = state(exchange(1, "GET", "/a"), faults=faults)
        runs.append([type(answer(HttpRequest("GET", "/a"), st)).__name__ for _ in range(20)])
        outs = [answer(HttpRequest("GET", "/a"), st) for _ in range(5)]
        assert all(isinstance(o, Reply) and o.delay_s == 0.02 for o in outs)
    assert runs[0] == runs[1]
    assert st.injected_errors > 0 and st.hits > 0
