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
