-- The Linked Audiences use cases, end to end, on the sample warehouse.
\pset footer off
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\ir warehouse.sql
RESET client_min_messages;

\echo
\echo '== 1. The Data Graph: profiles, entities and how they join (demo/graph.json)'
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') AS summary;
\echo 'Relationships (slug, entity, how it joins its parent):'
SELECT r->>'slug' AS relationship, r->>'related_entity' AS entity,
       coalesce(r->>'join_on', (r->'trait')::text, (r->'external_id')::text, 'via ' || (r->'junction_table'->>'table_ref')) AS joins_by
FROM jsonb_path_query(la_data_graph(), 'strict $.profile.**.relationships[*]') AS r;
\echo 'Graphviz (psql -Atc "SELECT la_data_graph_dot()" | dot -Tpng > graph.png):'
\pset format unaligned
\pset tuples_only on
SELECT la_data_graph_dot();
\pset format aligned
\pset tuples_only off

\echo
\echo '== 2. The three seed audiences: define, then preview (count and a sample with matched entities)'
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}',
  'Cat owners', 'Profiles whose household has a cat') AS cat_owners;
SELECT la_define_audience('premium_subscribers',
  '{"relationship": "subscriptions", "where": {"all": [
      {"column": "status", "op": "equals", "value": "active"},
      {"column": "tier", "op": "equals", "value": "premium"}]}}',
  'Premium subscribers', 'Accounts with an active premium subscription') AS premium_subscribers;
SELECT la_define_audience('owly_power_users',
  '{"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
    "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}',
  'Owly power users', 'Owly Card holders with a card that has more than five transactions') AS owly_power_users;

SELECT a.key AS audience, (pv->>'count')::int AS members,
       (SELECT string_agg(format('%s (%s)', s->'traits'->>'first_name', s->>'user_id'), ', ' ORDER BY s->>'user_id')
        FROM jsonb_array_elements(pv->'sample') s) AS who,
       (SELECT string_agg(DISTINCT e->>'name', ', ') FROM jsonb_array_elements(pv->'sample') s,
               jsonb_each(s->'entities') r, jsonb_array_elements(r.value) e) AS matched_entities
FROM linked_audiences.audiences a, la_preview_audience(a.key) pv
ORDER BY a.id;

\echo 'The compiled SQL of owly_power_users (la_audience_sql), runnable as is:'
\pset format unaligned
\pset tuples_only on
SELECT la_audience_sql(definition) FROM linked_audiences.audiences WHERE key = 'owly_power_users';
\pset format aligned
\pset tuples_only off

\echo 'A bad definition gets the JSON path and the nearest names:'
\set ON_ERROR_STOP 0
SELECT la_define_audience('dog_owners', '{"relationship": "pets", "where": {"column": "typ", "op": "equals", "value": "dog"}}');
\set ON_ERROR_STOP 1

\echo
\echo '== 3. Compute: membership is materialized and every change recorded'
\echo 'Entity-level membership is tracked for relationships that an Entity Added/Removed activation names:'
SELECT la_create_destination('braze', 'braze') AS destination;
SELECT la_activate('cat_owners', 'braze', 'Entity Added', 'pets') AS activation_id;
SELECT la_activate('owly_power_users', 'braze', 'Entity Added', 'credit_cards') AS activation_id;
SET client_min_messages = warning;
SELECT audience, result->'members' AS members, result->'entered' AS entered, result->'exited' AS exited,
       result->'entities_added' AS entities_added
FROM la_compute_all();

\echo
\echo '== 4. The warehouse changes: a pet becomes a cat, a subscription lapses, a card gets more transactions'
UPDATE pets SET type = 'cat' WHERE name = 'Bubbles';           -- Bob's fish
UPDATE subscriptions SET status = 'canceled' WHERE id = 100;   -- Ann's premium plan
INSERT INTO transactions VALUES (9001, 1001, 5.00, now());     -- Bob's Owly Card: a 6th transaction
SELECT audience, result->'members' AS members, result->'entered' AS entered, result->'exited' AS exited,
       result->'entities_added' AS entities_added, result->'entities_removed' AS entities_removed
FROM la_compute_all();
RESET client_min_messages;
\echo 'Who entered and who left in that last round (linked_audiences.membership_changes):'
SELECT a.key AS audience, p.first_name || ' (' || p.user_id || ')' AS profile, c.change,
       c.relationship || ' ' || c.entity_id AS entity
FROM linked_audiences.membership_changes c
JOIN linked_audiences.audience a ON a.id = c.audience_id
JOIN profiles p ON p.id::text = c.profile_id
WHERE c.run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id)
ORDER BY a.id, c.change, p.user_id;
\echo 'A recompute with no data change writes nothing:'
SET client_min_messages = warning;
SELECT audience, result->'entered' AS entered, result->'exited' AS exited FROM la_compute_all()
\g /dev/null
RESET client_min_messages;
SELECT count(*) AS change_rows_in_last_round FROM linked_audiences.membership_changes
WHERE run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id);
