-- Computing audiences (SPEC section 3): membership is materialized, diffed against the
-- last run, and every change is recorded, in one transaction.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
DROP EXTENSION IF EXISTS pg_cron;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
\set ECHO all
RESET client_min_messages;

SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}') ->> 'version' AS v;
SELECT la_define_audience('premium_subscribers',
  '{"relationship": "subscriptions", "where": {"all": [
      {"column": "status", "op": "equals", "value": "active"},
      {"column": "tier", "op": "equals", "value": "premium"}]}}') ->> 'version' AS v;
SELECT la_define_audience('owly_power_users',
  '{"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
    "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}') ->> 'version' AS v;
SELECT la_define_audience('premium_cat_owners',
  '{"all": [{"audience": "cat_owners"}, {"audience": "premium_subscribers"}]}') ->> 'version' AS v;
-- Entity-level membership is kept for relationships an Entity Added/Removed activation names.
SELECT la_create_destination('braze', 'braze') ->> 'preset' AS preset;
SELECT la_activate('cat_owners', 'braze', 'Entity Added', 'pets') AS activation;
SELECT la_activate('owly_power_users', 'braze', 'Entity Removed', 'credit_cards') AS activation;

-- What changed in a run, one line per change.
CREATE FUNCTION pg_temp.changes(run bigint) RETURNS TABLE (audience text, user_id text, change text, entity text)
LANGUAGE sql AS $$
  SELECT a.key, p.user_id, c.change, c.relationship || ':' || c.entity_id
  FROM linked_audiences.membership_changes c
  JOIN linked_audiences.audience a ON a.id = c.audience_id
  JOIN profiles p ON p.id::text = c.profile_id
  WHERE c.run_id = run ORDER BY a.key, c.change, p.user_id, c.entity_id
$$;
CREATE FUNCTION pg_temp.members(audience text) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(p.user_id, ' ' ORDER BY p.id), '(none)')
  FROM linked_audiences.audience_members m
  JOIN linked_audiences.audience a ON a.id = m.audience_id
  JOIN profiles p ON p.id::text = m.profile_id WHERE a.key = audience
$$;

-- The first compute reports every member as entered (dependency order: referenced
-- audiences first).
SELECT audience, result - 'duration_ms' - 'run_id' AS result FROM la_compute_all();
SELECT c.* FROM linked_audiences.runs r, pg_temp.changes(r.id) c ORDER BY 1, 3, 2, 4;
SELECT key, pg_temp.members(key) FROM linked_audiences.audiences ORDER BY id;

-- A recompute over unchanged data writes no membership or change rows.
SELECT count(*) AS change_rows_before FROM linked_audiences.membership_changes \gset
SELECT la_compute_audience('cat_owners') - 'duration_ms' - 'run_id' AS result;
SELECT count(*) - :change_rows_before AS change_rows_written FROM linked_audiences.membership_changes;

-- The warehouse changes: a pet becomes a cat, a subscription lapses, a card gets more
-- transactions.
UPDATE pets SET type = 'cat' WHERE name = 'Bubbles';      -- Bob's fish
UPDATE pets SET type = 'dog' WHERE name = 'Luna';         -- one of Cara's two cats
UPDATE subscriptions SET status = 'canceled' WHERE id = 100;  -- Ann's premium
INSERT INTO transactions VALUES (9001, 1001, 5.00, '2026-11-27 09:00:00+00');  -- Bob's 6th
SELECT audience, result - 'duration_ms' - 'run_id' AS result FROM la_compute_all();
SELECT c.* FROM linked_audiences.runs r, pg_temp.changes(r.id) c
WHERE r.id > (SELECT max(id) - 4 FROM linked_audiences.runs) ORDER BY 1, 3, 2, 4;

-- A profile leaves: its entities go with it.
UPDATE pets SET type = 'dog' WHERE name = 'Milo';
SELECT la_compute_audience('cat_owners') - 'duration_ms' - 'run_id' AS result;
SELECT * FROM pg_temp.changes((SELECT max(id) FROM linked_audiences.runs));
SELECT key, pg_temp.members(key) FROM linked_audiences.audiences ORDER BY id;
SELECT a.key, e.relationship, e.profile_id, e.entity_id FROM linked_audiences.audience_entities e
JOIN linked_audiences.audience a ON a.id = e.audience_id ORDER BY 1, 2, 3, 4;

-- A compute that fails midway (here: writing entities, after the members) leaves the
-- previous state untouched, records a failed run and returns it with a WARNING.
UPDATE pets SET type = 'cat' WHERE name = 'Milo';   -- Cara would come back
CREATE FUNCTION pg_temp.boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
CREATE TRIGGER boom BEFORE INSERT ON linked_audiences.audience_entities
  FOR EACH ROW EXECUTE FUNCTION pg_temp.boom();
SELECT la_compute_audience('cat_owners') - 'run_id' AS result;
SELECT status, members, error FROM linked_audiences.runs ORDER BY id DESC LIMIT 1;
SELECT pg_temp.members('cat_owners') AS unchanged_members;
DROP TRIGGER boom ON linked_audiences.audience_entities;
SELECT la_compute_audience('cat_owners') - 'duration_ms' - 'run_id' AS result;
SELECT * FROM pg_temp.changes((SELECT max(id) FROM linked_audiences.runs));

