"""``devbox export k8s PROFILE``: the profile as a Kubernetes preview environment.

It shares the ``export`` command with the HAR export (``devbox export PATH --har
FILE``): ``cmd_import`` registers the command and hands ``export k8s ...``
without ``--har`` to :func:`run_export_k8s`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from devbox.cli import output
from devbox.errors import UsageError

K8S_EPILOG = """\
  devbox export k8s demo -o deploy/demo --namespace preview-my-branch
  devbox export k8s demo --image-registry registry.example.com:5000
  kubectl apply -k deploy/demo                 (docs/kubernetes.md)
"""


def add_k8s_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "profile", nargs="?", metavar="PROFILE", help="with `export k8s`: the profile to export"
    )
    k = parser.add_argument_group("devbox export k8s PROFILE (Kubernetes manifests)")
    k.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        type=Path,
        help="where to write the kustomize tree (default k8s/PROFILE)",
    )
    k.add_argument(
        "--namespace",
        metavar="NS",
        help="the overlay's namespace, e.g. preview-BRANCH (default devbox-PROFILE)",
    )
    k.add_argument(
        "--image-registry",
        metavar="REG",
        help="registry the images are pushed to (the overlay rewrites their names)",
    )
    k.add_argument(
        "--recordings",
        choices=("auto", "image", "configmap"),
        default="auto",
        help="where the mocks' recordings come from (default auto: a ConfigMap "
        "when a dependency's recordings are small, else the mock image)",
    )


def is_k8s(args: argparse.Namespace) -> bool:
    return bool(args.path == "k8s" and args.har is None)


def run_export_k8s(args: argparse.Namespace) -> int:
    from devbox.core.profile import load_profile
    from devbox.k8s.export import export_spec, mocked_dependencies, write_export

    if not args.profile:
        raise UsageError("devbox export k8s needs a PROFILE", hint="devbox export k8s demo")
    profile = load_profile(args.profile)
    spec = export_spec(
        profile,
        namespace=args.namespace,
        image_registry=args.image_registry,
        recordings=args.recordings,
    )
    out_dir: Path = args.output or Path("k8s") / profile.name
    _, skipped = mocked_dependencies(profile)
    result = write_export(spec, out_dir, skipped)
    if args.json:
        output.print_json(asdict(result))
        return 0
    con = output.console()
    con.print(
        f"[green]wrote[/green] {len(result.written)} files to {out_dir} "
        f"(namespace {result.namespace})"
    )
    for rel in result.removed:
        con.print(f"  removed stale {rel}")
    con.print(f"  service image  {result.service_image}  (built by devbox up / devbox run)")
    con.print(f"  mock image     {result.mock_image}  (devbox image mock {profile.name})")
    if result.configmaps:
        con.print("  recordings from ConfigMaps: " + ", ".join(result.configmaps))
    if skipped:
        con.print(
            "[yellow]not mocked[/yellow] (a kind devbox mock does not serve): " + ", ".join(skipped)
        )
    con.print(f"  apply: kubectl apply -k {out_dir}")
    return 0
