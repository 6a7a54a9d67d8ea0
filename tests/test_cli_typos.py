"""Mistyped commands and options: a suggestion, under the usage of the command given."""

from __future__ import annotations

import pytest

from devbox.cli.main import main


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert "did you mean 'record'?" in _error(capsys, "recrod", "demo")
    assert "did you mean 'show'?" in _error(capsys, "traffic", "sho")


def test_an_unknown_option_is_reported_under_its_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _error(capsys, "up", "demo", "--onse")
    assert err.startswith("usage: devbox up ")
    assert "devbox up: error: unrecognized arguments: --onse; did you mean --once?" in err
    err = _error(capsys, "image", "import", "x", "--tga", "y")
    assert "devbox image import: error:" in err and "did you mean --tag?" in err
