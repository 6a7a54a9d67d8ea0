"""End to end against examples/misbehaving: record the well-behaved service, restart it
misbehaving, replay, and see each difference class reported exactly once; learn noise
without mistaking the real change for noise."""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
from conftest import ROOT, Proc, free_port, wait_port
from replay_helpers import record
from rich.console import Console

from devbox.core.assertions import evaluate, parse_fail_if
from devbox.core.model import Exchange
from devbox.core.profile import ReplaySettings
from devbox.replay import render_terminal, run_replay, to_json, to_junit
from devbox.replay.learn import learn_noise_replay

APP = str(ROOT / "examples/misbehaving/app.py")
REQUESTS = [
    ("GET", "/products", b""),
    ("GET", "/products/KB-101", b""),
    ("GET", "/products/MS-202", b""),
    ("GET", "/profile", b""),
    ("GET", "/report", b""),
    ("GET", "/inventory", b""),
    ("GET", "/slow", b""),
    ("GET", "/crash", b""),
    ("POST", "/cart", b'{"skus": ["KB-101", "MS-202"]}'),
    ("GET", "/stats", b""),
]
NOISE = ("$.request_id", "$.served_at", "$.generated_at", "$.cart_id", "$.served")


def start(port: int, misbehave: str = "") -> Proc:
    proc = Proc([sys.executable, APP, "--port", str(port), "--misbehave", misbehave])
    wait_port(port)
    return proc


@pytest.fixture(scope="module")
def recording() -> list[Exchange]:
    port = free_port()
    proc = start(port)
    try:
        return record(f"http://127.0.0.1:{port}", REQUESTS)
    finally:
        proc.stop()


@pytest.fixture
def misbehaving() -> Iterator[str]:
    port = free_port()
    proc = start(port, "all")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_each_difference_class_reported_exactly_once(
    recording: list[Exchange], misbehaving: str
) -> None:
    settings = ReplaySettings(concurrency=4, ignore=NOISE, headers=("x-report-version",))
    report = asyncio.run(run_replay(recording, misbehaving, settings))
    by = {r.label: r for r in report.results}
    lines = {label: [d.describe() for d in r.differences] for label, r in by.items()}

    assert lines["GET /products/KB-101"] == ["$.price: 89.0 → 99.0"]
    assert lines["GET /profile"] == [
        'removed $.email: "ada@example.com"',
        'added $.nickname: "countess"',
    ]
    assert lines["GET /products"] == ["$.items: same elements in a different order"]
    report_diffs = by["GET /report"].differences
    assert [(d.where, d.change) for d in report_diffs] == [
        ("header:x-report-version", "changed"),
        ("body", "text"),
    ]
    assert "+revenue: 1250.00 EUR" in report_diffs[1].detail
    assert lines["GET /inventory"][0] == "status: 200 → 503"
    assert by["GET /crash"].verdict == "error"
    for ok in ("GET /products/MS-202", "GET /slow", "POST /cart", "GET /stats"):
        assert by[ok].verdict == "pass", lines[ok]

    # each class once; the 503's own body changes (an error payload) are left out of the count
    classes = Counter(
        (d.section, d.change)
        for r in report.results
        for d in r.differences
        if not (r.label == "GET /inventory" and d.section == "body")
    )
    assert classes == {
        ("body", "changed"): 1,
        ("body", "added"): 1,
        ("body", "removed"): 1,
        ("body", "order"): 1,
        ("body", "text"): 1,
        ("header", "changed"): 1,
        ("status", "changed"): 1,
    }
    assert (report.total, report.passed, report.failed, report.errors) == (10, 4, 5, 1)

    # the slow route trips a latency budget; the crash trips errors > 0
    violations = evaluate(
        [parse_fail_if("p99 > 250ms"), parse_fail_if("errors > 0"), parse_fail_if("match < 30%")],
        report,
    )
    assert [v.split(" (")[0] for v in violations] == ["p99 > 250ms", "errors > 0"]
    report = report.with_fail_if(violations)

    # terminal: readable at 80 columns, every failure shown
    con = Console(width=80, record=True, color_system="truecolor")
    render_terminal(report, con)
    text = con.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for needle in (
        "$.price: 89.0 → 99.0",
        "added $.nickname",
        "same elements in a different order",
        "status: 200 → 503",
        "GET /crash",
        "✗ fail-if p99 > 250ms",
    ):
        assert needle in text, needle
    html = con.export_html()
    assert "color" in html  # colour-coded, not plain

    # JSON and JUnit carry the same facts
    data = orjson.loads(to_json(report))
    assert data["counts"] == {"total": 10, "passed": 4, "failed": 5, "errors": 1, "skipped": 0}
    root = ET.fromstring(to_junit(report))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 10 + 2
    assert len(suite.findall("testcase/failure")) == 5 + 2
    assert len(suite.findall("testcase/error")) == 1
    assert suite.get("failures") == "7" and suite.get("errors") == "1"


def test_learn_noise_proposes_ids_and_timestamps_not_the_real_change(
    recording: list[Exchange],
) -> None:
    port = free_port()
    proc = start(port, "changed_field")
    try:
        report, first, second = asyncio.run(
            learn_noise_replay(
                recording, f"http://127.0.0.1:{port}", ReplaySettings(concurrency=4), gap_s=1.1
            )
        )
    finally:
        proc.stop()
    rules = dict((p.rule, p.kind) for p in report.proposals)
    assert rules == {
        "$.request_id": "uuid",
        "$.served_at": "timestamp",
        # in the responses of one route only: scoped to it
        "GET /products $.generated_at": "timestamp",
        "POST /cart $.cart_id": "random id",
        "GET /stats $.served": "counter",
    }
    held = {h.where: h.reason for h in report.held_back}
    assert "$.price" in held and "real change" in held["$.price"]
    assert first.total == second.total == 10
    # with the proposals as rules, the unchanged routes pass and the real change still fails
    port = free_port()
    proc = start(port, "changed_field")
    try:
        settings = ReplaySettings(ignore=tuple(rules))
        after = asyncio.run(run_replay(recording, f"http://127.0.0.1:{port}", settings))
    finally:
        proc.stop()
    assert [r.label for r in after.failures()] == ["GET /products/KB-101"]
