#!/usr/bin/env bash
# pg_dump and restore of a database using linked_audiences keep the graph, audiences,
# memberships, activations and the outbox; the restored copy computes on from there.
#   tests/dump/dump_restore.sh HOST_DIR PORT
set -euo pipefail
cd "$(dirname "$0")/../.."
host=$1 port=$2
BIN=/usr/lib/postgresql/15/bin
as_pg() { runuser -u postgres -- "$@"; }
q() { as_pg "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$port" "$@"; }
work=$(mktemp -d)
chown postgres: "$work"

as_pg "$BIN/dropdb" -h "$host" -p "$port" --if-exists la_dump_src
as_pg "$BIN/dropdb" -h "$host" -p "$port" --if-exists la_dump_dst
as_pg "$BIN/createdb" -h "$host" -p "$port" la_dump_src
as_pg "$BIN/createdb" -h "$host" -p "$port" la_dump_dst
q -d la_dump_src -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences" -f demo/warehouse.sql >/dev/null
q -d la_dump_src >/dev/null <<'SQL'
SET client_min_messages = warning;
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph');
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "in", "value": ["cat"]}}');
SELECT la_define_audience('premium_cat_owners', '{"all": [{"audience": "cat_owners"}, {"trait": "plan", "op": "equals", "value": "premium"}]}');
SELECT la_create_destination('braze', 'braze', '{"max_attempts": 3}');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered', properties => '{"traits": ["email"]}');
SELECT la_activate('cat_owners', 'braze', 'Entity Added', 'pets');
SELECT * FROM la_compute_all();
SELECT la_outbox_ack(ARRAY(SELECT id FROM la_outbox_read('braze', 2)));
SQL

# What must survive, as one comparable text.
state() {
  q -d "$1" -c "SELECT jsonb_build_object(
    'graph', la_data_graph(),
    'audiences', (SELECT jsonb_agg(jsonb_build_array(key, version, enabled, definition, depends_on) ORDER BY id) FROM linked_audiences.audiences),
    'versions', (SELECT count(*) FROM linked_audiences.audience_version),
    'members', (SELECT jsonb_agg(jsonb_build_array(audience_id, profile_id) ORDER BY audience_id, profile_id) FROM linked_audiences.audience_members),
    'entities', (SELECT jsonb_agg(jsonb_build_array(audience_id, relationship, profile_id, entity_id) ORDER BY 1) FROM linked_audiences.audience_entities),
    'changes', (SELECT count(*) FROM linked_audiences.membership_changes),
    'runs', (SELECT jsonb_agg(jsonb_build_array(id, status, members) ORDER BY id) FROM linked_audiences.runs),
    'destinations', (SELECT jsonb_agg(jsonb_build_array(key, preset, settings) ORDER BY id) FROM linked_audiences.destination),
    'activations', (SELECT jsonb_agg(jsonb_build_array(id, event, entity, properties) ORDER BY id) FROM linked_audiences.activation),
    'outbox', (SELECT jsonb_agg(jsonb_build_array(o.seq, o.id, o.type, o.payload, s.status) ORDER BY o.seq)
               FROM linked_audiences.outbox o JOIN linked_audiences.outbox_state s USING (id)))"
}
before=$(state la_dump_src)
as_pg "$BIN/pg_dump" -h "$host" -p "$port" -Fc -f "$work/src.dump" la_dump_src
as_pg "$BIN/pg_restore" -h "$host" -p "$port" -d la_dump_dst --exit-on-error "$work/src.dump"
after=$(state la_dump_dst)
if [ "$before" != "$after" ]; then
  echo "dump/restore: state differs"
  diff <(echo "$before" | python3 -m json.tool) <(echo "$after" | python3 -m json.tool) | head -40
  exit 1
fi
# The restored database goes on: sequences continue, a change is computed and sent.
q -d la_dump_dst -c "SET client_min_messages = warning" \
  -c "UPDATE pets SET type = 'cat' WHERE name = 'Bubbles'" \
  -c "SELECT la_compute_audience('cat_owners') ->> 'entered'" >"$work/after.txt"
entered=$(tail -1 "$work/after.txt")
next=$(q -d la_dump_dst -c "SELECT count(*) FROM linked_audiences.outbox o JOIN linked_audiences.outbox_state s USING (id) WHERE s.status = 'pending' AND o.aggregateid = 'u-2'")
[ "$entered" = "1" ] && [ "$next" = "2" ] || { echo "dump/restore: restored database did not compute on ($entered entered, $next events)"; exit 1; }
as_pg "$BIN/dropdb" -h "$host" -p "$port" la_dump_src
as_pg "$BIN/dropdb" -h "$host" -p "$port" la_dump_dst
rm -rf "$work"
echo "dump/restore: ok (graph, audiences, members, entities, runs, activations and outbox survived; restored copy computes on)"
