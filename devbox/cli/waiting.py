"""The main thread of a long-running command, waiting for Ctrl-C, a signal or a stop.

Python runs signal handlers (KeyboardInterrupt included) in the main thread only, and
when the kernel hands the signal to another thread (a mock's or the engine's loop) the
main thread learns of it only when it next runs Python code: a wait without an end, or
an hour long, then never returns, and Ctrl-C (or a supervisor's SIGINT) is lost. So the
main thread waits in short slices.
"""

from __future__ import annotations

import threading

SLICE_S = 0.25


def wait_until(stop: threading.Event) -> None:
    """Return once ``stop`` is set; a signal's exception is raised here within SLICE_S."""
    while not stop.wait(SLICE_S):
        pass
