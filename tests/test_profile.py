"""Profiles: every section, the defaults, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox.core.profile import (
    Dependency,
    Profile,
    RedactRules,
    ReplaySettings,
    load_profile,
    parse_profile,
    resolve_profile_path,
)
from devbox.core.redact import DEFAULT_RULES
from devbox.errors import ConfigError, NotFoundError

MINIMAL = """\
[service]
port = 8080
command = ["python3", "app.py"]
"""


def write(tmp_path: Path, text: str, name: str = "p") -> Path:
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    path = d / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def parse(tmp_path: Path, text: str, name: str = "p") -> Profile:
    return load_profile(write(tmp_path, text, name))


def error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.file == str(path)
    return info.value


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return n
    raise AssertionError(f"{needle!r} not in text")


# ---------------------------------------------------------------- defaults


def test_minimal_profile_gets_every_default(tmp_path: Path) -> None:
    p = parse(tmp_path, MINIMAL, name="shop")
    assert p.name == "shop"  # from the file name
    assert p.root == tmp_path.resolve()  # profiles/ sits below the project root
    s = p.service
    assert (s.name, s.port, s.command) == ("service", 8080, ("python3", "app.py"))
    assert s.build is None and s.image is None
    assert (s.cwd, s.runtime, s.network, s.workdir) == (".", "auto", "host", "/app")
    assert s.env == {}
    assert s.ready.kind == "tcp" and s.ready.timeout_s == 30.0 and s.ready.interval_ms == 20
    assert (s.watch.sync, s.watch.rebuild, s.watch.ignore) == ((), (), ())
    assert (s.watch.quiet_ms, s.watch.cap_ms) == (50, 1000)
    assert p.dependencies == ()
    assert p.replay == ReplaySettings()
    assert p.replay.concurrency == 8 and p.replay.timeout_s == 10.0
    assert p.redact == RedactRules()
    assert p.mocks_dir == tmp_path.resolve() / "mocks" / "shop"
    assert p.inbound_dir == p.mocks_dir / "inbound"
    assert p.recordings_dir("payments") == p.mocks_dir / "payments"


def test_dependency_defaults(tmp_path: Path) -> None:
    p = parse(tmp_path, MINIMAL + '[[dependency]]\nname = "payments"\n')
    d = p.dependencies[0]
    assert d == Dependency(name="payments")
    assert (d.kind, d.upstream, d.env, d.port, d.on_miss, d.timing) == (
        "http",
        None,
        None,
        None,
        "fail",
        "none",
    )
    assert d.timing_factor is None
    assert d.match.ignore_query == () and d.match.fuzzy is False
    assert d.faults.error_rate == 0.0 and d.faults.error_status == 503
    assert p.dependency("payments") is d


def test_the_demo_profile(root: Path) -> None:
    p = load_profile("demo", root=root)
    assert p.name == "demo" and p.root == root
    assert p.service.name == "orders" and p.service.port == 7080
    assert p.service.build is not None and p.service.build.context == "examples/demo/orders"
    assert p.service.env == {"PAYMENTS_TOKEN": "sk_test_demo"}
    assert p.service.ready.kind == "http" and p.service.ready.http == "/healthz"
    assert p.service.ready.timeout_s == 20.0
    assert p.service.watch.sync == ("examples/demo/orders/**/*.py",)
    assert [d.name for d in p.dependencies] == ["payments", "inventory"]
    pay = p.dependency("payments")
    assert (pay.port, pay.env, pay.upstream) == (7101, "PAYMENTS_URL", "http://127.0.0.1:7201")
    assert pay.match.ignore_body == ("$.customer",)
    assert "header:date" in p.replay.ignore and p.replay.fail_if == ("match < 100%",)
    assert p.redact.json == ("card",)


# ---------------------------------------------------------------- every section


FULL = """\
name = "full"
mocks = "recordings/full"

[service]
name = "orders"
port = 9000
build = { context = "svc", dockerfile = "Dockerfile.dev", args = { PYVER = "3.11", N = 2 } }
image = "orders:dev"
command = ["python3", "-m", "orders"]
cwd = "svc"
env = { LOG_LEVEL = "debug", WORKERS = 4, RATIO = 0.5 }
runtime = "docker"
network = "bridge"
workdir = "/srv"

