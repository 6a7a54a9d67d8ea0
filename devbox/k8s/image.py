"""The mock image, as data: its tag and its Dockerfile (no I/O).

The mock image holds devbox and the project's recordings laid out as in the
project (profile file, ``mocks/...``) under ``/srv/devbox``, so ``devbox mock
profiles/demo.toml --only payments`` and ``devbox replay`` run in it unchanged.
Its tag is a digest of what it serves (devbox's version, the profile, every
recording file), so `devbox export k8s` names the image `devbox image mock`
builds without asking Docker, and new recordings never hide behind an old tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from devbox.k8s.manifests import APP_DIR, MOCK_PORT, RUN_AS, dns_label

BASE = "devbox/base:bookworm"
VENV = "/opt/devbox"


def mock_image_repo(profile: str) -> str:
    return f"devbox/{dns_label(profile)}-mock"


def mock_image_tag(profile: str, version: str, files: Iterable[tuple[str, bytes]]) -> str:
    """``devbox/demo-mock:<12 hex>`` for these (relative path, content) pairs."""
    digest = hashlib.sha256(f"devbox {version}\0".encode())
    for rel, data in sorted(files):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"{mock_image_repo(profile)}:{digest.hexdigest()[:12]}"


def requirement(extras: Sequence[str] = ()) -> str:
    """``devbox``, or ``devbox[grpc]`` with the extras the profile's mocks need."""
    return "devbox" + (f"[{','.join(sorted(extras))}]" if extras else "")


def mock_dockerfile(
    profile: str,
    profile_file: str,
    pip_wheel: str,
    build_id: str = "",
    extras: Sequence[str] = (),
) -> str:
    """Two stages: install devbox from the wheels in the context (offline), then copy.

    The base image has python3 but no pip: pip runs from its own wheel (a wheel is
    a zip Python can execute from) into a venv made ``--without-pip``, with
    ``--no-index`` so nothing is fetched. The second stage keeps the wheels out;
    ``build_id`` labels the first stage's image so the builder can remove it (the
    classic builder leaves it behind, untagged). ``extras``: devbox's optional
    dependencies to install too (``grpc`` for a gRPC mock that reads ``protos``); the
    wheels in the context must include theirs.
    """
    stage_label = f"LABEL devbox.build={build_id}\n" if build_id else ""
    return f"""\
# Built by `devbox image mock {profile}`: devbox plus the recordings, no registry needed.
FROM {BASE} AS install
COPY wheels /tmp/wheels
RUN python3 -m venv --without-pip {VENV} \\
 && {VENV}/bin/python /tmp/wheels/{pip_wheel}/pip install --no-index --find-links /tmp/wheels \\
      --disable-pip-version-check --no-cache-dir --no-compile '{requirement(extras)}'
{stage_label}
FROM {BASE}
COPY --from=install {VENV} {VENV}
COPY project {APP_DIR}
ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
WORKDIR {APP_DIR}
USER {RUN_AS}:{RUN_AS}
EXPOSE {MOCK_PORT}
ENTRYPOINT ["devbox"]
CMD ["mock", "{profile_file}", "--host", "0.0.0.0"]
"""
