"""devbox.core.noise: classification, and rules proposed only for what truly varies."""

from __future__ import annotations

import json
import uuid

import pytest

from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.noise import Observation, classify, duplicate_observations, learn_noise


def resp(body: object, **headers: str) -> Response:
    h = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    return Response(200, (("Content-Type", "application/json"), *h), json.dumps(body).encode())


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["2024-05-01T10:00:00Z", "2024-05-01T10:00:02.123Z"], "timestamp"),
        (["Mon, 06 May 2024 10:00:00 GMT", "Mon, 06 May 2024 10:00:01 GMT"], "timestamp"),
        ([1714557600, 1714557602], "timestamp"),
        ([1714557600123, 1714557602456], "timestamp"),
        ([str(uuid.uuid4()), str(uuid.uuid4())], "uuid"),
        ([uuid.uuid4().hex, uuid.uuid4().hex], "uuid"),
        (
            [
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyIn0.def",
            ],
            "jwt",
        ),
        (["a" * 40, "b" * 40], "hash"),
        (["ord_3f9a1c2b7d4e", "ord_77aa01bc9e2f"], "random id"),
        (["ch_a1b2c3d4e5f6a7b8", "ch_0f9e8d7c6b5a4f3e"], "random id"),
        ([41, 42, 43], "counter"),
        ([7, 3], "random number"),
        (["open", "closed"], "varies"),
        ([None, "x"], "varies"),
    ],
)
def test_classify(values: list[object], kind: str) -> None:
    assert classify(values) == kind


def test_proposes_what_varied_between_replays_with_evidence() -> None:
    obs = [
        Observation(
            f"POST /orders #{i}",
            (
                resp(
                    {
                        "order_id": f"ord_{uuid.uuid4().hex[:12]}",
                        "created_at": "2024-05-01T10:00:00Z",
                        "total": 10,
                    }
                ),
                resp(
                    {
                        "order_id": f"ord_{uuid.uuid4().hex[:12]}",
                        "created_at": "2024-05-01T10:00:02Z",
                        "total": 10,
                    }
                ),
            ),
        )
        for i in range(3)
    ]
    report = learn_noise(obs)
    # learned on one route: scoped to it
    assert report.rules == ("POST /orders $.created_at", "POST /orders $.order_id")
    kinds = {p.rule: p.kind for p in report.proposals}
    assert kinds == {
        "POST /orders $.created_at": "timestamp",
        "POST /orders $.order_id": "random id",
    }
    created = next(p for p in report.proposals if p.rule == "POST /orders $.created_at")
    assert created.requests == 3
    assert "2024-05-01T10:00:00Z" in created.evidence[0] and "(replays)" in created.evidence[0]


def test_real_change_stable_across_replays_is_not_noise() -> None:
    recorded = resp({"price": 12.5, "ts": "2024-05-01T10:00:00Z"})
    obs = [
        Observation(
            "GET /items/A",
            (
                resp({"price": 13.0, "ts": "2024-06-01T10:00:00Z"}),
                resp({"price": 13.0, "ts": "2024-06-01T10:00:01Z"}),
            ),
            recorded=recorded,
        )
    ]
    report = learn_noise(obs)
    assert report.rules == ("GET /items/A $.ts",)
    held = {h.where: h.reason for h in report.held_back}
    assert "$.price" in held and "real change" in held["$.price"]


def test_generalizes_indices_but_never_over_a_stable_value() -> None:
    def items(ids: list[str]) -> list[dict[str, object]]:
        return [{"id": i, "sku": f"S{n}"} for n, i in enumerate(ids)]

    obs = [
        Observation(
            "GET /a",
            (
                resp({"items": items(["x1a2b3c4", "y5d6e7f8"])}),
                resp({"items": items(["q9w8e7r6", "t5y4u3i2"])}),
            ),
        )
    ]
    assert learn_noise(obs).rules == ("GET /a $.items[*].id",)
    # items[1].id stable in another request: only the concrete varying path is proposed
    obs.append(
        Observation(
            "GET /b",
            (resp({"items": items(["same", "k1"])}), resp({"items": items(["same", "k2"])})),
        )
    )
    report = learn_noise(obs)
    # varied on both routes, but stable under the general rule on /b: scoped rules, and on
    # /b only the concrete varying path
    assert report.rules == ("GET /a $.items[*].id", "GET /b $.items[1].id")
    assert not any("items[0]" in r and "/b" in r for r in report.rules)


