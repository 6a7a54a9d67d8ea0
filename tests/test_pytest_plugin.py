"""The pytest plugin, exercised the way users run it: pytester sessions in a copy of the demo.

The mocks are real servers on free ports, the sandbox runs the demo's orders service as
a process, the requests are real HTTP.
"""

from __future__ import annotations

import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import ROOT

from devbox.store import load_dir

pytest_plugins = ("pytester",)

REQUESTS = """
import json, os, urllib.error, urllib.request

def get(var, path):
    try:
        with urllib.request.urlopen(os.environ[var] + path, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()

def post(var, path, payload):
    req = urllib.request.Request(os.environ[var] + path, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
"""


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    root = pytester.path
    shutil.copytree(ROOT / "profiles", root / "profiles")
    shutil.copytree(ROOT / "mocks/demo", root / "mocks/demo")
    shutil.copytree(ROOT / "examples/demo/orders", root / "examples/demo/orders",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    pytester.makepyfile(requests_helper=REQUESTS)
    return pytester


# the textual snapshot plugin keeps one temp dir per process: a nested session removes it
QUIET = ("-p", "no:textual-snapshot", "-p", "no:cacheprovider")


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    found = {e.name: e.value for e in entry_points(group="pytest11")}
    assert found.get("devbox") == "devbox.pytest_plugin"


def test_devbox_mocks_serve_recordings_count_hits_and_reset_sequences(
    demo: pytest.Pytester,
) -> None:
    demo.makepyfile(
        test_orders="""
        import os, pytest
        from requests_helper import get

        FIRST = []

        @pytest.mark.devbox(profile="demo")
        def test_inventory(devbox_mocks):
            status, body = get("INVENTORY_URL", "/items/MS-202")
            assert status == 200 and body["sku"] == "MS-202"
            assert devbox_mocks.hits("inventory") == 1 and devbox_mocks.hits("payments") == 0
            assert [e["target"] for e in devbox_mocks.journal()] == ["/items/MS-202"]
            assert os.environ["PAYMENTS_URL"] == devbox_mocks.url("payments")
            assert set(devbox_mocks.env) == {"PAYMENTS_URL", "INVENTORY_URL"}
            FIRST.append(body)

        @pytest.mark.devbox(profile="demo")
        def test_same_answer_again(devbox_mocks):
            # the previous test's calls are not this test's: sequences start again
            assert devbox_mocks.hits() == 0 and devbox_mocks.journal() == []
            status, body = get("INVENTORY_URL", "/items/MS-202")
            assert body == FIRST[0]

        def test_env_is_restored():
            assert "INVENTORY_URL" not in os.environ
        """
    )
    result = demo.runpytest(*QUIET)
    result.assert_outcomes(passed=3)


def test_an_unexpected_miss_fails_the_test_with_the_explanation(demo: pytest.Pytester) -> None:
    demo.makepyfile(
        test_miss="""
        import pytest
        from requests_helper import get

        def test_unrecorded_call(devbox_mocks):
            status, _ = get("INVENTORY_URL", "/warehouses/berlin")
            assert status == 502  # the code under test may well swallow it...

        @pytest.mark.devbox(allow_misses=True)
        def test_allowed(devbox_mocks):
            get("INVENTORY_URL", "/warehouses/berlin")
            assert len(devbox_mocks.misses("inventory")) == 1

        def test_fails_anyway(devbox_mocks):
            status, _ = get("INVENTORY_URL", "/warehouses/hamburg")
            assert status == 200
        """
    )
    result = demo.runpytest(*QUIET, "--devbox-profile", "demo")
    result.assert_outcomes(passed=1, failed=2)  # ...the miss still fails it
    result.stdout.fnmatch_lines([
        "*devbox: unexpected mock misses*",
        "inventory: GET /warehouses/berlin: no recording matches*hint*",
    ])  # fmt: skip
    # a test that failed on its own shows the misses behind it too
    result.stdout.fnmatch_lines([
        "*assert 502 == 200*",
        "*- Captured devbox mock misses call -*",
        "inventory: GET /warehouses/hamburg: no recording matches*",
    ])  # fmt: skip


def test_the_profile_comes_from_pyproject_or_is_asked_for(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_p="def test_p(devbox_mocks):\n    assert devbox_mocks.profile.name\n")
    result = demo.runpytest(*QUIET)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*devbox: which profile?*[tool.devbox]*"])
    result = demo.runpytest(*QUIET, "--devbox-profile", "nope")
    result.stdout.fnmatch_lines(["*devbox: no profile named 'nope'*"])
    demo.makepyprojecttoml('[tool.devbox]\nprofile = "demo"\n')
    demo.runpytest(*QUIET).assert_outcomes(passed=1)


def _replayable() -> int:
    return sum(1 for x in load_dir(ROOT / "mocks/demo/inbound") if x.response is not None)


def test_recorded_requests_are_test_items_with_json_path_diffs(demo: pytest.Pytester) -> None:
    args = ("-p", "no:textual-snapshot", "--devbox-replay", "demo", "--devbox-runtime", "process")
    result = demo.runpytest(*args, "--junitxml", "junit.xml")
    result.assert_outcomes(passed=_replayable())
    junit = (demo.path / "junit.xml").read_text()
    assert 'name="devbox-replay[demo]::POST /orders [inbound-' in junit

    app = demo.path / "examples/demo/orders/app.py"
    app.write_text(app.read_text().replace('"shipping": shipping,', '"shipping": shipping + 1,'))
    result = demo.runpytest(*args, "-k", "quote")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] > 0 and "passed" not in outcomes
    result.stdout.fnmatch_lines(["*GET /quote?*: 1 difference(s) from the recording",
                                 "  $.shipping: * → *"])  # fmt: skip
    # --lf: only what failed runs again
    failed = outcomes["failed"]
    again = demo.runpytest(*args, "--lf", "-x")
    again.assert_outcomes(failed=1, deselected=_replayable() - failed)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but pytest's and Python's own (pytester keeps a
    subprocess's output in ``stdout``/``stderr``): (size, mtime in ns)."""
    skip = {"__pycache__", ".pytest_cache"}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
        and not skip & set(p.relative_to(root).parts)
        and str(p.relative_to(root)) not in ("stdout", "stderr")
    }


