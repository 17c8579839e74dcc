#!/usr/bin/env bash
# pg_dump and restore of a database using linked_audiences keep the graph, audiences,
# memberships, activations and the outbox; the restored copy computes on from there.
#   tests/dump/dump_restore.sh HOST_DIR PORT
set -euo pipefail
cd "$(dirname "$0")/../.."
host=$1 port=$2
source tests/lib.sh
work=$(mktemp -d)

"$BIN/dropdb" -h "$host" -p "$port" --if-exists la_dump_src
"$BIN/dropdb" -h "$host" -p "$port" --if-exists la_dump_dst
"$BIN/createdb" -h "$host" -p "$port" la_dump_src
"$BIN/createdb" -h "$host" -p "$port" la_dump_dst
q -d la_dump_src -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences" -f demo/warehouse.sql >/dev/null
la_make_state la_dump_src

before=$(la_state la_dump_src)
"$BIN/pg_dump" -h "$host" -p "$port" -Fc -f "$work/src.dump" la_dump_src
"$BIN/pg_restore" -h "$host" -p "$port" -d la_dump_dst --exit-on-error "$work/src.dump"
after=$(la_state la_dump_dst)
same_state dump/restore "$before" "$after"
# The restored database goes on: sequences continue, a change is computed and sent.
la_computes_on la_dump_dst dump/restore
"$BIN/dropdb" -h "$host" -p "$port" la_dump_src
"$BIN/dropdb" -h "$host" -p "$port" la_dump_dst
rm -rf "$work"
echo "dump/restore: ok (graph, audiences, members, entities, runs, activations and outbox survived; restored copy computes on)"
