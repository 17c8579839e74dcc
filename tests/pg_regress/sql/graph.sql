-- The Data Graph (SPEC section 1): define it, read it back, draw it, build it piece by
-- piece, and what each kind of bad graph gets.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set ECHO all
RESET client_min_messages;

-- Shows SQLSTATE, message and hint of a statement that fails.
CREATE FUNCTION pg_temp.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text; detail text;
BEGIN
  EXECUTE statement;
  RETURN 'ok';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          hint = PG_EXCEPTION_HINT, detail = PG_EXCEPTION_DETAIL;
  RETURN st || ' ' || msg || coalesce(E'\nHINT: ' || nullif(hint, ''), '')
            || coalesce(E'\nDETAIL: ' || nullif(detail, ''), '');
END $$;

-- The sample warehouse's graph (demo/graph.json).
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph');
SELECT la_data_graph() = :'graph'::jsonb AS round_trip;
SELECT jsonb_pretty(la_data_graph() -> 'profile' -> 'relationships' -> 0);
SELECT la_data_graph_dot();
SELECT la_validate_data_graph(:'graph');

-- What a psql user sees for a bad graph: the JSON path first, then a hint.
SELECT la_define_data_graph(jsonb_set(:'graph', '{entities,1,primary_key}', '"idd"'));

-- Each class of error: SQLSTATE, message, hint.
-- unknown table
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{entities,1,table_ref}', '"public.pet"')));
-- unknown column (the profile's key, a trait column, an event column)
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,primary_key}', '"pk"')));
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,0,trait,name}', '"househld_id"')));
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{events,timestamp_column}', '"ts"')));
-- join_on naming an entity that is not the parent or the child
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,1,relationships,1,join_on}',
            '"households.id = credit_cards.account_id"')));
-- join_on naming a column that does not exist, sides in either order
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,1,relationships,1,join_on}',
            '"credit_cards.acount_id = accounts.id"')));
-- join_on that is not an equation (nothing is ever run from it)
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,1,relationships,1,join_on}',
            '"accounts.id = credit_cards.account_id; DROP TABLE pets"')));
-- join columns of incomparable types
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,1,relationships,1,join_on}',
            '"accounts.email = credit_cards.account_id"')));
-- duplicate and malformed slugs
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,2,slug}', '"household"')));
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,2,slug}', '"Carts!"')));
-- a path deeper than the limit (6 by default; lowered here to show it)
SET linked_audiences.max_relationship_depth = 2;
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)', :'graph'));
RESET linked_audiences.max_relationship_depth;
-- a cycle: an entity that already appears on its own path
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,1,relationships,1,relationships,0}',
   '{"slug": "owner", "related_entity": "accounts", "join_on": "credit_cards.account_id = accounts.id"}')));
-- a junction table without its join columns
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  :'graph'::jsonb #- '{profile,relationships,2,relationships,0,junction_table,right_join_on}'));
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,2,relationships,0,junction_table,left_join_on}', '"carts.id = cart"')));
-- a relationship to an unknown entity
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,0,relationships,0,related_entity}', '"petz"')));
-- first-level relationships join by trait or external_id
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,relationships,0}',
   '{"slug": "household", "related_entity": "households", "join_on": "profile.household_id = households.id"}')));
-- JSON of the wrong shape: a number for a string, an unknown key, not an object
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{entities,1,slug}', '7')));
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)',
  jsonb_set(:'graph', '{profile,primary_kye}', '"id"')));
SELECT pg_temp.try($$SELECT la_define_data_graph('[1, 2]')$$);

-- Nothing was stored by any of those.
SELECT la_data_graph() = :'graph'::jsonb AS unchanged;

-- la_validate_data_graph returns every problem as data.
SELECT jsonb_pretty(la_validate_data_graph(
  jsonb_set(jsonb_set(:'graph', '{entities,0,table_ref}', '"public.househods"'),
            '{entities,1,primary_key}', '"pet_id"')));

-- A missing index on a join column is a warning, not an error.
DROP INDEX pets_household_id_idx;
SELECT jsonb_pretty(la_define_data_graph(:'graph') -> 'warnings');
CREATE INDEX ON pets (household_id);

-- Building the graph piece by piece.
SELECT la_define_data_graph('{"entities": []}');
SELECT la_register_relationship('household', 'households', "trait" => '{"name": "household_id", "join_key": "id"}');
SELECT la_register_profile('profiles', 'id', user_id => 'user_id');
SELECT la_register_entity('households', 'households', 'id', 'Households');
SELECT la_register_entity('pets', 'pets', 'id');
SELECT la_register_relationship('household', 'households', "trait" => '{"name": "household_id", "join_key": "id"}');
SELECT la_register_relationship('pets', 'pets', parent => 'household', join_on => 'households.id = pets.household_id');
SELECT la_register_relationship('pets', 'pets', parent => 'househould', join_on => 'households.id = pets.household_id');
SELECT la_register_relationship('household', 'households', parent => 'pets', join_on => 'pets.household_id = households.id');
SELECT la_register_identifiers('profile_identifiers', 'profile_id', 'type', 'value');
SELECT la_register_event_source('events', 'profile_id', 'event', 'timestamp', 'properties');
SELECT la_unregister_entity('pets');
SELECT la_unregister_relationship('household');
SELECT la_unregister_relationship('pets');
SELECT la_unregister_entity('pets');
SELECT jsonb_pretty(la_data_graph());

-- An unqualified table_ref does not depend on the caller's search_path: it names the
-- table in public, else the one table of that name in a schema the caller can use.
CREATE SCHEMA planted;
CREATE TABLE planted.households (id int PRIMARY KEY, planted boolean);
CREATE SCHEMA crm;
CREATE TABLE crm.wallets (id int PRIMARY KEY);
SET search_path = planted, public;
SELECT la_define_data_graph(jsonb_set(jsonb_set(:'graph', '{entities,0,table_ref}', '"households"'),
  '{entities,99}', '{"slug": "wallets", "table_ref": "wallets", "primary_key": "id"}')) -> 'warnings' AS warnings;
SELECT key, value FROM linked_audiences.data_graph, jsonb_each(tables)
WHERE key IN ('households', 'wallets') ORDER BY key;
-- Several schemas and none is public: the caller must say which.
CREATE TABLE planted.wallets (id int PRIMARY KEY);
SELECT pg_temp.try(format('SELECT la_define_data_graph(%L)', jsonb_set(:'graph',
  '{entities,99}', '{"slug": "wallets", "table_ref": "wallets", "primary_key": "id"}')));
RESET search_path;
DROP SCHEMA planted, crm CASCADE;

-- A table dropped under the graph cannot be unregistered piece by piece (the entity is
-- used by its relationship; without the relationship, the entity names a missing table):
-- the error's HINT says how to get out, and redefining the graph as a whole does.
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
CREATE TABLE gone_toys (id int PRIMARY KEY, household_id int);
SELECT la_register_entity('toys', 'gone_toys', 'id') ->> 'entities' AS entities;
SELECT la_register_relationship('toys', 'toys', parent => 'household', join_on => 'households.id = toys.household_id') ->> 'relationships' AS relationships;
DROP TABLE gone_toys;
SELECT la_unregister_entity('toys');
SELECT la_unregister_relationship('toys');
SELECT la_define_data_graph(:'graph') ->> 'entities' AS entities_after;

DROP EXTENSION linked_audiences;
SELECT count(*) AS leftovers FROM pg_namespace WHERE nspname = 'linked_audiences';
