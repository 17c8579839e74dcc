#!/usr/bin/env bash
# Builds and installs the extension, starts a throwaway cluster in /tmp/la-demo
# (port 54330, pg_cron preloaded), loads the sample warehouse and runs the Linked
# Audiences use cases end to end (demo/demo.sql), printing what happened.
#   ./scripts/demo.sh             run the demo; the cluster is left running
#   ./scripts/demo.sh --schedule  run it, then wait for pg_cron's first scheduled compute
#   ./scripts/demo.sh --psql      run it, then open psql on that cluster
#   ./scripts/demo.sh --stop      stop the cluster
# Works as root (the server runs as `postgres`) or as a user with sudo (the server runs
# as that user), from a checkout only its owner can read: psql runs as the caller.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
dir=$(la_tmp la-demo)
port=54330
if [ "${1:-}" = "--stop" ]; then
  scripts/cluster.sh stop "$dir"
  echo "demo cluster stopped"
  exit 0
fi
started=$(date +%s)
echo "== setting up (system packages, cargo-pgrx 0.18.1; skipped when present)"
scripts/setup.sh
echo "== building and installing linked_audiences (a first build takes about 3 minutes)"
la_install 2>&1 | grep -E --line-buffered '^\s*(Compiling linked_audiences|Finished|Installing|Discovered|Copying|Writing)' | sed 's/^ */   /'
echo "== starting the demo cluster in $dir (port $port; linked_audiences preloaded, its real-time worker on)"
# A running cluster has the previous build preloaded: restart it onto the new one.
as_server "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && scripts/cluster.sh restart "$dir"
scripts/cluster.sh start "$dir" "$port" demo realtime
psql_demo() {
  "$PGBIN/psql" -h "$dir" -p "$port" -d demo -X "$@"
}
psql_demo -q -v ON_ERROR_STOP=1 -f demo/demo.sql
if [ "${1:-}" = "--schedule" ]; then
  echo
  echo "== 8. Dan cancels his premium subscription; waiting for pg_cron's next minute to compute it (at most 80 s)"
  psql_demo -qc "SELECT la_capture_changes(false)" >/dev/null   # the worker would be first otherwise
  psql_demo -qc "UPDATE subscriptions SET status = 'canceled' WHERE id = 103"
  before=$(psql_demo -Atqc "SELECT count(*) FROM linked_audiences.runs")
  t0=$(date +%s)
  for _ in $(seq 1 80); do
    now=$(psql_demo -Atqc "SELECT count(*) FROM linked_audiences.runs")
    [ "$now" -gt "$before" ] && break
    sleep 1
  done
  sleep 1   # pg_cron records the run's end just after the compute commits
  echo "   pg_cron ran after $(( $(date +%s) - t0 )) s"
  psql_demo -q -f demo/schedule.sql
fi
echo
echo "Done in $(( $(date +%s) - started )) s. The demo cluster is running: ./scripts/demo.sh --psql to explore,"
echo "./scripts/demo.sh --schedule to watch pg_cron run a compute, ./scripts/demo.sh --stop to stop it."
if [ "${1:-}" = "--psql" ]; then
  psql_demo
fi
