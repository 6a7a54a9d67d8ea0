"""Running the user's service: in Docker (default where an engine answers) or as a process.

Public API (what devbox.engine and the CLI call):

    rt, why = select_runtime(profile, prefer="auto", on_event=..., session=None, port=None)
    rt.prepare(); rt.start(env); rt.wait_ready()
    rt.sync(paths); rt.restart(); rt.wait_ready()      # edit loop, no rebuild
    rt.rebuild(); rt.wait_ready()                      # Dockerfile changed
    rt.stop()
    reap_orphans(profile_name=None) -> list[str]       # leftovers of dead sessions
    down(profile=None, root=None) -> list[Removed]     # everything of a project/profile

The Docker SDK is imported only when Docker is used.
"""

from __future__ import annotations

from devbox.runtime.base import Runtime
from devbox.runtime.base_image import BASE_IMAGE, BaseImageResult, ensure_base_image
from devbox.runtime.choose import select_runtime
from devbox.runtime.cleanup import Removed, down, find_project_root, reap_orphans
from devbox.runtime.docker_runtime import DockerRuntime
from devbox.runtime.process_runtime import ProcessRuntime
from devbox.runtime.sessions import new_session_id

__all__ = [
    "BASE_IMAGE",
    "BaseImageResult",
    "DockerRuntime",
    "ProcessRuntime",
    "Removed",
    "Runtime",
    "down",
    "ensure_base_image",
    "find_project_root",
    "new_session_id",
    "reap_orphans",
    "select_runtime",
]