def test_parallel_workers_share_no_port_and_write_no_file(
    demo: pytest.Pytester, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.txt"
    body = f"""
            assert get("INVENTORY_URL", "/items/MS-202")[0] == 200
            assert devbox_mocks.hits() == 1
            urls = " ".join(devbox_mocks.urls.values())
            with open({str(seen)!r}, "a") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + " " + urls + "\\n")
    """
    demo.makepyfile(
        test_par=f"""
        import os, pytest
        from requests_helper import get

        pytestmark = pytest.mark.devbox(profile="demo")

        # two groups, two workers: xdist hands each worker one group first
        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.xdist_group("one")
        def test_one(devbox_mocks, n):{body}
        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.xdist_group("two")
        def test_two(devbox_mocks, n):{body}
        """
    )
    # the admin token is the project's, made once (first writer wins): not a worker's file
    (demo.path / ".devbox").mkdir(exist_ok=True)
    (demo.path / ".devbox/admin-token").write_text("test-token\n")
    before = _tree(demo.path)
    result = demo.runpytest_subprocess("-n", "2", "--dist", "loadgroup", *QUIET, timeout=240)
    result.assert_outcomes(passed=6)
    urls: dict[str, set[str]] = {}
    for line in seen.read_text().splitlines():
        worker, *mine = line.split()
        urls.setdefault(worker, set()).update(mine)
    assert len(urls) == 2, urls  # both workers ran some, each with its own mocks...
    gw0, gw1 = urls.values()
    assert len(gw0) == len(gw1) == 2 and not gw0 & gw1  # ...on ports of its own

    # with the recorded requests too: they all run on one worker, in recorded order
    result = demo.runpytest_subprocess(
        "-n", "2", "-v", *QUIET, "--devbox-replay", "demo",
        "--devbox-runtime", "process", timeout=240,
    )  # fmt: skip
    result.assert_outcomes(passed=6 + _replayable())
    workers = {
        line.split()[0]
        for line in result.stdout.lines
        if "PASSED devbox-replay[demo]::" in line
    }  # fmt: skip
    assert len(workers) == 1, workers
    # nothing in the project was written (the sandboxes' session files come and go)
    after = _tree(demo.path)
    assert after == before, set(after.items()) ^ set(before.items())


def test_devbox_sandbox_runs_the_service_with_its_mocks(demo: pytest.Pytester) -> None:
    demo.makepyfile(
        test_sandbox="""
        import json, urllib.request

        def test_quote(devbox_sandbox):
            assert devbox_sandbox.url != "http://127.0.0.1:7080"  # a free port, not the profile's
            with urllib.request.urlopen(devbox_sandbox.url + "/quote?sku=CB-404&qty=6") as r:
                body = json.loads(r.read())
            assert r.status == 200 and body["sku"] == "CB-404"  # inventory answered, mocked
            assert set(devbox_sandbox.env) == {"PAYMENTS_URL", "INVENTORY_URL"}

        def test_same_sandbox(devbox_sandbox):
            with urllib.request.urlopen(devbox_sandbox.url + "/healthz") as r:
                assert r.status == 200
        """
    )
    result = demo.runpytest(*QUIET, "--devbox-profile", "demo", "--devbox-runtime", "process")
    result.assert_outcomes(passed=2)


RECORDING = """
import json, os, urllib.request
import pytest
from requests_helper import get

def test_calls(devbox_mocks):
    assert get("INVENTORY_URL", "/items/MS-202")[0] == 200
    assert get("INVENTORY_URL", "/items/ZZ-999")[0] == 404  # the real answer, recorded
"""

CHARGE = """
def test_charge(devbox_mocks):
    req = urllib.request.Request(
        os.environ["PAYMENTS_URL"] + "/charges", method="POST",
        data=json.dumps({"card": "4242424242424242", "amount": 5}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk_live_abc"})
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError:
        pass
"""


def _texts(directory: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(directory.glob("*.json"))}


def test_record_modes_once_new_all(demo: pytest.Pytester, demo_upstreams: dict[str, int]) -> None:
    profile = demo.path / "profiles/demo.toml"
    text = profile.read_text()
    for name, port in demo_upstreams.items():
        old = {"payments": "7201", "inventory": "7202"}[name]
        text = text.replace(f"http://127.0.0.1:{old}", f"http://127.0.0.1:{port}")
    profile.write_text(text)
    demo.makepyprojecttoml('[tool.devbox]\nprofile = "demo"\n')
    demo.makepyfile(test_rec=RECORDING)
    inventory, payments = demo.path / "mocks/demo/inventory", demo.path / "mocks/demo/payments"
    shutil.rmtree(inventory)
    payments_before = _texts(payments)

    # none: nothing recorded for inventory, so its calls miss and the test fails
    demo.runpytest(*QUIET).assert_outcomes(failed=1)
    assert not inventory.exists() or not _texts(inventory)

    # once: inventory (no recordings) records; payments (recorded) only replays
    demo.runpytest(*QUIET, "--devbox-record", "once").assert_outcomes(passed=1)
    once = _texts(inventory)
    assert len(once) == 1 and "/items/MS-202" in next(iter(once.values()))
    assert _texts(payments) == payments_before
    # the new recording answers from now on, without an upstream
    demo.makepyfile(
        test_rec=RECORDING.replace("/items/ZZ-999", "/items/MS-202")
        + """
def test_count(devbox_mocks):
    assert get("INVENTORY_URL", "/items/MS-202")[0] == 200
    assert devbox_mocks.hits("inventory") == 1
"""
    )
    demo.runpytest(*QUIET, "-k", "count").assert_outcomes(passed=1, deselected=1)

    # new: what misses is recorded next to what exists; redacted like every recording
    demo.makepyfile(test_rec=RECORDING + CHARGE)
    demo.runpytest(*QUIET).assert_outcomes(passed=1, failed=1)  # the charge is not recorded
    demo.runpytest(*QUIET, "--devbox-record", "new").assert_outcomes(passed=2)
    after_new = _texts(payments)
    assert set(payments_before) < set(after_new)
    added = "".join(v for k, v in after_new.items() if k not in payments_before)
    assert "/charges" in added and "4242424242424242" not in added
    assert "sk_live_abc" not in added

    # all: everything afresh; the old files go, replaced by this session's
    shutil.copy(next(inventory.glob("*.json")), inventory / "recording-old-copy.json")
    demo.runpytest(*QUIET, "--devbox-record", "all").assert_outcomes(passed=2)
    fresh = _texts(inventory)
    assert len(fresh) == 1 and "recording-old-copy.json" not in fresh
    assert "/items/ZZ-999" in next(iter(fresh.values()))
    assert [p.name for p in inventory.parent.iterdir() if "rerecord" in p.name] == []

    # recording from parallel workers would share files: refused
    result = demo.runpytest_subprocess(*QUIET, "-n", "2", "--devbox-record", "new")
    result.stderr.fnmatch_lines(["*--devbox-record writes recordings: run it without -n*"])


def test_recording_without_an_upstream_fails_in_one_line(demo: pytest.Pytester) -> None:
    profile = demo.path / "profiles/demo.toml"
    profile.write_text(profile.read_text().replace('upstream = "http://127.0.0.1:7202"\n', ""))
    demo.makepyfile(test_u="def test_u(devbox_mocks):\n    pass\n")
    result = demo.runpytest(*QUIET, "--devbox-profile", "demo", "--devbox-record", "new")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*devbox: --devbox-record new: dependency 'inventory' has no "
            "upstream to record from (set upstream for inventory in *)"
        ]
    )
    assert "Traceback" not in result.stdout.str()


