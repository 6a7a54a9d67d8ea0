"""Hostile input for `devbox init`'s readers: any text is a value or one ConfigError
naming the file (and line where YAML says it), never a traceback or a hang.

Bounded here (a few seconds); the long run is documented in docs/troubleshooting.md:
DEVBOX_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_init_fuzz.py -q -p no:cacheprovider
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox.errors import ConfigError
from devbox.init.compose import parse_compose
from devbox.init.deps import find
from devbox.init.dockerfile import parse_dockerfile
from devbox.init.render import render_profile
from devbox.init.scaffold import Answers, RepoFacts, propose

EXAMPLES = int(os.environ.get("DEVBOX_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("DEVBOX_FUZZ_EXAMPLES"),
)

_WORDS = st.sampled_from(
    [
        "services",
        "build",
        "target",
        "ports",
        "environment",
        "image",
        "redis",
        "db",
        "web",
        "http://analytics:5001/visit",
        "redis://redis:6379/0",
        "${X}",
        "${X:-y}",
        "8080:80",
        "- ",
        ": ",
        "\n",
        "  ",
        "{",
        "}",
        "[",
        "]",
        "'",
        '"',
        "&a",
        "*a",
        "!!python/object",
        "~",
        "stop_signal",
        "SIGINT",
        "depends_on",
        "healthcheck",
        "command",
        "9091",
        "-1",
        "1e999",
    ]
)
_TEXT = st.one_of(st.text(max_size=300), st.lists(_WORDS, max_size=60).map("".join))
_DOCKER = st.sampled_from(
    [
        "FROM python:3.11-slim AS b",
        "FROM b",
        "EXPOSE $PORT",
        "ENV PORT=9091",
        "ARG X=1",
        'CMD ["python"',
        "CMD python app.py",
        "STOPSIGNAL",
        "WORKDIR ${X:-/app}",
        "COPY . .",
        "HEALTHCHECK CMD curl http://localhost/h",
        "\\",
        "# escape=`",
        "ENTRYPOINT []",
        "`",
    ]
)


@FUZZ
@given(_TEXT)
def test_compose_text_is_a_value_or_one_config_error(text: str) -> None:
    try:
        compose = parse_compose(text, "compose.yaml")
    except ConfigError as exc:
        assert exc.file == "compose.yaml"
        return
    for svc in compose.services:
        find(svc, compose, 8080, ("http",))
        facts = RepoFacts(dir_name="x", compose=compose, service=svc)
        render_profile(propose(facts, Answers()))


@FUZZ
@given(
    st.one_of(st.text(max_size=300), st.lists(_DOCKER, max_size=30).map("\n".join)),
    st.one_of(st.none(), st.sampled_from(["b", "dev"])),
)
def test_dockerfile_text_is_always_a_value(text: str, target: str | None) -> None:
    facts = parse_dockerfile(text, target)
    render_profile(
        propose(RepoFacts(dir_name="x", dockerfile="Dockerfile", dockerfile_facts=facts), Answers())
    )
