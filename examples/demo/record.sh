#!/usr/bin/env bash
# Regenerate mocks/demo/ by recording the demo for real with `devbox record`:
# the stand-ins for the real payments and inventory services run on the
# profile's upstream ports (7201, 7202), the orders service runs through the
# devbox runtime with PAYMENTS_URL / INVENTORY_URL pointed at the recording
# proxies (7101, 7102), and examples/demo/traffic.py sends its 100 requests
# through the inbound proxy (7000). The previous recordings are replaced only
# when the run completes (they go to mocks/demo/.trash/).
#
#   examples/demo/record.sh                      # process runtime (fast, no Docker)
#   DEVBOX_RUNTIME=docker examples/demo/record.sh
#   examples/demo/record.sh --append             # extra flags go to devbox record
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RUNTIME=${DEVBOX_RUNTIME:-process}
LISTEN=${DEVBOX_LISTEN:-7000}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "record.sh: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

for port in 7201 7202; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "record.sh: port $port is already in use (the stand-ins need it)" >&2
    exit 1
  fi
done
python3 examples/demo/upstreams/standins.py payments --port 7201 >/dev/null &
pids+=($!)
python3 examples/demo/upstreams/standins.py inventory --port 7202 >/dev/null &
pids+=($!)
wait_port 7201
wait_port 7202

"$PY" -m devbox record demo --runtime "$RUNTIME" --listen "$LISTEN" "$@" \
  -- python3 examples/demo/traffic.py '{inbound}'
