-- Audience definitions (SPEC section 2) over the sample warehouse (demo/warehouse.sql).
-- The profiles: u-1 Ann (premium, household 1), u-2 Bob (free, household 2),
-- u-3 Cara (premium, household 3), u-4 Dan (free, no household), u-5 Eve (plan NULL,
-- household 4, no accounts), u-6 Finn (free, household 1).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
\set ECHO all
RESET client_min_messages;

-- The members of a definition, by user_id. Preview and the compiled SQL (run as is)
-- must agree, and the count must match the sample.
CREATE FUNCTION pg_temp.members(def jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  preview jsonb := la_preview_audience(def, 1000);
  via_preview text;
  via_sql text;
BEGIN
  SELECT string_agg(s->>'user_id', ' ' ORDER BY (s->>'profile_id')::int) INTO via_preview
  FROM jsonb_array_elements(preview->'sample') s;
  EXECUTE format('SELECT string_agg(p.user_id, '' '' ORDER BY p.id) FROM profiles p WHERE p.id::text IN (SELECT profile_id FROM (%s) m)',
                 la_audience_sql(def)) INTO via_sql;
  IF via_sql IS DISTINCT FROM via_preview
     OR (preview->>'count')::int <> jsonb_array_length(preview->'sample') THEN
    RAISE EXCEPTION 'preview (%, count %) and compiled SQL (%) disagree', via_preview, preview->>'count', via_sql;
  END IF;
  RETURN coalesce(via_preview, '(none)');
END $$;

CREATE FUNCTION pg_temp.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
  EXECUTE statement;
  RETURN 'ok';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
  RETURN st || ' ' || msg || coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END $$;

-- The three seed use cases.
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}',
  'Cat owners', 'Profiles whose household has a cat');
SELECT la_define_audience('premium_subscribers',
  '{"relationship": "subscriptions", "where": {"all": [
      {"column": "status", "op": "equals", "value": "active"},
      {"column": "tier", "op": "equals", "value": "premium"}]}}');
