"""A scripted ``EngineDriver`` for the dashboard's tests and screenshots.

``FakeEngine`` emits a realistic session of the demo (build, mocks, two replay
iterations with a trend, a mock miss, a crash) and records every call. Its
``mark_noise`` and ``accept_response`` really edit files, with the same helpers
the engine uses, in a temporary copy of the project, so tests can assert that
the dashboard's flows change the right bytes on disk.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devbox.core.diff import DiffRules, diff_responses
from devbox.core.events import (
    BuildProgress,
    Event,
    IterationFinished,
    IterationStarted,
    Log,
    MockMiss,
    MockStats,
    Problem,
    ReplayResult,
    ServiceState,
    StageTimed,
)
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.profile import Profile, load_profile
from devbox.engine.driver import (
    MOCK_MODES,
    add_ignore_rule,
    find_exchange,
    replace_recorded_response,
)
from devbox.errors import NotFoundError, UsageError
from devbox.replay.report import trend_of
from devbox.store import write_recording

ROOT = Path(__file__).resolve().parent.parent
# a fixed clock, so screenshots do not change from run to run (tests pin TZ=UTC)
T0 = 1_764_140_000.0
JSON = (("content-type", "application/json"),)


def _resp(status: int, body: Any) -> Response:
    return Response(status, JSON, json.dumps(body).encode(), reason="OK" if status < 300 else "")


# (id, method, path, query, recorded status, recorded body)
RECORDED: list[tuple[str, str, str, tuple[tuple[str, str], ...], int, Any]] = [
    ("in-0001", "GET", "/healthz", (), 200, {"ok": True}),
    (
        "in-0002",
        "GET",
        "/catalog",
        (),
        200,
        {
            "items": [
                {"sku": "A-1", "name": "Desk lamp", "price": 12.5, "stock": 3},
                {"sku": "B-2", "name": "Notebook", "price": 7.0, "stock": 0},
            ]
        },
    ),
    (
        "in-0003",
        "GET",
        "/items/A-1",
        (),
        200,
        {
            "sku": "A-1",
            "name": "Desk lamp",
            "price": 12.5,
            "stock": 3,
            "checked_at": "2026-11-26T07:30:11Z",
        },
    ),
    (
        "in-0004",
        "GET",
        "/quote",
        (("sku", "A-1"), ("qty", "2")),
        200,
        {
            "sku": "A-1",
            "qty": 2,
            "unit": 12.5,
            "total": 25.0,
            "currency": "EUR",
        },
    ),
    (
        "in-0005",
        "POST",
        "/orders",
        (),
        201,
        {
            "order_id": "ord_8f2k",
            "status": "paid",
            "total": 25.0,
            "created_at": "2026-11-26T07:30:12Z",
            "payment": {"id": "pay_1", "status": "captured"},
        },
    ),
    ("in-0006", "GET", "/payments/pay_1", (), 200, {"id": "pay_1", "amount": 2500}),
]


def recorded_exchanges() -> list[Exchange]:
    out = []
    for i, (eid, method, path, query, status, body) in enumerate(RECORDED):
        out.append(
            Exchange(
                id=eid,
                direction=Direction.INBOUND,
                source="inbound",
                request=Request(method, path, query, (("host", "127.0.0.1:7080"),)),
                response=_resp(status, body),
                timing=Timing(started_at=T0 + i, duration_ms=3.0),
                origin="devbox record",
            )
        )
    return out


def make_project(tmp: Path) -> Path:
    """A copy of the demo profile plus an inbound recording; returns the profile path."""
    (tmp / "profiles").mkdir(parents=True, exist_ok=True)
    profile = tmp / "profiles" / "demo.toml"
    shutil.copy(ROOT / "profiles" / "demo.toml", profile)
    write_recording(
        tmp / "mocks" / "demo" / "inbound" / "recording-1.json",
        "inbound",
        Direction.INBOUND,
        recorded_exchanges(),
        origin="devbox record",
    )
    return profile


def _actual(iteration: int, eid: str, recorded: Response) -> Response:
    """What the 'service' answers in an iteration: noise always, a real change sometimes."""
    body = json.loads(recorded.body)
    if "checked_at" in body:
        body["checked_at"] = f"2026-11-26T08:0{iteration}:00Z"  # noise, ignored by the profile
    if "created_at" in body:
        body["created_at"] = f"2026-11-26T08:0{iteration}:01Z"
        body["order_id"] = f"ord_{iteration}x9q"
    if eid == "in-0004" and iteration == 0:
        body["total"] = 26.0  # a rounding bug, fixed by the edit of iteration 1
    if eid == "in-0003" and iteration == 1:
        body["price"] = 13.0  # the same edit breaks another route
        body["stock"] = 2
    if eid == "in-0002" and iteration == 1:
        body["items"][0]["price"] = 13.0
    return Response(recorded.status, recorded.headers, json.dumps(body).encode())


def iteration_events(
    profile: Profile, n: int, action: str, changed: tuple[str, ...] = ()
) -> list[Event]:
    rules = DiffRules.from_settings(profile.replay)
    events: list[Event] = [IterationStarted(n, changed, action, reason="")]
    passed = failed = 0
    stage_ms = {
        "event": 0.0,
        "applied": 112.0 + n,
        "ready": 298.0 + n,
        "replayed": 541.0 + n,
        "diffed": 553.0 + n,
    }
    for stage in ("event", "applied", "ready"):
        events.append(StageTimed(n, stage, stage_ms[stage]))

    def verdict_of(iteration: int, ex: Exchange) -> str:
        assert ex.response is not None
        actual = _actual(iteration, ex.id, ex.response)
        return "fail" if diff_responses(ex.response, actual, rules) else "pass"

    for i, ex in enumerate(recorded_exchanges()):
        assert ex.response is not None
        actual = _actual(n, ex.id, ex.response)
        diffs = diff_responses(ex.response, actual, rules)
        verdict = "fail" if diffs else "pass"
        # what the engine sends: the replay's trend against the previous iteration
        trend = trend_of(verdict_of(n - 1, ex) if n > 0 else None, verdict)
        passed += verdict == "pass"
        failed += verdict == "fail"
        events.append(
            ReplayResult(
                iteration=n,
                index=i,
                method=ex.request.method,
                target=ex.request.target,
                status=actual.status,
                verdict=verdict,
                latency_ms=2.0 + i * 1.5,
                differences=tuple(d.describe() for d in diffs),
                exchange_id=ex.id,
                # as the engine sends them (engine.steps.replay_result): bodies for
                # failures only, the recorded status always
                recorded=ex.response if verdict != "pass" else None,
                actual=actual if verdict != "pass" else None,
                expected_status=ex.response.status,
                trend=trend,
            )
        )
    for stage in ("replayed", "diffed"):
        events.append(StageTimed(n, stage, stage_ms[stage]))
    events.append(
        IterationFinished(
            n,
            action,
            passed,
            failed,
            0,
            stages=tuple(
                (s, stage_ms[s]) for s in ("event", "applied", "ready", "replayed", "diffed")
            ),
        )
    )
    events.append(Log("devbox", f"iteration {n}: {passed} pass, {failed} fail", at=T0 + 30 + n))
    return events


def startup_events(profile: Profile) -> list[Event]:
    svc = profile.service
    cmd = " ".join(svc.command)
    ev: list[Event] = [
        Log("devbox", "mock payments on 127.0.0.1:7101 (14 recorded)", at=T0),
        Log("devbox", "mock inventory on 127.0.0.1:7102 (62 recorded)", at=T0),
        MockStats("payments", "replay", 7101, 0, 0),
        MockStats("inventory", "replay", 7102, 0, 0),
        ServiceState(svc.name, "process", "building", cmd, svc.port, 0, since=T0),
        BuildProgress(svc.name, "Step 1/3 : FROM python:3.11-slim", 1, 3),
        BuildProgress(svc.name, "Step 2/3 : COPY . /app", 2, 3),
        BuildProgress(svc.name, "Step 3/3 : CMD python3 app.py", 3, 3),
        ServiceState(svc.name, "process", "starting", cmd, svc.port, 0, since=T0 + 1),
        Log(svc.name, f"orders listening on 127.0.0.1:{svc.port}", at=T0 + 2),
        Log(svc.name, "GET /healthz 200", at=T0 + 2),
        ServiceState(svc.name, "process", "ready", cmd, svc.port, 0, since=T0 + 2),
    ]
    ev += iteration_events(profile, 0, "start")
    ev += [
        MockStats("payments", "replay", 7101, 5, 1, "POST /charges"),
        MockStats("inventory", "replay", 7102, 12, 0),
        MockMiss(
            "payments",
            "POST",
            "/charges",
            "no recorded POST /charges matched. Nearest candidates:\n"
            "  1. POST /charges (payments-0003): body $.amount 2500 != 2600\n"
            "  2. POST /charges (payments-0001): body $.amount 1200 != 2600, $.currency",
            at=T0 + 3,
        ),
    ]
    return ev


def second_iteration(profile: Profile) -> list[Event]:
    return [
        Log("devbox", "changed examples/demo/orders/app.py: sync+restart", at=T0 + 40),
        ServiceState(
            profile.service.name,
            "process",
            "ready",
            " ".join(profile.service.command),
            profile.service.port,
            1,
            since=T0 + 41,
        ),
        *iteration_events(profile, 1, "sync+restart", ("examples/demo/orders/app.py",)),
    ]


class FakeEngine:
    """Implements devbox.engine.driver.EngineDriver with a script instead of a sandbox."""

    def __init__(
        self,
        profile_path: Path,
        script: Sequence[Event] | None = None,
        *,
        start_error: Exception | None = None,
        watching: bool = True,
    ) -> None:
        self.profile_path = profile_path
        self._profile = load_profile(profile_path)
        self.script = list(startup_events(self._profile) if script is None else script)
        self.start_error = start_error
        self._watching = watching
        self.calls: list[tuple[Any, ...]] = []
        self.subscribers: list[Callable[[Event], None]] = []
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.on_replay: Callable[[], None] | None = None

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def watching(self) -> bool:
        return self._watching

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self.subscribers.append(callback)

    def emit(self, *events: Event) -> None:
        for ev in events:
            for cb in self.subscribers:
                cb(ev)

    def start(self) -> None:
        self.calls.append(("start",))
        try:
            self.emit(*self.script)
            if self.start_error is not None:
                raise self.start_error
        finally:
            self.started.set()

    def stop(self) -> None:
        self.calls.append(("stop",))
        self.stopped.set()

    def detach(self) -> str:
        self.calls.append(("detach",))
        return "sandbox kept (fake)"

    def replay_now(self) -> None:
        self.calls.append(("replay_now",))
        if self.on_replay is not None:
            self.on_replay()

    def rebuild(self) -> None:
        self.calls.append(("rebuild",))

    def restart(self) -> None:
        self.calls.append(("restart",))

    def set_watching(self, on: bool) -> None:
        self.calls.append(("set_watching", on))
        self._watching = on

    def set_mock_mode(self, dependency: str, mode: str) -> None:
        self._profile.dependency(dependency)
        if mode not in MOCK_MODES:
            raise UsageError(f"unknown mock mode {mode!r}")
        self.calls.append(("set_mock_mode", dependency, mode))

    def mark_noise(self, rule: str) -> None:
        add_ignore_rule(self.profile_path, rule)
        self._profile = load_profile(self.profile_path)
        # recorded once done, so a test that waits for the call sees the file written
        self.calls.append(("mark_noise", rule))

    def accept_response(self, exchange_id: str, response: Response) -> None:
        path = self.recording_path(exchange_id)
        if path is None:
            raise NotFoundError(f"no recorded inbound exchange {exchange_id!r}")
        replace_recorded_response(path, exchange_id, response)
        self.calls.append(("accept_response", exchange_id, response))

    def recording_path(self, exchange_id: str) -> Path | None:
        found = find_exchange(self._profile.inbound_dir, exchange_id)
        return found[0] if found else None

    def problem(self, message: str, hint: str | None = None) -> None:
        self.emit(Problem(message, hint, at=T0 + 50))
