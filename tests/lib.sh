# Shared by the shell tests under tests/: psql helpers and the extension's state as one
# comparable text. Source it after setting host and port.
source scripts/env.sh
BIN=$PGBIN
q() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$port" "$@"; }

# A graph over demo/warehouse.sql, two audiences (one redefined), a destination with two
# activations, a compute of all and two events acknowledged.
la_make_state() { # DB
  q -d "$1" >/dev/null <<'SQL'
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
}

# Everything a user keeps in the extension: graph, audiences, members, entities, runs,
# destinations, activations and the outbox with its delivery state.
la_state() { # DB
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

# Fails with a diff when two states differ.
same_state() { # LABEL BEFORE AFTER
  if [ "$2" != "$3" ]; then
    echo "$1: state differs"
    diff <(echo "$2" | python3 -m json.tool) <(echo "$3" | python3 -m json.tool) | head -40
    exit 1
  fi
}

# After la_make_state: the database computes on (sequences continue): Bubbles becomes a
# cat, so u-2 enters cat_owners with one Audience Entered and one Entity Added event.
la_computes_on() { # DB LABEL
  local entered next
  entered=$(q -d "$1" -c "SET client_min_messages = warning" \
    -c "UPDATE pets SET type = 'cat' WHERE name = 'Bubbles'" \
    -c "SELECT la_compute_audience('cat_owners') ->> 'entered'" | tail -1)
  next=$(q -d "$1" -c "SELECT count(*) FROM linked_audiences.outbox o JOIN linked_audiences.outbox_state s USING (id)
                       WHERE s.status = 'pending' AND o.aggregateid = 'u-2'")
  [ "$entered" = "1" ] && [ "$next" = "2" ] || { echo "$2: did not compute on ($entered entered, $next events)"; exit 1; }
}
