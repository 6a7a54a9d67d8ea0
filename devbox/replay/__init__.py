"""Replay recorded inbound traffic against the service and judge every response.

The public API (see docs/replay.md):

    report = await run_replay(exchanges, "http://127.0.0.1:8080", profile.replay)
    render_terminal(report, console); to_json(report); to_junit(report)
    violations = evaluate([parse_fail_if("p99 > 250ms")], report)
"""

from __future__ import annotations

from devbox.core.assertions import Assertion, evaluate, parse_fail_if
from devbox.core.diff import Difference, DiffRules, diff_responses
from devbox.replay.export import to_dict, to_json, to_junit
from devbox.replay.grpc import GrpcCalls
from devbox.replay.inbound import recorded_inbound
from devbox.replay.render import render_terminal
from devbox.replay.report import ReplayReport, RequestResult, Trend
from devbox.replay.runner import ReplayOptions, run_replay
from devbox.replay.stats import LatencyStats

__all__ = [
    "Assertion",
    "DiffRules",
    "Difference",
    "GrpcCalls",
    "LatencyStats",
    "ReplayOptions",
    "ReplayReport",
    "RequestResult",
    "Trend",
    "diff_responses",
    "evaluate",
    "parse_fail_if",
    "recorded_inbound",
    "render_terminal",
    "run_replay",
    "to_dict",
    "to_json",
    "to_junit",
]
