"""Long fuzz run of the HAR loader: ``.venv/bin/python -m bench.fidelity.fuzz_har [N]``.

Every generated document must load to a value or one RecordingError (never a traceback),
lenient and strict; the suite runs the same property with 300 cases.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from har_fuzz import check_document, har_documents
from hypothesis import HealthCheck, given, settings


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    count = [0]

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(doc=har_documents)
    def run(doc: object) -> None:
        count[0] += 1
        check_document(doc, strict=False)
        check_document(doc, strict=True)

    start = time.monotonic()
    run()
    print(f"HAR loader: {count[0]} cases, 0 tracebacks, {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
