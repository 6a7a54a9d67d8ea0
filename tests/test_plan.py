"""The pure half of the edit loop: globs with ``**``, ignore lists, and the plan
(changed path -> watch rule -> action, with a reason), plus ``devbox explain``."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core.globs import (
    IgnoreList,
    compile_glob,
    literal_prefix,
    normalize_pattern,
    relative_key,
)
from devbox.core.plan import (
    ACTIONS,
    FileChange,
    Planner,
    editor_temp_kind,
    litter_reason,
    plan_changes,
    watch_targets,
)
from devbox.core.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # * and ? stay inside one component
        ("*.py", "app.py", True),
        ("*.py", "pkg/app.py", False),
        ("src/*.py", "src/app.py", True),
        ("src/*.py", "src/sub/app.py", False),
        ("src/?.py", "src/a.py", True),
        ("src/?.py", "src/ab.py", False),
        ("a?c", "a/c", False),
        ("*", "anything", True),
        ("*", "dir/anything", True),  # the directory matches, so what is below does too
        # ** as a whole component: zero or more components
        ("**/*.py", "app.py", True),
        ("**/*.py", "a/b/c/app.py", True),
        ("**/*.py", "a/b/c/app.pyc", False),
        ("src/**/*.py", "src/app.py", True),
        ("src/**/*.py", "src/a/b/app.py", True),
        ("src/**/*.py", "other/src/app.py", False),
        ("src/**/*.py", "srcx/app.py", False),
        ("src/**", "src/a", True),
        ("src/**", "src/a/b/c", True),
        ("src/**", "src", False),
        ("**", "x", True),
        ("**", "x/y/z", True),
        ("a/**/b/**/c", "a/b/c", True),
        ("a/**/b/**/c", "a/x/b/y/z/c", True),
        ("a/**/b/**/c", "a/x/y/z/c", False),
        ("**/tests/**", "tests/x.py", True),
        ("**/tests/**", "pkg/tests/unit/x.py", True),
        ("**/tests/**", "pkg/testsx/x.py", False),
        ("a/**/**/b", "a/b", True),
        # ** inside a component is a plain *
        ("a**b", "axxb", True),
        ("a**b", "ax/xb", False),
        ("src/**.py", "src/a.py", True),
        ("src/**.py", "src/x/a.py", False),
        # literal paths match themselves and everything below (directories)
        ("Dockerfile", "Dockerfile", True),
        ("Dockerfile", "sub/Dockerfile", False),
        ("deps", "deps/x/y.txt", True),
        ("deps", "depsx", False),
        ("svc/requirements.txt", "svc/requirements.txt", True),
        ("svc/requirements.txt", "svc/requirements.txt.bak", False),
        # character classes
        ("[ab].py", "a.py", True),
        ("[ab].py", "c.py", False),
        ("[!ab].py", "c.py", True),
        ("[!ab].py", "a.py", False),
        ("[^ab].py", "c.py", True),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[]]x", "]x", True),
        ("x[!a]y", "x/y", False),
        ("x[+-0]y", "x/y", False),  # a range spanning '/' still never matches it
        ("[ab", "[ab", True),  # unclosed: literal
        # escapes and regex metacharacters are literal
        (r"\*.py", "*.py", True),
        (r"\*.py", "a.py", False),
        ("a+b(c).py", "a+b(c).py", True),
        ("a.py", "axpy", False),
        ("$x^", "$x^", True),
        # normalization
        ("./src/*.py", "src/a.py", True),
        ("src//*.py", "src/a.py", True),
        ("", "a", False),
        # dotfiles are ordinary names
        ("*.py", ".hidden.py", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert compile_glob(pattern).matches(path) is expected, (pattern, path)


def test_glob_absolute_patterns_match_absolute_keys() -> None:
    g = compile_glob("/srv/rec/**/*.json")
    assert g.matches("/srv/rec/a/b.json")
    assert not g.matches("srv/rec/a/b.json")


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("src/**/*.py", "src"),
        ("examples/demo/orders/**/*.py", "examples/demo/orders"),
        ("Dockerfile", "Dockerfile"),
        ("**/*.py", ""),
        ("a/b*/c", "a"),
        ("a/[bc]/d", "a"),
        ("./a/b/", "a/b"),
        ("/abs/x/*.py", "/abs/x"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def test_normalize_pattern() -> None:
    assert normalize_pattern("./a//b/./c/") == "a/b/c"
    assert normalize_pattern("a/**/**/b") == "a/**/b"
    assert normalize_pattern("/x/y") == "/x/y"


def test_relative_key() -> None:
    assert relative_key("/p/a/b.py", "/p") == "a/b.py"
    assert relative_key("/p", "/p") == ""
    assert relative_key("/px/a", "/p") is None
    assert relative_key("/p/a/../../q", "/p") is None
    assert relative_key("/p/a/../b", "/p/") == "b"


def _ref_match(pat: list[str], path: list[str]) -> bool:
    """Reference: component-wise backtracking with fnmatch on single components;
    a pattern that consumes a prefix of the path matches (directories cover their
    contents), except that a trailing ``**`` needs at least one component."""
    if not pat:
        return True
    head, rest = pat[0], pat[1:]
    if head == "**":
        if not rest:
            return len(path) >= 1
        return any(_ref_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    return fnmatch.fnmatchcase(path[0], head) and _ref_match(rest, path[1:])


_COMP_CHARS = st.sampled_from(list("ab.x"))
_component = st.text(_COMP_CHARS, min_size=1, max_size=4)
_pat_component = st.one_of(
    _component,
    st.just("*"),
    st.just("**"),
    st.just("?"),
    st.just("*.x"),
    st.just("a*"),
    st.just("[ab]"),
    st.just("[!a]x"),
    st.just("a?b"),
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(_pat_component, min_size=1, max_size=5),
    st.lists(_component, min_size=1, max_size=6),
)
def test_glob_agrees_with_reference(pat: list[str], path: list[str]) -> None:
    pattern = normalize_pattern("/".join(pat))
    expected = _ref_match(pattern.split("/"), path)
    assert compile_glob(pattern).matches("/".join(path)) is expected, (pattern, path)


# ---------------------------------------------------------------- ignore lists


def test_gitignore_style_list() -> None:
    ig = IgnoreList.parse(
        ["# comment", "", "*.log", "build/", "/top.txt", "docs/*.md", "!keep.log"],
        basename_anywhere=True,
    )
    assert ig.match("a.log") is not None
    assert ig.match("x/y/a.log") is not None  # no slash: any depth
    assert ig.match("x/keep.log") is None  # re-included by the later rule
    assert ig.match("build/out.o") is not None
    assert ig.match("sub/build/out.o") is not None
    assert ig.match("build") is None  # dir-only: only what is inside
    assert ig.match("top.txt") is not None
    assert ig.match("sub/top.txt") is None  # leading slash anchors
    assert ig.match("docs/a.md") is not None
    assert ig.match("x/docs/a.md") is None  # a slash in the middle anchors
    hit = ig.match("a.log")
    assert hit is not None and hit.line == "*.log" and hit.lineno == 3


def test_dockerignore_style_list_is_anchored() -> None:
    ig = IgnoreList.parse(["*.md", "!README.md", "tests", "**/*.pyc", "."], basename_anywhere=False)
    assert ig.match("NOTES.md") is not None
    assert ig.match("docs/NOTES.md") is None  # Docker anchors at the context root
    assert ig.match("README.md") is None
    assert ig.match("tests/test_x.py") is not None
    assert ig.match("a/b/c.pyc") is not None
    assert ig.match("app.py") is None
    assert len(ig.rules) == 4  # "." is ignored, as Docker does


def test_editor_temp_names() -> None:
    for name in (
        ".app.py.swp",
        ".app.py.swx",
        ".app.py.swo",
        "4913",
        "5036",
        "app.py~",
        "#app.py#",
        ".#app.py",
        "app.py___jb_tmp___",
        "app.py___jb_old___",
        "app.py.vsctmp",
        ".app.py.kate-swp",
        ".goutputstream-ABC123",
        "x.pyc",
        ".DS_Store",
        ".nfs000000012345",
        "flycheck_app.py",
    ):
        assert editor_temp_kind(name), name
    for name in ("app.py", "4914", "swp.py", "Dockerfile", "notes.txt", "1234"):
        assert editor_temp_kind(name) is None, name


def test_litter_reason_dirs() -> None:
    assert litter_reason(".git/index")
    assert litter_reason("pkg/__pycache__/a.cpython-311.pyc")
    assert litter_reason(".devbox/watch/canary-1")
    assert litter_reason("pkg/app.py") is None


# ---------------------------------------------------------------- the plan

PROFILE = """
name = "p"