def test_a_path_noisy_on_one_route_is_scoped_to_it_and_never_hides_another_route() -> None:
    obs = [
        Observation("GET /random", (resp({"value": 1}), resp({"value": 2}))),
        Observation("GET /total", (resp({"value": 5}), resp({"value": 5}))),
    ]
    report = learn_noise(obs)
    assert report.rules == ("GET /random $.value",)
    from devbox.core.diff import DiffRules
    from devbox.core.scoped_rules import rules_for

    # the learned rule does not apply to GET /total: a change there is still seen
    assert not DiffRules(ignore=rules_for(report.rules, "GET", "/total")).ignores_path(("value",))
    assert DiffRules(ignore=rules_for(report.rules, "GET", "/random")).ignores_path(("value",))


def test_a_path_noisy_on_every_route_that_carries_it_is_one_unscoped_rule() -> None:
    obs = [
        Observation(f"GET /{r}", (resp({"ts": 1_700_000_000 + i}), resp({"ts": 1_700_000_009})))
        for i, r in enumerate(("a", "b", "c"))
    ]
    obs.append(Observation("GET /d", (resp({"n": 1}), resp({"n": 1}))))  # no ts here
    assert learn_noise(obs).rules == ("$.ts",)


def test_recorded_duplicates_separated_by_a_write_are_not_evidence() -> None:
    def ex(i: int, method: str, body: object) -> Exchange:
        return Exchange(
            f"e{i}", Direction.INBOUND, "inbound", Request(method, "/posts"), resp(body)
        )

    exs = [
        ex(0, "GET", [{"id": 1}]),
        ex(1, "POST", {"id": 2}),
        ex(2, "GET", [{"id": 1}, {"id": 2}]),  # the POST changed it: not noise
        ex(3, "GET", [{"id": 1}, {"id": 2}]),
    ]
    obs = duplicate_observations(exs)
    assert [len(o.responses) for o in obs] == [2]  # only the two after the POST
    assert learn_noise(obs).rules == ()


def test_headers_only_when_compared_and_existing_rules_respected() -> None:
    obs = [
        Observation(
            "GET /x",
            (
                resp(
                    {"t": "2024-05-01T10:00:00Z"},
                    Date="Mon, 06 May 2024 10:00:00 GMT",
                    X_Request_Id="a1b2c3d4e5",
                ),
                resp(
                    {"t": "2024-05-01T10:00:01Z"},
                    Date="Mon, 06 May 2024 10:00:01 GMT",
                    X_Request_Id="f6a7b8c9d0",
                ),
            ),
        )
    ]
    assert learn_noise(obs).rules == ("GET /x $.t",)
    report = learn_noise(obs, existing=("GET /x $.t",), headers=("date", "x-request-id"))
    assert report.rules == ("header:date", "header:x-request-id")


def test_recorded_duplicates_are_evidence() -> None:
    def ex(i: int, body: object) -> Exchange:
        return Exchange(
            f"e{i}", Direction.INBOUND, "inbound", Request("GET", "/items/A"), resp(body)
        )

    exs = [
        ex(0, {"sku": "A", "checked_at": "2024-05-01T10:00:00.100Z"}),
        ex(1, {"sku": "A", "checked_at": "2024-05-01T10:00:05.900Z"}),
    ]
    obs = duplicate_observations(exs)
    assert len(obs) == 1 and obs[0].origin == "recorded duplicates"
    report = learn_noise(obs)
    assert report.rules == ("GET /items/A $.checked_at",)
    assert "(recorded duplicates)" in report.proposals[0].evidence[0]


def test_flaky_status_and_non_json_bodies_are_reported_not_proposed() -> None:
    obs = [
        Observation("GET /flaky", (Response(200, (), b"ok 1"), Response(503, (), b"ok 2"))),
    ]
    report = learn_noise(obs)
    assert report.rules == ()
    wheres = [h.where for h in report.held_back]
    assert "status of GET /flaky" in wheres and "body of GET /flaky" in wheres
