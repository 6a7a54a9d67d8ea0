"""Machine-readable reports: JSON for scripts, JUnit XML for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson

from devbox.replay.report import ReplayReport, RequestResult

JSON_FORMAT = 1


def to_dict(report: ReplayReport) -> dict[str, Any]:
    return {
        "format": JSON_FORMAT,
        "target": report.target,
        "ok": report.ok,
        "counts": report.counts,
        "match_pct": round(report.match_pct, 3),
        "duration_s": round(report.duration_s, 4),
        "throughput_rps": round(report.throughput_rps, 2),
        "concurrency": report.concurrency,
        "latency": report.latency.to_dict(),
        "outbound_checked": report.outbound_checked,
        "cancelled": report.cancelled,
        "results_complete": report.results_complete,
        "fail_if": list(report.fail_if),
        "notes": list(report.notes),
        "results": [r.to_dict() for r in report.results],
    }


def to_json(report: ReplayReport) -> str:
    return orjson.dumps(to_dict(report), option=orjson.OPT_INDENT_2).decode() + "\n"


def _case_name(r: RequestResult) -> str:
    name = f"{r.method} {r.target}"
    return f"{name} [{r.exchange_id}]" + (f" copy {r.copy}" if r.copy else "")


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters, whatever the escaping
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def to_junit(report: ReplayReport, name: str = "devbox replay") -> str:
    """JUnit XML: one testcase per replayed request, failures and errors with their diffs."""
    suites = ET.Element("testsuites", name=name)
    results = list(report.results)
    aggregate_passes = 0 if report.results_complete else report.passed
    tests = len(results) + (1 if aggregate_passes else 0)
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=_clean(f"{name} {report.target}"),
        tests=str(tests + len(report.fail_if)),
        failures=str(sum(r.verdict == "fail" for r in results) + len(report.fail_if)),
        errors=str(sum(r.verdict == "error" for r in results)),
        skipped="0",
        time=f"{report.duration_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("match_pct", f"{report.match_pct:.2f}"),
        ("throughput_rps", f"{report.throughput_rps:.1f}"),
        ("p50_ms", f"{report.latency.p50_ms:.2f}"),
        ("p90_ms", f"{report.latency.p90_ms:.2f}"),
        ("p99_ms", f"{report.latency.p99_ms:.2f}"),
        ("max_ms", f"{report.latency.max_ms:.2f}"),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_clean(f"replay.{r.method}"),
            name=_clean(_case_name(r)),
            time=f"{r.latency_ms / 1000:.4f}",
        )
        if r.verdict == "fail":
            lines = [d.describe() for d in r.differences]
            details = [d.detail for d in r.differences if d.detail]
            el = ET.SubElement(
                case,
                "failure",
                message=_clean(f"{len(r.differences)} difference(s): {lines[0] if lines else ''}"),
                type="mismatch",
            )
            el.text = _clean("\n".join(lines + details))
        elif r.verdict == "error":
            el = ET.SubElement(case, "error", message=_clean(r.error), type="transport")
            el.text = _clean(r.error)
    if aggregate_passes:
        ET.SubElement(
            suite, "testcase", classname="replay", name=f"{aggregate_passes} passing requests"
        )
    for violation in report.fail_if:
        case = ET.SubElement(suite, "testcase", classname="replay.fail_if", name=_clean(violation))
        ET.SubElement(case, "failure", message=_clean(violation), type="fail-if")
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
