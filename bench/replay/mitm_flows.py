"""Write N GET flows for ``mitmdump --client-replay`` (run with mitmproxy's own Python).

    /tmp/mitm-venv/bin/python bench/replay/mitm_flows.py http://127.0.0.1:PORT N OUT

mitmproxy lives in its own virtual environment, never in devbox's.
"""

from __future__ import annotations

import sys
import time

from mitmproxy import connection, http, io


def main() -> None:
    base, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(out, "wb") as f:
        w = io.FlowWriter(f)
        for i in range(n):
            req = http.Request.make(
                "GET", f"{base}/items/{i % 100}", headers={"Accept": "application/json"}
            )
            req.timestamp_start = req.timestamp_end = time.time()
            client = connection.Client(
                peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=time.time()
            )
            flow = http.HTTPFlow(client, connection.Server(address=None))
            flow.request = req
            w.add(flow)


if __name__ == "__main__":
    main()
