"""What the pytest fixtures hand out: running mocks and a running sandbox.

No pytest here: the plugin module wires these into fixtures. A fleet is started
once per profile per process (an xdist worker is a process: its own free ports,
nothing written to disk) and every test sees it through a fresh window of
journal sequence numbers, so hits, misses and the journal are the test's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.core.profile import Profile, load_profile
from devbox.errors import NotFoundError, UsageError
from devbox.mock import MockFleet
from devbox.mock.server import MissRecord
from devbox.store import recording_files


def resolve_profile(name: str, root: Path) -> Profile:
    """A profile by name (``profiles/NAME.toml`` under ``root``) or path."""
    path = Path(name)
    if not path.is_absolute() and (path.suffix == ".toml" or "/" in name):
        path = root / path
        return load_profile(path)
    return load_profile(name, root=root)


def on_free_ports(profile: Profile) -> Profile:
    """The profile with every port chosen by the kernel, so parallel runs never collide.

    All the ports are held open together while they are chosen: one ``bind(0)`` after
    another closed socket may get the same port back, and a mock started later on
    port 0 could take the service's port."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(1 + len(profile.dependencies)):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
    deps = tuple(
        dataclasses.replace(d, port=p) for d, p in zip(profile.dependencies, ports[1:], strict=True)
    )
    service = dataclasses.replace(profile.service, port=ports[0])
    return dataclasses.replace(profile, service=service, dependencies=deps)


RECORD_MODES = ("none", "once", "new", "all")


class FleetCache:
    """One started fleet per profile file, for the whole test process.

    ``record`` (as pytest-recording's modes): ``none`` serves the recordings;
    ``once`` records, through the mock's recording mode, the dependencies that have
    no recording yet; ``new`` records whatever misses; ``all`` records everything
    afresh into a side directory that replaces the old recordings when the session
    ends (and only for a dependency that recorded something). Recorded exchanges
    are redacted by the profile's rules, as every recording devbox writes.
    """

    def __init__(self, record: str = "none") -> None:
        self.record = record
        self._fleets: dict[Path, MockFleet] = {}
        # re-recorded dependency: (its recordings directory, the side directory)
        self._swaps: list[tuple[Path, Path]] = []
        self._lock = threading.Lock()

    def get(self, profile: Profile) -> MockFleet:
        key = profile.path.resolve()
        with self._lock:
            fleet = self._fleets.get(key)
            if fleet is None:
                fleet = self._start(profile)
                self._fleets[key] = fleet
            return fleet

    def _start(self, profile: Profile) -> MockFleet:
        recording = {
            d.name
            for d in profile.dependencies
            if self.record in ("new", "all")
            or (self.record == "once" and not recording_files(profile.recordings_dir(d.name)))
        }
        for d in profile.dependencies:
            if d.name in recording and not d.upstream:
                raise UsageError(
                    f"--devbox-record {self.record}: dependency {d.name!r} has no upstream "
                    "to record from",
                    hint=f"set upstream for {d.name} in {profile.path}",
                )
        if self.record == "all":
            profile = self._side_directories(profile, recording)
        fleet = MockFleet(profile, ports={d.name: 0 for d in profile.dependencies})
        fleet.start()
        for name in sorted(recording & set(fleet.ports())):
            fleet.set_mode(name, "record")
        return fleet

    def _side_directories(self, profile: Profile, names: set[str]) -> Profile:
        deps = []
        for d in profile.dependencies:
            if d.name in names:
                home = profile.recordings_dir(d.name)
                home.parent.mkdir(parents=True, exist_ok=True)
                side = Path(tempfile.mkdtemp(prefix=f".{home.name}.rerecord-", dir=home.parent))
                self._swaps.append((home, side))
                d = dataclasses.replace(d, recordings=str(side.relative_to(profile.root)))
            deps.append(d)
        return dataclasses.replace(profile, dependencies=tuple(deps))

    def close(self) -> None:
        with self._lock:
            for fleet in self._fleets.values():
                fleet.stop()
            self._fleets.clear()
            for home, side in self._swaps:
                fresh = recording_files(side)
                if fresh:
                    home.mkdir(parents=True, exist_ok=True)
                    for old in recording_files(home):
                        old.unlink()
                    for f in fresh:
                        f.replace(home / f.name)
                shutil.rmtree(side, ignore_errors=True)
            self._swaps.clear()


