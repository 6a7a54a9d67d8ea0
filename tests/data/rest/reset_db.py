"""The ``[replay] reset`` hook of the json-server proof: put the running server's data back
to PRISTINE through its own REST API (delete every item, create the pristine ones in
order with their ids, replace singular resources), then check that it serves exactly
PRISTINE. Through the API, not by rewriting db.json: json-server's file watcher can miss
a rewrite that comes right after its own write.

usage: reset_db.py PRISTINE URL"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any


def call(method: str, url: str, body: object = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def main() -> int:
    pristine, url = Path(sys.argv[1]), sys.argv[2].rstrip("/")
    data = json.loads(pristine.read_text())
    for key, value in data.items():
        if isinstance(value, list):
            for item in call("GET", f"{url}/{key}"):
                call("DELETE", f"{url}/{key}/{item['id']}")
    for key, value in data.items():
        if isinstance(value, list):
            for item in value:
                call("POST", f"{url}/{key}", item)
        else:
            call("PUT", f"{url}/{key}", value)
    for key, value in data.items():
        if call("GET", f"{url}/{key}") != value:
            print(f"{url}/{key} does not serve {pristine}'s {key} after the reset", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
