-- The Linked Audiences use cases, end to end, on the sample warehouse.
\pset footer off
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
DROP EXTENSION IF EXISTS pg_cron;
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
\echo '== 3. Activate: a Braze destination and a plain Segment destination'
SELECT la_create_destination('braze', 'braze') AS destination;
SELECT la_create_destination('segment', 'segment') AS destination;
SELECT la_activate('cat_owners', 'braze', 'Audience Entered',
  properties => '{"traits": ["email", "first_name"], "relationships": {"pets": ["name", "type"]}}') AS cat_owners_entered;
SELECT la_activate('cat_owners', 'braze', 'Entity Added', 'pets', '{"traits": ["email"]}') AS cat_owners_pet_added;
SELECT la_activate('premium_subscribers', 'braze', 'Audience Membership Changed',
  properties => '{"traits": ["email"]}') AS premium_identify;
SELECT la_activate('premium_subscribers', 'segment', 'Audience Exited', event_name => 'Premium Lapsed',
  properties => '{"traits": ["email"]}') AS premium_exited;
SELECT la_activate('owly_power_users', 'segment', 'Entity Added', 'credit_cards',
  '{"relationships": {"credit_cards": ["name", "balance"]}}') AS owly_card_added;
\echo 'The Braze payload cat_owners would send for Cara (la_preview_event):'
SELECT jsonb_pretty(la_preview_event(1, '3') -> 'mapped') AS braze_track_event;

\echo
\echo '== 4. Compute: membership is materialized, every change recorded and sent to the outbox'
SET client_min_messages = warning;
SELECT audience, result->'members' AS members, result->'entered' AS entered, result->'exited' AS exited,
       result->'entities_added' AS entities_added, result->'events_written' AS events
FROM la_compute_all();
RESET client_min_messages;
\echo 'A consumer drains the outbox (la_outbox_read, then la_outbox_ack):'
CREATE TEMP TABLE drained AS
SELECT o.* FROM linked_audiences.destination d, la_outbox_read(d.key, 1000) o;
SELECT o.seq, o.destination, o.aggregateid AS user_id, o.type, o.action
FROM drained d JOIN linked_audiences.outbox o USING (id) ORDER BY o.seq;
SELECT la_outbox_ack(array_agg(id)) AS acknowledged FROM drained;
SELECT count(*) AS left_for_next_round FROM linked_audiences.outbox_state WHERE status = 'pending';

\echo
\echo '== 5. The warehouse changes: a pet becomes a cat, a subscription lapses, a card gets more transactions'
UPDATE pets SET type = 'cat' WHERE name = 'Bubbles';           -- Bob's fish
UPDATE subscriptions SET status = 'canceled' WHERE id = 100;   -- Ann's premium plan
INSERT INTO transactions VALUES (9001, 1001, 5.00, now());     -- Bob's Owly Card: a 6th transaction
SET client_min_messages = warning;
SELECT audience, result->'members' AS members, result->'entered' AS entered, result->'exited' AS exited,
       result->'entities_added' AS entities_added, result->'events_written' AS events
FROM la_compute_all();
RESET client_min_messages;
\echo 'Who entered and who left (linked_audiences.membership_changes):'
SELECT a.key AS audience, p.first_name || ' (' || p.user_id || ')' AS profile, c.change,
       c.relationship || ' ' || c.entity_id AS entity
FROM linked_audiences.membership_changes c
JOIN linked_audiences.audience a ON a.id = c.audience_id
JOIN profiles p ON p.id::text = c.profile_id
WHERE c.run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id)
ORDER BY a.id, c.change, p.user_id;
\echo 'The events a consumer reads now, as each destination receives them:'
TRUNCATE drained;
INSERT INTO drained SELECT o.* FROM linked_audiences.destination d, la_outbox_read(d.key, 1000) o;
SELECT o.destination, o.action, jsonb_pretty(o.mapped - 'time' - 'id' - 'event_id') AS body
FROM drained d JOIN linked_audiences.outbox o USING (id) ORDER BY o.seq;
SELECT la_outbox_ack(array_agg(id)) AS acknowledged FROM drained;
\echo 'A recompute with no data change writes nothing:'
SET client_min_messages = warning;
SELECT audience, result->'entered' AS entered, result->'exited' AS exited FROM la_compute_all()
\g /dev/null
RESET client_min_messages;
SELECT count(*) AS change_rows_in_last_round FROM linked_audiences.membership_changes
WHERE run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id);
SELECT count(*) AS events_pending FROM linked_audiences.outbox_state WHERE status = 'pending';

\echo
\echo '== 6. Real time: change capture, and the background worker computes incrementally after each commit'
SET client_min_messages = warning;
SELECT count(*) AS tables_captured FROM jsonb_array_elements(la_capture_changes());
SELECT audience, result->>'mode' AS mode FROM la_compute_all();
RESET client_min_messages;
\echo 'Mystery, the pet of unknown kind in Eve''s household, turns out to be a cat:'
UPDATE pets SET type = 'cat' WHERE name = 'Mystery';
SELECT clock_timestamp() AS committed \gset
DO $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM linked_audiences.outbox WHERE aggregateid = 'u-5' AND type = 'Audience Entered')
               OR clock_timestamp() > t0 + interval '15 seconds';
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
SELECT o.destination, o.aggregateid AS user_id, o.type,
       round(extract(epoch FROM (clock_timestamp() - :'committed'::timestamptz)) * 1000) AS ms_after_the_commit,
       r.mode AS compute, r.profiles_evaluated
FROM linked_audiences.outbox o LEFT JOIN linked_audiences.runs r ON r.id = o.run_id
WHERE o.aggregateid = 'u-5' AND o.type = 'Audience Entered' ORDER BY o.seq;

\echo
\echo '== 7. Schedules: pg_cron computes every enabled audience at the start of each minute'
SET client_min_messages = warning;
CREATE EXTENSION pg_cron;
RESET client_min_messages;
SELECT la_schedule_all('* * * * *') AS job;
SELECT audience, jobid, schedule, active, last_status FROM la_schedules();
\echo 'No run yet: ./scripts/demo.sh --schedule changes the warehouse and waits for pg_cron to compute it.'
