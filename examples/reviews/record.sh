#!/usr/bin/env bash
# Regenerate mocks/reviews/ by recording the example for real: a throwaway PostgreSQL
# server on the profile's upstream port (7432; md5 authentication; as the unprivileged
# devbox-pg user when run as root, since initdb refuses root), loaded with schema.sql; the
# demo's inventory stand-in on 7202; the reviews service through the devbox runtime with
# DATABASE_URL and INVENTORY_URL pointed at the recording relay and proxy; traffic.py
# through the inbound proxy. Previous recordings are replaced only when the run completes.
#
#   examples/reviews/record.sh            # process runtime
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
for port in 7432 7202; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "record.sh: port $port is in use (this script starts its own servers there)" >&2
    exit 1
  fi
done
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
dir=$(mktemp -d)
as=()
if [ "$(id -u)" = 0 ]; then
  id devbox-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin devbox-pg
  chown devbox-pg "$dir"
  as=(runuser -u devbox-pg --)
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
echo reviews-dev >"$dir/pw"
[ "${#as[@]}" = 0 ] || chown devbox-pg "$dir/pw"
"${as[@]}" "$bin/initdb" -D "$dir/data" -U reviews --pwfile="$dir/pw" --auth-host=md5 \
  --auth-local=trust -E UTF8 --no-sync >/dev/null
"${as[@]}" "$bin/postgres" -D "$dir/data" -p 7432 -h 127.0.0.1 -k "$dir" -c fsync=off \
  >"$dir/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/7432) 2>/dev/null && break; sleep 0.05; done
sleep 0.5 # accepting connections is not yet accepting logins
"${as[@]}" "$bin/createdb" -h "$dir" -p 7432 -U reviews reviews
"${as[@]}" psql -X -q -h "$dir" -p 7432 -U reviews -d reviews -v ON_ERROR_STOP=1 \
  -f - <examples/reviews/schema.sql
python3 examples/demo/upstreams/standins.py inventory --port 7202 >/dev/null &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/7202) 2>/dev/null && break; sleep 0.05; done
"$PY" -m devbox record reviews --runtime "${DEVBOX_RUNTIME:-process}" "$@" \
  -- python3 examples/reviews/traffic.py '{inbound}'
