"""``run_replay``: send recorded inbound requests to the service and judge each response.

Theory of operation
-------------------
``pacing.schedule`` yields jobs lazily (so a 100,000-request load run never holds
100,000 jobs). ``concurrency`` workers pull jobs; each worker owns one keep-alive
``Client``. A job whose lane (session/Authorization) is busy on another worker
is parked on that lane, and the worker that owns the lane runs it next: lanes
stay in recorded order and stick to one connection while busy. Parking is
bounded; a worker that would exceed the bound waits for lanes to drain.

Each response is diffed as soon as it arrives (``devbox.core.diff``), handed to
``on_result`` and folded into the counters and latency histogram. Passing
results drop their body at once; in a load run only failures and errors are
kept, so memory stays flat however long the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from devbox.core.diff import DiffRules, ExpectedResponse, request_differences
from devbox.core.model import Exchange, Request, Response
from devbox.core.profile import MatchRules, ReplaySettings
from devbox.errors import UsageError
from devbox.replay.grpc import GrpcCalls, GrpcPrepared
from devbox.replay.http import Client, HttpError, Prepared, parse_target, prepare
from devbox.replay.outbound import JournalReader, OutboundComparer
from devbox.replay.pacing import Job, Pacing, schedule
from devbox.replay.report import ReplayReport, RequestResult
from devbox.replay.stats import LatencyRecorder

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay; every field defaults to the profile's [replay] settings or a plain run."""

    concurrency: int | None = None  # None: settings.concurrency
    speed: float | None = None  # None: as fast as possible; 1.0: as recorded; N: N times faster
    rate: float | None = None  # fixed requests per second
    count: int | None = None  # send this many requests, cycling through the recording
    duration_s: float | None = None  # send for this long, cycling
    copies: int = 1  # each request this many times (load)
    routes: tuple[str, ...] = ()  # replaces settings.routes when given: "GET /orders*"
    timeout_s: float | None = None  # None: settings.timeout_s
    keep: str = (
        "auto"  # results kept in the report: "all" | "failures" | "auto" (failures for load)
    )
    keep_bodies: bool = False  # keep the actual response of passing requests too
    extra_ignore: tuple[str, ...] = ()  # ignore rules on top of settings.ignore
    # outbound check: per-dependency match rules, and a hook to normalize (redact) live calls
    outbound_rules: Mapping[str, MatchRules] = field(default_factory=dict)
    normalize_outbound: Callable[[str, Request], Request] | None = None
    # exchange id -> lane: requests replayed one after another, in recorded order
    ordered_lanes: Mapping[str, str] = field(default_factory=dict)
    # the profile's [record] correlation_header: each request carries it (its recorded
    # value, else the exchange's id) so the mocks answer the calls the service makes while
    # serving it with the calls recorded for it, under any concurrency
    link_header: str | None = None
    # set: the exchanges are recorded gRPC calls (devbox.replay.grpc), sent as gRPC
    grpc: GrpcCalls | None = None

    @property
    def pacing(self) -> Pacing:
        return Pacing(self.speed, self.rate, self.count, self.duration_s, self.copies)


def with_link(ex: Exchange, header: str | None) -> Request:
    """The request to send for ``ex``: with the correlation header when the profile names
    one and the recording did not carry it (its value is then the exchange's id, which is
    its recorded calls' ``parent``)."""
    req = ex.request
    if header is None or req.header(header) is not None:
        return req
    return dataclasses.replace(req, headers=(*req.headers, (header, ex.id)))


def route_matches(patterns: Sequence[str], req: Request) -> bool:
    """``GET /orders*``, ``/items/*`` (any method), ``POST /orders``; globs on the path."""
    if not patterns:
        return True
    for pat in patterns:
        method, _, path = pat.strip().partition(" ")
        if not path:
            method, path = "*", method
        if (method == "*" or method.upper() == req.method) and fnmatch.fnmatchcase(req.path, path):
            return True
    return False


def select(exchanges: Sequence[Exchange], routes: Sequence[str]) -> tuple[list[Exchange], int]:
    """The exchanges to replay (by route) and how many were skipped for having no response."""
    chosen = [ex for ex in exchanges if route_matches(routes, ex.request)]
    replayable = [ex for ex in chosen if ex.response is not None]
    return replayable, len(chosen) - len(replayable)


_PARK_FULL = Job(-1, -1, -1, None, None)