[service]
name = "svc"
port = 8080
build = { context = "svc", dockerfile = "Dockerfile" }
command = ["python3", "svc/app.py"]

[service.watch]
sync = ["svc/**/*.py", "svc/static/"]
rebuild = ["svc/requirements.txt", "svc/**/*.lock"]
ignore = ["**/*.tmp", "scratch/", "*.bak"]

[[dependency]]
name = "payments"
env = "PAYMENTS_URL"

[[dependency]]
name = "shared"
env = "SHARED_URL"
recordings = "fixtures/shared"
"""


def make_project(tmp: Path, profile_text: str = PROFILE) -> Profile:
    (tmp / "profiles").mkdir(parents=True, exist_ok=True)
    (tmp / "svc" / "pkg").mkdir(parents=True, exist_ok=True)
    (tmp / "svc" / "app.py").write_text("print('hi')\n")
    (tmp / "svc" / "Dockerfile").write_text("FROM scratch\n")
    path = tmp / "profiles" / "p.toml"
    path.write_text(profile_text)
    return load_profile(path)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    return make_project(tmp_path)


def _one(profile: Profile, path: str, dockerignore: tuple[str, ...] = ()) -> tuple[str, str, str]:
    step = Planner(profile, dockerignore).classify(path)
    return step.action, step.rule, step.reason


@pytest.mark.parametrize(
    ("path", "action", "rule"),
    [
        ("svc/app.py", "sync+restart", "sync 'svc/**/*.py'"),
        ("svc/pkg/deep/mod.py", "sync+restart", "sync 'svc/**/*.py'"),
        ("svc/static/css/site.css", "sync+restart", "sync 'svc/static/'"),
        ("svc/requirements.txt", "rebuild", "rebuild 'svc/requirements.txt'"),
        ("svc/pkg/poetry.lock", "rebuild", "rebuild 'svc/**/*.lock'"),
        ("svc/Dockerfile", "rebuild", "build.dockerfile"),
        ("svc/.dockerignore", "rebuild", "build.context"),
        ("svc/README.md", "rebuild", "build.context"),  # in context, no rule: conservative
        ("profiles/p.toml", "reload-profile", "profile file"),
        ("mocks/p/payments/001.json", "reload-mocks", "recordings"),
        ("mocks/p/inbound/001.json", "reload-mocks", "recordings"),
        ("fixtures/shared/a.json", "reload-mocks", "recordings"),
        ("README.md", "nothing", ""),
        ("other/app.py", "nothing", ""),
        ("profiles/other.toml", "nothing", ""),
        # ignored, in order: litter, built-in dirs, profile ignore
        ("svc/.app.py.swp", "nothing", "editor temp file"),
        ("svc/4913", "nothing", "editor temp file"),
        ("svc/app.py~", "nothing", "editor temp file"),
        ("svc/#app.py#", "nothing", "editor temp file"),
        ("svc/app.py___jb_tmp___", "nothing", "editor temp file"),
        ("svc/.git/index", "nothing", "built-in ignore '.git/'"),
        ("svc/pkg/__pycache__/mod.cpython-311.pyc", "nothing", "editor temp file"),
        ("svc/pkg/__pycache__/x.py", "nothing", "built-in ignore '__pycache__/'"),
        ("svc/.devbox/state.json", "nothing", "built-in ignore '.devbox/'"),
        ("svc/notes.tmp", "nothing", "ignore '**/*.tmp'"),
        ("svc/scratch/x.py", "nothing", "ignore 'scratch/'"),
        ("svc/pkg/old.bak", "nothing", "ignore '*.bak'"),
        ("mocks/p/payments/001.json.tmp", "nothing", "ignore '**/*.tmp'"),
    ],
)
def test_classify(profile: Profile, path: str, action: str, rule: str) -> None:
    got_action, got_rule, reason = _one(profile, path)
    assert (got_action, got_rule) == (action, rule), reason
    assert reason.startswith(path)


def test_reasons_say_why(profile: Profile) -> None:
    _, _, reason = _one(profile, "svc/README.md")
    assert "build context 'svc'" in reason and "no sync or rebuild rule" in reason
    _, _, reason = _one(profile, "svc/requirements.txt")
    assert reason == "svc/requirements.txt matched rebuild rule 'svc/requirements.txt'"
    step = Planner(profile).classify("svc/app.py")
    assert step.field == "service.watch.sync[0]"
    step = Planner(profile).classify("svc/x.tmp")
    assert step.field == "service.watch.ignore[0]"


def test_demo_profile_rebuild_reason() -> None:
    demo = load_profile(ROOT / "profiles" / "demo.toml")
    plan = plan_changes(demo, ["examples/demo/orders/Dockerfile", "examples/demo/orders/app.py"])
    assert plan.action == "rebuild"
    assert plan.reason == (
        "examples/demo/orders/Dockerfile matched rebuild rule 'examples/demo/orders/Dockerfile'"
    )
    assert plan.actions == ("rebuild", "sync+restart")


def test_dockerignore_excludes_but_not_build_inputs(profile: Profile) -> None:
    di = ("*.md", "!KEEP.md", "tests/", "Dockerfile", ".dockerignore")
    action, rule, reason = _one(profile, "svc/README.md", di)
    assert (action, rule) == ("nothing", ".dockerignore '*.md'")
    assert "svc/.dockerignore" in reason
    step = Planner(profile, di).classify("svc/README.md")
    assert step.field == "svc/.dockerignore:1"
    assert _one(profile, "svc/KEEP.md", di)[0] == "rebuild"
    assert _one(profile, "svc/tests/test_a.py", di)[0] == "nothing"
    # Docker reads these even when they are listed
    assert _one(profile, "svc/Dockerfile", di)[0] == "rebuild"
    assert _one(profile, "svc/.dockerignore", di)[0] == "rebuild"
    # .dockerignore is about the image: outside the context it has no say
    assert _one(profile, "mocks/p/payments/README.md", di)[0] == "reload-mocks"


def test_plan_batch_strongest_action_and_sync_paths(profile: Profile, tmp_path: Path) -> None:
    plan = plan_changes(
        profile,
        [
            FileChange(tmp_path / "svc/app.py", "modified"),
            FileChange(tmp_path / "svc/pkg/gone.py", "deleted"),
            "mocks/p/payments/1.json",
            "svc/.app.py.swp",
            tmp_path / "svc/app.py",  # duplicate: planned once
        ],
    )
    assert plan.action == "sync+restart"
    assert plan.actions == ("sync+restart", "reload-mocks")
    assert plan.needs("reload-mocks") and not plan.needs("rebuild")
    assert plan.sync_paths == (tmp_path / "svc/app.py", tmp_path / "svc/pkg/gone.py")
    assert plan.deleted_paths == (tmp_path / "svc/pkg/gone.py",)
    assert len(plan.steps) == 4
    assert [s.action for s in plan.steps] == [
        "sync+restart",
        "sync+restart",
        "reload-mocks",
        "nothing",
    ]
    assert plan.reason.endswith("(and 1 more)")
    assert plan.changed == ("svc/app.py", "svc/pkg/gone.py", "mocks/p/payments/1.json")

    profile_plan = plan_changes(profile, ["profiles/p.toml", "svc/requirements.txt"])
    assert profile_plan.action == "rebuild"  # rebuild > reload-profile
    assert plan_changes(profile, ["profiles/p.toml", "svc/app.py"]).action == "reload-profile"
    assert plan_changes(profile, ["svc/x.tmp", "README.md"]).action == "nothing"
    assert plan_changes(profile, []).reason == "no files changed"
    assert ACTIONS[-1] == "rebuild" and ACTIONS[0] == "nothing"


def test_plan_as_dict_round_trips_json(profile: Profile) -> None:
    d = plan_changes(profile, [FileChange(Path("svc/app.py"), "added")]).as_dict()
    again = json.loads(json.dumps(d))
    assert again["action"] == "sync+restart"
    assert again["steps"][0]["change"] == "added"
    assert again["steps"][0]["rule"] == "sync 'svc/**/*.py'"


def test_paths_outside_root_and_absolute_patterns(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    text = PROFILE.replace(
        'rebuild = ["svc/requirements.txt", "svc/**/*.lock"]',
        f'rebuild = ["svc/requirements.txt", "{outside}/**/*.cfg", "../proj/shared.cfg"]',
    )
    prof = make_project(tmp_path / "proj", text)
    assert Planner(prof).classify(outside / "a/b.cfg").action == "rebuild"
    assert Planner(prof).classify(tmp_path / "proj/shared.cfg").action == "rebuild"
    step = Planner(prof).classify(outside / "x.txt")
    assert step.action == "nothing" and step.path == str(outside / "x.txt")


def test_watch_targets(profile: Profile, tmp_path: Path) -> None:
    t = watch_targets(profile)
    assert t.root == tmp_path
    # svc/** roots, svc/static and the context collapse into one tree
    assert t.trees == (tmp_path / "fixtures/shared", tmp_path / "mocks/p", tmp_path / "svc")
    # the Dockerfile and rebuild literals are inside the context tree
    assert t.literals == (tmp_path / "profiles/p.toml",)


def test_watch_targets_literals_and_root_globs(tmp_path: Path) -> None:
    text = """
