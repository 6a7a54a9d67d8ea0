"""Values PHP's ``serialize()`` and session encoding and Ruby's ``Marshal`` wrote, as the
real interpreters write them, redacted by their keys with every length prefix made right
(``devbox.core.serialized``).

Found by running PHP (phpredis) and Ruby (redis-rb) services through devbox's Redis relay:
a password under a serialized key went to disk (no text rule reads the key), and an
e-mail address the text rules did replace left its length prefix stale, so PHP's
``unserialize()`` and Ruby's ``Marshal.load`` refused the value the mock gave back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loop_support import Loop
from redis_helpers import Mock, Recording, redis_server

from devbox.core import serialized
from devbox.wire.files import default_redactor
from devbox.wire.redis import KIND

PHP = shutil.which("php") or "php"
RUBY = shutil.which("ruby") or "ruby"

HASH = "$2y$10$abcdefghijklmnopqrstuu5V1ZJ0K3q2cE6mXq9Y8uH1s5W3m6a7e"


def php(code: str) -> bytes:
    cmd = [PHP, "-d", "display_errors=stderr", "-r", code]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout


def ruby(code: str, data: bytes = b"") -> bytes:
    return subprocess.run(
        [RUBY, "-e", code], input=data, capture_output=True, check=True, timeout=30
    ).stdout


# what PHP writes: arrays, objects with public/protected/private properties, floats,
# nested arrays, a Serializable class (C:), an enum (E:), references (r:/R:), a session
PHP_SETUP = """
class Pub { public $email = "a@example.com"; protected $token = "tok_9f86d081884c7d659a2f";
  private $password = "hunter2-Secret"; }
class Box implements Serializable { public $v = ["password" => "inner-Secret-1"];
  public function serialize() { return serialize($this->v); }
  public function unserialize($s) { $this->v = unserialize($s); } }
enum Suit { case Hearts; }
"""
PHP_VALUES = [
    'serialize(["email" => "a@example.com", "password" => "hunter2-Secret", "n" => 1,'
    ' "f" => 1.5, "big" => 1.0E+25, "inf" => INF, "neg" => -7, "t" => true, "nil" => null,'
    ' "nested" => ["api_key" => "sk_test_51HxYzAbCdEfGhIjKlMnOpQr"], 3 => "three",'
    ' "a@example.com" => 1])',
    "serialize(new Pub)",
    "serialize([new Box, 'after'])",
    "serialize([Suit::Hearts, 'x'])",
    '(function () { $a = ["k" => "v"]; $a["r"] = &$a["k"]; $o = new stdClass;'
    " $o->self = $o; return serialize([$a, $o, $o]); })()",
    'serialize("just a string with é")',
    "serialize(3.25)",
    'serialize(serialize(["password" => "twice-Secret-1"]))',
]


@pytest.fixture(scope="module")
def php_values() -> list[bytes]:
    out = []
    for expr in PHP_VALUES:
        out.append(php(f"{PHP_SETUP} echo {expr};"))
    out.append(
        php(
            'ob_start(); ini_set("session.use_cookies", "0"); session_start();'
            ' $_SESSION["uid"] = 7; $_SESSION["password"] = "hunter2-Secret";'
            ' $_SESSION["user"] = ["email" => "b@example.org", "roles" => ["admin"]];'
            " $s = session_encode(); ob_end_clean(); echo $s;"
        )
    )
    return out


RUBY_VALUE = """
S = Struct.new(:name, :password)
class User
  def initialize
    @email = "a@example.com"; @password = "hunter2-Secret"; @n = 300; @big = 2**70
    @f = 1.5; @sym = :x; @bin = "\\xff\\x00".b
  end
end
print Marshal.dump({"email" => "a@example.com", :password => "hunter2-Secret",
  "list" => ["x", "c@example.net", 12345678, -70000, nil, true, false],
  "user" => User.new, "s" => S.new("n", "pw-struct-Secret"), "again" => :password,
  "re" => /ab/i, "c@example.net" => true, "shared" => ["same"] * 2, "range" => (1..3),
  "time" => Time.at(1_700_000_000).utc})
