"""The pure parts of ``devbox init``: Dockerfile and Compose facts, proposals, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox.core.profile import parse_profile
from devbox.errors import ConfigError
from devbox.init.compose import interpolate, parse_compose
from devbox.init.dockerfile import host_command, logical_lines, parse_dockerfile, substitute
from devbox.init.render import render_profile, toml_str
from devbox.init.scaffold import Answers, RepoFacts, propose, slug


def test_logical_lines_continuations_comments_and_escape_directive() -> None:
    text = "# escape=`\nFROM x\nRUN a `\n  # dropped\n  b\nEXPOSE 1\n"
    assert logical_lines(text) == ["FROM x", "RUN a b", "EXPOSE 1"]
    assert logical_lines("FROM x\nRUN a \\\n\n  b\n") == ["FROM x", "RUN a b"]


def test_substitute() -> None:
    v = {"A": "1", "E": ""}
    assert substitute("$A ${A} ${B:-d} ${E:-d} ${E-d} ${A:+x} ${B:+x}", v) == "1 1 d d  x "


def test_final_stage_wins_and_inherits_from_a_named_stage() -> None:
    facts = parse_dockerfile(
        'FROM a AS base\nEXPOSE 1000\nWORKDIR /w\nCMD ["srv"]\n'
        "FROM b AS other\nEXPOSE 2000\n"
        "FROM base\nEXPOSE 3000/udp 3001\n"
    )
    assert facts.expose == (1000, 3001)
    assert facts.command == ("srv",)
    assert facts.workdir == "/w"
    assert parse_dockerfile("# nothing\n") == parse_dockerfile("")


def test_shell_form_and_entrypoint() -> None:
    assert parse_dockerfile("FROM x\nCMD exec gunicorn -b :8000 app:app\n").command == (
        "gunicorn",
        "-b",
        ":8000",
        "app:app",
    )
    assert parse_dockerfile("FROM x\nCMD ./migrate && ./serve\n").command == (
        "sh",
        "-c",
        "./migrate && ./serve",
    )
    f = parse_dockerfile('FROM x\nENTRYPOINT ["/entry.sh"]\nCMD ["serve", "--fast"]\n')
    assert f.command == ("/entry.sh", "serve", "--fast")
    assert f.entrypoint == ("/entry.sh",)
    # broken JSON is shell form, as Docker treats it: sh splits it like this
    assert parse_dockerfile('FROM x\nCMD ["a", b]\n').command == ("[a,", "b]")


def test_copy_destination_and_workdir() -> None:
    f = parse_dockerfile("FROM x\nWORKDIR /srv\nWORKDIR app\nCOPY --chown=1 ./ ./\n")
    assert (f.workdir, f.context_dest) == ("/srv/app", "/srv/app")
    f = parse_dockerfile("FROM x\nCOPY --from=b / /\nCOPY . /code\n")
    assert f.context_dest == "/code"


def test_host_command() -> None:
    assert host_command(("/usr/bin/tini", "-g", "--", "python3.12", "/app/main.py"), "/app") == (
        "python3",
        "main.py",
    )
    assert host_command(("/app/bin/server", "--port", "1"), "/app") == (
        "./bin/server",
        "--port",
        "1",
    )
    assert host_command(("dumb-init",)) == ()


def test_compose_ports_environment_hostnames_and_healthcheck() -> None:
    c = parse_compose(
        "services:\n"
        "  a:\n"
        "    build: {context: ./svc/a/, dockerfile: D}\n"
        '    ports: [8080, "9000:9001", "[::1]:7000:7001/tcp", "53:53/udp",'
        ' {target: 6000, published: "6500"}, "3000-3001:4000-4001"]\n'
        '    environment: ["X=1", "BARE", "Y=$${literal}", "Z=${Q:-dq}"]\n'
        "    networks: {n: {aliases: [alpha]}}\n"
        '    healthcheck: {test: ["CMD", "curl", "http://127.0.0.1:8080/ready"]}\n'
        "    command: serve --all\n",
        "compose.yaml",
    )
    (a,) = c.services
    assert a.build_context == "svc/a" and a.dockerfile_path == "svc/a/D"
    assert a.ports == (8080, 9001, 7001, 6000, 4000)
    assert dict(a.published) == {9001: 9000, 7001: 7000, 6000: 6500, 4000: 3000}
    assert [(k, v.value) for k, v in a.environment] == [
        ("X", "1"),
        ("Y", "${literal}"),
        ("Z", "dq"),
    ]
    assert a.hostnames == ("a", "alpha")
    assert a.healthcheck_path == "/ready"
    assert a.command == ("serve", "--all")
    assert interpolate("${NOPE}").unresolved and not interpolate("${N:-x}").unresolved


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("services:\n  a: {b: 1\n  c: 2\n", "compose.yaml:3: invalid YAML"),
        ("version: '3'\n", "compose.yaml: services"),
        ("services:\n  a: 3\n", "services.a"),
    ],
)
def test_compose_errors_name_file_and_line(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_compose(text, "compose.yaml")
    assert where in info.value.one_line()


def test_slug() -> None:
    assert slug("My Service_2!") == "my-service_2"
    assert slug("123") == "service"
    assert slug("9lives-api") == "lives-api"


def test_rendered_profile_always_parses() -> None:
    facts = RepoFacts(dir_name="x", files=("main.py",))
    weird = ("python3", 'quote"and\\back', "tab\tnew\nline", "del\x7f", "ünï")
    p = propose(facts, Answers(name="x", port=1, command=weird))
    profile = parse_profile(render_profile(p), Path("profiles/x.toml"))
    assert profile.service.command == weird
    assert toml_str("a\x7f") == '"a\\u007f"'


def test_listen_ports_from_command_lines_and_variables() -> None:
    from devbox.init.scaffold import command_port, env_port

    assert command_port(("flask", "run", "--port", "9091")) == 9091
    assert command_port(("gunicorn", "-b", "0.0.0.0:8000", "app:app")) == 8000
    assert command_port(("uvicorn", "main:app", "--port=7000")) == 7000
    assert command_port(("python", "manage.py", "runserver", "0.0.0.0:8001")) == 8001
    assert command_port(("sh", "-c", "exec gunicorn --bind :5005 app:app")) == 5005
    assert command_port(("python3", "app.py")) is None
    assert env_port({"FLASK_SERVER_PORT": "9091", "REDIS_PORT": "6379"}) == (
        9091,
        "FLASK_SERVER_PORT",
    )
    assert env_port({"ANALYTICS_PORT": "5001"}, others=("analytics",)) is None
    assert env_port({"PORT": "3000", "HTTP_PORT": "80"}) == (3000, "PORT")


def test_the_target_stage_and_its_stop_signal() -> None:
    text = (
        "FROM debian AS base\nEXPOSE 1\nFROM base AS dev\nSTOPSIGNAL SIGINT\nEXPOSE 2\n"
        'CMD ["dev"]\nFROM base\nCMD ["prod"]\n'
    )
    dev = parse_dockerfile(text, "dev")
    assert (dev.command, dev.expose, dev.stop_signal) == (("dev",), (1, 2), "SIGINT")
    last = parse_dockerfile(text)
    assert (last.command, last.stop_signal) == (("prod",), None)


def test_buildkit_only_syntax_is_found_with_its_line() -> None:
    from devbox.core.buildkit import buildkit_only

    text = (
        "# syntax=docker/dockerfile:1.4\nFROM python:3.12 AS b\n"
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n    pip install -r r.txt\n"
        "COPY --chown=1:1 --link a /a\nCOPY --chmod=644 b /b\n"
        "RUN <<EOF\napk add git\nRUN --mount=inside-the-heredoc\nEOF\n"
        'RUN cat <<-"END" > /f\n  hello\n  END\nRUN echo <<< here-string\n'
        "RUN --network=none true\nCOPY --from=b --chown=0 /x /y\n"
    )
    assert buildkit_only(text) == (
        "line 3: RUN --mount",
        "line 5: COPY --link",
        "line 6: COPY --chmod",
        "line 7: a heredoc (RUN <<EOF)",
        'line 11: a heredoc (RUN <<-"END")',
        "line 15: RUN --network",
    )
    assert buildkit_only("FROM x\nRUN a && b <<x\nCOPY --from=b /a /b\n") == (
        "line 2: a heredoc (RUN <<x)",
    )
    assert buildkit_only("FROM x\nRUN pip install -r r.txt\nCOPY --chown=1 . .\n") == ()


def test_a_dockerfile_only_buildkit_builds_runs_as_a_process() -> None:
    """docker/awesome-compose's Dockerfiles use RUN --mount and heredocs, which devbox's
    builder (the engine's classic builder) refuses: init picks the process runtime and
    says why in the profile; without a command it only says so."""
    text = (
        "FROM python:3.10-alpine AS builder\nWORKDIR /app\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip3 install flask\nCOPY . /app\n"
        'ENTRYPOINT ["python3"]\nCMD ["app.py"]\n'
    )
    facts = RepoFacts(
        dir_name="flask",
        dockerfile="app/Dockerfile",
        dockerfile_facts=parse_dockerfile(text),
        files=("app/Dockerfile", "app/app.py", "app/requirements.txt"),
    )
    p = propose(facts, Answers())
    assert (p.runtime, p.command, p.cwd) == ("process", ("python3", "app.py"), "app")
    rendered = render_profile(p)
    assert "line 3: RUN --mount" in rendered and 'runtime = "process"' in rendered
    profile = parse_profile(rendered, Path("profiles/flask.toml"))
    assert profile.service.runtime == "process"
    assert any("pip install -r app/requirements.txt first" in n for n in p.notes), p.notes
    no_cmd = parse_dockerfile(text.replace('ENTRYPOINT ["python3"]\nCMD ["app.py"]\n', ""))
    bare = propose(
        RepoFacts(dir_name="x", dockerfile="Dockerfile", dockerfile_facts=no_cmd), Answers()
    )
    assert bare.runtime == "auto" and any("--command" in n for n in bare.notes)
    plain = parse_dockerfile(text.replace("--mount=type=cache,target=/root/.cache/pip ", ""))
    assert (
        propose(
            RepoFacts(dir_name="x", dockerfile="Dockerfile", dockerfile_facts=plain), Answers()
        ).runtime
        == "auto"
    )
