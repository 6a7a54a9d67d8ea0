"""``devbox doctor``: what this machine needs to run devbox, checked, with how to fix it."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.core.profile import Profile

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_WATCHES = 65536
MIN_INSTANCES = 128


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def check_inotify() -> list[Check]:
    out = []
    for key, minimum in (("max_user_watches", MIN_WATCHES), ("max_user_instances", MIN_INSTANCES)):
        value = _read_int(f"/proc/sys/fs/inotify/{key}")
        name = f"inotify {key}"
        if value is None:
            out.append(Check(name, WARN, "not readable (not Linux?): file watching polls instead"))
        elif value < minimum:
            out.append(
                Check(
                    name,
                    WARN,
                    f"{value} (below {minimum}: large trees fall back to polling)",
                    f"sysctl -w fs.inotify.{key}="
                    f"{max(minimum, 524288 if 'watches' in key else 512)} "
                    f"(persist it in /etc/sysctl.d/90-devbox.conf)",
                )
            )
        else:
            out.append(Check(name, OK, str(value)))
    return out


def check_docker(profile: Profile | None) -> tuple[list[Check], Any]:
    from devbox.runtime.base_image import BASE_IMAGE, base_image_id, find_debootstrap
    from devbox.runtime.engine import client, engine_address, why_no_engine

    out: list[Check] = []
    why = why_no_engine(timeout=3.0)
    api = None
    needs_docker = profile is not None and profile.service.runtime == "docker"
    if why is not None:
        out.append(
            Check(
                "docker engine",
                FAIL if needs_docker else WARN,
                f"no engine answered at {engine_address()}: {why}"
                + ("" if needs_docker else " (services run as local processes)"),
                "start it: as root, bash scripts/setup (or dockerd &); or use --runtime process",
            )
        )
    else:
        dc = client(timeout=10)
        api = dc.api
        v = api.version()
        detail = f"Docker {v.get('Version')} (API {v.get('ApiVersion')}) at {engine_address()}"
        out.append(Check("docker engine", OK, detail))
        image_id = base_image_id(dc)
        if image_id is None:
            out.append(
                Check(
                    "base image",
                    WARN,
                    f"{BASE_IMAGE} is missing (the demo's Dockerfile starts FROM it)",
                    "devbox image base   (offline, about a minute)",
                )
            )
        else:
            info = api.inspect_image(image_id)
            size = int(info.get("Size") or 0) / 1e6
            built = (info.get("Config") or {}).get("Labels", {}) or {}
            out.append(
                Check(
                    "base image",
                    OK,
                    f"{BASE_IMAGE} {image_id[7:19]}, {size:.0f} MB, "
                    f"built {built.get('devbox.base.built', '?')}",
                )
            )
    deb = find_debootstrap()
    if deb:
        out.append(Check("debootstrap", OK, deb))
    else:
        out.append(
            Check(
                "debootstrap",
                WARN,
                "not installed (needed only to build the base image)",
                "apt-get install debootstrap",
            )
        )
    return out, api


def check_profile(profile: Profile, api: Any) -> list[Check]:
    from devbox.errors import DevboxError
    from devbox.runtime.choose import select_runtime
    from devbox.runtime.docker_image import dockerfile_bases
    from devbox.runtime.process_runtime import port_in_use

    out: list[Check] = []
    ports = [("service " + profile.service.name, profile.service.port)]
    ports += [(f"mock {d.name}", d.port) for d in profile.dependencies if d.port is not None]
    for what, port in ports:
        if port_in_use(port):
            out.append(
                Check(
                    f"port {port}",
                    FAIL,
                    f"in use ({what} needs it)",
                    f"ss -ltnp 'sport = :{port}' shows who holds it; devbox down "
                    "ends what devbox left; or change the port in the profile",
                )
            )
        else:
            out.append(Check(f"port {port}", OK, f"free ({what})"))
    kind = None
    try:
        rt, why = select_runtime(profile)
        kind = rt.kind
        out.append(Check("runtime", OK, f"{rt.kind}: {why}"))
        if rt.kind == "process":
            rt.prepare()  # resolves the command
    except DevboxError as exc:
        out.append(Check("runtime", FAIL, exc.one_line(), exc.hint or ""))
    build = profile.service.build
    if build is not None and kind == "process":
        # nothing is built: the FROM images do not matter (docker/awesome-compose's
        # samples start FROM images no registry-less machine has)
        out.append(Check("dockerfile", OK, "not built: the service runs as a process"))
    elif build is not None:
        df = profile.root / build.context / build.dockerfile
        if not df.is_file():
            out.append(
                Check(
                    "dockerfile",
                    FAIL,
                    f"{df} does not exist",
                    "fix [service] build in " + str(profile.path),
                )
            )
        elif api is not None:
            import docker.errors

            for line, ref in dockerfile_bases(df.read_text(errors="replace")):
                try:
                    api.inspect_image(ref)
                    out.append(Check("FROM " + ref, OK, f"{df.name}:{line}: present locally"))
                except docker.errors.ImageNotFound:
                    from devbox.runtime.base_image import official_runtime

                    fix = (
                        "devbox image base"
                        if ref.startswith("devbox/base")
                        else f"docker pull {ref}, or devbox image import a `docker save` of it"
                    )
                    if official_runtime(ref) is not None:
                        if build.offline_base:
                            out.append(
                                Check(
                                    "FROM " + ref,
                                    OK,
                                    f"{df}:{line}: built from "
                                    "devbox/base + Debian packages (offline_base)",
                                )
                            )
                            continue
                        fix += ", or set offline_base = true in [service] build (docs/runtime.md)"
                    out.append(Check("FROM " + ref, FAIL, f"{df}:{line}: not present locally", fix))
    return out


def check_leftovers(profile: Profile | None, api: Any) -> list[Check]:
    from devbox.runtime.cleanup import devbox_containers, find_project_root, owner_dead
    from devbox.runtime.sessions import iter_sessions

    root = profile.root if profile is not None else find_project_root()
    name = profile.name if profile is not None else None
    n = 0
    live = 0
    for s in iter_sessions(root, name):
        if s.owner.alive() is False:
            n += len(s.children) or 1
        else:
            live += 1
    if api is not None:
        for c in devbox_containers(api, root=root, profile=name):
            if owner_dead(c.get("Labels") or {}):
                n += 1
            else:
                live += 1
    if n:
        return [
            Check(
                "leftovers",
                WARN,
                f"{n} container(s)/process(es) of dead devbox sessions",
                "devbox down" + (f" {name}" if name else ""),
            )
        ]
    return [Check("leftovers", OK, f"none ({live} live)" if live else "none")]


def run_checks(profile: Profile | None = None) -> list[Check]:
    new_enough = sys.version_info >= (3, 11)
    checks = [
        Check(
            "python",
            OK if new_enough else FAIL,
            sys.version.split()[0],
            "" if new_enough else "use Python 3.11+",
        )
    ]
    docker_checks, api = check_docker(profile)
    checks += docker_checks
    checks += check_inotify()
    for tool, why in (("tmux", "terminal tests"), ("wrk", "load benchmarks")):
        found = shutil.which(tool)
        checks.append(
            Check(
                tool,
                OK if found else WARN,
                found or f"not installed ({why} only)",
                "" if found else f"apt-get install {tool}",
            )
        )
    if profile is not None:
        checks += check_profile(profile, api)
    checks += check_leftovers(profile, api)
    return checks
