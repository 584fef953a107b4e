#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL answers on 127.0.0.1:5432 (starts the cluster if down).
set -euo pipefail
HOST="${GLISK_PG_HOST:-127.0.0.1}"
PORT="${GLISK_PG_PORT:-5432}"
if pg_isready -q -h "$HOST" -p "$PORT"; then exit 0; fi
echo "ensure_postgres: PostgreSQL is down on $HOST:$PORT, starting it"
if command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
fi
for _ in $(seq 1 60); do
  pg_isready -q -h "$HOST" -p "$PORT" && exit 0
  sleep 0.5
done
echo "ensure_postgres: PostgreSQL did not come up on $HOST:$PORT" >&2
exit 1
