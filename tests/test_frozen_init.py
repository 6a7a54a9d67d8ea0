"""The traffic model's faster ``__init__`` (devbox.core.frozen): the same parameters,
defaults and immutability as the dataclass's own."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field

import pytest

from devbox.core.frozen import fast_init
from devbox.core.model import Direction, Exchange, Request, Response, Timing


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str = "x"
    c: tuple[int, ...] = field(default_factory=tuple)
    d: list[int] = field(default_factory=list, compare=False)


def test_same_signature_as_the_generated_init() -> None:
    for cls in (Request, Response, Timing, Exchange):
        fast = inspect.signature(cls.__init__)
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(fast.parameters)[1:] == names
        for f in dataclasses.fields(cls):
            p = fast.parameters[f.name]
            if f.default is not dataclasses.MISSING:
                assert p.default == f.default


def test_defaults_factories_and_keywords() -> None:
    r = Request("GET", "/a")
    assert (r.query, r.headers, r.body, r.scheme, r.host, r.http_version) == (
        (),
        (),
        b"",
        "http",
        "",
        "HTTP/1.1",
    )
    assert r.raw_query is None
    e1 = Exchange("1", Direction.OUTBOUND, "s", r, None)
    e2 = Exchange("2", Direction.OUTBOUND, "s", r, None)
    # default_factory: a fresh Timing each, equal to Timing()
    assert e1.timing == Timing() and e1.timing is not e2.timing
    e3 = Exchange(id="3", direction=Direction.INBOUND, source="i", request=r, response=None)
    assert e3.direction is Direction.INBOUND and e3.origin == ""
    with pytest.raises(TypeError):
        Request("GET")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Request("GET", "/", nope=1)  # type: ignore[call-arg]


def test_still_frozen_equal_hashable_replaceable_and_picklable() -> None:
    r = Request("GET", "/a", (("q", "1"),), (("Host", "h"),), b"x", raw_query="q=1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.method = "POST"  # type: ignore[misc]
    same = Request("GET", "/a", (("q", "1"),), (("Host", "h"),), b"x", raw_query="q=%31")
    assert r == same and hash(r) == hash(same)  # raw_query is not compared
    assert dataclasses.replace(r, method="POST").method == "POST"
    resp = Response(200, (("A", "b"),), b"y", "OK", "HTTP/1.1", (("t", "1"),))
    x = Exchange("1", Direction.OUTBOUND, "s", r, resp, Timing(1.5, 2.0, 0.5), "p", None)
    assert pickle.loads(pickle.dumps(x)) == x


def test_a_hand_made_class_gets_factories_per_instance() -> None:
    a, b = Fast(1), Fast(2)
    assert (a.b, a.c, a.d) == ("x", (), [])
    assert a.d is not b.d
    assert Fast(1, "y", (2,), [3]).d == [3]
    assert Fast(1) == Fast(1, d=[5])  # d is not compared


def test_refuses_classes_it_cannot_speed_up() -> None:
    @dataclass(frozen=True, slots=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class NoInit:
        a: int
        b: int = field(default=0, init=False)

    for cls in (Post, NoInit):
        with pytest.raises(TypeError):
            fast_init(cls)
