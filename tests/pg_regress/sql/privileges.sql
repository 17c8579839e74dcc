-- Privileges (SPEC section 6): PUBLIC gets nothing; la_grant levels give what they
-- name; functions run as the caller, so warehouse grants and row-level security apply.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}') IS NOT NULL;
SELECT la_create_destination('braze', 'braze') IS NOT NULL;
SELECT la_activate('cat_owners', 'braze', 'Audience Entered') > 0;
SELECT (la_compute_audience('cat_owners') ->> 'events_written')::int AS events;
DROP ROLE IF EXISTS la_nobody;
DROP ROLE IF EXISTS la_viewer;
DROP ROLE IF EXISTS la_consumer;
DROP ROLE IF EXISTS la_editor;
\set ECHO all
RESET client_min_messages;

CREATE FUNCTION pg_temp.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text;
BEGIN
  EXECUTE statement;
  RETURN 'ok';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN st || ' ' || msg;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

CREATE ROLE la_nobody;
CREATE ROLE la_viewer;
CREATE ROLE la_consumer;
CREATE ROLE la_editor;
SELECT la_grant('la_viewer', 'viewer'), la_grant('la_consumer', 'consumer'), la_grant('la_editor', 'editor');
SELECT la_grant('la_nobody', 'admin');
SELECT la_grant('no_such_role', 'viewer');
-- The editor also needs to read the warehouse, as any user of it would.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO la_editor;

-- PUBLIC: nothing.
SET ROLE la_nobody;
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.audiences');
SELECT pg_temp.try('SELECT la_data_graph()');
SELECT pg_temp.try($$SELECT * FROM la_outbox_read('braze')$$);
SELECT pg_temp.try($$SELECT la_define_audience('x', '{"trait": "plan", "op": "is_null"}')$$);
RESET ROLE;

-- viewer: reads audiences, members, runs; writes nothing, reads no outbox.
SET ROLE la_viewer;
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.audiences');
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.audience_members');
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.runs');
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.outbox');
SELECT pg_temp.try($$SELECT la_set_audience_enabled('cat_owners', false)$$);
RESET ROLE;

-- consumer: reads and settles the outbox; sees no audiences.
SET ROLE la_consumer;
SELECT pg_temp.try($$SELECT * FROM la_outbox_read('braze', 10)$$);
SELECT pg_temp.try($$SELECT la_outbox_ack(ARRAY(SELECT id FROM linked_audiences.outbox))$$);
SELECT pg_temp.try('SELECT count(*) FROM linked_audiences.audience_members');
SELECT pg_temp.try($$SELECT la_compute_audience('cat_owners')$$);
RESET ROLE;

-- editor: defines, previews and computes, as far as its warehouse grants reach.
SET ROLE la_editor;
SELECT pg_temp.try($$SELECT la_define_audience('dog_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "dog"}}')$$);
SELECT la_preview_audience('dog_owners') -> 'count' AS dog_owners;
SELECT la_compute_audience('dog_owners') -> 'members' AS members;
RESET ROLE;

-- A role without SELECT on a graph table cannot preview or compute over it.
REVOKE SELECT ON pets FROM la_editor;
SET ROLE la_editor;
SELECT pg_temp.try($$SELECT la_preview_audience('dog_owners')$$);
SELECT la_compute_audience('dog_owners') ->> 'status' AS status;
RESET ROLE;
-- Privileges are per audience: without pets, an audience on traits and accounts still
-- previews and computes; one on pets names the table it lacks.
SELECT la_define_audience('premium_plan', '{"trait": "plan", "op": "equals", "value": "premium"}') IS NOT NULL AS defined;
SET ROLE la_editor;
SELECT la_preview_audience('premium_plan') -> 'count' AS premium_without_pets;
SELECT la_preview_audience('{"relationship": "accounts", "where": {"column": "status", "op": "equals", "value": "open"}}'::jsonb) -> 'count' AS open_accounts_without_pets;
SET client_min_messages = warning;
SELECT la_compute_audience('premium_plan') -> 'members' AS premium_members;
RESET client_min_messages;
SELECT pg_temp.try($$SELECT la_preview_audience('{"any": [{"trait": "plan", "op": "is_null"}, {"relationship": "pets"}]}'::jsonb)$$);
RESET ROLE;
GRANT SELECT ON pets TO la_editor;

-- Row-level security on a graph table is respected in previews and computes.
ALTER TABLE pets ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_household_4 ON pets FOR SELECT TO la_editor USING (household_id = 4);
SET ROLE la_editor;
SELECT la_preview_audience('dog_owners') -> 'count' AS dog_owners_under_rls;
SET client_min_messages = warning;
SELECT la_compute_audience('dog_owners') -> 'exited' AS exited_under_rls;
RESET client_min_messages;
RESET ROLE;
SELECT la_preview_audience('dog_owners') -> 'count' AS dog_owners_as_owner;
DROP POLICY only_household_4 ON pets;
ALTER TABLE pets DISABLE ROW LEVEL SECURITY;

-- Also on a table the compiler may leave out of a join: households lies between profiles
-- and pets, with foreign keys on both sides, and is joined as soon as a policy or a
-- missing grant could change what the caller sees.
ALTER TABLE households ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_household_4 ON households FOR SELECT TO la_editor USING (id <> 4);
SET ROLE la_editor;
SELECT la_preview_audience('dog_owners') -> 'count' AS dog_owners_without_household_4;
RESET ROLE;
DROP POLICY not_household_4 ON households;
ALTER TABLE households DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON households FROM la_editor;
SET ROLE la_editor;
SELECT pg_temp.try($$SELECT la_preview_audience('dog_owners')$$);
RESET ROLE;
GRANT SELECT ON households TO la_editor;

-- Every function of the extension pins its search_path (none is listed here).
SELECT p.oid::regprocedure AS unpinned
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'linked_audiences') AND d.deptype = 'e'
  AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);
SELECT count(*) > 40 AS many_functions
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'linked_audiences') AND d.deptype = 'e';

-- Nothing planted in the caller's search_path is used.
CREATE SCHEMA planted;
CREATE FUNCTION planted.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION planted.count(anyelement) RETURNS bigint LANGUAGE sql AS $$ SELECT 0::bigint $$;
CREATE FUNCTION planted.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT 'planted' $$;
SET search_path = planted, public;
SELECT la_preview_audience('{"trait": "first_name", "op": "equals", "value": "ANN", "case_insensitive": true}'::jsonb) -> 'count' AS ann;
SELECT la_preview_audience('{"trait": "created_at", "op": "within_last", "value": "100 years"}'::jsonb) -> 'count' AS recent;
SELECT (la_compute_audience('cat_owners') ->> 'members')::int AS members;
RESET search_path;
DROP SCHEMA planted CASCADE;

DROP OWNED BY la_nobody, la_viewer, la_consumer, la_editor;
DROP ROLE la_nobody, la_viewer, la_consumer, la_editor;
