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
