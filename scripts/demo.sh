#!/usr/bin/env bash
# Builds and installs the extension, starts a throwaway cluster in /tmp/la-demo
# (port 54330, pg_cron preloaded), loads the sample warehouse and runs the Linked
# Audiences use cases end to end (demo/demo.sql), printing what happened.
#   ./scripts/demo.sh          run the demo; the cluster is left running
#   ./scripts/demo.sh --psql   run it, then open psql on that cluster
#   ./scripts/demo.sh --stop   stop the cluster
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/la-demo
port=54330
if [ "${1:-}" = "--stop" ]; then
  scripts/cluster.sh stop "$dir"
  echo "demo cluster stopped"
  exit 0
fi
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building and installing linked_audiences"
cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
scripts/cluster.sh start "$dir" "$port" demo
psql_demo() {
  runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -h "$dir" -p "$port" -d demo -X "$@"
}
psql_demo -q -v ON_ERROR_STOP=1 -f demo/demo.sql
echo
echo "The demo cluster is running: ./scripts/demo.sh --psql to explore, ./scripts/demo.sh --stop to stop it."
if [ "${1:-}" = "--psql" ]; then
  psql_demo
fi
