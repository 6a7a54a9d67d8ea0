#!/usr/bin/env bash
# devbox's mock server in the shared mockbench, side by side with nginx, WireMock,
# Mountebank, Mockoon and mitmproxy (same 1,000 recorded exchanges, same wrk driver).
#
#   bench/mock/run_mockbench.sh                                  # nginx,wrk-ceiling,mitmproxy,devbox
#   SERVERS=nginx,wrk-ceiling,wiremock,mountebank,mockoon,mitmproxy,devbox bench/mock/run_mockbench.sh
#   REPS=1 DURATION=5 bench/mock/run_mockbench.sh               # quicker, noisier
#
# The mockbench itself (read-only) lives in shared/bench/mockbench beside this repository;
# it installs its anchors (apt: wrk, nginx-light, a JRE; npm: wiremock, mountebank,
# @mockoon/cli; pip: mitmproxy in its own venv) into $MOCKBENCH_CACHE, never into the repo.
# Results: $MOCKBENCH_OUT/results.md (printed at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MOCKBENCH_DIR="${MOCKBENCH_DIR:-$ROOT/../shared/bench/mockbench}"
if [ ! -x "$MOCKBENCH_DIR/run.sh" ]; then
  echo "mockbench not found at $MOCKBENCH_DIR (set MOCKBENCH_DIR)" >&2
  exit 2
fi
DEVBOX="$ROOT/.venv/bin/devbox"
if [ ! -x "$DEVBOX" ]; then
  echo "$DEVBOX missing: run scripts/setup first" >&2
  exit 2
fi
export MOCKBENCH_CACHE="${MOCKBENCH_CACHE:-$HOME/.cache/mockbench}"
export MOCKBENCH_OUT="${MOCKBENCH_OUT:-$MOCKBENCH_CACHE/out}"
export SERVERS="${SERVERS:-nginx,wrk-ceiling,mitmproxy,devbox}"
# the server under test: the repository's own devbox, replaying the generated HAR
# (a default holding "}" cannot be written as ${VAR:-...}: spell it out)
if [ -z "${DEVBOX_MOCK_CMD:-}" ]; then
  DEVBOX_MOCK_CMD="$DEVBOX mock --har {har} --port {port}"
fi
export DEVBOX_MOCK_CMD
echo "mockbench: SERVERS=$SERVERS DEVBOX_MOCK_CMD=$DEVBOX_MOCK_CMD" >&2
echo "           MOCKBENCH_OUT=$MOCKBENCH_OUT" >&2
"$MOCKBENCH_DIR/run.sh"
echo
sed -n '1,20p' "$MOCKBENCH_OUT/results.md"
