#!/usr/bin/env bash
# A throwaway Postgres 15 cluster of our own, run as the postgres user.
#   scripts/cluster.sh start DIR PORT DBNAME   initdb if needed, start, create DBNAME
#   scripts/cluster.sh stop DIR
# The socket lives in DIR; pg_cron is preloaded with cron.database_name = DBNAME.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd=$1 dir=$2
as_pg() { runuser -u postgres -- "$@"; }

case "$cmd" in
start)
  port=$3 db=$4
  mkdir -p "$dir"
  chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$db'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  fi
  if ! as_pg "$BIN/psql" -h "$dir" -p "$port" -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    as_pg "$BIN/createdb" -h "$dir" -p "$port" "$db"
  fi
  ;;
stop)
  if [ -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  ;;
*)
  echo "usage: $0 start DIR PORT DBNAME | stop DIR" >&2
  exit 2
  ;;
esac
