"""``devbox image import``: an image builds can use, from a tarball or the local store."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from devbox.cli import output


def register_import(isub: Any) -> None:
    p: argparse.ArgumentParser = isub.add_parser(
        "import",
        help="make an image usable by builds offline: a `docker save` tarball or a local image",
        description=(
            "Load a `docker save` tarball (its own tags), import a file system tarball "
            "(`docker export`) under --tag, or tag an image already in the local store, so "
            "that a Dockerfile's FROM finds it without a registry. See docs/runtime.md."
        ),
        epilog=(
            "examples:\n"
            "  devbox image import python-3.11-slim.tar     from `docker save python:3.11-slim`\n"
            "  devbox image import rootfs.tar --tag python:3.11-slim\n"
            "  devbox image import myregistry/python:3.11 --tag python:3.11-slim\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="TARBALL|IMAGE", help="a tarball path or a local image")
    p.add_argument("--tag", metavar="NAME:TAG", help="also (or only) call it this")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_image_import)


def run_image_import(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from devbox.runtime.image_import import import_image

    result = import_image(args.source, args.tag)
    if args.json:
        output.print_json(asdict(result))
        return 0
    what = {
        "loaded": "loaded",
        "imported": "imported",
        "tagged": "tagged",
        "present": "already in the local store:",
    }[result.how]
    names = ", ".join(escape(n) for n in result.images)
    output.console().print(
        f"[green]{what}[/green] {names} ({result.image_id[7:19]}): "
        f"`FROM {escape(result.images[0])}` now builds without a registry",
        soft_wrap=True,
    )
    return 0