[service.ready]
log = "listening on \\\\d+"
timeout_s = 5
interval_ms = 100

[service.watch]
sync = "svc/**/*.py"
rebuild = ["svc/Dockerfile.dev", "svc/requirements.txt"]
ignore = ["**/*.tmp", "**/.git/**"]
quiet_ms = 20
cap_ms = 500

[[dependency]]
name = "payments"
upstream = "https://payments.internal.example"
env = "PAYMENTS_URL"
port = 9101
on_miss = "passthrough"
timing = "recorded"
recordings = "fixtures/payments"

[dependency.match]
ignore_query = ["ts", "nonce"]
ignore_body = ["$.request_id", "$.items[*].id", "$.meta.*"]
headers = ["X-Tenant"]
fuzzy = true

[dependency.faults]
delay_ms = 250
error_rate = 0.1
error_status = 502
reset_rate = 0.05
seed = 42

[[dependency]]
name = "inventory"
upstream = "http://inventory:8080"
timing = "2.5x"
on_miss = "record"

[replay]
concurrency = 4
ignore = ["$.created_at", "header:Date"]
headers = ["Content-Type", "X-Version"]
fail_if = ["match < 95%", "p99 > 250ms"]
routes = ["GET /orders*", "POST /orders"]
unordered = ["$.items"]
timeout_s = 2.5

