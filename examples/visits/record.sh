#!/usr/bin/env bash
# Regenerate mocks/visits/ by recording the example for real: a throwaway redis-server on
# the profile's upstream port (6379, empty, no persistence), the visits service through the
# devbox runtime with REDIS_URL pointed at the recording relay, and traffic.py through the
# inbound proxy. Previous recordings are replaced only when the run completes.
#
#   examples/visits/record.sh            # process runtime
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "record.sh: port 6379 is in use; this script starts its own empty redis-server there" >&2
  exit 1
fi
dir=$(mktemp -d)
redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.05; done
"$PY" -m devbox record visits --runtime "${DEVBOX_RUNTIME:-process}" "$@" \
  -- python3 examples/visits/traffic.py '{inbound}'
