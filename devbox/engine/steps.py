"""The engine's steps that need none of its state: loading recordings, replaying them,
handing the mocks to a detached process, and the events one iteration emits.

Kept apart from ``session`` so the ``Engine`` class holds only the loop and its state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from devbox.core.events import Event, IterationFinished, ReplayResult
from devbox.core.model import Exchange, Request, Response
from devbox.core.profile import MatchRules, Profile
from devbox.replay import (
    GrpcCalls,
    ReplayOptions,
    ReplayReport,
    RequestResult,
    recorded_inbound,
    run_replay,
)
from devbox.replay.lanes import linked_calls, recorded_lanes
from devbox.replay.report import Trend, trend_of
from devbox.runtime.detach import spawn_detached, wait_listening
from devbox.runtime.sessions import Child
from devbox.wire import registry


def load_recordings(
    p: Profile,
) -> tuple[list[Exchange], list[Exchange], dict[str, str], GrpcCalls | None]:
    """(inbound exchanges, outbound calls linked to one, replay lane per inbound id, how
    to replay them when the service serves gRPC)."""
    inbound, grpc = recorded_inbound(p)
    calls = linked_calls(p)
    outbound = [e for _, linked in calls.values() for e in linked]
    return inbound, outbound, recorded_lanes(p, calls), grpc


def outbound_checks(
    p: Profile, ports: dict[str, int]
) -> tuple[dict[str, str], dict[str, MatchRules]]:
    """(journal URL per dependency, match rules per dependency) for --check-outbound."""
    journals = {
        d: f"http://127.0.0.1:{port}"
        for d, port in ports.items()
        # only a kind whose mock keeps a journal of linked calls can be checked
        if registry.capabilities(p.dependency(d).kind).linked_calls
    }
    rules = {d.name: d.match for d in p.dependencies}
    return journals, rules


def hand_mocks_over(p: Profile, session: str, ports: dict[str, int]) -> tuple[Child, Path]:
    """Serve the mocks from a detached ``devbox mock`` on the same ports; (child, log)."""
    argv = [sys.executable, "-m", "devbox", "mock", str(p.path)]
    for name, port in ports.items():
        argv += ["--port", f"{name}={port}"]
    log = p.root / ".devbox" / "logs" / f"mocks-{session}.log"
    child = spawn_detached(p.root, p.name, session, argv, log)
    wait_listening(list(ports.values()), child)
    return child, log


async def replay_inbound(
    n: int,
    target: str,
    p: Profile,
    *,
    inbound: list[Exchange],
    outbound: list[Exchange],
    lanes: dict[str, str],
    grpc: GrpcCalls | None = None,
    base_options: ReplayOptions,
    ports: dict[str, int] | None,
    last_report: ReplayReport | None,
    normalize: Callable[[str, Request], Request],
    emit: Callable[[Event], None],
    cancel: asyncio.Event,
    results: list[RequestResult],
) -> ReplayReport:
    """Iteration ``n``'s replay of the recorded inbound traffic against ``target``; each
    result is emitted as it comes. ``ports`` (the mocks') turns on the outbound check."""
    recorded = {e.id: e.response for e in inbound}
    before = last_report.verdict_map() if last_report is not None else {}

    def on_result(r: RequestResult) -> None:
        results.append(r)
        emit(replay_result(n, r, recorded, before))

    journals: dict[str, str] = {}
    rules: dict[str, MatchRules] = {}
    if ports is not None:
        journals, rules = outbound_checks(p, ports)
    options = replace(
        base_options,
        ordered_lanes=lanes,
        outbound_rules=rules,
        link_header=p.record.correlation_header,
        normalize_outbound=normalize if journals else None,
        grpc=grpc,
    )
    return await run_replay(
        inbound,
        target,
        p.replay,
        options=options,
        on_result=on_result,
        outbound=outbound if journals else (),
        journals=journals,
        cancel=cancel,
    )


def replay_result(
    n: int, r: RequestResult, recorded: dict[str, Response | None], before: dict[str, str]
) -> ReplayResult:
    """The event for one replayed request of iteration ``n``."""
    return ReplayResult(
        iteration=n,
        index=r.index,
        method=r.method,
        target=r.target,
        status=r.status,
        verdict=r.verdict,
        latency_ms=r.latency_ms,
        differences=tuple(d.describe() for d in r.differences) or ((r.error,) if r.error else ()),
        exchange_id=r.exchange_id,
        recorded=recorded.get(r.exchange_id) if r.verdict != "pass" else None,
        actual=r.actual,
        expected_status=r.expected_status,
        trend=trend_of(before.get(r.exchange_id), r.verdict),
        details=r.differences,
    )


def iteration_finished(
    n: int,
    action: str,
    report: ReplayReport,
    trend: Trend,
    stages: list[tuple[str, float]],
) -> IterationFinished:
    """The event for a completed iteration: counts, trend by label, stage times."""
    labels = trend.labels
    return IterationFinished(
        iteration=n,
        action=action,
        passed=report.passed,
        failed=report.failed,
        errors=report.errors,
        newly_failing=tuple(labels.get(k, k) for k in trend.newly_failing),
        newly_passing=tuple(labels.get(k, k) for k in trend.newly_passing),
        still_failing=tuple(labels.get(k, k) for k in trend.still_failing),
        stages=tuple(stages),
        report=report,
    )
