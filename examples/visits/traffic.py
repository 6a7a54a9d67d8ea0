"""The visits example's client traffic: deterministic page visits, then the stats.

    python3 examples/visits/traffic.py http://127.0.0.1:7090
"""

from __future__ import annotations

import sys
import urllib.request

PAGES = ["home", "about", "home", "pricing", "home", "about", "docs", "home"]


def main() -> int:
    base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:7090"
    for page in PAGES * 3:
        with urllib.request.urlopen(f"{base}/visit?page={page}", timeout=10) as resp:
            resp.read()
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as resp:
        print(resp.read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
