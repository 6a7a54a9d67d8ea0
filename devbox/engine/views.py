"""The engine's answers to a view between iterations: pause and resume watching (the
edits saved meanwhile are owed), switch a mock's mode, the two file edits (a noise
rule, an accepted response), and waiting for a verdict. A mixin of ``Engine``, which
provides what is declared here."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

from devbox.core.events import IterationFinished
from devbox.core.model import Response
from devbox.core.profile import Profile, load_profile
from devbox.core.redact import Redactor
from devbox.engine.driver import (
    MOCK_MODES,
    add_ignore_rule,
    find_exchange,
    replace_recorded_response,
)
from devbox.engine.jobs import Job
from devbox.errors import EngineError, NotFoundError
from devbox.mock import MockFleet


class EngineViews:
    _profile: Profile
    _fleet: MockFleet | None
    _redactor: Redactor
    _loop: asyncio.AbstractEventLoop | None
    _stopping: threading.Event
    _iteration_done: threading.Condition
    _watching: bool
    _held: Job | None
    last_finished: IterationFinished | None

    def _log(self, text: str, level: str = "info") -> None:
        raise NotImplementedError

    def _enqueue(self, job: Job) -> None:
        raise NotImplementedError

    def _load_recordings(self) -> None:
        raise NotImplementedError

    def set_watching(self, on: bool) -> None:
        self._watching = on
        self._log("watching resumed" if on else "watching paused")
        loop = self._loop
        if on and loop is not None and not self._stopping.is_set():
            loop.call_soon_threadsafe(self._release_held)

    def _release_held(self) -> None:
        """On resume: the edits saved while paused become one iteration now."""
        if not self._watching:
            return  # paused again before this ran: keep holding
        job, self._held = self._held, None
        if job is None or not job.plan.changed:
            return
        self._log(f"applying what changed while paused: {', '.join(job.plan.changed)}")
        # timed from the resume: the pause is the user's, not the loop's
        self._enqueue(replace(job, first_event_at=time.monotonic()))

    def set_mock_mode(self, dependency: str, mode: str) -> None:
        if self._fleet is None:
            raise EngineError("the mocks are not running")
        if mode not in MOCK_MODES:
            from devbox.errors import UsageError

            raise UsageError(f"unknown mock mode {mode!r}", hint="one of " + ", ".join(MOCK_MODES))
        self._profile.dependency(dependency)  # NotFoundError for an unknown name
        self._fleet.set_mode(dependency, mode)
        self._log(f"mock {dependency}: mode {mode}")

    def mark_noise(self, rule: str) -> None:
        if add_ignore_rule(self._profile.path, rule):
            self._log(f"noise rule {rule!r} added to {self._profile.path}")
        self._profile = load_profile(self._profile.path)

    def accept_response(self, exchange_id: str, response: Response) -> None:
        path = self.recording_path(exchange_id)
        if path is None:
            raise NotFoundError(f"no recorded inbound exchange {exchange_id!r}")
        replace_recorded_response(path, exchange_id, self._redactor.response(response))
        self._load_recordings()
        self._log(f"accepted the new response of {exchange_id} into {path}")

    def recording_path(self, exchange_id: str) -> Path | None:
        found = find_exchange(self._profile.inbound_dir, exchange_id)
        return found[0] if found else None

    def wait_iteration(self, after: int, timeout: float | None = None) -> IterationFinished | None:
        """Block until an iteration numbered > ``after`` finishes (or stop / timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._iteration_done:
            while True:
                ev = self.last_finished
                if ev is not None and ev.iteration > after and not ev.cancelled:
                    return ev
                if self._stopping.is_set():
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._iteration_done.wait(timeout=0.5 if left is None else min(left, 0.5))
