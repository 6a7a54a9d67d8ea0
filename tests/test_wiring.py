"""The one rule for dependency addresses (devbox.core.wiring)."""

from __future__ import annotations

from pathlib import Path

from devbox.core.profile import Dependency, Profile, parse_profile
from devbox.core.wiring import Endpoint, preview, service_url, swap_host_port, variable_for, wire
from devbox.wire import registry

TEXT = """
name = "a"
[service]
name = "web"
port = 9091
command = ["python3", "app.py"]
env = { ANALYTICS_URL = "http://mine:1/visit", LOG = "1" }
[[dependency]]
name = "analytics"
upstream = "http://analytics:5001/visit"
env = "ANALYTICS_URL"
[[dependency]]
name = "pay-svc"
upstream = "https://user@pay.example.com/v1/?x=1"
[[dependency]]
name = "stock"
port = 7102
"""


def _profile(text: str = TEXT) -> Profile:
    return parse_profile(text, Path("profiles/a.toml"))


def test_variable_is_env_else_name_url() -> None:
    p = _profile()
    assert [variable_for(d) for d in p.dependencies] == [
        "ANALYTICS_URL",
        "PAY_SVC_URL",
        "STOCK_URL",
    ]


def test_service_env_is_never_overridden_and_the_base_path_is_kept() -> None:
    p = _profile()
    w = wire(p, {d.name: Endpoint("127.0.0.1", 7000 + i) for i, d in enumerate(p.dependencies)})
    assert "ANALYTICS_URL" not in w.env
    assert w.wire("analytics") is not None and "kept" in w.wire("analytics").why  # type: ignore[union-attr]
    # https stays https (mocks and proxies take TLS too); user, path and query kept
    assert w.env["PAY_SVC_URL"] == "https://user@127.0.0.1:7001/v1/?x=1"
    assert w.env["STOCK_URL"] == "http://127.0.0.1:7002"
    full = w.full()
    assert full["ANALYTICS_URL"] == "http://mine:1/visit" and full["PORT"] == "9091"
    assert full["LOG"] == "1"


def test_without_the_user_value_the_path_is_what_compose_gives() -> None:
    p = _profile(TEXT.replace('env = { ANALYTICS_URL = "http://mine:1/visit", LOG = "1" }', ""))
    w = wire(p, {"analytics": Endpoint("127.0.0.1", 41234)})
    assert w.env["ANALYTICS_URL"] == "http://127.0.0.1:41234/visit"
    # a dependency with no endpoint is reported, not set
    missing = w.wire("stock")
    assert missing is not None and missing.value is None
    assert preview(p)["ANALYTICS_URL"] == "http://127.0.0.1:<free port>/visit"
    assert preview(p)["STOCK_URL"] == "http://127.0.0.1:7102"


def test_extra_env_counts_as_the_users_and_port_is_not_overridden() -> None:
    p = _profile(TEXT.replace('LOG = "1"', 'PORT = "5000"'))
    w = wire(p, {"pay-svc": Endpoint("::1", 9)}, extra_env={"PAY_SVC_URL": "http://x"})
    assert w.env == {} and w.port is None
    assert swap_host_port("http://a:1/b", "::1", 9) == "http://[::1]:9/b"


class _FakeKind:
    """A registered kind builds its own URL (what the redis/postgres kinds do)."""

    name = "fakekv"
    schemes = ("fakekv",)
    default_port = 1

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        return swap_host_port(upstream, host, port) + "#built-by-kind"


KIND = _FakeKind()


def test_a_registered_kind_builds_the_url() -> None:
    registry.register("fakekv", f"{__name__}:KIND")
    try:
        dep = Dependency(name="cache", kind="fakekv", upstream="fakekv://cache:6379/2")
        url = service_url(dep, Endpoint("127.0.0.1", 5))
    finally:
        registry._KINDS.pop("fakekv", None)
    assert url == "fakekv://127.0.0.1:5/2#built-by-kind"
    # an unregistered kind keeps its scheme; http speaks plain http
    dep = Dependency(name="db", kind="postgres", upstream="postgresql://u:p@db:5432/app")
    assert service_url(dep, Endpoint("127.0.0.1", 6)) == "postgresql://u:p@127.0.0.1:6/app"
