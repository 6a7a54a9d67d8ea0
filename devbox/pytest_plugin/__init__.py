"""devbox's pytest plugin: recorded dependencies as fixtures, recorded traffic as tests.

Registered through the ``pytest11`` entry point, so it is active wherever devbox
is installed. Importing it costs nothing but pytest: devbox's mocks, engine and
replay are imported when a fixture or ``--devbox-replay`` first needs them, so a
test run that uses none of it pays nothing (devbox's own suite included).

* ``devbox_mocks`` (per test): the profile's mocks on free ports, started once
  per process and profile; the dependencies' variables set; sequences reset; the
  test fails after its body when a mock missed (``allow_misses=True`` allows it).
* ``devbox_sandbox`` (per session, or per module with ``--devbox-sandbox-scope
  module``) and ``devbox_sandbox_module`` (per module): ``devbox up --headless`` on
  free ports.
* ``--devbox-replay PROFILE``: one test item per recorded inbound request.

The profile: ``@pytest.mark.devbox(profile="demo")``, else ``--devbox-profile``,
else ``profile`` in ``[tool.devbox]`` of the rootdir's pyproject.toml.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from devbox.core.model import Exchange
    from devbox.core.profile import Profile
    from devbox.pytest_plugin.mocks import DevboxMocks, DevboxSandbox, FleetCache
    from devbox.replay import GrpcCalls, RequestResult

_SANDBOX = pytest.StashKey["DevboxSandbox"]()
_REPLAY_PROFILE = pytest.StashKey["Profile"]()
_REPLAY_STARTED = pytest.StashKey[bool]()
# how to send the items of a service that serves gRPC (None: HTTP)
_REPLAY_GRPC: pytest.StashKey[GrpcCalls | None] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("devbox", "devbox: recorded dependencies as fixtures")
    g.addoption("--devbox-profile", metavar="PROFILE",
                help="profile for devbox_mocks/devbox_sandbox without a devbox marker "
                "(default: [tool.devbox] profile in pyproject.toml)")  # fmt: skip
    g.addoption("--devbox-replay", metavar="PROFILE",
                help="collect every recorded inbound request of PROFILE as a test")  # fmt: skip
    g.addoption("--devbox-target", metavar="URL",
                help="with --devbox-replay: the running service to replay against "
                "(default: start the sandbox, as devbox up --headless)")  # fmt: skip
    g.addoption("--devbox-record", choices=("none", "once", "new", "all"), default="none",
                help="record through the mocks: once (dependencies without recordings), "
                "new (what misses), all (everything afresh); default none")  # fmt: skip
    g.addoption("--devbox-runtime", choices=("auto", "docker", "process"), default="auto",
                help="where devbox_sandbox and --devbox-replay run the service")  # fmt: skip
    g.addoption("--devbox-sandbox-scope", choices=("session", "module"), default="session",
                help="devbox_sandbox: one sandbox per session (default) or one per test "
                "module (devbox_sandbox_module is always per module)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "devbox(profile=None, allow_misses=False): the profile devbox_mocks serves; "
        "allow_misses keeps a mock miss from failing the test",
    )
    if config.getoption("devbox_record") != "none" and (
        os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "numprocesses", None)
    ):
        # workers would append to the same recording files: record in one process
        raise pytest.UsageError("--devbox-record writes recordings: run it without -n")
    if config.getoption("devbox_replay") and getattr(config.option, "dist", "no") == "load":
        # -n: a profile's recorded requests go to one worker, in recorded order, so the
        # mocks' sequences (n-th call, n-th response) hold as in `devbox up`; every
        # other test is still spread by load
        config.option.dist = "loadgroup"
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("devbox_loadgroup"):
        # a worker parses the command line again and never sees the switch above
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: tell each worker the replay items form one group."""
    node.workerinput["devbox_loadgroup"] = node.config.option.dist == "loadgroup"


def pytest_unconfigure(config: pytest.Config) -> None:
    sandbox = config.stash.get(_SANDBOX, None)
    if sandbox is not None:
        sandbox.stop()


def default_profile(config: pytest.Config) -> str | None:
    given: str | None = config.getoption("devbox_profile")
    if given:
        return given
    pyproject = config.rootpath / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as f:
            tool = tomllib.load(f).get("tool", {}).get("devbox", {})
        value = tool.get("profile") if isinstance(tool, dict) else None
        return str(value) if value else None
    return None