MODULE_A = """
import pytest, seen, urllib.request

pytestmark = pytest.mark.devbox(profile="demo")

def test_a(FIXTURE):
    with urllib.request.urlopen(FIXTURE.url + "/quote?sku=CB-404&qty=6") as r:
        assert r.status == 200
    seen.URLS.append(FIXTURE.url)

def test_a_again(FIXTURE):
    assert seen.URLS == [FIXTURE.url]  # one sandbox for the whole module
"""

MODULE_B = """
import pytest, seen, urllib.error, urllib.request

def test_b(FIXTURE):
    [a_url] = seen.URLS
    assert FIXTURE.url != a_url  # a sandbox of its own, on other ports
    with urllib.request.urlopen(FIXTURE.url + "/healthz") as r:
        assert r.status == 200
    # module a's sandbox stopped after its last test: nothing answers on its port
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(a_url + "/healthz", timeout=5)
"""


@pytest.mark.parametrize("how", ["devbox_sandbox_module", "--devbox-sandbox-scope"])
def test_a_sandbox_per_module(demo: pytest.Pytester, how: str) -> None:
    fixture = "devbox_sandbox_module" if how == "devbox_sandbox_module" else "devbox_sandbox"
    demo.makepyfile(
        seen="URLS = []",
        test_a=MODULE_A.replace("FIXTURE", fixture),
        test_b=MODULE_B.replace("FIXTURE", fixture),
    )
    args = [*QUIET, "--devbox-profile", "demo", "--devbox-runtime", "process"]
    if how == "--devbox-sandbox-scope":
        args += ["--devbox-sandbox-scope", "module"]
    result = demo.runpytest_subprocess(*args, "test_a.py", "test_b.py", timeout=240)
    result.assert_outcomes(passed=3)
