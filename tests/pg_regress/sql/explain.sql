-- Why is this profile in? la_explain_profile evaluates every node of a definition for
-- one profile: each node says whether it matched, relationship nodes give the count
-- (and aggregate) they compared and up to ten rows, nested nodes are evaluated for each
-- row of their enclosing node, event nodes give the count and timestamps, audience
-- references the referenced audience's tree. The root is membership.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
\set ECHO all
RESET client_min_messages;

SELECT la_define_audience('owly_power_users',
  '{"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
    "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}') ->> 'key' AS defined;
-- Ann (1) is in: her card 1000 has six transactions. Bob (2) is not: his Owly Card has
-- five. The explanation says which card had them.
SELECT jsonb_pretty(la_explain_profile('owly_power_users', '1')) AS ann;
SELECT jsonb_pretty(la_explain_profile('owly_power_users', '2')) AS bob;
-- The root is membership as preview decides it, for every profile.
SELECT p.id, (la_explain_profile('owly_power_users', p.id::text) ->> 'matched')::boolean AS explained,
       p.id::text IN (SELECT m->>'profile_id' FROM jsonb_array_elements(la_preview_audience('owly_power_users', 100)->'sample') m) AS previewed
FROM profiles p ORDER BY p.id;
-- A definition not yet defined: traits (with the profile's value), events (count and
-- timestamps, newest first), audience references, aggregates.
SELECT jsonb_pretty(la_explain_profile('{"all": [
    {"trait": "plan", "op": "equals", "value": "premium"},
    {"event": "Order Completed", "within": {"after": "2026-11-01"}, "count": {"at_least": 2}},
    {"not": {"audience": "owly_power_users"}},
    {"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 100}}]}'::jsonb, '3')) AS cara;
-- Errors: an unknown profile, a value that is no profile key, an unknown audience.
SELECT la_explain_profile('owly_power_users', '99');
SELECT la_explain_profile('owly_power_users', 'x');
SELECT la_explain_profile('owly_powr_users', '1');
