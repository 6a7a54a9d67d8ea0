"""The process runtime: the service as a local command, from the source tree.

Theory of operation
-------------------
* The command runs without a shell, in ``profile.root / service.cwd``, in a new
  session (so it leads its own process group: restart and stop signal the whole
  group, children included).
* It should die with devbox. Each child gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
  in ``preexec_fn``. The kernel sends that signal when the *thread* that forked
  the child exits, not the process, so every child is forked by one long-lived
  spawner thread: an engine calling ``start`` from a short-lived worker thread
  would otherwise see its service killed when the worker ends. PDEATHSIG reaches
  only the direct child; grandchildren that outlive a crashed devbox are ended
  by ``devbox down`` / ``reap_orphans`` through the session file, which records
  each child's process group id and start time.
* stdout and stderr are merged (their order matters more than their split) and
  pumped line by line to Log events by a thread per child.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import errno
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from devbox.core.events import Problem
from devbox.core.profile import Profile
from devbox.errors import ConfigError, EngineError
from devbox.runtime.base import EventSink, RuntimeBase, merged_env
from devbox.runtime.ownership import Owner, process_start
from devbox.runtime.readiness import wait_until_ready
from devbox.runtime.sessions import Child, SessionFile, kill_group, session_path

PR_SET_PDEATHSIG = 1
_libc: Any = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _prctl: Any = _libc.prctl
except (OSError, AttributeError):  # not Linux: children do not die with devbox, down reaps them
    _prctl = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        # runs in the child between fork and exec: only async-signal-safe-ish work here
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # devbox died before prctl took effect
            os._exit(1)

    return preexec


_PopenFuture = concurrent.futures.Future[subprocess.Popen[bytes]]


class _Spawner:
    """One daemon thread that forks every child (see the module docstring for why)."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[dict[str, Any], _PopenFuture]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, **kw: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="devbox-spawner", daemon=True
                )
                self._thread.start()
        fut: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._q.put((kw, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            kw, fut = self._q.get()
            try:
                fut.set_result(subprocess.Popen(**kw))
            except BaseException as exc:
                fut.set_exception(exc)


_SPAWNER = _Spawner()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Does something listen on host:port? (TIME_WAIT leftovers do not count.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def port_busy_error(port: int) -> EngineError:
    return EngineError(
        f"port {port} is already in use on 127.0.0.1",
        hint=f"something else listens there (`ss -ltnp 'sport = :{port}'` shows what); "
        "`devbox down` ends what devbox left, or change [service] port",
    )


class ProcessRuntime(RuntimeBase):
    kind = "process"

    def __init__(
        self,
        profile: Profile,
        *,
        on_event: EventSink | None = None,
        session: str,
        port: int | None = None,
        stop_grace_s: float = 3.0,
    ) -> None:
        super().__init__(profile, on_event=on_event, session=session, port=port)
        if not self.service.command:
            raise ConfigError(
                "the process runtime needs a command",
                file=str(profile.path),
                field="service.command",
                hint='add command = ["python3", "app.py"] to [service], or use the docker runtime',
            )
        self.cwd = (profile.root / self.service.cwd).resolve()
        self.stop_grace_s = stop_grace_s
        self._env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._child: Child | None = None
        self._pump: threading.Thread | None = None
        self._lock = threading.RLock()
        self._resolved: dict[tuple[str, str], str] = {}
        self._state_file = SessionFile(
            path=session_path(profile.root, session),
            session=session,
            profile=profile.name,
            owner=Owner.me(),
        )

    # ------------------------------------------------------------------ protocol

    def describe(self) -> str:
        return " ".join(self.service.command)

    def prepare(self) -> None:
        self._resolve_command(os.environ.get("PATH", os.defpath))

    def start(self, env: Mapping[str, str]) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._terminate()
            self._env = dict(env)
            if port_in_use(self._port):
                raise port_busy_error(self._port)
            self._spawn()

    def wait_ready(self) -> float:
        t = wait_until_ready(
            self.service.ready,
            self._port,
            log_watch=self.log_watch,
            check_alive=self.check_alive,
            alive_every_s=0.0,  # poll() is a cheap syscall
            tail=self._tail_after_exit,
            name=self.service.name,
            started_at=self._started_at,
        )
        self.set_state("ready")
        return t

    def restart(self) -> None:
        with self._lock:
            self.restarts += 1
            self._terminate()
            self._spawn()

    def sync(self, paths: Sequence[Path]) -> None:
        """The command runs from the source tree: the files are already where it reads them."""

    def rebuild(self) -> None:
        self.restart()

    def stop(self) -> None:
        with self._lock:
            self._terminate()
            self._state_file.children.clear()
            self._state_file.remove()
            if self._state != "stopped":
                self.set_state("stopped")

    # ------------------------------------------------------------------ details

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _resolve_command(self, path_var: str) -> list[str]:
        cmd = list(self.service.command)
        exe = cmd[0]
        cached = self._resolved.get((exe, path_var))
        if cached:
            return [cached, *cmd[1:]]
        if "/" in exe:
            found = str(self.cwd / exe) if not os.path.isabs(exe) else exe
            if not os.access(found, os.X_OK):
                found = ""
        else:
            found = shutil.which(exe, path=path_var) or ""
        if not found:
            raise ConfigError(
                f"command not found: {exe!r} (run in {self.cwd})",
                file=str(self.profile.path),
                field="service.command",
                hint="install it, or give the full path",
            )
        found = self._unshim(found, path_var)
        self._resolved[(exe, path_var)] = found
        cmd[0] = found
        return cmd

    def _unshim(self, exe: str, path_var: str) -> str:
        """pyenv/asdf shims are shell scripts that pick the real program on every start
        (100-500 ms each: most of a restart). Ask the manager once, here, in the service's
        directory (where .python-version and .tool-versions apply)."""
        parts = Path(exe).parts
        if len(parts) < 3 or parts[-2] != "shims":
            return exe
        manager = {".pyenv": "pyenv", ".asdf": "asdf"}.get(parts[-3])
        tool = (
            shutil.which(manager, path=path_var + os.pathsep + str(Path(*parts[:-2], "bin")))
            if manager
            else None
        )
        if tool is None:
            return exe
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [tool, "which", parts[-1]],
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=10,
                env={**os.environ, "PATH": path_var},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return exe
        real = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if out.returncode == 0 and real and os.access(real, os.X_OK):
            return real
        return exe

    def _spawn(self) -> None:
        # unbuffered: a Python service's output would otherwise arrive in 8 KiB lumps
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **merged_env(self.profile, self._env, self._port),
        }
        cmd = self._resolve_command(env.get("PATH", os.defpath))
        if not self.cwd.is_dir():
            raise ConfigError(
                f"working directory does not exist: {self.cwd}",
                file=str(self.profile.path),
                field="service.cwd",
            )
        self.set_state("starting")
        self._started_at = time.monotonic()
        generation = self.log_watch.reset()
        try:
            proc = _SPAWNER.popen(
                args=cmd,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
                close_fds=True,
            )
        except OSError as exc:
            self.set_state("crashed", f"cannot start: {exc.strerror}")
            raise EngineError(f"cannot start {cmd[0]}: {exc.strerror}") from None
        self._proc = proc
        self._child = Child(pid=proc.pid, start=process_start(proc.pid), command=tuple(cmd))
        self._state_file.children = [self._child]
        self._state_file.save()
        assert proc.stdout is not None
        self._pump = threading.Thread(
            target=self._pump_lines,
            args=(proc.stdout, generation, proc),
            name=f"devbox-log-{self.service.name}",
            daemon=True,
        )
        self._pump.start()

    def _pump_lines(
        self, stream: IO[bytes], generation: int, proc: subprocess.Popen[bytes]
    ) -> None:
        try:
            for raw in iter(stream.readline, b""):
                self.log_line(raw.decode("utf-8", "replace"), generation=generation)
        except (OSError, ValueError):
            pass
        finally:
            stream.close()
        self._ended_under_us(proc)

    def _ended_under_us(self, proc: subprocess.Popen[bytes]) -> None:
        """The service's output ended while it was ready and ours: say it is gone (killed
        by `devbox down` from another terminal, or it crashed between iterations)."""
        try:
            code = proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return  # it closed its output but runs on
        if self._proc is not proc or self._state != "ready":
            return  # a restart or a stop of ours, or wait_ready reports it
        why = _exit_reason(code)
        self.set_state("crashed", why)
        self.emit(
            Problem(
                f"{self.service.name} {why} while devbox was running it",
                hint="`devbox down` from another terminal? the next change or a restart "
                "(r in the dashboard) starts it again",
            )
        )

    def check_alive(self) -> str | None:
        proc = self._proc
        if proc is None:
            return "is not running"
        code = proc.poll()
        if code is None:
            return None
        self._join_pump()
        why = _exit_reason(code)
        if self._state not in ("crashed", "stopped"):
            self.set_state("crashed", why)
        return why

    def _tail_after_exit(self) -> tuple[str, ...]:
        self._join_pump()
        return self.tail()

    def _join_pump(self) -> None:
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(0.5)

    def _terminate(self) -> None:
        proc, child = self._proc, self._child
        self._proc = None
        if proc is None or child is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.Signals[self.service.stop_signal or "SIGTERM"])
            except ProcessLookupError:
                pass
            try:
                proc.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        # what the leader left behind in its group (workers, shells) goes too
        kill_group(child, grace_s=self.stop_grace_s)
        self._join_pump()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
