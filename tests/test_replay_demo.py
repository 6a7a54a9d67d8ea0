"""End to end with the demo's orders service (a real subprocess): replay with the demo
profile's rules, learn its noise, and check its outbound calls through the real mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Proc, free_port, wait_port
from replay_helpers import record

from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.profile import ReplaySettings, load_profile
from devbox.replay import ReplayOptions, run_replay
from devbox.replay.learn import learn_noise_replay
from devbox.store import write_recording

ORDERS = str(ROOT / "examples/demo/orders/app.py")
TRAFFIC = [
    ("GET", "/catalog", b""),
    ("GET", "/items/KB-101", b""),
    ("GET", "/items/MS-202", b""),
    ("GET", "/quote?sku=MN-303&qty=2", b""),
    (
        "POST",
        "/orders",
        b'{"sku": "CB-404", "qty": 2, "customer": "u1@example.com", "card": "4242424242424242"}',
    ),
    (
        "POST",
        "/orders",
        b'{"sku": "KB-101", "qty": 1, "customer": "u2@example.com", "card": "4242424242424242"}',
    ),
    ("GET", "/items/NOPE-1", b""),
    ("GET", "/healthz", b""),
]


def start_orders(payments: str, inventory: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [sys.executable, ORDERS],
        env={"PORT": str(port), "PAYMENTS_URL": payments, "INVENTORY_URL": inventory},
    )
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def orders(demo_upstreams: dict[str, int]) -> Iterator[str]:
    proc, url = start_orders(
        f"http://127.0.0.1:{demo_upstreams['payments']}",
        f"http://127.0.0.1:{demo_upstreams['inventory']}",
    )
    try:
        yield url
    finally:
        proc.stop()


def test_demo_replays_clean_with_the_demo_profile_rules(orders: str) -> None:
    recording = record(orders, TRAFFIC)
    settings = load_profile(ROOT / "profiles/demo.toml").replay
    report = asyncio.run(run_replay(recording, orders, settings))
    assert report.total == len(TRAFFIC)
    assert report.failed == 0 and report.errors == 0, [r.to_dict() for r in report.failures()]
    # without the rules, the volatile fields are what fails, and nothing else
    bare = asyncio.run(run_replay(recording, orders, ReplaySettings()))
    wheres = {d.where for r in bare.results for d in r.differences}
    # (second-resolution created_at may coincide with the recording's: a subset, then)
    assert {"$.order_id", "$.payment.id"} <= wheres
    assert wheres <= {"$.order_id", "$.created_at", "$.payment.id", "$.checked_at"}


def test_demo_noise_learning(orders: str) -> None:
    recording = record(orders, TRAFFIC)
    report, _, _ = asyncio.run(learn_noise_replay(recording, orders, ReplaySettings(concurrency=4)))
    kinds = {p.rule: p.kind for p in report.proposals}
    # what only POST /orders answers is scoped to it; checked_at varies on every route
    # that carries it (the items of several SKUs): one unscoped rule
    assert kinds == {
        "POST /orders $.order_id": "random id",
        "POST /orders $.created_at": "timestamp",
        "POST /orders $.payment.id": "random id",
        "$.checked_at": "timestamp",
    }


# ---------------------------------------------------------------- with the real mocks


def _get(base: str, method: str, target: str, body: bytes, headers: dict[str, str]) -> Response:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, target, body=body or None, headers=headers)
    r = conn.getresponse()
    out = Response(r.status, tuple(r.getheaders()), r.read(), r.reason)
    conn.close()
    return out


def _outbound(
    base: str, source: str, parent: str, n: int, method: str, target: str, body: object = None
) -> Exchange:
    """What orders would send to a dependency, sent to the real stand-in, kept as a recording."""
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Accept": "application/json"}
    if raw:
        headers["Content-Type"] = "application/json"
        headers["Authorization"] = "Bearer sk_test_demo"
    resp = _get(base, method, target, raw, headers)
    path, _, _ = target.partition("?")
    return Exchange(
        f"{source}-{n}",
        Direction.OUTBOUND,
        source,
        Request(method, path, (), tuple(headers.items()), raw),
        resp,
        Timing(started_at=1_700_000_000.0 + n),
        parent=parent,
    )


def test_outbound_check_with_the_real_mock_fleet(
    demo_upstreams: dict[str, int], tmp_path: Path
) -> None:
    from devbox.core.redact import Redactor
    from devbox.mock.fleet import MockFleet

    pay = f"http://127.0.0.1:{demo_upstreams['payments']}"
    inv = f"http://127.0.0.1:{demo_upstreams['inventory']}"
    order = {"sku": "CB-404", "qty": 2, "customer": "u1@example.com", "card": "4242424242424242"}
    # 2 x 9.99 + 4.95 shipping + 4.00 tax, as orders computes it
    charge = {
        "amount": 28.93,
        "currency": "EUR",
        "customer": order["customer"],
        "card": order["card"],
    }
    # the recording: inbound ids and the dependency calls each one made (parent-linked)
    outbound = [
        _outbound(inv, "inventory", "in-item", 0, "GET", "/items/KB-101"),
        _outbound(inv, "inventory", "in-quote", 1, "GET", "/items/MN-303"),
        _outbound(inv, "inventory", "in-order", 2, "GET", "/items/CB-404"),
        _outbound(pay, "payments", "in-order", 3, "POST", "/charges", charge),
    ]
    (tmp_path / "profiles").mkdir()
    text = (ROOT / "profiles/demo.toml").read_text()
    (tmp_path / "profiles/demo.toml").write_text(
        text.replace("port = 7101\n", "").replace("port = 7102\n", "")
    )
    profile = load_profile(tmp_path / "profiles/demo.toml")
    redactor = Redactor(profile.redact)
    for source in ("payments", "inventory"):
        exs = [redactor.exchange(e) for e in outbound if e.source == source]
        write_recording(
            profile.recordings_dir(source) / "rec.json", source, Direction.OUTBOUND, exs
        )
    fleet = MockFleet(profile)
    ports = fleet.start()
    try:
        mocks = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        proc, orders = start_orders(mocks["payments"], mocks["inventory"])
        try:
            inbound = record(
                orders,
                [
                    ("GET", "/items/KB-101", b""),
                    ("GET", "/quote?sku=MN-303&qty=2", b""),
                    ("POST", "/orders", json.dumps(order).encode()),
                ],
            )
            ids = ["in-item", "in-quote", "in-order"]
            inbound = [dataclasses.replace(e, id=i) for e, i in zip(inbound, ids, strict=True)]
            assert [e.response.status for e in inbound if e.response] == [200, 200, 201]
            settings = profile.replay
            opts = ReplayOptions(outbound_rules={d.name: d.match for d in profile.dependencies})
            stored = [redactor.exchange(e) for e in outbound]
            clean = asyncio.run(
                run_replay(inbound, orders, settings, options=opts, outbound=stored, journals=mocks)
            )
            assert clean.outbound_checked
            assert clean.failed == 0, [r.to_dict() for r in clean.failures()]
            # relink the quote's inventory call to the item request: one missing, one extra
            moved = [
                dataclasses.replace(e, parent="in-item") if e.parent == "in-quote" else e
                for e in stored
            ]
            report = asyncio.run(
                run_replay(inbound, orders, settings, options=opts, outbound=moved, journals=mocks)
            )
        finally:
            proc.stop()
    finally:
        fleet.stop()
    by = {r.exchange_id: [d.describe() for d in r.differences] for r in report.results}
    assert by == {
        "in-item": ["missing call inventory GET /items/MN-303"],
        "in-quote": ["extra call inventory GET /items/MN-303"],
        "in-order": [],
    }