"""


def identity(_name: str, value: bytes) -> bytes:
    return value


def test_what_php_writes_is_read_whole_and_written_back_byte_for_byte(
    php_values: list[bytes],
) -> None:
    for data in php_values:
        assert serialized.mapped(data, identity) == data, data
        assert serialized.strings(data) is not None, data


def test_what_ruby_writes_is_read_whole_and_written_back_byte_for_byte() -> None:
    data = ruby(RUBY_VALUE)
    assert data.startswith(serialized.MARSHAL)
    assert serialized.mapped(data, identity) == data
    assert b"pw-struct-Secret" in (serialized.strings(data) or [])


def test_redacted_php_values_still_unserialize(php_values: list[bytes], tmp_path: Path) -> None:
    redact = serialized.text_leaf(default_redactor())
    for i, data in enumerate(php_values[:-1]):
        red = serialized.mapped(data, redact)
        assert red is not None
        for secret in (b"hunter2-Secret", b"a@example.com", b"tok_9f86d", b"inner-Secret"):
            assert secret not in red, (secret, red)
        assert b"twice-Secret" not in red
        path = tmp_path / f"v{i}"
        path.write_bytes(red)
        got = php(
            f"{PHP_SETUP} $v = unserialize(file_get_contents('{path}'));"
            " echo json_encode($v === false ? 'REFUSED' : 'ok');"
        )
        assert json.loads(got) == "ok", red
    # what is not secret is as it was
    first = serialized.mapped(php_values[0], redact) or b""
    assert b's:5:"three";' in first and b"d:1.0E+25;" in first


def _decoded_session(tmp_path: Path, data: bytes) -> Any:
    """[whether PHP's session_decode() took ``data``, the session it read]."""
    path = tmp_path / "sess"
    path.write_bytes(data)
    return json.loads(
        php(
            'ob_start(); ini_set("session.use_cookies", "0"); session_start();'
            f' $ok = session_decode(file_get_contents("{path}")); ob_end_clean();'
            " echo json_encode([$ok, $_SESSION]);"
        )
    )


def test_a_redacted_php_session_still_decodes(php_values: list[bytes], tmp_path: Path) -> None:
    red = serialized.mapped(php_values[-1], serialized.text_leaf(default_redactor()))
    assert red is not None and b"hunter2" not in red and b"b@example.org" not in red
    got = _decoded_session(tmp_path, red)
    assert got[0] is True
    assert got[1]["uid"] == 7 and got[1]["user"]["roles"] == ["admin"]
    assert got[1]["password"].startswith("<redacted:secret:")
    assert got[1]["user"]["email"].startswith("<redacted:email:")


def test_a_redacted_marshal_dump_still_loads() -> None:
    data = ruby(RUBY_VALUE)
    red = serialized.mapped(data, serialized.text_leaf(default_redactor()))
    assert red is not None
    for secret in (b"hunter2-Secret", b"a@example.com", b"c@example.net", b"pw-struct-Secret"):
        assert secret not in red
    loaded = ruby(
        "S = Struct.new(:name, :password); class User; end\n"
        "v = Marshal.load($stdin.read)\n"
        'print [v["user"].instance_variable_get(:@password), v["s"].password, v[:password],'
        ' v["list"], v["user"].instance_variable_get(:@big).to_s, v["time"].to_i,'
        ' v["user"].instance_variable_get(:@bin).bytes].inspect',
        red,
    ).decode()
    assert loaded.count("<redacted:secret:") == 3
    assert "<redacted:email:" in loaded and "12345678" in loaded and "-70000" in loaded
    assert str(2**70) in loaded and "1700000000" in loaded and "[255, 0]" in loaded


@pytest.mark.parametrize(
    "data",
    [
        b"plain text",
        b'a:1:{s:5:"email";s:4:"abc";}',  # a length that does not fit
        b'a:1:{s:5:"email";s:3:"abc";}extra',
        b'a:2:{s:5:"email";s:3:"abc";}',  # fewer members than said
        b"x|y",  # a session whose value is none
        b'O:8:"stdClass":1:{i:0;',
        b"\x04\x08\x99",  # an unknown Marshal tag
        b'\x04\x08"\x7f',  # a length past the end
        b"s:99999999999999:",
        b"a:1:{" * 200 + b"}" * 200,  # deeper than MAX_DEPTH
        b"",
    ],
)
def test_what_is_not_one_whole_value_is_left_to_the_text_rules(data: bytes) -> None:
    assert serialized.mapped(data, identity) is None


def test_a_session_id_and_redis_keys_are_not_taken_for_values() -> None:
    redact = default_redactor()
    assert redact("", "user:42|active") == "user:42|active"
    # a text value whose e-mail the text rules redact, as before
    assert redact("", "mail a@example.com now").startswith("mail <redacted:email:")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_bytes_and_any_damage_to_real_values_never_raise(
    php_values: list[bytes], data: st.DataObject
) -> None:
    source = data.draw(st.sampled_from([*php_values, b"", b"\x04\x08"]))
    cut = data.draw(st.integers(0, len(source)))
    noise = data.draw(st.binary(max_size=12))
    at = data.draw(st.integers(0, len(source)))
    for candidate in (source[:cut], source[:at] + noise + source[at:], noise):
        out = serialized.mapped(candidate, identity)
        assert out is None or out == candidate
        grown = serialized.mapped(candidate, lambda _n, v: v + b"!")
        if grown is not None:
            before = serialized.strings(candidate) or []
            assert serialized.strings(grown) == [s + b"!" for s in before]


# ---------------------------------------------------------------- through Redis

PHP_FLOW = r"""<?php
ob_start();
$port = (int)getenv("REDIS_PORT");
$r = new Redis(); $r->connect("127.0.0.1", $port, 5.0);
$out = [];
$u = unserialize($r->get("cache:user:1"));  // in the store before recording began
$out["cached"] = is_array($u) ? [$u["name"], $u["roles"]] : "unserialize refused it";
$token = bin2hex(random_bytes(16));
$r->set("cache:token:1", serialize(["api_token" => $token, "email" => "ada@example.com"]));
$back = unserialize($r->get("cache:token:1"));
$out["own_token"] = is_array($back) && $back["api_token"] === $token;
ini_set("session.save_handler", "redis");
ini_set("session.save_path", "tcp://127.0.0.1:$port?timeout=5");
ini_set("session.use_cookies", "0");
ini_set("session.use_strict_mode", "1");
session_start();
$_SESSION["uid"] = 7; $_SESSION["csrf_token"] = $token; $_SESSION["email"] = "ada@example.com";
$sid = session_id();
session_write_close();
session_id($sid);
session_start();
$out["session"] = ($_SESSION["uid"] ?? null) === 7 && ($_SESSION["csrf_token"] ?? null) === $token;
session_write_close();
ob_end_clean();
file_put_contents(getenv("SECRETS_FILE"), $token);
echo json_encode($out), "\n";
"""

RUBY_FLOW = r"""
require "redis"
require "securerandom"
require "json"
r = Redis.new(host: "127.0.0.1", port: ENV["REDIS_PORT"].to_i)
out = {}
cached = Marshal.load(r.get("cache:user:1"))  # in the store before recording began
out["cached"] = [cached["name"], cached["roles"]]
token = SecureRandom.hex(16)
key = "session:#{SecureRandom.hex(16)}"
r.set(key, Marshal.dump({"session_token" => token, "uid" => 7, "at" => 1_700_000_000}))
back = Marshal.load(r.get(key))
out["own_token"] = back["session_token"] == token && back["uid"] == 7
File.write(ENV["SECRETS_FILE"], token)
puts out.to_json
"""


def _flow(cmd: list[str], port: int, secrets: Path) -> dict[str, Any]:
    env = {**os.environ, "REDIS_PORT": str(port), "SECRETS_FILE": str(secrets)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _recorded_and_replayed(
    tmp_path: Path, cmd: list[str], cached: bytes
) -> tuple[dict[str, Any], dict[str, Any], str, Mock]:
    loop = Loop()
    try:
        with redis_server(tmp_path / "redis") as server:
            redis.Redis(port=server.port).set("cache:user:1", cached)
            rec = Recording(loop, server.port).start()
            recorded = _flow(cmd, rec.port, tmp_path / "secret-1")
            rec.close()
        redact = default_redactor()
        stored = [KIND.redact(o, redact) for o in rec.stored]  # as devbox record writes
        text = json.dumps(stored)
        mock = Mock(loop, stored).start()
        try:
            replayed = _flow(cmd, mock.port, tmp_path / "secret-2")
        finally:
            mock.close()
    finally:
        loop.close()
    assert (tmp_path / "secret-1").read_text() not in text
    return recorded, replayed, text, mock


def _service_replays(
    tmp_path: Path, cmd: list[str], source: str, cached: bytes, want: dict[str, Any]
) -> str:
    """The service (``cmd`` + its script ``source``) recorded, then replayed to the mock:
    the same outcome both times (``want``) and no miss. The recording's text."""
    script = tmp_path / "flow"
    script.write_text(source)
    recorded, replayed, text, mock = _recorded_and_replayed(tmp_path, [*cmd, str(script)], cached)
    assert recorded == want
    # the mock's answers unserialize: the cached user (placeholders, lengths right) and
    # the values this run wrote, given back as the client wrote them
    assert replayed == want, [m.explanation for m in mock.misses]
    assert not mock.misses
    return text


def test_a_php_service_s_cache_and_sessions_record_redacted_and_replay(tmp_path: Path) -> None:
    cached = php(
        'echo serialize(["name" => "Ada", "email" => "ada@example.com", "roles" => ["admin"],'
        ' "password_hash" => password_hash("hunter2", PASSWORD_BCRYPT)]);'
    )
    want = {"cached": ["Ada", ["admin"]], "own_token": True, "session": True}
    text = _service_replays(tmp_path, [PHP], PHP_FLOW, cached, want)
    assert "ada@example.com" not in text and "$2y$" not in text


def test_a_ruby_service_s_marshal_values_record_redacted_and_replay(tmp_path: Path) -> None:
    cached = ruby(
        'print Marshal.dump({"name" => "Ada", "email" => "ada@example.com",'
        ' "roles" => ["admin"], "password" => "hunter2-Secret", "n" => 2**40})'
    )
    text = _service_replays(
        tmp_path, [RUBY], RUBY_FLOW, cached, {"cached": ["Ada", ["admin"]], "own_token": True}
    )
    assert "hunter2-Secret" not in text and "ada@example.com" not in text


# ---------------------------------------------------------------- through Postgres

OPTIONS = "CREATE TABLE options (name text PRIMARY KEY, value text NOT NULL)"


def test_a_serialized_column_records_redacted_and_replays(tmp_path: Path) -> None:
    """WordPress keeps options and user meta as ``serialize()``'s text in a column."""
    import psycopg
    from pg_support import against_mock, as_written, relayed

    secret = secrets.token_hex(12)
    value = php(
        f'echo serialize(["smtp" => ["host" => "mail.local", "password" => "{secret}"],'
        ' "admin_email" => "ada@example.com", "roles" => ["admin"]]);'
    ).decode()

    def flow(url: str) -> list[Any]:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO options (name, value) VALUES (%s, %s)", ("mailer", value))
            row = c.execute("SELECT value FROM options WHERE name = %s", ("mailer",)).fetchone()
        assert row is not None
        path = tmp_path / "read"
        path.write_text(row[0])
        decoded = php(f"echo json_encode(unserialize(file_get_contents('{path}')));")
        return [row[0] == value, json.loads(decoded)]

    with relayed(OPTIONS) as (_pg, ws, url):
        recorded = flow(url)
        stored = as_written(ws.stored_once(lambda s: any("SELECT value" in str(o) for o in s)))
    text = json.dumps(stored)
    assert secret not in text and "ada@example.com" not in text
    assert recorded[0] is True
    replayed, outputs = against_mock(stored, flow)
    # the row the mock answers is the value this run wrote, given back whole: it
    # unserializes as the client's own
    assert replayed == recorded, [o.explanation for o in outputs if hasattr(o, "explanation")]


# ---------------------------------------------------------------- found by review


def _php_session(code: str) -> bytes:
    return php(
        'ob_start(); ini_set("session.use_cookies", "0"); session_start();'
        f" {code} $s = session_encode(); ob_end_clean(); echo $s;"
    )


def test_php_values_that_are_not_utf8_are_redacted_in_redis() -> None:
    from devbox.wire.redis.store import redact_reply

    data = php(
        'echo serialize(["password" => "hunter2-Secret", "email" => "ada@example.com",'
        ' "salt" => chr(255) . chr(0)]);'
    )
    tag, red = redact_reply(("bulk", data), default_redactor())
    assert tag == "bulk" and isinstance(red, bytes)
    assert b"hunter2-Secret" not in red and b"ada@example.com" not in red
    assert b's:2:"\xff\x00";' in red  # the binary string kept


def test_sessions_whose_keys_hold_any_bytes_but_a_bar(tmp_path: Path) -> None:
    data = _php_session(
        '$_SESSION["user:42"] = 1; $_SESSION["a:b"] = 2; $_SESSION["my key"] = "x";'
        ' $_SESSION["x;y{z}"] = 3; $_SESSION["password"] = "hunter2-Secret";'
    )
    assert serialized.mapped(data, identity) == data
    red = serialized.mapped(data, serialized.text_leaf(default_redactor()))
    assert red is not None and b"hunter2-Secret" not in red
    got = _decoded_session(tmp_path, red)
    assert got[0] is True and got[1]["user:42"] == 1 and got[1]["x;y{z}"] == 3


def test_ruby_symbols_with_their_encoding() -> None:
    data = ruby(
        "# encoding: utf-8\n"
        'S = Struct.new(:naïve, :password); class Café; def initialize; @café = "x";'
        ' @email = "a@example.com"; @password = "hunter2-Secret"; end; end\n'
        'print Marshal.dump([Café.new, S.new("n", "pw-struct-Secret"), {naïve: 1}])'
    )
    assert serialized.mapped(data, identity) == data
    red = serialized.mapped(data, serialized.text_leaf(default_redactor()))
    assert red is not None
    for secret in (b"hunter2-Secret", b"a@example.com", b"pw-struct-Secret"):
        assert secret not in red
    loaded = ruby(
        "# encoding: utf-8\nS = Struct.new(:naïve, :password); class Café; end\n"
        "v = Marshal.load($stdin.read); print v[1].password",
        red,
    )
    assert loaded.startswith(b"<redacted:secret:")


def test_numbers_and_lists_under_a_name_are_read_too() -> None:
    redact = serialized.text_leaf(default_redactor())
    data = php(
        'echo serialize(["password" => ["hunter2-Secret", "older-Secret-2"],'
        ' "card" => 4111111111111111, "n" => 42]);'
    )
    red = serialized.mapped(data, redact) or b""
    assert b"hunter2-Secret" not in red and b"older-Secret-2" not in red
    assert b"4111111111111111" not in red and b's:1:"n";i:42;' in red
    rb = ruby(
        'print Marshal.dump({"cards" => [4111111111111111, 7], "password" => ["pw-Secret-9"]})'
    )
    red_rb = serialized.mapped(rb, redact)
    assert red_rb is not None and b"pw-Secret-9" not in red_rb
    shown = ruby("print Marshal.load($stdin.read).inspect", red_rb).decode()
    assert "4111111111111111" not in shown and "<redacted:" in shown and ", 7]" in shown


def test_a_deep_marshal_dump_is_still_read() -> None:
    data = ruby(
        'N = Struct.new(:inner); v = {"password" => "hunter2-Secret"};'
        " 100.times { v = N.new(v) }; print Marshal.dump(v)"
    )
    from devbox.wire.redis.store import redact_reply

    _tag, red = redact_reply(("bulk", data), default_redactor())
    assert isinstance(red, bytes) and b"hunter2-Secret" not in red


def test_a_long_string_in_a_marshal_dump_is_redacted_without_error() -> None:
    from devbox.wire.redis.store import redact_args

    data = ruby('print Marshal.dump({"note" => "write to ada@example.com " + "x" * 100})')
    assert data.decode("utf-8")  # text, until a redaction makes a length past 127
    assert "ada@example.com" not in default_redactor()("", data.decode())
    red = redact_args([b"SET", b"k", data], default_redactor())[2]
    assert b"ada@example.com" not in red
    assert b"<redacted:email:" in ruby("print Marshal.load($stdin.read)['note']", red)


def test_a_value_given_back_inside_a_value_serialized_twice(tmp_path: Path) -> None:
    """Laravel keeps a session through its cache: ``serialize()`` of ``serialize()``."""
    from devbox.core.generated import Bindings

    token = secrets.token_hex(16)
    raw = php(f'echo serialize(["cache" => serialize(["api_token" => "{token}"])]);')
    redacted = default_redactor()("", raw.decode()).encode()
    assert token.encode() not in redacted
    bindings = Bindings()
    bindings.learn(raw, redacted)
    back = bindings.back(redacted)
    assert back == raw
