"""Noise learning on a real third-party stateful REST server (json-server from npm):
``.venv/bin/python -m bench.fidelity.noise_rest``.

Records json-server through ``devbox record`` (tests/data/rest/traffic.py: reads,
creates, updates, deletes), then prints, side by side in the same run:

* replay before learning;
* learning without resetting between passes (``--no-reset``: what devbox did before): the
  rules it would write and how many responses carrying a changed value they would hide;
* learning with the ``[replay] reset`` hook (``--write``), replay after it, and the same
  change of one value in the server's data.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import rest_proof as R  # noqa: E402

from devbox.core.diff import DiffRules, parse_pattern  # noqa: E402
from devbox.core.diff_paths import WILDCARD  # noqa: E402


def hidden(rules: list[str], carrying: set[tuple[str, str]]) -> int:
    """How many (request, path) pairs carrying the value these rules would ignore."""
    d = DiffRules(ignore=tuple(rules))
    n = 0
    for label, where in carrying:
        method, _, target = label.partition(" ")
        steps = tuple(s for s in parse_pattern(where) if s is not WILDCARD)
        if d.for_route(method, target.split("?")[0], target).ignores_path(steps):
            n += 1
    return n


def pct(report: dict[str, object]) -> str:
    c = report["counts"]
    assert isinstance(c, dict)
    return f"{c['passed']}/{c['total']} ({100 * c['passed'] / c['total']:.1f} %)"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        project = R.make_project(Path(tmp))
        R.record(project)
        carrying = R.carrying(project, "json-server")
        with R.server(project):
            before = R.replay(project)
            r = R.devbox(
                project, "replay", "rest", "--learn-noise", "--no-reset", "--report", "json"
            )
            naive = json.loads(r.stdout)["proposals"] if r.stdout.startswith("{") else []
            naive_rules = [p["rule"] for p in naive]
            learned = R.learn(project)
            rules = [p["rule"] for p in learned["proposals"]]
            after = R.replay(project)
            R.change_one_value(project, "json-server", "JSON Server")
            changed = R.replay(project)
        shown = R.differences(changed)
        rows = [
            ("replay before learning", pct(before)),
            ("learning without reset: rules", f"{len(naive_rules)}"),
            (
                "  responses carrying the change hidden",
                f"{hidden(naive_rules, carrying)}/{len(carrying)}",
            ),
            ("learning with [replay] reset: rules", f"{len(rules)} ({', '.join(sorted(rules))})"),
            (
                "  responses carrying the change hidden",
                f"{hidden(rules, carrying)}/{len(carrying)}",
            ),
            ("replay after learning", pct(after)),
            ("one value changed: paths shown", f"{len(shown & carrying)}/{len(carrying)}"),
            ("one value changed: other differences", f"{len(shown - carrying)}"),
        ]
        for name, value in rows:
            print(f"| {name:<42} | {value} |")
        if naive_rules:
            print("rules learned without reset:", ", ".join(naive_rules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