-- Redefining keeps membership: the next compute emits only the difference.
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "in", "value": ["cat", "dog"]}}') ->> 'version' AS v;
SELECT la_compute_audience('cat_owners') - 'duration_ms' - 'run_id' AS result;
SELECT * FROM pg_temp.changes((SELECT max(id) FROM linked_audiences.runs));

-- Disabled audiences are skipped by la_compute_all; unknown keys are errors.
SELECT la_set_audience_enabled('premium_cat_owners', false);
SELECT audience FROM la_compute_all();
SELECT la_compute_audience('cat_ownres');

-- Runs: one row per compute.
SELECT a.key, r.status, r.members, r.entered, r.exited, r.entities_added, r.entities_removed,
       r.finished_at >= r.started_at AS finished
FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id ORDER BY r.id;

-- Schedules need pg_cron; with it, jobs are named linked_audiences:<key>.
SELECT la_schedule('owly_power_users', '*/10 * * * *');
CREATE EXTENSION pg_cron;
SELECT la_schedule('owly_power_users', '*/10 * * * *') > 0 AS scheduled;
SELECT la_schedule('owly_power_users', '*/15 * * * *') > 0 AS rescheduled;
SELECT la_schedule_all('0 * * * *') > 0 AS scheduled_all;
-- NULL arguments are refused where they are (22023), not taken for an audience key.
SELECT la_schedule(NULL, '*/10 * * * *');
SELECT la_schedule('owly_power_users', NULL);
SELECT la_schedule_all(NULL);
SELECT jobname, schedule, command FROM cron.job ORDER BY jobname;
-- la_schedules(): each schedule of this database the caller can see, with pg_cron's
-- last run (none yet).
SELECT audience, schedule, active, last_start, last_status, hint FROM la_schedules();
-- pg_cron records three failed runs, as for a server it cannot connect to (the rows a
-- failing job leaves, written by hand here): la_schedules() gives the hint, and both it
-- and la_compute_all() warn.
INSERT INTO cron.job_run_details (jobid, database, username, command, status, return_message, start_time, end_time)
SELECT j.jobid, j.database, j.username, j.command, 'failed', 'connection failed', now() - (n || ' minutes')::interval,
       now() - (n || ' minutes')::interval
FROM cron.job j, generate_series(1, 3) n WHERE j.jobname = 'linked_audiences:owly_power_users';
SELECT audience, last_status, last_message, hint FROM la_schedules() WHERE last_status IS NOT NULL;
SET client_min_messages = warning;
SELECT count(*) > 0 AS computed FROM la_compute_all();
RESET client_min_messages;
-- One success in the last three runs: no warning.
INSERT INTO cron.job_run_details (jobid, database, username, command, status, return_message, start_time, end_time)
SELECT j.jobid, j.database, j.username, j.command, 'succeeded', '1 row', now(), now()
FROM cron.job j WHERE j.jobname = 'linked_audiences:owly_power_users';
SELECT audience, last_status, hint FROM la_schedules() WHERE last_status IS NOT NULL;
SELECT la_unschedule('*');
SELECT la_schedule('no_such', '* * * * *');
-- Dropping an audience is refused while an activation uses it; then it removes its
-- job and its state.
SELECT la_drop_audience('owly_power_users');
DELETE FROM linked_audiences.activation WHERE audience_id = (SELECT id FROM linked_audiences.audiences WHERE key = 'owly_power_users');
SELECT la_drop_audience('owly_power_users');
SELECT jobname FROM cron.job ORDER BY jobname;
SELECT (SELECT count(*) FROM linked_audiences.runs r
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.audience a WHERE a.id = r.audience_id)) AS leftover_runs,
       (SELECT count(*) FROM linked_audiences.audience_members m
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.audience a WHERE a.id = m.audience_id)) AS leftover_members,
       (SELECT count(*) FROM linked_audiences.audience_entities e
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.audience a WHERE a.id = e.audience_id)) AS leftover_entities,
       (SELECT count(*) FROM linked_audiences.membership_changes c
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.runs r WHERE r.id = c.run_id)) AS leftover_changes;
DROP EXTENSION pg_cron;
-- A profile that reaches one entity through several rows (the same product in two of
-- its carts) tracks it once: one entity row, one Entity Added event.
INSERT INTO carts VALUES (503, 1, 'open', '2026-11-26 10:00:00+00');
INSERT INTO cart_items VALUES (5, 503, 'SKU-CATFOOD', 1);
SELECT la_define_audience('cart_shoppers', '{"relationship": "cart_products"}') IS NOT NULL AS defined;
SELECT la_activate('cart_shoppers', 'braze', 'Entity Added', 'cart_products') > 0 AS activated;
SET client_min_messages = warning;
SELECT r->>'members' AS members, r->>'entities_added' AS entities_added, r->>'events_written' AS events
FROM la_compute_audience('cart_shoppers') r;
RESET client_min_messages;
SELECT e.profile_id, e.entity_id FROM linked_audiences.audience_entities e
JOIN linked_audiences.audience a ON a.id = e.audience_id WHERE a.key = 'cart_shoppers' ORDER BY 1, 2;
SELECT o.aggregateid, o.payload #>> '{properties,__entity}' AS entity, o.payload #>> '{properties,cart_products__sku}' AS sku
FROM linked_audiences.outbox o WHERE o.audience = 'cart_shoppers' ORDER BY 1, 3;
DELETE FROM cart_items WHERE id = 5;
DELETE FROM carts WHERE id = 503;
