"""The Docker runtime: the service built from its Dockerfile and run in a container.

Theory of operation
-------------------
* ``prepare`` builds ``build.context`` with the engine's classic builder through
  the low-level API (``decode=True`` streams JSON chunks: each line becomes a
  BuildProgress event, "Step i/n" gives the progress). A profile with only
  ``image`` uses that local image. Nothing needs a registry: Dockerfiles start
  ``FROM devbox/base:bookworm``, which ``devbox image base`` builds offline.
* ``start`` creates the container with ``init=True`` (a tiny init as PID 1
  forwards SIGTERM, so ``docker restart`` takes ~0.1 s instead of the stop
  timeout), never privileged, labelled with who owns it (see ownership.py).
  Host networking by default: the service and the mocks share 127.0.0.1 and
  ``PORT`` says where to listen. ``network = "bridge"`` publishes the port on
  127.0.0.1 only and points loopback dependency URLs at host.docker.internal.
* The container's config hash (service config + image id + env + network) is a
  label; ``start`` keeps a running container whose hash matches and recreates
  any other.
* Logs: a background thread follows the container's log stream with
  timestamps. The engine ends the stream when the container stops (e.g. in a
  restart); the thread then follows again from the last timestamp it saw,
  dropping lines it already emitted.
* ``sync(paths)`` maps each path from ``build.context`` to ``service.workdir``
  and writes the files into the container's mounted root when devbox may
  (rootfs_sync.py, ~1 ms), else copies them with one ``put_archive`` (~45 ms;
  deletions through one ``exec rm``). ``restart`` is a plain ``docker restart``.
  ``rebuild`` makes a new image and replaces the container.
* A crash of devbox leaves the container running: ``reap_orphans`` (called by
  every ``devbox run``/``up``) and ``devbox down`` remove containers whose owner
  process is gone.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from devbox.core.events import Problem
from devbox.core.profile import Profile
from devbox.errors import ConfigError, EngineError
from devbox.runtime.base import EventSink, merged_env
from devbox.runtime.docker_image import DockerImages, image_tag
from devbox.runtime.docker_logs import LogFollower
from devbox.runtime.engine import api_errors, client
from devbox.runtime.ownership import (
    L_CONFIG_HASH,
    Owner,
    config_hash,
    container_labels,
)
from devbox.runtime.process_runtime import port_busy_error, port_in_use
from devbox.runtime.readiness import wait_until_ready
from devbox.runtime.reaper import Reaper
from devbox.runtime.rootfs_sync import UnsafeTarget, write_files

_LOOPBACK_URL_RE = re.compile(r"^(\w+://)(?:127\.0\.0\.1|localhost|\[::1\])(?=[:/]|$)")
HOST_GATEWAY = "host.docker.internal"


def bridge_env(env: Mapping[str, str]) -> dict[str, str]:
    """Loopback URLs mean the host: inside a bridged container that is host.docker.internal."""
    out = {k: _LOOPBACK_URL_RE.sub(lambda m: m.group(1) + HOST_GATEWAY, v) for k, v in env.items()}
    # a server bound to the container's loopback cannot be reached through a published port
    out.setdefault("BIND", "0.0.0.0")
    out.setdefault("HOST", "0.0.0.0")
    return out


class DockerRuntime(DockerImages):
    kind = "docker"

    def __init__(
        self,
        profile: Profile,
        *,
        on_event: EventSink | None = None,
        session: str,
        port: int | None = None,
        stop_timeout_s: int = 2,
        docker_client: Any = None,
    ) -> None:
        super().__init__(profile, on_event=on_event, session=session, port=port)
        if profile.service.build is None and not profile.service.image:
            raise ConfigError(
                "the docker runtime needs build or image",
                file=str(profile.path),
                field="service",
                hint='add build = { context = "." } to [service], or use --runtime process',
            )
        self._client = docker_client or client(timeout=120)
        self.api: Any = self._client.api
        self.stop_timeout_s = stop_timeout_s
        self.network = profile.service.network
        self.image_id: str | None = None
        self.container_id: str | None = None
        self.container_name = f"devbox-{profile.name}-{profile.service.name}-{session}"
        self._env: dict[str, str] = {}
        self._lock = threading.RLock()
        self._follower: LogFollower | None = None
        self._reaper: Reaper | None = None
        # sync writes into the container's mounted root when it can (see rootfs_sync.py)
        self.fast_sync = os.environ.get("DEVBOX_SYNC", "") != "archive"
        self._merged: Path | None = None
        self.last_sync_path = ""

    # ------------------------------------------------------------------ protocol

    def describe(self) -> str:
        img = image_tag(self.profile)
        short = self.image_id.split(":")[-1][:12] if self.image_id else "not built"
        return f"{img} ({short}, {self.network} network)"

    def prepare(self) -> None:
        with self._lock:
            self.image_id = self._build() if self.service.build else self._local_image()

    def start(self, env: Mapping[str, str]) -> None:
        with self._lock:
            if self.image_id is None:
                self.prepare()
            self._env = dict(env)
            self._ensure_container()

    def wait_ready(self) -> float:
        t = wait_until_ready(
            self.service.ready,
            self._port,
            log_watch=self.log_watch,
            check_alive=self.check_alive,
            alive_every_s=0.1,  # an inspect is an API round trip
            tail=self._engine_tail,
            name=self.service.name,
            started_at=self._started_at,
        )
        self.set_state("ready")
        return t

    def restart(self) -> None:
        with self._lock:
            cid = self._need_container()
            self.restarts += 1
            self.set_state("starting")
            self._started_at = time.monotonic()
            self._new_generation()
            with api_errors("restarting the container"):
                self.api.restart(cid, timeout=self.stop_timeout_s)
            if self._follower is not None:
                self._follower.kick()

    def sync(self, paths: Sequence[Path]) -> None:
        with self._lock:
            cid = self._need_container()
            files, deleted = self._sync_plan(paths)
            if not files and not deleted:
                return
            merged = self._merged_dir()
            if merged is not None:
                try:
                    write_files(merged, files, deleted)
                    self.last_sync_path = "rootfs"
                    return
                except (UnsafeTarget, OSError):
                    self._merged = None  # not again for this container
            self.last_sync_path = "put_archive"
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for src, dest in files:
                    tar.add(str(src), arcname=str(dest).lstrip("/"), filter=_as_root)
            with api_errors("copying files into the container"):
                if files:
                    self.api.put_archive(cid, "/", buf.getvalue())
                if deleted and self._running():
                    ex = self.api.exec_create(cid, ["rm", "-rf", "--", *map(str, deleted)])
                    self.api.exec_start(ex["Id"])

    def _sync_plan(
        self, paths: Sequence[Path]
    ) -> tuple[list[tuple[Path, PurePosixPath]], list[PurePosixPath]]:
        """(host file, container path) to copy, container paths to delete."""
        base = self._sync_base()
        workdir = PurePosixPath(self.service.workdir)
        files: list[tuple[Path, PurePosixPath]] = []
        deleted: list[PurePosixPath] = []
        for raw in paths:
            p = raw if raw.is_absolute() else self.profile.root / raw
            try:
                rel = p.resolve().relative_to(base)
            except ValueError:
                self.devbox_log(f"not synced (outside {base}): {raw}", "warning")
                continue
            dest = workdir / PurePosixPath(rel.as_posix())
            if p.is_dir():
                for sub in sorted(p.rglob("*")):
                    if sub.is_file():
                        files.append((sub, dest / PurePosixPath(sub.relative_to(p).as_posix())))
            elif p.is_file():
                files.append((p, dest))
            elif not p.exists():
                deleted.append(dest)
        return files, deleted

    def _merged_dir(self) -> Path | None:
        """The container's mounted root on this host, when devbox may write there."""
        if not self.fast_sync or os.geteuid() != 0:
            return None
        if self._merged is None:
            info = self._inspect() or {}
            gd = info.get("GraphDriver") or {}
            merged = (gd.get("Data") or {}).get("MergedDir")
            if gd.get("Name") != "overlay2" or not merged or not os.path.isdir(merged):
                self.fast_sync = False  # another host (Docker Desktop, remote) or driver
                return None
            self._merged = Path(merged)
        return self._merged

    def rebuild(self) -> None:
        with self._lock:
            old = self.image_id
            self.image_id = self._build() if self.service.build else self._local_image()
            self.restarts += 1
            self._remove_container()
            self._ensure_container()
            if old and old != self.image_id:
                self._drop_image(old)

    def stop(self) -> None:
        with self._lock:
            self._remove_container()
            if self._state != "stopped":
                self.set_state("stopped")

    # ------------------------------------------------------------------ container

    def _container_env(self) -> dict[str, str]:
        env = merged_env(self.profile, self._env, self._port)
        if self.network == "bridge":
            env = bridge_env(env)
        return env

    def _ensure_container(self) -> None:
        assert self.image_id is not None
        env = self._container_env()
        chash = config_hash(self.service, self.image_id, env, self.network)
        if self.container_id is not None:
            current = self._inspect()
            if (
                current is not None
                and current["Config"]["Labels"].get(L_CONFIG_HASH) == chash
                and current["State"]["Running"]
            ):
                return
            self._remove_container()
        if port_in_use(self._port):
            raise port_busy_error(self._port)
        labels = container_labels(
            root=self.profile.root,
            profile=self.profile.name,
            service=self.service.name,
            session=self._session,
            config_hash=chash,
            owner=Owner.me(),
        )
        hc_args: dict[str, Any] = {"init": True, "privileged": False}
        ports: list[int] | None = None
        if self.network == "bridge":
            hc_args["port_bindings"] = {self._port: ("127.0.0.1", self._port)}
            hc_args["extra_hosts"] = {HOST_GATEWAY: "host-gateway"}
            ports = [self._port]
        else:
            hc_args["network_mode"] = "host"
        self.set_state("starting")
        self._started_at = time.monotonic()
        self._new_generation()
        with api_errors("creating the container"):
            host_config = self.api.create_host_config(**hc_args)
            created = self.api.create_container(
                self.image_id,
                name=self.container_name,
                environment=env,
                labels=labels,
                host_config=host_config,
                ports=ports,
                detach=True,
                stop_timeout=self.stop_timeout_s,
                stop_signal=self.service.stop_signal,
            )
        self.container_id = str(created["Id"])
        # the container dies with this process, even after kill -9 (see reaper.py)
        log = self.profile.root / ".devbox" / "logs" / f"reaper-{self._session}.log"
        self._reaper = Reaper.spawn(self.container_id, log)
        self._merged = None
        self._follower = LogFollower(self, self.container_id)
        try:
            with api_errors("starting the container"):
                self.api.start(self.container_id)
        except EngineError as exc:
            self._remove_container()
            if "address already in use" in exc.message or "already allocated" in exc.message:
                raise port_busy_error(self._port) from None
            raise
        self._follower.start()

    def _new_generation(self) -> None:
        gen = self.log_watch.reset()
        self._gen = (gen, time.time_ns())

    def generation_for(self, ts_ns: int) -> int:
        gen, since = getattr(self, "_gen", (0, 0))
        return gen if ts_ns >= since else -1

    def _need_container(self) -> str:
        if self.container_id is None:
            raise EngineError(f"{self.service.name} is not started", hint="call start() first")
        return self.container_id

    def _inspect(self) -> dict[str, Any] | None:
        import docker.errors

        if self.container_id is None:
            return None
        try:
            return dict(self.api.inspect_container(self.container_id))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(f"inspecting the container: {exc.explanation or exc}") from None

    def _running(self) -> bool:
        info = self._inspect()
        return bool(info and info["State"]["Running"])

    def check_alive(self) -> str | None:
        info = self._inspect()
        if info is None:
            return "container is gone"
        st = info["State"]
        if st.get("Running") or st.get("Restarting") or st.get("Status") == "created":
            return None
        why = f"exited with code {st.get('ExitCode')}"
        if st.get("OOMKilled"):
            why += " (out of memory)"
        if st.get("Error"):
            why += f": {st['Error']}"
        if self._state not in ("crashed", "stopped"):
            self.set_state("crashed", why)
        return why

    def _engine_tail(self) -> tuple[str, ...]:
        if self.container_id is None:
            return self.tail()
        try:
            raw = self.api.logs(self.container_id, tail=20, stdout=True, stderr=True)
        except Exception:
            return self.tail()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return tuple(text.splitlines()[-20:])

    def _remove_container(self) -> None:
        import docker.errors

        cid, follower, reaper = self.container_id, self._follower, self._reaper
        self.container_id, self._follower, self._reaper = None, None, None
        if follower is not None:
            follower.stop()
        if cid is None:
            return
        try:
            self.api.stop(cid, timeout=self.stop_timeout_s)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass
        with api_errors("removing the container"):
            try:
                self.api.remove_container(cid, v=True, force=True)
            except docker.errors.NotFound:
                pass
        if reaper is not None:
            reaper.disarm()  # after the removal: a kill meanwhile still leaves nothing
        if follower is not None:
            follower.join(1.0)

    def keep(self) -> None:
        """The container is to outlive this process ("quit, keep running")."""
        with self._lock:
            reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.disarm()

    def container_vanished(self, cid: str) -> None:
        """The log follower found the container removed by someone else while we ran it."""
        if cid != self.container_id or self._state == "stopped":
            return
        self.set_state("stopped", "container removed from outside devbox")
        self.emit(
            Problem(
                f"the container of {self.service.name} ({self.container_name}) was removed "
                "while devbox was running it",
                hint="`devbox down` or `docker rm` from another terminal? a rebuild (b in "
                "the dashboard) or a new `devbox up` starts a new one",
            )
        )

    def _sync_base(self) -> Path:
        if self.service.build is not None:
            return (self.profile.root / self.service.build.context).resolve()
        return (self.profile.root / self.service.cwd).resolve()

    def logs_since_start(self) -> str:
        """Everything the container printed (for tests and `devbox doctor`)."""
        cid = self._need_container()
        with api_errors("reading logs"):
            raw = self.api.logs(cid, stdout=True, stderr=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # what COPY in a Dockerfile does by default
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
