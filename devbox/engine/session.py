"""The engine: one sandbox session of a profile, driven by the CLI and by the dashboard.

Theory of operation
-------------------
``start()`` brings the sandbox up on the caller's thread: reap orphans of dead
sessions, start the mocks, pick and prepare the runtime, start the service with
the mocks' URLs in its environment, wait until it is ready, and run iteration 0
(a replay of the recorded inbound traffic). Then the edit loop runs on the
engine's own thread and event loop until ``stop()``:

    watcher batch ─► plan ─► apply (sync+restart | rebuild | reload) ─► ready
                 ─► replay ─► diff ─► IterationFinished (with the trend)

Iterations are strictly one at a time. A newer batch *cancels* the iteration in
flight: its replay stops sending, its result is dropped (reported as cancelled),
and the paths it had not yet applied are planned again together with the new
ones, so the next result always describes the code now on disk. Blocking work
(Docker, builds, process restarts) runs in worker threads under ``_rt_lock``,
so a cancelled iteration's half-done restart finishes before the next one starts.

Everything the engine learns is an event (``devbox.core.events``); the views
subscribe. The engine never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.core.events import (
    Event,
    IterationFinished,
    IterationStarted,
    Log,
    Problem,
    StageTimed,
    safe_emit,
)
from devbox.core.model import Exchange, Request
from devbox.core.plan import NO_CHANGES, Plan
from devbox.core.profile import Profile, load_profile
from devbox.core.redact import Redactor
from devbox.engine.jobs import Job, merge
from devbox.engine.steps import (
    hand_mocks_over,
    iteration_finished,
    load_recordings,
    replay_inbound,
)
from devbox.engine.views import EngineViews
from devbox.engine.wiring import service_env
from devbox.errors import DevboxError, EngineError
from devbox.mock import MockFleet
from devbox.replay import GrpcCalls, ReplayOptions, ReplayReport, RequestResult
from devbox.runtime import Runtime, reap_orphans, select_runtime

Subscriber = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    runtime: str = "auto"  # auto | docker | process
    watch: bool = True
    # compare the service's calls to its dependencies with the recorded ones; it
    # serialises the replay (one request in flight), so it is off in the edit loop
    check_outbound: bool = False
    replay_options: ReplayOptions = field(default_factory=ReplayOptions)
    session: str | None = None


class Engine(EngineViews):
    """Implements ``devbox.engine.driver.EngineDriver``."""

    def __init__(self, profile: Profile, options: EngineOptions | None = None) -> None:
        self._profile = profile
        self.options = options or EngineOptions()
        self._subscribers: list[Subscriber] = []
        self._fleet: MockFleet | None = None
        self._runtime: Runtime | None = None
        self.runtime_reason = ""
        self._rt_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[Job] | None = None
        self._current: asyncio.Task[None] | None = None
        self._current_cancel: asyncio.Event | None = None
        self._unapplied = NO_CHANGES  # a taken job's plan until it is applied
        self._stopping = threading.Event()
        self._stopped = False
        self._watching = self.options.watch
        # batches that arrived while watching was paused: applied together on resume
        self._held: Job | None = None
        # start() failed (a mock port in use, a failed build): rebuild() tries again
        self._start_failed = False
        self.iteration = -1
        self.last_report: ReplayReport | None = None
        self.last_finished: IterationFinished | None = None
        self._iteration_done = threading.Condition()
        self._redactor = Redactor(profile.redact)
        self._inbound: list[Exchange] = []
        self._outbound: list[Exchange] = []
        self._lanes: dict[str, str] = {}  # inbound id -> replay lane (see sequence_lanes)
        self._grpc: GrpcCalls | None = None  # set when the service serves gRPC
        self.watch_info: str = ""
        self._watcher: Any = None  # devbox.watch.Watcher, imported lazily
        # when iteration 0 (action "start") had the service started and ready
        self._start_marks: tuple[tuple[str, float], ...] = ()

    # ------------------------------------------------------------ driver surface

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def watching(self) -> bool:
        return self._watching

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    @property
    def fleet(self) -> MockFleet | None:
        return self._fleet

    @property
    def settled(self) -> bool:
        """Nothing in flight: no iteration running or queued, and the watcher holds no
        change that is not yet a batch. Then the last result describes the files on disk
        (a save whose event the kernel has not delivered yet is not known to anyone)."""
        current, queue, watcher = self._current, self._queue, self._watcher
        return (
            (current is None or current.done())
            and (queue is None or queue.empty())
            and not (watcher is not None and watcher.pending)
        )

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def emit(self, event: Event) -> None:
        for cb in list(self._subscribers):
            exc = safe_emit(cb, event)
            if exc is not None and not isinstance(event, Log):
                self._log(f"a view failed on {type(event).__name__}: {exc}", "warning")

    def _log(self, text: str, level: str = "info") -> None:
        self.emit(Log(source="devbox", text=text, level=level))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bring the sandbox up and run iteration 0; the loop then runs in the background."""
        try:
            self._start()
        except DevboxError:
            asked_to_stop = self._stopping.is_set()
            self.stop()
            # the user can fix the cause (free the port, fix the Dockerfile) and rebuild
            self._start_failed = not asked_to_stop
            raise
        except BaseException:
            self.stop()
            raise

    def _retry_start(self) -> None:
        """start() again after it failed: everything it had started is already gone."""
        self._start_failed = False
        self._stopped = False
        self._stopping.clear()
        self._fleet = self._runtime = None
        self._loop = self._thread = None
        self._queue = self._current = self._current_cancel = None
        self._unapplied = NO_CHANGES
        self._held = None
        self.iteration = -1
        self.last_report = None
        self._log("starting the sandbox again")
        self.start()

    def _start(self) -> None:
        p = self._profile
        t0 = time.monotonic()
        for what in reap_orphans(p.name, root=p.root):
            # always shown (even by --once and --quiet): the user should know what went
            self._log(f"removed a leftover of a dead session: {what}", "warning")
        self._check_stopping()
        self._load_recordings()
        fleet = MockFleet(p, on_event=self.emit)
        ports = fleet.start()
        self._fleet = fleet
        for name, port in ports.items():
            self._log(f"mock {name} on 127.0.0.1:{port} ({fleet.exchanges()[name]} recorded)")
        self._check_stopping()
        runtime, why = select_runtime(
            p, self.options.runtime, on_event=self.emit, session=self.options.session
        )
        self._runtime = runtime
        self.runtime_reason = why
        self._log(f"runtime: {runtime.kind} ({why})")
        with self._rt_lock:
            runtime.prepare()
            self._check_stopping()
            runtime.start(service_env(p, fleet.host, fleet.ports(), "mock"))
            applied = time.monotonic()
            runtime.wait_ready()
            ready = time.monotonic()
        self._check_stopping()
        self._start_marks = (("applied", applied), ("ready", ready))
        self._start_loop()
        self._submit(Job("start", first_event_at=t0), wait=True)

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise EngineError("stopped while starting")

    def stop(self) -> None:
        """Tear everything down. Idempotent; safe from any thread and from a signal."""
        if self._stopped:
            return
        self._stopped = True
        self._halt_loop()
        # a blocking runtime call in a worker thread finishes before we tear it down
        acquired = self._rt_lock.acquire(timeout=30)
        try:
            if self._runtime is not None:
                try:
                    self._runtime.stop()
                except DevboxError as exc:
                    self.emit(Problem(exc.message, exc.hint))
        finally:
            if acquired:
                self._rt_lock.release()
        if self._fleet is not None:
            self._fleet.stop()
        with self._iteration_done:
            self._iteration_done.notify_all()

    def detach(self) -> str:
        """Leave the sandbox running after devbox exits ("quit, keep running").

        The watcher and the loop stop; the service's container keeps running; the
        mocks, which live in this process, are handed to a detached ``devbox mock`` on
        the same ports. ``devbox down`` (or the next ``up``) removes both. A service run
        by the process runtime ends with devbox, so there the sandbox is torn down and
        the error says so."""
        rt, fleet = self._runtime, self._fleet
        if rt is None or fleet is None or rt.kind != "docker":
            self.stop()
            raise EngineError(
                "the sandbox was torn down: keeping it needs the Docker runtime "
                "(a process-runtime service ends with devbox)",
                hint="run `devbox up --headless` in a terminal of its own to keep one running",
            )
        self._halt_loop()
        with self._rt_lock:  # an iteration's restart in a worker thread finishes first
            rt.keep()  # the container's watchdog would remove it once devbox exits
            ports = fleet.ports()
            fleet.stop()
        p = self._profile
        child, log = hand_mocks_over(p, rt.session, ports)
        self._stopped = True
        with self._iteration_done:
            self._iteration_done.notify_all()
        return (
            f"sandbox kept: {p.service.name} ({rt.describe()}) on http://127.0.0.1:{rt.port}, "
            f"mocks in process {child.pid} (log {log}); `devbox down {p.name}` removes them"
        )

    def _halt_loop(self) -> None:
        """Stop the watcher and any iteration, and wait for the loop thread to end."""
        self._stopping.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._cancel_all)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _cancel_all(self) -> None:
        for task in asyncio.all_tasks():
            task.cancel()

    # ------------------------------------------------------------ the loop thread

    def _start_loop(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._queue = asyncio.Queue()
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._main())
            loop.close()

        self._thread = threading.Thread(target=run, name="devbox-engine", daemon=True)
        self._thread.start()
        ready.wait()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._runner())]
        if self.options.watch:
            tasks.append(asyncio.create_task(self._watch()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    def _submit(self, job: Job, wait: bool = False) -> None:
        """Queue an iteration from any thread; with ``wait``, block until it has a result."""
        loop = self._loop
        if loop is None or self._stopping.is_set():
            if self._start_failed:
                raise EngineError(
                    "the sandbox did not start",
                    hint="fix the cause shown above, then rebuild (b) to start it again",
                )
            raise EngineError("the sandbox is not running")
        # the job runs after whatever is in flight now, so its number is higher
        after = self.iteration
        loop.call_soon_threadsafe(self._enqueue, job)
        if wait:
            self.wait_iteration(after)

    def _enqueue(self, job: Job) -> None:
        assert self._queue is not None
        # a file change supersedes the iteration in flight (its result would describe
        # code that is no longer on disk); an explicit request waits its turn
        if job.action == "batch" and self._current is not None and not self._current.done():
            if self._current_cancel is not None:
                self._current_cancel.set()
            self._current.cancel()
        self._queue.put_nowait(job)

    async def _watch(self) -> None:
        from devbox.watch import Watcher

        try:
            async with Watcher.for_profile(
                self._profile, on_notice=lambda s: self._log(s, "warning")
            ) as watcher:
                self._watcher = watcher
                info = watcher.armed_info
                if info is not None:
                    self.watch_info = info.summary()
                    self._log(f"watching: {self.watch_info}")
                async for batch in watcher:
                    plan = batch.plan if batch.plan is not None else watcher.plan(batch)
                    job = Job("batch", plan, batch.first_event_at)
                    if not self._watching:
                        # paused: nothing runs now, but the edit is owed (resume applies it)
                        self._held = job if self._held is None else merge(self._held, job)
                        if plan.changed:
                            self._log(f"watching paused: held {', '.join(plan.changed)}")
                        continue
                    self._enqueue(job)
        except DevboxError as exc:
            self.emit(Problem(f"file watching stopped: {exc.message}", exc.hint))

    async def _runner(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            # coalesce everything queued meanwhile into one iteration on the newest state
            while not self._queue.empty():
                job = merge(job, self._queue.get_nowait())
            if self._unapplied.steps:
                job = merge(Job("batch", self._unapplied, job.first_event_at), job)
            # until applied, the job's changes are owed: a newer batch may cancel the task
            # before its first step (even before it starts running) and must inherit them
            self._unapplied = job.plan
            self._current_cancel = asyncio.Event()
            self._current = asyncio.create_task(self._iterate(job, self._current_cancel))
            try:
                await self._current
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    raise
            except DevboxError as exc:
                self.emit(Problem(exc.message, exc.hint, getattr(exc, "logs", ())))
                self._finish_failed(job)

    def _finish_failed(self, job: Job) -> None:
        ev = IterationFinished(self.iteration, job.action, 0, 0, 0)
        self._finished(ev)

    def _finished(self, ev: IterationFinished) -> None:
        # the engine's state first, then the views: a view that sees the event and asks
        # the engine finds it (the dashboard showed "iteration 1" while ``last_finished``
        # was still iteration 0). Under the condition, so ``wait_iteration`` returns only
        # once every view has had it; views never block (the dashboard queues events).
        with self._iteration_done:
            self.last_finished = ev
            self.emit(ev)
            self._iteration_done.notify_all()

    # ------------------------------------------------------------ one iteration

    async def _iterate(self, job: Job, cancel: asyncio.Event) -> None:
        self.iteration += 1
        n = self.iteration
        t0 = job.first_event_at
        stages: list[tuple[str, float]] = []

        def stage(name: str) -> None:
            ms = (time.monotonic() - t0) * 1000
            stages.append((name, ms))
            self.emit(StageTimed(n, name, ms))

        plan = job.plan  # the watcher's: decided once, when the batch was made
        action = plan.action if job.action == "batch" else job.action
        changed = plan.changed if job.action == "batch" else ()
        if job.action == "batch" and action == "nothing":
            self.iteration -= 1  # nothing to do is not an iteration
            self._unapplied = NO_CHANGES
            return
        reason = plan.reason if job.action == "batch" else ""
        self.emit(IterationStarted(n, changed, action, reason))
        if action == "start":
            # iteration 0 began when `up` did: mocks, build, start and ready are its stages
            for name, at in (("event", t0), *self._start_marks):
                ms = (at - t0) * 1000
                stages.append((name, ms))
                self.emit(StageTimed(n, name, ms))
        else:
            stage("event")
        try:
            await self._apply(action, plan)
        except asyncio.CancelledError:
            self._finished(IterationFinished(n, action, 0, 0, 0, cancelled=True))
            raise
        self._unapplied = NO_CHANGES
        if action != "start":  # iteration 0's "applied" is when `up` started the service
            stage("applied")
        if action in ("sync+restart", "rebuild", "restart", "reload-profile"):
            await self._blocking(self._wait_ready)
            stage("ready")
        results: list[RequestResult] = []
        try:
            report = await self._replay(n, cancel, results)
        except asyncio.CancelledError:
            self._finished(IterationFinished(n, action, 0, 0, 0, cancelled=True))
            raise
        stage("replayed")
        # a newer batch arrived meanwhile (``_enqueue`` set ``cancel``): whatever this
        # replay saw may be code no longer on disk, and the next iteration describes it
        if report.cancelled or cancel.is_set():
            self._finished(IterationFinished(n, action, 0, 0, 0, cancelled=True))
            return
        trend = report.trend(self.last_report)
        self.last_report = report
        stage("diffed")
        self._finished(iteration_finished(n, action, report, trend, stages))

    async def _blocking(self, fn: Callable[[], Any]) -> Any:
        def locked() -> Any:
            with self._rt_lock:
                if self._stopping.is_set():
                    raise EngineError("the sandbox is stopping")
                return fn()

        return await asyncio.to_thread(locked)

    def _wait_ready(self) -> float:
        assert self._runtime is not None
        return self._runtime.wait_ready()

    async def _apply(self, action: str, plan: Plan) -> None:
        """Run every action the batch needs (not just the strongest), profile first."""
        if plan.needs("reload-profile"):
            recreated = await self._reload_profile()
            if recreated:
                return  # a new service from the current tree: nothing left to sync
        rt = self._runtime
        assert rt is not None
        if action == "rebuild" or plan.needs("rebuild"):
            await self._blocking(rt.rebuild)
        elif action in ("sync+restart", "restart") or plan.needs("sync+restart"):
            paths = plan.sync_paths
            if paths:
                await self._blocking(lambda: rt.sync(paths))
            await self._blocking(rt.restart)
        if plan.needs("reload-mocks"):
            await self._blocking(self._reload_recordings)

    def _reload_recordings(self) -> None:
        self._load_recordings()
        if self._fleet is not None:
            self._fleet.reload()

    def _load_recordings(self) -> None:
        self._inbound, self._outbound, self._lanes, self._grpc = load_recordings(self._profile)

    async def _reload_profile(self) -> bool:
        """Re-read the profile; recreate only what changed. An invalid edit keeps the old one.

        True when the service was recreated."""
        try:
            new = load_profile(self._profile.path)
        except DevboxError as exc:
            self.emit(Problem(f"profile not reloaded: {exc.one_line()}", exc.hint))
            return False
        old = self._profile
        self._profile = new
        self._redactor = Redactor(new.redact)
        if self._watcher is not None:
            await self._watcher.reconfigure(new)
        if new.dependencies != old.dependencies or new.mocks != old.mocks:
            await self._blocking(self._restart_mocks)
        recreated = new.service != old.service
        if recreated:
            await self._blocking(self._recreate_runtime)
        self._log("profile reloaded" + (": service recreated" if recreated else ""))
        return recreated

    def _restart_mocks(self) -> None:
        if self._fleet is not None:
            self._fleet.stop()
        fleet = MockFleet(self._profile, on_event=self.emit)
        fleet.start()
        self._fleet = fleet
        self._load_recordings()

    def _recreate_runtime(self) -> None:
        assert self._fleet is not None
        if self._runtime is not None:
            self._runtime.stop()
        runtime, why = select_runtime(
            self._profile, self.options.runtime, on_event=self.emit, session=self.options.session
        )
        self._runtime, self.runtime_reason = runtime, why
        runtime.prepare()
        fleet = self._fleet
        runtime.start(service_env(self._profile, fleet.host, fleet.ports(), "mock"))

    async def _replay(
        self, n: int, cancel: asyncio.Event, results: list[RequestResult]
    ) -> ReplayReport:
        rt = self._runtime
        assert rt is not None and self._fleet is not None
        target = f"http://127.0.0.1:{rt.port}"

        # every replay starts the recorded sequences (n-th call, n-th response) afresh
        await asyncio.to_thread(self._fleet.reset)
        return await replay_inbound(
            n,
            target,
            self._profile,
            inbound=self._inbound,
            outbound=self._outbound,
            lanes=self._lanes,
            grpc=self._grpc,
            base_options=self.options.replay_options,
            ports=self._fleet.ports() if self.options.check_outbound else None,
            last_report=self.last_report,
            normalize=self._normalize_outbound,
            emit=self.emit,
            cancel=cancel,
            results=results,
        )

    def _normalize_outbound(self, dependency: str, req: Request) -> Request:
        return self._redactor.request(req)

    # ------------------------------------------------------------ actions from views

    def replay_now(self) -> None:
        self._submit(Job("replay"), wait=True)

    def restart(self) -> None:
        if self._start_failed:
            self._retry_start()
            return
        self._submit(Job("restart"), wait=True)

    def rebuild(self) -> None:
        if self._start_failed:
            self._retry_start()  # the whole start is the rebuild (mocks, image, service)
            return
        self._submit(Job("rebuild"), wait=True)
