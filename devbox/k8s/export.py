"""The edge of `devbox export k8s` and `devbox image mock`: read the project, write files.

Everything that decides what the manifests say is in ``manifests.py`` (pure);
this module gathers its inputs (profile, recording files, the service's
environment) and writes the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devbox import __version__
from devbox.core.profile import Profile
from devbox.core.wiring import Endpoint
from devbox.errors import UsageError
from devbox.k8s.image import mock_image_tag
from devbox.k8s.manifests import (
    CONFIGMAP_MAX_BYTES,
    HEADER,
    ExportSpec,
    MockSource,
    default_namespace,
    dns_label,
    mock_address,
    render,
)
from devbox.store import atomic_write_bytes, recording_files


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: str
    namespace: str
    written: tuple[str, ...]
    removed: tuple[str, ...]
    service_image: str
    mock_image: str
    mocks: tuple[str, ...]
    configmaps: tuple[str, ...]  # dependencies whose recordings are mounted from a ConfigMap
    skipped: tuple[str, ...]  # dependencies devbox mock does not serve (yet)


def project_path(profile: Profile, path: Path) -> str:
    try:
        return path.resolve().relative_to(profile.root.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{path} is outside the project root {profile.root}",
            hint="the mock image copies the project layout: keep recordings under the root",
        ) from None


def mocked_dependencies(profile: Profile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(served by `devbox mock`, left out): the same choice the mock fleet makes.

    The fleet serves every kind of the kind registry (``http`` with its HTTP mock, the
    others with ``WireMock``); a kind it does not know is left out. Asked of the
    registry, not of a fleet: building one writes the admin token and loads
    descriptors, and exporting must not need either.
    """
    from devbox.wire import registry

    kinds = set(registry.names())
    served = tuple(d.name for d in profile.dependencies if d.kind in kinds)
    return served, tuple(d.name for d in profile.dependencies if d.name not in served)


def mock_endpoints(profile: Profile) -> dict[str, Endpoint]:
    """Dependency name -> its mock's Service in the namespace, for every mocked one."""
    served, _ = mocked_dependencies(profile)
    return {name: Endpoint(*mock_address(name)) for name in served}


def service_env(profile: Profile, endpoints: Mapping[str, Endpoint]) -> tuple[tuple[str, str], ...]:
    """The service's environment with each dependency NAME's mock at ``endpoints[NAME]``.

    The one place the export asks how `devbox up` wires a service, and it asks the
    code `up` runs: the variable and the URL per dependency (``devbox.core.wiring.wire``,
    which `up` reaches through ``devbox.engine.wiring``: the kind builds the URL, so
    ``postgresql://user@HOST:PORT/db`` and ``redis://HOST:PORT/0`` keep what the
    upstream says), the merge of the profile's env, those URLs and PORT (``merged_env``,
    as both runtimes), and what a container reached through its own address gets on
    top (``bridge_env``, as the Docker runtime on a bridge network: BIND/HOST 0.0.0.0
    unless set). A pod is such a container.

    One difference, deliberate: ``tls=False``. `up` wires an ``https`` upstream as
    ``https`` and mounts devbox's CA into the service; a pod has no such CA (each mock
    pod would make its own), so it is given ``http``, which the same mock port serves.
    """
    from devbox.core.wiring import wire
    from devbox.runtime.base import merged_env
    from devbox.runtime.docker_runtime import bridge_env

    wiring = wire(profile, endpoints, missing="no mock runs for it", tls=False)
    env = bridge_env(merged_env(profile, wiring.env, profile.service.port))
    return tuple(sorted(env.items()))


def image_files(profile: Profile) -> list[tuple[str, Path]]:
    """(path relative to the root, file) of everything the mock image carries."""
    files = [(project_path(profile, profile.path), profile.path)]
    served, _ = mocked_dependencies(profile)
    # every kind's recordings sit in its dependency's directory with the same suffix
    # (HTTP exchange files, the other kinds' JSON streams), so one listing finds both
    dirs = [profile.inbound_dir] + [profile.recordings_dir(name) for name in served]
    for d in dirs:
        files += [(project_path(profile, f), f) for f in recording_files(d)]
    for dep in profile.dependencies:
        if dep.name in served and dep.protos:
            # a gRPC mock reads its descriptors at start, from the project's layout
            files += _protos_files(profile, profile.root / dep.protos)
    return sorted(set(files))


