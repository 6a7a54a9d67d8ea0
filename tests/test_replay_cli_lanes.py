"""``devbox replay`` keeps requests whose calls share a recorded sequence in recorded order.

Two declined POST /orders of the demo (inbound 0084 and 0094) call payments with the
same match key and were answered ``ch_2680…`` then ``ch_045e…``; the service puts the
charge in its error text, so an order that gets the other's answer differs. The edit
loop replayed such requests in one lane since fdd82f1, but ``devbox replay`` did not:
about one replay of the demo in 30 at concurrency 8 swapped them (both POST /orders
failed; ``bench.fidelity.replay_runs`` sends its replays through the CLI).

Here the swap is made certain rather than likely: the second order asks inventory for
another item (same price, so the same charge) and the inventory mock answers the first
order's call 0.8 s late (``timing = "recorded"``), so the second order reaches payments
first unless the two are replayed one after the other. Real parts throughout: the demo
service as a process, the profile's mocks on sockets, the CLI as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, demo_orders, run_devbox

from devbox.core.model import Direction, Exchange
from devbox.core.profile import load_profile
from devbox.mock.fleet import MockFleet
from devbox.store import load_dir, write_recording

pytestmark = pytest.mark.slow

FIRST, SECOND = "inbound-20261126T073010Z-0084", "inbound-20261126T073010Z-0094"
LATE_MS = 800.0  # the first order's inventory answer: long enough to be overtaken


def _project(tmp: Path) -> Path:
    """The demo with only the two orders, the second for another item of the same price."""
    (tmp / "profiles").mkdir()
    text = (ROOT / "profiles/demo.toml").read_text()
    text = text.replace("port = 7101\n", "").replace("port = 7102\n", "")
    text = text.replace('env = "INVENTORY_URL"\n', 'env = "INVENTORY_URL"\ntiming = "recorded"\n')
    (tmp / "profiles/demo.toml").write_text(text)
    shutil.copytree(ROOT / "examples", tmp / "examples")
    src = load_profile(ROOT / "profiles/demo.toml")

    def other_item(ex: Exchange) -> Exchange:
        # same length: the recorded Content-Length stays right
        req = ex.request
        return replace(
            ex,
            request=replace(
                req,
                path=req.path.replace("MS-202", "MS-909"),
                body=req.body.replace(b"MS-202", b"MS-909"),
            ),
        )

    inbound = [e for e in load_dir(src.inbound_dir) if e.id in (FIRST, SECOND)]
    inbound = [other_item(e) if e.id == SECOND else e for e in inbound]
    inventory = []
    for e in load_dir(src.recordings_dir("inventory")):
        if e.parent == FIRST:
            inventory.append(replace(e, timing=replace(e.timing, wait_ms=LATE_MS)))
        elif e.parent == SECOND:
            inventory.append(replace(other_item(e), timing=replace(e.timing, wait_ms=0.0)))
    payments = [e for e in load_dir(src.recordings_dir("payments")) if e.parent in (FIRST, SECOND)]
    assert len(inbound) == 2 and len(inventory) == 2 and len(payments) == 2
    for name, direction, exchanges in (
        ("inbound", Direction.INBOUND, inbound),
        ("inventory", Direction.OUTBOUND, inventory),
        ("payments", Direction.OUTBOUND, payments),
    ):
        (tmp / "mocks/demo" / name).mkdir(parents=True)
        write_recording(tmp / "mocks/demo" / name / "recording.json", name, direction, exchanges)
    return tmp / "profiles/demo.toml"


def test_replay_cli_orders_requests_sharing_a_recorded_sequence(tmp_path: Path) -> None:
    profile = load_profile(_project(tmp_path))
    fleet = MockFleet(profile)
    ports = fleet.start()
    try:
        proc, port = demo_orders(ports)
        try:
            r = run_devbox(
                tmp_path,
                *("replay", "demo", "--target", f"http://127.0.0.1:{port}"),
                *("--concurrency", "2", "--json"),
                *[f"--mock={n}=http://127.0.0.1:{p}" for n, p in ports.items()],
                env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
            )
        finally:
            proc.stop()
    finally:
        fleet.stop()
    report = json.loads(r.stdout)
    failing = [
        (x["exchange_id"], x.get("differences"))
        for x in report["results"]
        if x["verdict"] != "pass"
    ]
    assert report["counts"]["passed"] == 2, (failing, r.stderr[-500:], proc.output()[-1000:])
    assert r.returncode == 0