@dataclass
class DevboxMocks:
    """The mocks of one profile as one test sees them.

    ``urls``: dependency name -> base URL; ``env``: the variables set for the test
    (the ones `devbox up` gives the service); ``hits()``, ``misses()`` and
    ``journal()`` cover only the requests made during this test.
    """

    profile: Profile
    fleet: MockFleet
    allow_misses: bool = False
    _marks: dict[str, int] = field(default_factory=dict)

    def begin(self) -> None:
        """Start the test's window: sequences from the top, journal counted from here."""
        self.fleet.reset()
        marks = {name: s.seq for name, s in self.fleet.servers.items()}
        marks.update((name, w.seq) for name, w in self.fleet.wire.items())
        self._marks = marks

    @property
    def urls(self) -> dict[str, str]:
        """Dependency -> its address: ``http://...`` for HTTP, the upstream's URL with the
        mock's host and port for Redis (``redis://...``) and Postgres (``postgresql://...``)."""
        return self.fleet.service_urls()

    @property
    def env(self) -> dict[str, str]:
        return self.fleet.urls()

    def url(self, dependency: str) -> str:
        return self.urls[self._names(dependency)[0]]

    def journal(self, dependency: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in self._names(dependency):
            entries = self.fleet.journal(name, after=self._marks.get(name, 0), limit=100_000)
            out += [{"dependency": name, **e} for e in entries["entries"]]
        return out

    def hits(self, dependency: str | None = None) -> int:
        return sum(1 for e in self.journal(dependency) if e["matched"])

    def misses(self, dependency: str | None = None) -> list[MissRecord]:
        out: list[MissRecord] = []
        for name in self._names(dependency):
            mark = self._marks.get(name, 0)
            out += [m for m in self.fleet.misses(name) if m.seq > mark]
        return out

    def miss_report(self) -> str:
        """The misses of this test, each with the mock's explanation (as `devbox explain`)."""
        lines = []
        for name in self._names(None):
            # a miss the profile forwards (passthrough) or the session records is expected
            for m in (m for m in self.misses(name) if m.action not in ("passthrough", "record")):
                # the explanation names the request, the nearest recordings and the hint
                what = m.explanation
                if m.target not in what:  # a Redis or Postgres miss: name the request too
                    what = f"{m.method} {m.target}: {what}"
                lines.append(f"{name}: {what}")
        return "\n".join(lines)

    def _names(self, dependency: str | None) -> list[str]:
        if dependency is not None:
            if dependency not in self.fleet.ports():
                raise NotFoundError(
                    f"profile {self.profile.name!r} has no mocked dependency {dependency!r}",
                    hint="mocks: " + ", ".join(self.fleet.ports()),
                )
            return [dependency]
        return list(self.fleet.ports())


@dataclass
class DevboxSandbox:
    """A running `devbox up --headless`: the service on a free port, its mocks, the engine."""

    profile: Profile
    engine: Any  # devbox.engine.session.Engine

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.profile.service.port}"

    @property
    def fleet(self) -> MockFleet | None:
        fleet: MockFleet | None = self.engine._fleet
        return fleet

    @property
    def env(self) -> Mapping[str, str]:
        return self.fleet.urls() if self.fleet is not None else {}

    def reset_mocks(self) -> None:
        """Recorded sequences from the top, as before every replay of `devbox up`."""
        if self.fleet is not None:
            self.fleet.reset()

    def stop(self) -> None:
        self.engine.stop()


def start_sandbox(profile: Profile, runtime: str = "auto") -> DevboxSandbox:
    from devbox.engine.session import Engine, EngineOptions

    moved = on_free_ports(profile)
    engine = Engine(moved, EngineOptions(runtime=runtime, watch=False))
    engine.start()
    return DevboxSandbox(moved, engine)