def image_extras(profile: Profile) -> tuple[str, ...]:
    """devbox's optional dependencies the mock image needs: ``grpc`` (protobuf,
    grpcio-tools) when a mocked gRPC dependency names ``protos``, which the mock
    decodes with (and compiles, for a folder of ``.proto`` files) when it starts."""
    served, _ = mocked_dependencies(profile)
    protos = any(d.protos for d in profile.dependencies if d.name in served)
    return ("grpc",) if protos else ()


def _protos_files(profile: Profile, path: Path) -> list[tuple[str, Path]]:
    """A descriptor set file, or every ``.proto`` of a folder (compiled at start)."""
    if path.is_dir():
        return [(project_path(profile, f), f) for f in sorted(path.rglob("*.proto"))]
    return [(project_path(profile, path), path)] if path.is_file() else []


def mock_image_for(profile: Profile) -> str:
    return mock_image_tag(
        profile.name, __version__, ((rel, f.read_bytes()) for rel, f in image_files(profile))
    )


def _configmap_files(directory: Path) -> tuple[tuple[str, str], ...] | None:
    """The files' text when they fit in a ConfigMap, else None."""
    files = recording_files(directory)
    if not files or sum(f.stat().st_size for f in files) > CONFIGMAP_MAX_BYTES:
        return None
    try:
        return tuple((f.name, f.read_text(encoding="utf-8")) for f in files)
    except UnicodeDecodeError:
        return None


def export_spec(
    profile: Profile,
    *,
    namespace: str | None = None,
    image_registry: str | None = None,
    recordings: str = "auto",
) -> ExportSpec:
    from devbox.runtime.docker_image import image_tag

    ns = namespace or default_namespace(profile.name)
    if dns_label(ns) != ns:
        raise UsageError(
            f"--namespace {ns!r} is not a valid Kubernetes name",
            hint=f"lower case letters, digits and dashes, e.g. {dns_label(ns)!r}",
        )
    served, _ = mocked_dependencies(profile)
    names = [dns_label(profile.service.name), *(dns_label(n) for n in served)]
    if len(set(names)) != len(names):
        raise UsageError(
            "the service and its dependencies need distinct Kubernetes names: " + ", ".join(names)
        )
    mocks = []
    for name in served:
        directory = profile.recordings_dir(name)
        cm: tuple[tuple[str, str], ...] | None = None
        if recordings != "image":
            cm = _configmap_files(directory)
            if cm is None and recordings == "configmap":
                raise UsageError(
                    f"{name}: the recordings in {directory} do not fit in a ConfigMap "
                    f"(over {CONFIGMAP_MAX_BYTES // 1024} KiB, or not UTF-8)",
                    hint="use --recordings image (the default picks per dependency)",
                )
        kind = profile.dependency(name).kind
        mocks.append(MockSource(name, project_path(profile, directory), cm or (), kind))
    ready = profile.service.ready
    return ExportSpec(
        profile=profile.name,
        profile_file=project_path(profile, profile.path),
        service=profile.service.name,
        service_port=profile.service.port,
        service_image=image_tag(profile),
        mock_image=mock_image_for(profile),
        env=service_env(profile, mock_endpoints(profile)),
        ready_http=ready.http,
        ready_log=ready.log,
        ready_timeout_s=ready.timeout_s,
        mocks=tuple(mocks),
        namespace=ns,
        image_registry=image_registry,
        service_protocol=profile.service.protocol,
    )


def write_export(spec: ExportSpec, out_dir: Path, skipped: tuple[str, ...] = ()) -> ExportResult:
    """Write the files; drop base files an earlier export generated that are gone now."""
    files = render(spec)
    header = HEADER.format(profile=spec.profile).encode()
    removed = []
    base = out_dir / "base"
    if base.is_dir():
        for old in sorted(base.glob("*.yaml")):
            rel = f"base/{old.name}"
            if rel not in files and old.read_bytes().startswith(header):
                old.unlink()
                removed.append(rel)
    for rel, text in files.items():
        atomic_write_bytes(out_dir / rel, text.encode("utf-8"))
    served = tuple(m.dependency for m in spec.mocks)
    return ExportResult(
        directory=str(out_dir),
        namespace=spec.namespace,
        written=tuple(files),
        removed=tuple(removed),
        service_image=spec.service_image,
        mock_image=spec.mock_image,
        mocks=served,
        configmaps=tuple(m.dependency for m in spec.mocks if m.configmap_files),
        skipped=skipped,
    )
