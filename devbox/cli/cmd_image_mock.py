"""``devbox image mock PROFILE``: devbox plus the profile's recordings, as one image."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from devbox.cli import output


def register_mock(isub: Any) -> None:
    """Called by ``cmd_runtime`` under ``devbox image``."""
    m: argparse.ArgumentParser = isub.add_parser(
        "mock",
        help="build the mock image (devbox + the profile's recordings) for Kubernetes or Docker",
        description="Build devbox/PROFILE-mock:DIGEST from the offline base image: devbox "
        "installed from wheels made on this machine, the profile and its recordings under "
        "/srv/devbox. It runs `devbox mock` (and the replay Job of `devbox export k8s`). "
        "Skipped when the tag exists: the tag is a digest of what the image serves.",
    )
    m.add_argument("profile", help="profile name (profiles/NAME.toml) or path")
    m.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.set_defaults(func=run_image_mock)


def run_image_mock(args: argparse.Namespace) -> int:
    from devbox.core.profile import load_profile
    from devbox.k8s.export import image_extras, image_files, mock_image_for, project_path
    from devbox.k8s.image import mock_dockerfile
    from devbox.runtime.mock_image import build_mock_image
    from devbox.runtime.ownership import L_KIND, L_PROFILE

    profile = load_profile(args.profile)
    files = image_files(profile)
    tag = mock_image_for(profile)
    rel = project_path(profile, profile.path)
    extras = image_extras(profile)

    def on_line(line: str) -> None:
        if output.VERBOSE:
            output.err_console().print(f"[dim]{line}[/dim]", markup=False, highlight=False)

    if not args.json:
        output.info(f"building {tag} ({len(files)} files) ...")
    result = build_mock_image(
        tag,
        lambda pip_wheel, build_id: mock_dockerfile(profile.name, rel, pip_wheel, build_id, extras),
        files,
        labels={L_KIND: "mock-image", L_PROFILE: profile.name},
        force=args.force,
        on_line=on_line,
        extras=extras,
    )
    if args.json:
        output.print_json(asdict(result))
    elif result.built:
        output.console().print(
            f"[green]built[/green] {result.image} {result.image_id[7:19]} "
            f"from {result.wheels} wheels in {result.seconds:.0f}s"
        )
    else:
        output.console().print(
            f"[green]ok[/green] {result.image} {result.image_id[7:19]} exists "
            "(its tag names its content; --force rebuilds)"
        )
    return 0
