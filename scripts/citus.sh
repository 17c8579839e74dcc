#!/usr/bin/env bash
# A throwaway Citus cluster: a coordinator and two workers on loopback ports.
#   scripts/citus.sh start   builds and installs Citus 13.2.2 when it is missing (once per
#                            machine, a few minutes on 2 cores), starts the three nodes,
#                            creates the extensions and registers the workers; the last
#                            line of output is the coordinator's connection URI
#   scripts/citus.sh stop    stops the three nodes
#   scripts/citus.sh build   only builds and installs Citus (when missing)
# Idempotent: run again, it starts what is stopped and creates what is missing.
#
# The source: $CITUS_SRC, a directory holding citus-13.2.2.tar.gz (and the patch beside it,
# citus-13.2.2-pg15.20.patch), the tarball itself or an unpacked source tree; by default
# ../shared/vendor next to the checkout (see its README.md: packages, patch, configure).
# Servers run as `postgres` when we are root and as the caller otherwise; clients run as
# the caller and connect as the role `postgres` (scripts/env.sh). Nodes listen on
# 127.0.0.1 (trust for loopback, initdb's default) and on a socket in the cluster's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

CITUS_VERSION=13.2.2
dir=$(la_tmp la-citus)
db=${CITUS_DB:-la_citus}
coord_port=54340
worker_ports=(54341 54342)
nodes=(coordinator:$coord_port worker1:${worker_ports[0]} worker2:${worker_ports[1]})

citus_installed() {
  [ -f "$($PG_CONFIG --pkglibdir)/citus.so" ] && [ -f "$($PG_CONFIG --sharedir)/extension/citus.control" ]
}

# Prints the tarball or source tree to build from, or nothing.
citus_source() {
  local src=${CITUS_SRC:-$PWD/../shared/vendor}
  if [ -d "$src" ] && [ -f "$src/configure" ] && [ -d "$src/src/backend/distributed" ]; then
    echo "$src"
  elif [ -d "$src" ] && [ -f "$src/citus-$CITUS_VERSION.tar.gz" ]; then
    echo "$src/citus-$CITUS_VERSION.tar.gz"
  elif [ -f "$src" ]; then
    echo "$src"
  fi
}

build_citus() {
  citus_installed && return 0
  local src; src=$(citus_source)
  if [ -z "$src" ]; then
    echo "citus: not installed and no source found (set CITUS_SRC to citus-$CITUS_VERSION.tar.gz or its directory)" >&2
    exit 1
  fi
  as_root true   # one line and exit when there is no sudo
  local missing=() pkg
  for pkg in libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "citus: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  local build; build=$(la_tmp la-citus-build)
  rm -rf "$build"; mkdir -p "$build"
  if [ -d "$src" ]; then
    echo "citus: building from $src (a few minutes on 2 cores; log in $build/build.log)"
    cp -a "$src/." "$build/citus-$CITUS_VERSION"
  else
    echo "citus: building $src (a few minutes on 2 cores; log in $build/build.log)"
    tar xzf "$src" -C "$build"
    local patch; patch="$(dirname "$src")/citus-$CITUS_VERSION-pg15.20.patch"
    if [ -f "$patch" ]; then
      (cd "$build/citus-$CITUS_VERSION" && patch -p1 <"$patch") >"$build/build.log" 2>&1
    fi
  fi
  if ! (cd "$build/citus-$CITUS_VERSION" &&
        ./configure PG_CONFIG="$PG_CONFIG" && make -j"$(nproc)") >>"$build/build.log" 2>&1; then
    echo "citus: build failed:" >&2
    grep -E 'error|Error' "$build/build.log" | head -5 >&2
    exit 1
  fi
  (cd "$build/citus-$CITUS_VERSION" && as_root make install) >>"$build/build.log" 2>&1 || {
    echo "citus: make install failed (see $build/build.log)" >&2; exit 1; }
  rm -rf "$build/citus-$CITUS_VERSION"
  echo "citus: installed $CITUS_VERSION into $($PG_CONFIG --pkglibdir)"
}

node_psql() { # PORT DB psql-args...
  local port=$1 d=$2; shift 2
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d "$d" "$@"
}

start_node() { # NAME PORT
  local name=$1 port=$2 data=$dir/$1
  if [ ! -f "$data/PG_VERSION" ]; then
    as_server "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus,pg_cron'
cron.database_name = '$db'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
citus.shard_count = 8
CONF
  fi
  if ! as_server "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_server "$PGBIN/pg_ctl" -D "$data" -l "$dir/$name.log" -w start >/dev/null
  fi
  if [ -z "$(node_psql "$port" postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "$PGBIN/createdb" -h "$dir" -p "$port" "$db"
  fi
  node_psql "$port" "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS citus"
}

case ${1:-} in
build)
  build_citus
  ;;
start)
  build_citus
  mkdir -p "$dir"
  [ "$SERVER_USER" = "$(id -un)" ] || chown "$SERVER_USER": "$dir"
  for node in "${nodes[@]}"; do start_node "${node%%:*}" "${node##*:}"; done
  node_psql "$coord_port" "$db" -c "SET client_min_messages = warning" \
    -c "SELECT citus_set_coordinator_host('127.0.0.1', $coord_port)" >/dev/null
  for wport in "${worker_ports[@]}"; do
    node_psql "$coord_port" "$db" -c "SET client_min_messages = warning" \
      -c "SELECT citus_add_node('127.0.0.1', $wport) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = $wport)" >/dev/null
  done
  # On the coordinator; Citus propagates linked_audiences to the workers (its functions
  # run there when they appear in a pushed-down query). pg_cron only where it schedules.
  node_psql "$coord_port" "$db" -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
    -c "CREATE EXTENSION IF NOT EXISTS linked_audiences"
  echo "citus: coordinator on 127.0.0.1:$coord_port, workers on ${worker_ports[*]} ($(node_psql "$coord_port" "$db" -c "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0") active), data in $dir"
  echo "postgresql://postgres@127.0.0.1:$coord_port/$db"
  ;;
stop)
  for node in "${nodes[@]}"; do
    data=$dir/${node%%:*}
    if [ -f "$data/PG_VERSION" ]; then
      as_server "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
  ;;
*)
  echo "usage: $0 start | stop | build" >&2
  exit 2
  ;;
esac