[redact]
json = ["ssn", "$.customer.card", "$.items[*].token"]
headers = ["X-Internal-Token"]
query = ["sig"]
patterns = ["\\\\b\\\\d{3}-\\\\d{2}-\\\\d{4}\\\\b"]
disable = ["email"]
"""


def test_every_section_and_key(tmp_path: Path) -> None:
    p = parse(tmp_path, FULL)
    assert p.name == "full" and p.mocks == "recordings/full"
    assert p.mocks_dir == tmp_path.resolve() / "recordings/full"
    s = p.service
    assert s.build is not None
    assert (s.build.context, s.build.dockerfile) == ("svc", "Dockerfile.dev")
    assert s.build.args == {"PYVER": "3.11", "N": "2"}
    assert s.image == "orders:dev" and s.command == ("python3", "-m", "orders")
    assert s.cwd == "svc" and s.workdir == "/srv"
    assert s.env == {"LOG_LEVEL": "debug", "WORKERS": "4", "RATIO": "0.5"}
    assert (s.runtime, s.network) == ("docker", "bridge")
    assert s.ready.kind == "log" and s.ready.log == r"listening on \d+"
    assert (s.ready.timeout_s, s.ready.interval_ms) == (5.0, 100)
    assert s.watch.sync == ("svc/**/*.py",)  # a single string is a one-item list
    assert s.watch.rebuild == ("svc/Dockerfile.dev", "svc/requirements.txt")
    assert (s.watch.quiet_ms, s.watch.cap_ms) == (20, 500)

    pay, inv = p.dependencies
    assert pay.on_miss == "passthrough" and pay.timing_factor == 1.0
    assert p.recordings_dir("payments") == tmp_path.resolve() / "fixtures/payments"
    assert p.recordings_dir("inventory") == p.mocks_dir / "inventory"
    assert pay.match.ignore_query == ("ts", "nonce")
    assert pay.match.ignore_body == ("$.request_id", "$.items[*].id", "$.meta.*")
    assert pay.match.headers == ("x-tenant",)  # header names are case-insensitive
    assert pay.match.fuzzy is True
    f = pay.faults
    assert (f.delay_ms, f.error_rate, f.error_status, f.reset_rate, f.seed) == (
        250,
        0.1,
        502,
        0.05,
        42,
    )
    assert inv.timing_factor == 2.5 and inv.on_miss == "record"

    r = p.replay
    assert r.concurrency == 4 and r.timeout_s == 2.5
    assert r.ignore == ("$.created_at", "header:Date")
    assert r.headers == ("content-type", "x-version")
    assert r.fail_if == ("match < 95%", "p99 > 250ms")
    assert r.routes == ("GET /orders*", "POST /orders") and r.unordered == ("$.items",)

    red = p.redact
    assert red.json == ("ssn", "$.customer.card", "$.items[*].token")
    assert red.headers == ("x-internal-token",) and red.query == ("sig",)
    assert red.patterns == (r"\b\d{3}-\d{2}-\d{4}\b",) and red.disable == ("email",)


def test_build_as_a_string_and_ready_tcp(tmp_path: Path) -> None:
    p = parse(tmp_path, '[service]\nport = 1\nbuild = "."\nready = { tcp = true }\n')
    assert p.service.build is not None and p.service.build.context == "."
    assert p.service.build.dockerfile == "Dockerfile"
    assert p.service.ready.kind == "tcp" and p.service.ready.tcp is True


def test_dotted_keys_and_image_only(tmp_path: Path) -> None:
    p = parse(tmp_path, 'service.port = 80\nservice.image = "nginx:1"\nservice.ready.http = "/"\n')
    assert p.service.image == "nginx:1" and p.service.ready.http == "/"


def test_every_default_redaction_rule_can_be_disabled(tmp_path: Path) -> None:
    rules = ", ".join(f'"{r}"' for r in DEFAULT_RULES)
    p = parse(tmp_path, MINIMAL + f"[redact]\ndisable = [{rules}]\n")
    assert p.redact.disable == DEFAULT_RULES


# ---------------------------------------------------------------- errors, with lines


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = MINIMAL + "[[dependency]]\nname = payments\n"
    e = error(tmp_path, text)
    assert e.line == 5 and "invalid TOML" in e.message
    assert "(at line" not in e.message  # the line is in the prefix, not repeated
    assert e.one_line().startswith(f"{e.file}:5: invalid TOML")


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    e = error(tmp_path, MINIMAL + "\n[replya]\nconcurrency = 2\n")
    assert e.field == "replya" and e.line == 5
    assert e.hint == "did you mean 'replay'?"


def test_unknown_nested_key_suggests(tmp_path: Path) -> None:
    text = MINIMAL + '[service.watch]\nsync = ["a"]\nrebuid = ["Dockerfile"]\n'
    e = error(tmp_path, text)
    assert e.field == "service.watch.rebuid" and e.line == line_of(text, "rebuid")
    assert e.hint == "did you mean 'rebuild'?"


def test_unknown_key_without_a_close_match_lists_the_allowed(tmp_path: Path) -> None:
    e = error(tmp_path, MINIMAL + "[redact]\nzzz = 1\n")
    assert e.hint is not None and e.hint.startswith("allowed: json, headers")


def test_wrong_type_names_field_and_line(tmp_path: Path) -> None:
    text = '[service]\ncommand = ["x"]\nport = "8080"\n'
    e = error(tmp_path, text)
    assert (e.field, e.line) == ("service.port", 3)
    assert e.message == "expected an integer, got a string"


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        ('on_miss = "explode"', "on_miss", "expected one of fail, passthrough, record, got"),
        ('timing = "fast"', "timing", 'expected none, recorded or a factor such as "2x"'),
        ('kind = "ftp"', "kind", "expected one of grpc, http, postgres, redis, got"),
        ('upstream = "payments:80"', "upstream", "expected an http:// or https:// URL"),
        ('env = "PAYMENTS-URL"', "env", "not a valid variable name"),
        ("port = 70000", "port", "expected 1..65535, got 70000"),
        ('name = "Payments"', "name", "expected lowercase letters"),
    ],
)
def test_bad_value_in_the_second_dependency(
    tmp_path: Path, snippet: str, field: str, message: str
) -> None:
    key = snippet.split(" ")[0]
    second = (
        f'[[dependency]]\nname = "b"\n{snippet}\n'
        if key != "name"
        else (f"[[dependency]]\n{snippet}\n")
    )
    text = MINIMAL + '[[dependency]]\nname = "a"\non_miss = "fail"\n' + second
    e = error(tmp_path, text)
    assert e.field == f"dependency[1].{field}"
    assert e.line == line_of(text, snippet)
    assert message in e.message


def test_inline_table_key_gets_its_line(tmp_path: Path) -> None:
    text = MINIMAL + (
        '[[dependency]]\nname = "a"\n\n[[dependency]]\nname = "b"\nmatch = { fuzzy = "yes" }\n'
    )
    e = error(tmp_path, text)
    assert (e.field, e.line) == ("dependency[1].match.fuzzy", line_of(text, "fuzzy"))
    assert e.message == "expected true or false, got a string"


def test_sub_table_of_an_array_element_gets_its_line(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '[[dependency]]\nname = "a"\n[dependency.faults]\nerror_rate = 0.5\n'
        + '[[dependency]]\nname = "b"\n[dependency.faults]\nerror_rate = 1.5\n'
    )
    e = error(tmp_path, text)
    assert e.field == "dependency[1].faults.error_rate"
    assert e.line == line_of(text, "error_rate = 1.5")
    assert e.message == "expected 0..1, got 1.5"


def test_json_path_errors(tmp_path: Path) -> None:
    text = MINIMAL + '[[dependency]]\nname = "a"\nmatch = { ignore_body = ["request_id"] }\n'
    e = error(tmp_path, text)
    assert e.field == "dependency[0].match.ignore_body" and "not a JSON path" in e.message
    assert e.hint is not None and "$.a.b" in e.hint
    e = error(tmp_path, MINIMAL + '[replay]\nignore = ["created_at"]\n')
    assert e.field == "replay.ignore" and e.line == 5
    e = error(tmp_path, MINIMAL + '[replay]\nunordered = ["$.items[x]"]\n')
    assert e.field == "replay.unordered"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("[service]\ncommand = ['x']\n", "service.port", "missing: the port"),
        ("[service]\nport = 1\n", "service", "say how to run the service"),
        ("name = 'x'\n", "service", "missing [service] table"),
        ("[service]\nport = 1\ncommand = 'python3 app.py'\n", "service.command", "not a string"),
        (
            "[service]\nport = 1\nimage = 'x'\nready = { http = 'healthz' }\n",
            "service.ready.http",
            "starting with /",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\nready = { log = '(' }\n",
            "service.ready.log",
            "invalid regular expression",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\nenv = { '1X' = 'a' }\n",
            "service.env.1X",
            "not a valid variable name",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\nenv = { A = true }\n",
            "service.env.A",
            "expected a string or number",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\nruntime = 'podman'\n",
            "service.runtime",
            "expected one of auto, docker, process",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\nwatch = { sync = [1] }\n",
            "service.watch.sync",
            "expected a list of strings",
        ),
        ("name = 'Bad Name'\n[service]\nport = 1\nimage = 'x'\n", "name", "expected lowercase"),
        ("service = 3\n", "service", "expected a table, got an integer"),
        (
            "[service]\nport = 1\nimage = 'x'\n[dependency]\nname = 'a'\n",
            "dependency",
            "expected [[dependency]] tables",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\n[[dependency]]\nkind = 'http'\n",
            "dependency[0]",
            "missing name",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\n[replay]\nconcurrency = 0\n",
            "replay.concurrency",
            "expected 1..1024, got 0",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\n[replay]\ntimeout_s = true\n",
            "replay.timeout_s",
            "expected a number, got a boolean",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\n[redact]\npatterns = ['[a-']\n",
            "redact.patterns",
            "invalid regular expression",
        ),
        (
            "[service]\nport = 1\nimage = 'x'\n[redact]\njson = ['$.a..b']\n",
            "redact.json",
            "not a JSON path",
        ),
    ],
)
def test_errors_name_the_field(tmp_path: Path, text: str, field: str, message: str) -> None:
    e = error(tmp_path, text)
    assert e.field == field
    assert message in e.message
    # every error points at a line, except a table that is not in the file at all
    assert (e.line is None) == (message == "missing [service] table")


def test_command_string_hint_says_no_shell(tmp_path: Path) -> None:
    e = error(tmp_path, "[service]\nport = 1\ncommand = 'python3 app.py'\n")
    assert e.hint is not None and "never runs a shell" in e.hint


def test_unknown_redaction_rule_suggests_a_default_rule(tmp_path: Path) -> None:
    text = MINIMAL + '[redact]\njson = ["ssn"]\ndisable = ["emails"]\n'
    e = error(tmp_path, text)
    assert (e.field, e.line) == ("redact.disable", line_of(text, "disable"))
    assert e.message == "unknown redaction rule 'emails'"
    assert e.hint == "did you mean 'email'?"
    e = error(tmp_path, MINIMAL + '[redact]\ndisable = ["everything"]\n')
    assert e.hint is not None and "authorization" in e.hint and "card-number" in e.hint


def test_duplicate_reserved_and_conflicting(tmp_path: Path) -> None:
    dup = MINIMAL + '[[dependency]]\nname = "a"\n[[dependency]]\nname = "a"\n'
    e = error(tmp_path, dup)
    assert e.field == "dependency[1].name" and e.line == line_of(dup, 'name = "a"', 2)
    e = error(tmp_path, MINIMAL + '[[dependency]]\nname = "inbound"\n')
    assert "reserved" in e.message
    clash = MINIMAL + '[[dependency]]\nname = "a"\nport = 8080\n'
    e = error(tmp_path, clash)
    assert e.field == "dependency[0].port" and "already used by service" in e.message
    clash2 = MINIMAL + (
        '[[dependency]]\nname = "a"\nport = 9\n[[dependency]]\nname = "b"\nport = 9\n'
    )
    e = error(tmp_path, clash2)
    assert e.field == "dependency[1].port" and "already used by a" in e.message


def test_one_line_rendering(tmp_path: Path) -> None:
    e = error(tmp_path, MINIMAL + '[[dependency]]\nname = "a"\non_miss = "nope"\n')
    assert e.one_line() == (
        f"{e.file}:6: dependency[0].on_miss: expected one of fail, passthrough, record, got 'nope'"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_profile(path)


# ---------------------------------------------------------------- finding profiles


def test_missing_profile_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "alpha")
    write(tmp_path, MINIMAL, "beta")
    with pytest.raises(NotFoundError) as info:
        load_profile("gamma", root=tmp_path)
    assert "no profile named 'gamma'" in info.value.message
    assert info.value.hint == "known profiles: alpha, beta"
    assert info.value.exit_code == 2


def test_missing_profile_file_and_empty_project(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such profile file"):
        resolve_profile_path(str(tmp_path / "nope.toml"))
    with pytest.raises(NotFoundError) as info:
        load_profile("demo", root=tmp_path)
    assert info.value.hint is not None and "devbox init" in info.value.hint


def test_name_or_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, "alpha")
    assert resolve_profile_path("alpha", tmp_path) == path
    assert load_profile(path).name == "alpha"
    # a profile outside profiles/: its own directory is the project root
    other = tmp_path / "elsewhere.toml"
    other.write_text(MINIMAL)
    assert load_profile(other).root == tmp_path.resolve()


def test_unknown_dependency_lookup(tmp_path: Path) -> None:
    p = parse(tmp_path, MINIMAL + '[[dependency]]\nname = "a"\n')
    with pytest.raises(NotFoundError) as info:
        p.dependency("b")
    assert info.value.hint == "known: a"


def test_parse_profile_directly() -> None:
    p = parse_profile(MINIMAL, Path("/x/profiles/direct.toml"))
    assert p.name == "direct" and p.root == Path("/x")


def test_replay_ignore_rules_scoped_to_a_route_and_the_reset_hook(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[replay]\nignore = ["$.a", "POST /orders $.id", "/items/* header:etag",'
        ' "GET /c?x=1 $[0].id"]\nreset = ["./reset-db", "--fast"]\n'
    )
    p = parse(tmp_path, text)
    assert p.replay.reset == ("./reset-db", "--fast")
    from devbox.core.diff import DiffRules

    rules = DiffRules.from_settings(p.replay)
    assert rules.for_route("POST", "/orders").ignores_path(("id",))
    assert not rules.for_route("GET", "/orders/7").ignores_path(("id",))
    assert rules.for_route("GET", "/items/3").ignores_header("etag")
    assert rules.for_route("GET", "/c", "/c?x=1").ignores_path((0, "id"))
    assert not rules.for_route("GET", "/c", "/c").ignores_path((0, "id"))
    bad = MINIMAL + '\n[replay]\nignore = ["POST orders $.id"]\n'
    e = error(tmp_path, bad)
    assert e.field == "replay.ignore" and "POST orders" in str(e)
    e = error(tmp_path, MINIMAL + '\n[replay]\nreset = "./reset-db"\n')
    assert e.field == "replay.reset" and "argv" in str(e)