def marker_options(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    """The ``devbox`` markers' options, the closest one winning per option: a test's
    ``@pytest.mark.devbox(allow_misses=True)`` keeps its module's ``profile``."""
    out: dict[str, Any] = {}
    for marker in node.iter_markers("devbox"):  # closest first
        if marker.args and "profile" not in out:
            out["profile"] = marker.args[0]
        for key, value in marker.kwargs.items():
            if value is not None or key != "profile":
                out.setdefault(key, value)
    return out


def _profile(config: pytest.Config, name: str | None, *, in_test: bool = True) -> Profile:
    """The profile, or a one-line failure (of the test, or of the run while collecting)."""
    from devbox.errors import DevboxError
    from devbox.pytest_plugin.mocks import resolve_profile

    message = ""
    name = name or default_profile(config)
    if not name:
        message = (
            "devbox: which profile? @pytest.mark.devbox(profile=...), --devbox-profile, "
            "or [tool.devbox] profile = ... in pyproject.toml"
        )
    else:
        try:
            return resolve_profile(name, config.rootpath)
        except DevboxError as exc:
            message = f"devbox: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    if in_test:
        pytest.fail(message, pytrace=False)
    raise pytest.UsageError(message)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def devbox_fleets(request: pytest.FixtureRequest) -> Iterator[FleetCache]:
    """The started mock fleets of this process, one per profile (devbox_mocks uses it)."""
    from devbox.pytest_plugin.mocks import FleetCache

    cache = FleetCache(request.config.getoption("devbox_record"))
    yield cache
    cache.close()


@pytest.fixture
def devbox_mocks(
    request: pytest.FixtureRequest, devbox_fleets: FleetCache, monkeypatch: pytest.MonkeyPatch
) -> DevboxMocks:
    """The profile's mocks, reset for this test, their URLs in the environment."""
    from devbox.errors import DevboxError
    from devbox.pytest_plugin.mocks import DevboxMocks

    kwargs = marker_options(request.node)
    profile = _profile(request.config, kwargs.get("profile"))
    try:
        fleet = devbox_fleets.get(profile)
    except DevboxError as exc:  # a one-line failure, as the CLI would print it
        pytest.fail(f"devbox: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                    pytrace=False)  # fmt: skip
    mocks = DevboxMocks(profile, fleet, bool(kwargs.get("allow_misses")))
    mocks.begin()
    for var, url in mocks.env.items():
        monkeypatch.setenv(var, url)
    return mocks


def _sandbox_scope(fixture_name: str, config: pytest.Config) -> Any:
    return config.getoption("devbox_sandbox_scope")


@pytest.fixture(scope=_sandbox_scope)
def devbox_sandbox(request: pytest.FixtureRequest) -> Iterator[DevboxSandbox]:
    """The whole sandbox (`devbox up --headless`) on free ports, for the session (or,
    with ``--devbox-sandbox-scope module``, for each module)."""
    if request.scope == "module":
        yield from _module_sandbox(request)
    else:
        yield _sandbox(request.config, _profile(request.config, None))


@pytest.fixture(scope="module")
def devbox_sandbox_module(request: pytest.FixtureRequest) -> Iterator[DevboxSandbox]:
    """A sandbox of the module's own, on its own free ports, stopped after its last
    test; its profile may come from the module's ``pytestmark``."""
    yield from _module_sandbox(request)


def _module_sandbox(request: pytest.FixtureRequest) -> Iterator[DevboxSandbox]:
    from devbox.errors import DevboxError
    from devbox.pytest_plugin.mocks import start_sandbox

    config = request.config
    profile = _profile(config, marker_options(request.node).get("profile"))
    try:
        sandbox = start_sandbox(profile, config.getoption("devbox_runtime"))
    except DevboxError as exc:  # a one-line failure, as the CLI would print it
        pytest.fail(f"devbox: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                    pytrace=False)  # fmt: skip
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _sandbox(config: pytest.Config, profile: Profile) -> DevboxSandbox:
    from devbox.pytest_plugin.mocks import start_sandbox

    sandbox = config.stash.get(_SANDBOX, None)
    if sandbox is None:
        sandbox = start_sandbox(profile, config.getoption("devbox_runtime"))
        config.stash[_SANDBOX] = sandbox
    elif sandbox.profile.path.resolve() != profile.path.resolve():
        raise pytest.UsageError("devbox: one sandbox per session, and it runs another profile")
    return sandbox


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test body: fail on a miss nobody allowed; a test that failed anyway
    (often because of the miss) shows the misses in a section of its report."""
    mocks = getattr(item, "funcargs", {}).get("devbox_mocks")
    try:
        result = yield
    except BaseException:
        report = mocks.miss_report() if mocks is not None else ""
        if report:
            item.add_report_section("call", "devbox mock misses", report)
        raise
    if mocks is not None and not mocks.allow_misses:
        report = mocks.miss_report()
        if report:
            pytest.fail(f"devbox: unexpected mock misses\n{report}", pytrace=False)
    return result


# ---------------------------------------------------------------- --devbox-replay


class ReplayFailure(Exception):
    def __init__(self, result: RequestResult) -> None:
        super().__init__(result.label)
        self.result = result


class ReplayCollector(pytest.Collector):
    """The recorded inbound requests of one profile (built by the collection hook)."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        return []


class ReplayItem(pytest.Item):
    def __init__(self, *, exchange: Exchange, **kw: Any) -> None:
        super().__init__(**kw)
        self.exchange = exchange

    def runtest(self) -> None:
        from devbox.replay import ReplayOptions, run_replay
        from devbox.replay.aio import run

        profile = self.config.stash[_REPLAY_PROFILE]
        target = self.config.getoption("devbox_target")
        if not target:
            sandbox = _sandbox(self.config, profile)
            if not self.config.stash.get(_REPLAY_STARTED, False):
                # the items are one replay: sequences start afresh once, as in `devbox up`
                sandbox.reset_mocks()
                self.config.stash[_REPLAY_STARTED] = True
            target = sandbox.url
        options = ReplayOptions(
            concurrency=1,
            link_header=profile.record.correlation_header,
            grpc=self.config.stash.get(_REPLAY_GRPC, None),
        )
        report = run(run_replay([self.exchange], target, profile.replay, options=options))
        if not report.results:
            pytest.skip("recorded without a response: nothing to compare")
        result = report.results[0]
        if result.verdict != "pass":
            raise ReplayFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ReplayFailure):
            r = excinfo.value.result
            if r.verdict == "error":
                return f"{r.label}: {r.error}"
            lines = [f"{r.label}: {len(r.differences)} difference(s) from the recording"]
            for d in r.differences:
                lines.append(f"  {d.describe()}")
                lines += [f"    {x}" for x in d.detail.splitlines()[:20]]
            return "\n".join(lines)
        from devbox.errors import DevboxError

        if isinstance(excinfo.value, DevboxError):
            # the sandbox did not start, a recording did not load: devbox's one line
            return f"devbox: {excinfo.value.one_line()}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"devbox replay {self.name}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Runs before -k, --lf and xdist look at the items, so they apply to these too."""
    name: str | None = config.getoption("devbox_replay")
    if not name:
        return
    profile = _profile(config, name, in_test=False)
    config.stash[_REPLAY_PROFILE] = profile
    recorded = _recorded_inbound(config, profile)
    node = f"devbox-replay[{profile.name}]"
    collector = ReplayCollector.from_parent(
        session, name=node, nodeid=node, path=profile.inbound_dir
    )
    seen: set[str] = set()
    xdist = config.pluginmanager.hasplugin("xdist")
    for x in recorded:
        if x.response is None:
            continue  # nothing recorded to compare with
        label = f"{x.request.method} {x.request.target} [{x.id}]"
        if label in seen:
            continue
        seen.add(label)
        item = ReplayItem.from_parent(collector, name=label, exchange=x)
        if xdist:
            # no brackets: xdist reads the group after the last "@" only past the last "]"
            item.add_marker(pytest.mark.xdist_group(f"devbox-replay-{profile.name}"))
        items.append(item)


def _recorded_inbound(config: pytest.Config, profile: Profile) -> list[Exchange]:
    """The profile's recorded inbound exchanges (HTTP requests, or the calls of a service
    that serves gRPC), or a one-line usage error naming the file, line and field."""
    from devbox.errors import DevboxError
    from devbox.replay import recorded_inbound

    try:
        exchanges, config.stash[_REPLAY_GRPC] = recorded_inbound(profile)
        return exchanges
    except DevboxError as exc:
        # the recording's own error (its entry in docs/troubleshooting.md), as one line
        message = f"devbox: {exc.one_line()}"
    raise pytest.UsageError(message)
