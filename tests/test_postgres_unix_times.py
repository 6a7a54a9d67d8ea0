"""A parameter the statement says is a Unix time (``to_timestamp($2)``) stands for any
other (``devbox.wire.postgres.clock_params``).

connect-pg-simple, the usual Postgres session store of Express, reads a session with
``… WHERE sid = $1 AND expire >= to_timestamp($2)``, ``$2`` the second it asks in, and
writes the session's expiry the same way. Replayed, every one of those statements
missed, so every request after a login found no session: the app logged its user out
on the next request. Recorded here from a real server with the real packages (Express 4,
express-session, connect-pg-simple 10, node-postgres), replayed in a fresh process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pg_support import against_mock, as_written, relayed

from devbox.wire.contract import Miss
from devbox.wire.postgres.clock_params import MARK, timeless, unix_time_params
from devbox.wire.postgres.sql import normalise

NODE_MODULES = Path(__file__).resolve().parent.parent / ".devbox-node" / "node_modules"

SESSION_TABLE = (
    'CREATE TABLE "session" ("sid" varchar NOT NULL COLLATE "default", "sess" json NOT NULL,'
    ' "expire" timestamp(6) NOT NULL); ALTER TABLE "session" ADD CONSTRAINT "session_pkey"'
    ' PRIMARY KEY ("sid"); CREATE INDEX "IDX_session_expire" ON "session" ("expire")'
)

APP = r"""
const express = require("express");
const session = require("express-session");
const PgStore = require("connect-pg-simple")(session);
const { Pool } = require("pg");

async function main() {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
  const app = express();
  app.use(express.json());
  app.use(session({
    store: new PgStore({ pool, tableName: "session" }),
    secret: "keyboard cat", resave: false, saveUninitialized: false, rolling: true,
    cookie: { maxAge: 30 * 24 * 3600 * 1000 },
  }));
  app.post("/login", (req, res) => {
    req.session.user = { id: 7, name: req.body.name };
    res.json({ ok: true });
  });
  app.get("/me", (req, res) => res.json({ user: req.session.user || null }));
  app.post("/logout", (req, res) => req.session.destroy(() => res.json({ out: true })));
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.on("listening", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const out = [];
  const login = await fetch(`${base}/login`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "ada" }),
  });
  const cookie = (login.headers.get("set-cookie") || "").split(";")[0];
  out.push(await login.json());
  for (let i = 0; i < 2; i++) {
    // a second apart at most: the reads ask as of different seconds, as in use
    out.push(await (await fetch(`${base}/me`, { headers: { cookie } })).json());
    await new Promise((r) => setTimeout(r, 600));
  }
  const logout = await fetch(`${base}/logout`, { method: "POST", headers: { cookie } });
  out.push(await logout.json());
  out.push(await (await fetch(`${base}/me`, { headers: { cookie } })).json());
  server.close();
  await pool.end();
  console.log(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def test_the_parameters_a_statement_says_are_unix_times() -> None:
    read = 'SELECT sess FROM "session" WHERE sid = $1 AND expire >= to_timestamp($2)'
    assert unix_time_params(normalise(read)) == {2}
    write = (
        'INSERT INTO "session" (sess, expire, sid) SELECT $1, to_timestamp($2), $3'
        " ON CONFLICT (sid) DO UPDATE SET sess=$1, expire=to_timestamp($2) RETURNING sid"
    )
    assert unix_time_params(write) == {2}
    assert unix_time_params("DELETE FROM s WHERE t < TO_TIMESTAMP($1::float8 / 1000)") == {1}
    # a time the statement does not declare is no time: an id stays an id
    for sql in (
        "SELECT * FROM orders WHERE id = $1",
        "SELECT to_timestamp($1, $2)",  # text and a format
        "SELECT to_timestamp($1 + $2)",
        "SELECT to_timestamp(created) FROM t WHERE id = $1",
    ):
        assert unix_time_params(sql) == frozenset(), sql
    assert timeless(read, ("sid-1", "1765170000")) == ("sid-1", MARK)


def _app(tmp: Path) -> Any:
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs it"
    assert (NODE_MODULES / "connect-pg-simple").is_dir(), "scripts/setup installs it"
    script = tmp / "app.js"
    script.write_text(APP)

    def run(url: str) -> Any:
        env = {**os.environ, "DATABASE_URL": url, "NODE_PATH": str(NODE_MODULES)}
        done = subprocess.run(
            [node, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


def test_an_express_session_in_postgres_survives_replay(tmp_path: Path) -> None:
    flow = _app(tmp_path)
    with relayed(SESSION_TABLE) as (_pg, ws, url):
        recorded = flow(url)
        stored = as_written(ws.stored_once(lambda s: sum("to_timestamp" in str(o) for o in s) >= 4))
    want = [{"ok": True}, *[{"user": {"id": 7, "name": "ada"}}] * 2, {"out": True}, {"user": None}]
    assert recorded == want
    # the statements asked with the second they ran in, and the session's expiry
    asked = [o for o in stored if "to_timestamp($2)" in str(o.get("sql"))]
    assert len(asked) >= 3
    replayed, outputs = against_mock(stored, flow)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == want


def test_every_express_session_id_is_redacted_under_its_name() -> None:
    """express-session's ids (uid-safe: 24 random bytes, base64url) under ``sid``: one in
    about 150 did not look random enough (``looks_random``'s entropy bar), went to disk
    whole and never bound on replay, so that run's session missed."""
    import base64
    import random

    from devbox.wire.files import default_redactor

    redact, rng = default_redactor(), random.Random(20261208)
    ids = [base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=") for _ in range(5000)]
    ids.append("YFYrKDEiyXXlOLNhjH-P-rQyaBJnBtrm")  # one looks_random refused
    kept = [v for v in ids if not redact("sid", v).startswith("<redacted:token:")]
    assert kept == []
    assert redact("sid", "42") == "42" and redact("sid", "active") == "active"
