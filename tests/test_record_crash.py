"""kill -9 of a recorder in the middle of a stream of requests: the files load and hold every
exchange whose response a client received; the previous recording set is untouched."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, free_port, wait_port
from record_helpers import alive, children, start_upstream, wait_for, write_profile

from devbox.core.model import Direction
from devbox.core.profile import load_profile
from devbox.store import load_dir, load_file, write_recording

CLIENTS = 4
MAX_REQUESTS = 3000  # bounded load: the kill normally comes far earlier
MAX_SECONDS = 20.0


def test_kill_9_keeps_every_completed_exchange_and_the_old_set(tmp_path: Path) -> None:
    up = start_upstream()
    port = free_port()
    path = write_profile(tmp_path, {"payments": up.url}, ports={"payments": port})
    profile = load_profile(path)
    old = profile.recordings_dir("payments") / "recording-old.json"
    from devbox.core.model import Exchange, Request, Response

    write_recording(
        old,
        "payments",
        Direction.OUTBOUND,
        [Exchange("old-1", Direction.OUTBOUND, "payments", Request("GET", "/old"), Response(200))],
    )
    old_bytes = old.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "record", str(path), "--no-service"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    completed: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(MAX_REQUESTS))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        deadline = time.monotonic() + MAX_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                conn.request("POST", f"/n/{i}", body=b'{"card": "4242424242424242"}')
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                return  # the recorder is gone
            if resp.status == 200 and body == f'{{"n": {i}}}'.encode():
                with lock:
                    completed.add(i)

    try:
        wait_port(port, timeout=20)
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        wait_for(lambda: len(completed) >= 300, timeout=MAX_SECONDS)
        worker = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the recording worker drains what the proxy had handed it, then exits by itself
        wait_for(lambda: not any(alive(p) for p in worker), timeout=20)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        up.close()
    assert proc.returncode == -signal.SIGKILL
    assert worker, "devbox record runs a recording worker process"
    # the live set is still the old one, byte for byte
    assert old.read_bytes() == old_bytes
    assert [e.id for e in load_dir(profile.recordings_dir("payments"))] == ["old-1"]
    # the partial new set loads, and holds every exchange a client saw complete
    (partial,) = profile.recordings_dir("payments").glob("*.json.partial")
    loaded = load_file(partial).decoded
    paths = {e.request.path for e in loaded.exchanges}
    missing = {i for i in completed if f"/n/{i}" not in paths}
    assert missing == set(), f"{len(missing)} completed exchanges missing after kill -9"
    assert len(completed) >= 300
    assert all(e.response is not None for e in loaded.exchanges)
    assert b"4242424242424242" not in partial.read_bytes()