name = "q"
[service]
port = 1
image = "x:dev"
[service.watch]
sync = ["app/**/*.py"]
rebuild = ["requirements.txt", "app/**/*.lock"]
"""
    prof = make_project(tmp_path, text)
    t = watch_targets(prof)
    assert t.trees == (tmp_path / "app", tmp_path / "mocks/q")
    assert t.literals == (tmp_path / "profiles/p.toml", tmp_path / "requirements.txt")
    text2 = text.replace('sync = ["app/**/*.py"]', 'sync = ["**/*.py"]')
    t2 = watch_targets(make_project(tmp_path / "two", text2))
    assert t2.trees == (tmp_path / "two",)  # a root-level ** covers everything
    assert t2.literals == ()


# ---------------------------------------------------------------- devbox explain


def _devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def test_explain_cli_prints_plan(profile: Profile, tmp_path: Path) -> None:
    (tmp_path / "svc" / ".dockerignore").write_text("*.md\n")
    r = _devbox(
        "explain",
        "profiles/p.toml",
        "svc/app.py",
        "svc/Dockerfile",
        "svc/README.md",
        "svc/.app.py.swp",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(line for line in lines if line.startswith("svc/Dockerfile"))
    assert "rebuild" in row and "build context's Dockerfile" in row
    row = next(line for line in lines if line.startswith("svc/README.md"))
    assert "nothing" in row and ".dockerignore" in row
    assert "sync+restart" in next(line for line in lines if line.startswith("svc/app.py"))
    assert lines[-1].startswith("plan: rebuild (also: sync+restart): svc/Dockerfile is the")


def test_explain_cli_json_and_relative_to_cwd(profile: Profile, tmp_path: Path) -> None:
    r = _devbox(
        "explain", "../profiles/p.toml", "app.py", "gone.py", "--json", cwd=tmp_path / "svc"
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["profile"] == "p"
    assert data["action"] == "sync+restart"
    assert [s["path"] for s in data["steps"]] == ["svc/app.py", "svc/gone.py"]
    assert data["sync_paths"] == [str(tmp_path / "svc/app.py"), str(tmp_path / "svc/gone.py")]


def test_explain_cli_directory_and_targets(profile: Profile, tmp_path: Path) -> None:
    r = _devbox("explain", "profiles/p.toml", "svc", "--json", cwd=tmp_path)
    data = json.loads(r.stdout)
    assert {s["path"] for s in data["steps"]} == {"svc/app.py", "svc/Dockerfile"}
    r = _devbox("explain", "profiles/p.toml", "--json", cwd=tmp_path)
    targets = json.loads(r.stdout)
    assert targets["targets"]["trees"][-1] == str(tmp_path / "svc")
    assert targets["quiet_ms"] == 50 and targets["cap_ms"] == 1000
    r = _devbox("explain", "profiles/p.toml", cwd=tmp_path)
    assert f"tree  {tmp_path / 'svc'}" in r.stdout


def test_explain_cli_bad_profile_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.toml").write_text('[service]\nport = "x"\n')
    r = _devbox("explain", "profiles/bad.toml", "a.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "bad.toml:2: service.port: expected an integer" in r.stderr
    assert "Traceback" not in r.stderr
    r = _devbox("explain", "nope", "a.py", cwd=tmp_path)
    assert r.returncode == 2 and "no profile named 'nope'" in r.stderr


def test_combined_plans_keep_the_newest_step_per_path(tmp_path: Path) -> None:
    from devbox.core.plan import FileChange, Planner, combine_plans
    from devbox.core.profile import parse_profile

    profile = parse_profile(
        '[service]\nport = 8080\ncommand = ["python3", "app.py"]\nwatch = { sync = ["src/**"] }\n',
        tmp_path / "profiles" / "p.toml",
    )
    planner = Planner(profile)
    first = planner.plan([FileChange(tmp_path / "src/a.py", "modified")])
    second = planner.plan(
        [FileChange(tmp_path / "src/a.py", "deleted"), FileChange(tmp_path / "src/b.py", "added")]
    )
    both = combine_plans(first, second)
    assert both.action == "sync+restart"
    assert {s.path: s.change for s in both.steps} == {"src/a.py": "deleted", "src/b.py": "added"}
