"""Recording real traffic: reverse proxies in front of each dependency and of the service.

Public API::

    rec = Recorder(profile, RecordOptions(...), on_captured=..., on_log=...)
    listeners = rec.start()          # binds every proxy; EngineError if a port is taken
    rec.service_env()                # {"PAYMENTS_URL": "http://127.0.0.1:7101", ...}
    rec.inbound_url                  # where clients send requests
    summary = rec.stop(commit=True)  # drain, then make the new recording set live

The proxy (``proxy``, asyncio Protocols) only relays and captures; a worker process
(``worker``, fed through ``link``) redacts and writes (``sink``). Pure-ish pieces:
``http1`` (framing without I/O), ``capture`` (bounded decoded bodies), ``correlate``
(parent links).
"""

from devbox.record.proxy import Captured
from devbox.record.recorder import (
    Listener,
    Recorder,
    RecordOptions,
    RecordSummary,
    SourceSummary,
)
from devbox.record.sink import RecordingSink, recover, unfinished

__all__ = [
    "Captured",
    "Listener",
    "RecordOptions",
    "RecordSummary",
    "Recorder",
    "RecordingSink",
    "SourceSummary",
    "recover",
    "unfinished",
]
