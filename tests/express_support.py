"""An Express app whose sessions live in a real store (express-session with
connect-pg-simple on node-postgres, or connect-redis on node-redis), driven by fetch: log
in, read the session back twice a little apart (``rolling``: each request touches it),
log out, read again. ``express_flow`` runs it against a database or Redis URL in a fresh
node process and returns what the client saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_MODULES = Path(__file__).resolve().parent.parent / ".devbox-node" / "node_modules"

APP = r"""
const express = require("express");
const session = require("express-session");
STORE_SETUP

async function main() {
  STORE_OPEN
  const app = express();
  app.use(express.json());
  app.use(session({
    store: STORE,
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
  STORE_CLOSE
  console.log(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""

# how each store is made, opened, used and closed
STORES = {
    "pg": (
        'const PgStore = require("connect-pg-simple")(session);\nconst { Pool } = require("pg");',
        "const pool = new Pool({ connectionString: process.env.STORE_URL, max: 1 });",
        'new PgStore({ pool, tableName: "session" })',
        "await pool.end();",
        "connect-pg-simple",
    ),
    "redis": (
        'const RedisStore = require("connect-redis").default;\n'
        'const { createClient } = require("redis");',
        "const client = createClient({ url: process.env.STORE_URL }); await client.connect();",
        'new RedisStore({ client, prefix: "sess:" })',
        "await client.quit();",
        "connect-redis",
    ),
}

# what the client sees when every request finds its session
SEEN = [{"ok": True}, *[{"user": {"id": 7, "name": "ada"}}] * 2, {"out": True}, {"user": None}]


def express_flow(tmp: Path, store: str) -> Callable[[str], Any]:
    """``flow(url)``: the app on ``store`` ("pg" or "redis") at ``url``."""
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs it"
    setup, open_, make, close, package = STORES[store]
    assert (NODE_MODULES / package).is_dir(), f"{package} is missing: scripts/setup installs it"
    script = tmp / f"app-{store}.js"
    script.write_text(
        APP.replace("STORE_SETUP", setup)
        .replace("STORE_OPEN", open_)
        .replace("STORE_CLOSE", close)
        .replace("STORE,", make + ",")
    )

    def flow(url: str) -> Any:
        env = {**os.environ, "STORE_URL": url, "NODE_PATH": str(NODE_MODULES)}
        done = subprocess.run(
            [node, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return flow
