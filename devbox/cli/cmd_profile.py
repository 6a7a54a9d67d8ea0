"""``devbox validate``: check a profile and say exactly where it is wrong."""

from __future__ import annotations

import argparse
from typing import Any

from devbox.cli import output


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check a profile; errors name the file, line and field",
        description="Parse and validate a profile (profiles/NAME.toml or a path).",
    )
    p.add_argument("profile", help="profile name (profiles/NAME.toml) or path to a .toml file")
    p.add_argument("--json", action="store_true", help="print the resolved profile as JSON")
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from devbox.core.profile import load_profile
    from devbox.core.wiring import preview

    profile = load_profile(args.profile)
    environment = preview(profile)
    if args.json:
        data = asdict(profile)
        data["path"] = str(profile.path)
        data["root"] = str(profile.root)
        data["environment"] = environment
        output.print_json(data)
        return 0
    deps = ", ".join(d.name for d in profile.dependencies) or "none"
    con = output.console()
    con.print(
        f"[green]ok[/green] {profile.path}: service [bold]{profile.service.name}[/bold] "
        f"on port {profile.service.port}, dependencies: {deps}"
    )
    if not output.QUIET:
        print_environment(environment)
    return 0


def print_environment(environment: dict[str, str]) -> None:
    """The service's environment under ``devbox up`` (docs/profiles.md says the rule)."""
    from rich.markup import escape

    con = output.console()
    con.print("environment under `devbox up`:", markup=False)
    for k, v in environment.items():
        con.print(f"  {escape(k)}={escape(v)}", soft_wrap=True)