SELECT la_define_audience('owly_power_users',
  '{"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
    "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}');
SELECT key, version, enabled, depends_on FROM linked_audiences.audiences ORDER BY id;

-- Preview: the exact count, members with traits, up to ten matched entities each.
SELECT jsonb_pretty(la_preview_audience('cat_owners', 1) - 'sql');
SELECT la_preview_audience('owly_power_users') -> 'count' AS owly_count,
       jsonb_path_query_array(la_preview_audience('owly_power_users'), '$.sample[*].entities.credit_cards[*].id') AS matched_cards;
-- The compiled SQL. pets.household_id and profiles.household_id REFERENCE households,
-- so the household row is a pass-through and the pets join the profile directly;
-- without either foreign key (a pet and its owner could name a household that does not
-- exist) the household join stays.
SELECT la_audience_sql('{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
ALTER TABLE pets DROP CONSTRAINT pets_household_id_fkey;
ALTER TABLE profiles DROP CONSTRAINT profiles_household_id_fkey;
SELECT la_audience_sql('{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
ALTER TABLE pets ADD FOREIGN KEY (household_id) REFERENCES households;
ALTER TABLE profiles ADD FOREIGN KEY (household_id) REFERENCES households;
-- "At least n such events" alone reads its members straight from the events, whose
-- profile_id REFERENCES profiles; without that key the profiles are joined back.
SELECT la_audience_sql('{"event": "Order Completed", "count": {"at_least": 2}}');
ALTER TABLE events DROP CONSTRAINT events_profile_id_fkey;
SELECT la_audience_sql('{"event": "Order Completed", "count": {"at_least": 2}}');
ALTER TABLE events ADD FOREIGN KEY (profile_id) REFERENCES profiles;

-- Profile traits; not_equals, not_in and not_contains are true for NULL.
SELECT pg_temp.members('{"trait": "plan", "op": "equals", "value": "premium"}');
SELECT pg_temp.members('{"trait": "plan", "op": "not_equals", "value": "free"}');
SELECT pg_temp.members('{"not": {"trait": "plan", "op": "equals", "value": "premium"}}');
SELECT pg_temp.members('{"trait": "plan", "op": "in", "value": ["free"]}');
SELECT pg_temp.members('{"trait": "plan", "op": "not_in", "value": ["free"]}');
SELECT pg_temp.members('{"trait": "plan", "op": "in", "value": []}');
SELECT pg_temp.members('{"trait": "plan", "op": "not_in", "value": []}');
SELECT pg_temp.members('{"trait": "plan", "op": "is_null"}');
SELECT pg_temp.members('{"trait": "plan", "op": "not_contains", "value": "rem"}');
SELECT pg_temp.members('{"trait": "first_name", "op": "equals", "value": "ANN", "case_insensitive": true}');
SELECT pg_temp.members('{"trait": "first_name", "op": "starts_with", "value": "f", "case_insensitive": true}');
SELECT pg_temp.members('{"trait": "email", "op": "ends_with", "value": "@example.com"}');
SELECT pg_temp.members('{"trait": "household_id", "op": "between", "value": [2, 3]}');
SELECT pg_temp.members('{"trait": "created_at", "op": "before", "value": "2026-06-01"}');
SELECT pg_temp.members('{"any": [{"trait": "plan", "op": "is_null"}, {"all": [{"trait": "plan", "op": "equals", "value": "free"}, {"trait": "household_id", "op": "is_not_null"}]}]}');

-- Entities at any depth; the path between is implied ("at least one" at each step).
SELECT pg_temp.members('{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
SELECT pg_temp.members('{"not": {"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}}');
SELECT pg_temp.members('{"relationship": "pets", "where": {"column": "type", "op": "not_equals", "value": "dog"}}');
SELECT pg_temp.members('{"relationship": "household", "relationships": [{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}, "count": {"at_least": 2}}]}');
SELECT pg_temp.members('{"relationship": "cart_products", "where": {"column": "in_stock", "op": "equals", "value": false}}');
SELECT pg_temp.members('{"relationship": "cart_products", "where": {"column": "name", "op": "equals", "value": "Cat food"}}');

-- Counts over distinct related rows; no related rows counts 0, so exactly 0 is "without".
SELECT pg_temp.members('{"relationship": "pets", "count": {"exactly": 0}}');
SELECT pg_temp.members('{"relationship": "pets", "count": {"at_most": 1}}');
SELECT pg_temp.members('{"relationship": "pets", "count": {"less_than": 2}}');
SELECT pg_temp.members('{"relationship": "transactions", "count": {"more_than": 5}}');
SELECT pg_temp.members('{"relationship": "accounts", "count": {"exactly": 2}}');
SELECT pg_temp.members('{"relationship": "subscriptions", "where": {"column": "status", "op": "equals", "value": "active"}, "count": {"exactly": 0}}');

-- Aggregates: over no rows sum and count_distinct are 0; avg, min and max match nothing.
SELECT pg_temp.members('{"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 200}}');
SELECT pg_temp.members('{"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "lt", "value": 100}}');
SELECT pg_temp.members('{"relationship": "transactions", "aggregate": {"fn": "avg", "column": "amount", "op": "lt", "value": 100}}');
SELECT pg_temp.members('{"relationship": "transactions", "aggregate": {"fn": "max", "column": "created_at", "op": "gt", "value": "2026-10-08"}}');
SELECT pg_temp.members('{"relationship": "transactions", "aggregate": {"fn": "count_distinct", "column": "card_id", "op": "gte", "value": 2}}');
SELECT pg_temp.members('{"relationship": "credit_cards", "count": {"at_least": 2}, "aggregate": {"fn": "sum", "column": "balance", "op": "between", "value": [100, 200]}}');

-- A row reached twice through a junction (cat food twice in Ann's cart) is counted and
-- aggregated once.
INSERT INTO cart_items VALUES (5, 500, 'SKU-CATFOOD', 1);
SELECT pg_temp.members('{"relationship": "cart_products", "aggregate": {"fn": "sum", "column": "price", "op": "between", "value": [30, 40]}}');
SELECT pg_temp.members('{"relationship": "cart_products", "count": {"exactly": 2}}');
DELETE FROM cart_items WHERE id = 5;

-- References: to a profile trait, and to an ancestor relationship's row.
SELECT pg_temp.members('{"relationship": "credit_cards", "relationships": [{"relationship": "transactions", "where": {"column": "amount", "op": "gt", "value": {"ref": "credit_cards.balance"}}}]}');
SELECT pg_temp.members('{"relationship": "accounts", "where": {"column": "email", "op": "equals", "value": {"ref": "profile.email"}}}');

-- Events: windows, typed properties (a property of another type never matches or errs).
SELECT pg_temp.members('{"event": "Order Completed"}');
SELECT pg_temp.members('{"event": "Order Completed", "count": {"at_least": 2}}');
SELECT pg_temp.members('{"event": "Order Completed", "count": {"exactly": 0}}');
SELECT pg_temp.members('{"event": "Order Completed", "within": {"between": ["2026-11-01", "2026-11-30"]}}');
SELECT pg_temp.members('{"event": "Order Completed", "within": {"after": "2026-11-10T00:00:00Z"}}');
SELECT pg_temp.members('{"event": "Page Viewed", "within": {"last": "100 years"}}');
SELECT pg_temp.members('{"event": "Order Completed", "where": {"property": "total", "op": "gt", "value": 20}}');
SELECT pg_temp.members('{"event": "Order Completed", "where": {"property": "items.count", "op": "equals", "value": 3}}');
SELECT pg_temp.members('{"event": "Order Completed", "where": {"property": "currency", "op": "not_equals", "value": "usd", "case_insensitive": true}}');
SELECT pg_temp.members('{"event": "Order Completed", "where": {"property": "total", "op": "is_null"}}');

-- Audiences of audiences: the referenced audience's current definition is compiled in.
SELECT pg_temp.members('{"all": [{"audience": "cat_owners"}, {"audience": "premium_subscribers"}]}');
SELECT pg_temp.members('{"all": [{"audience": "cat_owners"}, {"audience": "premium_subscribers", "member": false}]}');
SELECT la_define_audience('premium_cat_owners', '{"all": [{"audience": "cat_owners"}, {"trait": "plan", "op": "equals", "value": "premium"}]}');
SELECT key, version, depends_on FROM linked_audiences.audiences WHERE key = 'premium_cat_owners';

-- Redefining makes a new version; referencing audiences follow the current definition.
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "in", "value": ["cat", "dog"]}}');
SELECT pg_temp.members((SELECT definition FROM linked_audiences.audiences WHERE key = 'premium_cat_owners'));
SELECT v.version, v.definition FROM linked_audiences.audience_version v
JOIN linked_audiences.audiences a ON a.id = v.audience_id WHERE a.key = 'cat_owners' ORDER BY v.version;

-- A cycle of audiences is refused at definition time.
SELECT pg_temp.try($$SELECT la_define_audience('cat_owners', '{"audience": "premium_cat_owners"}')$$);
-- Dropping is refused while another audience uses it; disabling is allowed.
SELECT pg_temp.try($$SELECT la_drop_audience('cat_owners')$$);
SELECT la_set_audience_enabled('cat_owners', false);
SELECT key, enabled FROM linked_audiences.audiences WHERE key = 'cat_owners';
-- A graph change that would break an audience is refused, naming it.
SELECT pg_temp.try($$SELECT la_unregister_relationship('pets')$$);

-- Bad definitions: SQLSTATE, the JSON path first, a hint with the nearest names.
SELECT la_define_audience('bad', '{"all": [{"relationship": "pets", "where": {"column": "typ", "op": "equals", "value": "cat"}}]}');
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "petz"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "plna", "op": "equals", "value": "x"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"audience": "cat_ownres"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "plan", "op": "equal", "value": "x"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "household_id", "op": "contains", "value": "1"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "household_id", "op": "equals", "value": "one"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "household_id", "op": "equals", "value": 1.5}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"trait": "created_at", "op": "after", "value": "last tuesday"}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "transactions", "where": {"column": "amount", "op": "gt", "value": {"ref": "pets.id"}}}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "credit_cards", "relationships": [{"relationship": "pets"}]}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "pets", "count": {"at_least": "two"}}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "pets", "aggregate": {"fn": "sum", "column": "name", "op": "gt", "value": 1}}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"event": "Order Completed", "within": {"last": "a fortnight"}}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '{"relationship": "pets", "were": {}}')$$);
SELECT pg_temp.try($$SELECT la_define_audience('bad', '[]')$$);
SELECT pg_temp.try($$SELECT la_define_audience('Bad Key', '{"trait": "plan", "op": "is_null"}')$$);
SELECT jsonb_pretty(la_validate_audience('{"any": [{"trait": "plna", "op": "equals", "value": 1}, {"relationship": "pets", "count": {"exactly": -1}}]}'));
SELECT la_validate_audience('{"relationship": "pets"}');
-- An untyped literal is taken as a key; JSON-looking text gets a hint.
SELECT la_preview_audience('{"relationship": "pets"}');
SELECT la_preview_audience('no_such_audience');
SELECT count(*) AS stored_bad FROM linked_audiences.audiences WHERE key = 'bad';

-- A NULL where a value is required is bad input (22023 at the argument), not a crash.

SELECT la_define_audience(NULL, '{"trait": "plan", "op": "is_null"}');
SELECT la_define_audience('k1', NULL);
SELECT la_activate('cat_owners', 'nowhere', 'Audience Entered', enabled => NULL);
SELECT la_preview_event(NULL);
SELECT la_register_entity('pets', NULL, 'id');
SELECT la_register_event_source('events', 'profile_id', NULL, 'timestamp');
SELECT la_compute_audience(NULL);
SELECT la_preview_audience('{"trait": "plan", "op": "is_null"}'::jsonb, -1);
SELECT la_activate('cat_owners', 'nowhere', 'Audience Entered', event_name => ' ');