class _Sender(Protocol):
    """A worker's client: ``devbox.replay.http.Client`` or ``devbox.replay.grpc.GrpcClient``."""

    async def send(self, prepared: Any) -> tuple[Response, float]: ...

    def close(self) -> None: ...


class _Run:
    def __init__(
        self,
        items: list[Exchange],
        target: str,
        settings: ReplaySettings,
        options: ReplayOptions,
        on_result: Callable[[RequestResult], None] | None,
        comparer: OutboundComparer | None,
        journal: JournalReader | None,
        cancel: asyncio.Event | None,
    ) -> None:
        self.items = items
        self.target = parse_target(target)
        self.timeout = options.timeout_s or settings.timeout_s
        self.rules = DiffRules.from_settings(settings, options.extra_ignore)
        self.options = options
        self.on_result = on_result
        self.comparer = comparer
        self.journal = journal
        self.cancel = cancel
        pacing = options.pacing
        pacing.validate()
        self.pacing = pacing
        keep = options.keep
        if keep == "auto":
            keep = "failures" if pacing.is_load else "all"
        self.keep_all = keep == "all"
        self.jobs: Iterator[Job] = schedule(items, pacing, options.ordered_lanes)
        self.grpc = options.grpc
        self.prepared: list[Prepared | GrpcPrepared | None] = [None] * len(items)
        self.expected: list[ExpectedResponse | None] = [None] * len(items)
        self.busy: dict[Hashable, deque[Job]] = {}
        self.parked = 0
        self.park_limit = 0
        self.drained = asyncio.Event()
        self.results: list[RequestResult] = []
        self.latency = LatencyRecorder()
        self.passed = self.failed = self.errors = 0
        self.start = 0.0
        self.stopped = False
        self.cancelled = False

    # ------------------------------------------------------------ jobs and lanes

    def _stop_now(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            return True
        d = self.pacing.duration_s
        return d is not None and time.perf_counter() - self.start >= d

    def try_next(self) -> Job | None:
        """The next job without awaiting (the hot path); ``_PARK_FULL`` when it must wait."""
        while True:
            if self.stopped or self._stop_now():
                self.stopped = True
                return None
            if self.parked >= self.park_limit:
                return _PARK_FULL
            job = next(self.jobs, None)
            if job is None:
                self.stopped = True
                return None
            if job.lane is None:
                return job
            queue = self.busy.get(job.lane)
            if queue is None:
                self.busy[job.lane] = deque()
                return job
            queue.append(job)
            self.parked += 1

    async def next_job(self) -> Job | None:
        job = self.try_next()
        while job is _PARK_FULL:
            # too many jobs parked behind busy lanes: wait until a lane moves on
            self.drained.clear()
            await self.drained.wait()
            job = self.try_next()
        return job

    def lane_next(self, job: Job) -> Job | None:
        """After ``job``: the next parked job of its lane (this worker keeps the lane), or None."""
        if job.lane is None:
            return None
        queue = self.busy[job.lane]
        if queue and not self.cancelled:
            self.parked -= 1
            self.drained.set()
            return queue.popleft()
        self.parked -= len(queue)
        del self.busy[job.lane]
        self.drained.set()
        return None

    # ------------------------------------------------------------ sending

    async def worker(self) -> None:
        client: _Sender
        if self.grpc is not None:
            client = self.grpc.client(self.target, self.timeout)
        else:
            client = Client(self.target, self.timeout)
        try:
            job = await self.next_job()
            while job is not None:
                await self.run_job(job, client)
                follow = self.lane_next(job)
                if follow is not None:
                    job = follow
                    continue
                job = self.try_next()
                if job is _PARK_FULL:
                    job = await self.next_job()
        finally:
            client.close()

    def _prepared(self, item: int, ex: Exchange) -> Prepared | GrpcPrepared:
        """The request of ``ex`` ready to send, made once however often it is sent."""
        prepared = self.prepared[item]
        if prepared is None:
            req = with_link(ex, self.options.link_header)
            made = self.grpc.prepare(req) if self.grpc is not None else prepare(req, self.target)
            prepared = self.prepared[item] = made
        return prepared

    async def run_job(self, job: Job, client: _Sender) -> None:
        if job.at is not None:
            delay = self.start + job.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        ex = self.items[job.item]
        prepared = self._prepared(job.item, ex)
        expected = ex.response
        assert expected is not None
        req = ex.request
        try:
            actual, latency = await client.send(prepared)
        except HttpError as exc:
            self.errors += 1
            result = RequestResult(
                job.seq, ex.id, req.method, req.target, None, "error", 0.0,
                expected_status=expected.status, error=str(exc), copy=job.copy,
            )  # fmt: skip
            self._emit(result)
            if self.journal is not None:
                await self._read_journal_quietly()
            return
        self.latency.add(latency)
        compiled = self.expected[job.item]
        if compiled is None:
            compiled = self.expected[job.item] = ExpectedResponse(expected)
        if self.grpc is not None:
            diffs = self.grpc.differences(compiled, actual, self.rules, req.method, req.target)
        else:
            diffs = request_differences(
                compiled, actual, self.rules, req.method, req.target,
                truncated=ex.response_truncated,
            )  # fmt: skip
        if self.comparer is not None and self.journal is not None:
            try:
                calls = await self.journal.read()
            except HttpError as exc:
                raise UsageError(
                    str(exc), hint="is the mock running? (devbox mock / devbox up)"
                ) from None
            diffs = diffs + tuple(self.comparer.compare(ex.id, calls))
        if diffs:
            self.failed += 1
            verdict = "fail"
        else:
            self.passed += 1
            verdict = "pass"
        keep_body = verdict == "fail" or self.options.keep_bodies
        result = RequestResult(
            job.seq, ex.id, req.method, req.target, actual.status, verdict, latency, diffs,
            actual if keep_body else None, expected.status, copy=job.copy,
        )  # fmt: skip
        self._emit(result)

    async def _read_journal_quietly(self) -> None:
        # the calls of a request that errored must not count against the next one
        assert self.journal is not None
        try:
            await self.journal.read()
        except HttpError:
            pass

    def _emit(self, result: RequestResult) -> None:
        if self.keep_all or result.verdict != "pass":
            self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    async def run(self, concurrency: int) -> float:
        self.park_limit = 4 * concurrency + 64
        self.start = time.perf_counter()
        workers = [asyncio.create_task(self.worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return time.perf_counter() - self.start


async def run_replay(
    exchanges: Sequence[Exchange],
    target: str,
    settings: ReplaySettings,
    *,
    options: ReplayOptions | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
    outbound: Sequence[Exchange] = (),
    journals: Mapping[str, str] = _EMPTY,
    cancel: asyncio.Event | None = None,
) -> ReplayReport:
    """Replay ``exchanges`` (recorded inbound) against ``target`` and diff every response.

    ``outbound`` (recorded dependency calls, linked by ``parent``) and ``journals``
    (dependency -> mock base URL) turn on the outbound check, which replays one
    request at a time. ``cancel`` stops sending; requests in flight finish.
    """
    options = options or ReplayOptions()
    items, skipped = select(exchanges, options.routes or settings.routes)
    concurrency = options.concurrency or settings.concurrency
    if concurrency < 1:
        raise UsageError(f"--concurrency {concurrency}: must be at least 1")
    comparer: OutboundComparer | None = None
    journal: JournalReader | None = None
    notes: list[str] = []
    timeout = options.timeout_s or settings.timeout_s
    if journals:
        comparer = OutboundComparer(outbound, options.outbound_rules, options.normalize_outbound)
        if comparer.has_links():
            journal = JournalReader(journals, timeout)
            # attribution of calls to requests needs one request in flight at a time
            concurrency = 1
        else:
            comparer = None
            notes.append("outbound check skipped: no recorded call is linked to an inbound request")
    run = _Run(items, target, settings, options, on_result, comparer, journal, cancel)
    try:
        if journal is not None:
            try:
                await journal.start()
            except HttpError as exc:
                raise UsageError(
                    str(exc), hint="start the mocks first (devbox up / devbox mock)"
                ) from None
        elapsed = await run.run(concurrency)
    finally:
        if journal is not None:
            journal.close()
    results = sorted(run.results, key=lambda r: r.index)
    total = run.passed + run.failed + run.errors
    return ReplayReport(
        results=tuple(results),
        total=total,
        passed=run.passed,
        failed=run.failed,
        errors=run.errors,
        latency=run.latency.snapshot(),
        duration_s=elapsed,
        target=run.target.url,
        skipped=skipped,
        cancelled=run.cancelled,
        results_complete=run.keep_all,
        outbound_checked=journal is not None,
        concurrency=concurrency,
        notes=tuple(notes),
    )
