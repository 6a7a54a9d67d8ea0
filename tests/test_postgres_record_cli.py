"""``devbox record PROFILE -- psql {db} ...`` against a real server: the relay's URL is
expanded into the command, the queries land in mocks/<profile>/db as readable JSON, and
the mock fleet then answers psql from them with the server gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_devbox
from pg_support import running_postgres

from devbox.core.profile import load_profile
from devbox.mock.fleet import MockFleet
from devbox.wire import files

SQL = "SELECT 40 + 2 AS answer, current_database() AS db"


def test_record_expands_the_dependency_url_and_the_fleet_replays_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    with running_postgres() as pg:
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles/pg.toml").write_text(
            'name = "pg"\n[service]\nname = "svc"\nport = 1\ncommand = ["true"]\n'
            "[[dependency]]\n"
            'name = "db"\nkind = "postgres"\n'
            f'upstream = "postgresql://{pg.user}@127.0.0.1:{pg.port}/app?sslmode=prefer"\n'
            'env = "DATABASE_URL"\n'
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "devbox",
                "record",
                "pg",
                "--no-service",
                "--",
                "psql",
                "{db}",
                "-X",
                "-A",
                "-t",
                "-c",
                SQL,
                "-c",
                "SELECT 1 / 0",
            ],
            cwd=tmp_path,
            env={**env, "PGPASSWORD": pg.password},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # psql's own status (1: its last query failed), passed on by devbox record
        assert done.returncode == 1, done.stdout + done.stderr
        assert "42|app" in done.stdout and "division by zero" in done.stderr
    profile = load_profile(tmp_path / "profiles/pg.toml")
    stored = files.read_stored(profile.recordings_dir("db"), "postgres")
    queries = [obj for _, _, obj in stored if obj["type"] == "query"]
    assert [q["sql"] for q in queries] == [SQL, "SELECT 1 / 0"]
    assert queries[0]["results"][0]["rows"] == [["42", "app"]]
    # devbox traffic show reads them as queries: the call, the SQL, the tag or the error
    shown = run_devbox(tmp_path, "traffic", "show", "pg/db", env={**env, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert any(f"CONNECT │ {pg.user}@app │ auth scram-sha-256" in line for line in lines)
    assert any(f"SELECT │ {SQL} │ SELECT 1 │" in line for line in lines), shown.stdout
    assert any("SELECT │ SELECT 1 / 0 │ ERROR 22012: division by zero" in line for line in lines)
    with MockFleet(profile, ports={"db": 0}) as fleet:
        url = fleet.urls()["DATABASE_URL"]
        assert url.startswith("postgresql://devbox@127.0.0.1:") and url.endswith("?sslmode=prefer")
        again = subprocess.run(
            ["psql", url, "-X", "-A", "-t", "-c", SQL],
            env={**env, "PGPASSWORD": "anything"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "42|app"
