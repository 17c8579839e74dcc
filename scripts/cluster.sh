#!/usr/bin/env bash
# A throwaway Postgres 15 cluster of our own (the server runs as `postgres` when we are
# root, as the caller otherwise; see scripts/env.sh).
#   scripts/cluster.sh start DIR PORT DBNAME [realtime]   initdb if needed, start, create DBNAME
#   scripts/cluster.sh restart DIR
#   scripts/cluster.sh stop DIR
# With `realtime`, linked_audiences is preloaded too and its real-time worker serves
# DBNAME (linked_audiences.realtime = on).
# The socket lives in DIR; pg_cron is preloaded with cron.database_name = DBNAME and runs
# its jobs in background workers, so a scheduled job needs no connection settings.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cmd=${1:-} dir=${2:-}

case "$cmd" in
start)
  port=$3 db=$4 realtime=${5:-}
  mkdir -p "$dir"
  [ "$SERVER_USER" = "$(id -un)" ] || chown "$SERVER_USER": "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_server "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$db'
cron.use_background_workers = on
max_worker_processes = 16
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  if [ "$realtime" = realtime ] && ! grep -q "^linked_audiences.realtime = on" "$dir/data/postgresql.conf"; then
    cat >>"$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_cron,linked_audiences'
linked_audiences.realtime = on
linked_audiences.realtime_database = '$db'
linked_audiences.realtime_interval = '200ms'
CONF
    as_server "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 \
      && as_server "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null
  fi
  if ! as_server "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_server "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  fi
  if ! "$PGBIN/psql" -X -h "$dir" -p "$port" -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    "$PGBIN/createdb" -h "$dir" -p "$port" "$db"
  fi
  ;;
restart)
  as_server "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null
  ;;
stop)
  if [ -f "$dir/data/PG_VERSION" ]; then
    as_server "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  ;;
*)
  echo "usage: $0 start DIR PORT DBNAME | restart DIR | stop DIR" >&2
  exit 2
  ;;
esac
