"""Comparing a recorded gRPC answer with the one the service gives now. Pure.

Both sides are ``Response`` values in the shape ``devbox.wire.grpc.inbound`` gives
them: the grpc-status code as ``status`` and its name as ``reason``, the response
metadata and trailers as headers (``grpc-message`` among them), the response messages
as a JSON list. The status is one difference by name (``status: OK → NOT_FOUND``),
``grpc-message`` is always compared (``header:grpc-message`` ignores it), other
metadata when ``[replay] headers`` names it, and the messages are walked as any JSON
body is: ``$[0].name`` is the first response message's ``name``, so ignore rules,
scoped rules and ``unordered`` work on them unchanged.
"""

from __future__ import annotations

from devbox.core.diff import ExpectedResponse, diff_bodies, diff_headers, diff_json
from devbox.core.diff_types import Difference, DiffRules
from devbox.core.model import Response

MESSAGE = "grpc-message"
_MESSAGE_RULES = DiffRules(headers=(MESSAGE,))


def call_differences(
    expected: ExpectedResponse,
    actual: Response,
    rules: DiffRules,
    method: str,
    target: str,
) -> tuple[Difference, ...]:
    """The differences that count for one replayed call (``request_differences`` for
    gRPC: the rules of the call's route apply)."""
    routed = rules.for_target(method, target)
    recorded = expected.response
    out: list[Difference] = []
    if recorded.status != actual.status:
        out.append(
            Difference(
                "status",
                "status",
                "changed",
                recorded.reason or str(recorded.status),
                actual.reason or str(actual.status),
            )
        )
    if not routed.ignores_header(MESSAGE):
        out.extend(diff_headers(recorded.headers, actual.headers, _MESSAGE_RULES))
    others = tuple(h for h in routed.compared_headers if h != MESSAGE)
    if others:
        out.extend(diff_headers(recorded.headers, actual.headers, DiffRules(headers=others)))
    if recorded.body != actual.body:
        ok, messages = expected.json()
        if ok:
            out.extend(diff_json(messages, ExpectedResponse(actual).json()[1], routed))
        else:  # not written by devbox.wire.grpc.inbound: compared as any body is
            out.extend(diff_bodies(recorded.body, actual.body, routed))
    return tuple(out)
