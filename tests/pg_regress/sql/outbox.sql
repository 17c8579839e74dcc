-- Activation and the outbox (SPEC sections 4 and 5): every membership change becomes a
-- Segment event per activation, mapped for its destination's preset, written in the
-- compute's transaction; consumers read, acknowledge, fail and prune.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
SELECT la_define_audience('cat_owners',
  '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}') IS NOT NULL;
SELECT la_define_audience('premium_subscribers',
  '{"relationship": "subscriptions", "where": {"all": [
      {"column": "status", "op": "equals", "value": "active"},
      {"column": "tier", "op": "equals", "value": "premium"}]}}') IS NOT NULL;
SELECT la_define_audience('owly_power_users',
  '{"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
    "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}') IS NOT NULL;
\set ECHO all

-- Destinations, one per preset.
SELECT la_create_destination('braze', 'braze');
SELECT la_create_destination('iterable', 'iterable');
SELECT la_create_destination('customerio', 'customerio');
SELECT la_create_destination('segment', 'segment');
SELECT la_create_destination('hook', 'webhook', '{"url": "https://example.invalid/hook", "max_attempts": 2}');
SELECT la_create_destination('nope', 'mailchimp');
SELECT la_create_destination('hook', 'webhook', '{"max_attempts": 0}');

-- Activations: the five event choices, with enrichment and a custom event name.
SELECT la_activate('cat_owners', 'braze', 'Audience Entered and Exited', properties => '{"traits": ["email"]}');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered',
  properties => '{"traits": ["email", "first_name"], "relationships": {"pets": ["name", "type"]}}');
SELECT la_activate('premium_subscribers', 'iterable', 'Audience Exited',
  properties => '{"traits": ["email"]}', event_name => 'Premium Lapsed');
SELECT la_activate('owly_power_users', 'customerio', 'Entity Added', 'credit_cards',
  '{"traits": ["first_name"], "relationships": {"credit_cards": ["name", "balance"]}}');
SELECT la_activate('owly_power_users', 'segment', 'Entity Removed', 'credit_cards');
SELECT la_activate('cat_owners', 'hook', 'Audience Entered');
-- Bad activations: each names what is wrong and what would be right.
SELECT la_activate('cat_owners', 'braze', 'Audience Joined');
SELECT la_activate('cat_owners', 'brazе', 'Audience Entered');
SELECT la_activate('cat_owners', 'braze', 'Entity Added');
SELECT la_activate('cat_owners', 'braze', 'Entity Added', 'credit_cards');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered', 'pets');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered', properties => '{"traits": ["emial"]}');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered', properties => '{"relationships": {"pets": ["colour"]}}');
SELECT la_activate('cat_owners', 'braze', 'Audience Entered', properties => '{"relationships": {"accounts": ["email"]}}');

-- The payload an activation would send, for one current member (messageId and
-- timestamp vary, so they are shown apart).
SELECT jsonb_pretty((p->'payload') - 'messageId' - 'timestamp') AS payload, p->>'action' AS action,
       p->'payload'->>'messageId' ~ '^[0-9a-f-]{36}$' AS has_message_id
FROM la_preview_event(2, '3') p;
SELECT jsonb_pretty(la_preview_event(4)->'payload'->'properties') AS entity_added_properties;

-- The first compute: every member entered; events for every activation, in the same
-- transaction as the membership.
SET client_min_messages = warning;
SELECT audience, result->'entered' AS entered, result->'events_written' AS events FROM la_compute_all();
RESET client_min_messages;
SELECT seq, destination, aggregateid, type, action,
       payload->>'messageId' = id::text AS message_id_is_row_id,
       aggregatetype = destination AS router_key
FROM linked_audiences.outbox ORDER BY seq;

-- Exact payloads (messageId and timestamp masked), and each preset's mapping.
CREATE FUNCTION pg_temp.masked(j jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT j - 'messageId' - 'timestamp' - 'id' - 'event_id' - 'time'
$$;
SELECT type, jsonb_pretty(pg_temp.masked(payload)) AS payload, action, jsonb_pretty(pg_temp.masked(mapped)) AS mapped
FROM linked_audiences.outbox WHERE destination = 'braze' AND aggregateid = 'u-3' ORDER BY seq;
SELECT jsonb_pretty(pg_temp.masked(payload)) AS payload, action, jsonb_pretty(pg_temp.masked(mapped)) AS mapped
FROM linked_audiences.outbox WHERE destination = 'customerio' ORDER BY seq LIMIT 1;
SELECT mapped->'event_id' = payload->'messageId' AND mapped->'timestamp' = payload->'timestamp' AS customerio_ids
FROM linked_audiences.outbox WHERE destination = 'customerio' LIMIT 1;
SELECT destination, action, mapped = payload AS plain
FROM linked_audiences.outbox WHERE destination IN ('hook') ORDER BY seq LIMIT 1;

-- The warehouse changes; the next compute writes only the difference.
UPDATE subscriptions SET status = 'canceled' WHERE id = 100;   -- Ann lapses
UPDATE credit_cards SET name = 'Owly Classic' WHERE id = 1003; -- Dan's card leaves
UPDATE pets SET type = 'cat' WHERE name = 'Bubbles';           -- Bob enters
SELECT max(seq) AS last_seq FROM linked_audiences.outbox \gset
SET client_min_messages = warning;
SELECT audience, result->'events_written' AS events FROM la_compute_all();
RESET client_min_messages;
SELECT seq - :last_seq AS n, destination, aggregateid, type, action,
       jsonb_pretty(pg_temp.masked(COALESCE(payload->'properties', payload->'traits'))) AS body
FROM linked_audiences.outbox WHERE seq > :last_seq ORDER BY seq;
SELECT jsonb_pretty(pg_temp.masked(mapped)) AS iterable_mapped
FROM linked_audiences.outbox WHERE destination = 'iterable';

-- Consumers: claims are per destination, oldest first; per user, a row waits for the
-- earlier one to be acknowledged.
SELECT seq, aggregateid, type, attempts FROM la_outbox_read('braze', 100);
SELECT seq, aggregateid, type FROM la_outbox_read('braze', 100);
SELECT la_outbox_ack(array_agg(id)) AS acked FROM linked_audiences.outbox
WHERE destination = 'braze' AND type = 'Audience Entered and Exited';
SELECT seq, aggregateid, type, attempts FROM la_outbox_read('braze', 100);
-- Unacknowledged rows come back after their visibility timeout.
SELECT seq, aggregateid FROM la_outbox_read('segment', 100, '1 second');
SELECT seq FROM la_outbox_read('segment', 100);
SELECT pg_sleep(1.2);
SELECT seq, aggregateid, attempts FROM la_outbox_read('segment', 100);
-- Failures back off, then dead-letter after max_attempts (2 for the webhook).
SELECT seq, attempts FROM la_outbox_read('hook', 1, '10 milliseconds');
SELECT la_outbox_fail(id, 'HTTP 503', '10 milliseconds') FROM linked_audiences.outbox WHERE destination = 'hook' ORDER BY seq LIMIT 1;
SELECT pg_sleep(0.05);
SELECT seq, attempts FROM la_outbox_read('hook', 1, '10 milliseconds');
SELECT la_outbox_fail(id, 'HTTP 500: gone', '10 milliseconds') FROM linked_audiences.outbox WHERE destination = 'hook' ORDER BY seq LIMIT 1;
SELECT seq, aggregateid, attempts, last_error FROM la_outbox_dead_letters('hook');
SELECT seq, aggregateid FROM la_outbox_read('hook', 10);
DO $$ BEGIN
  PERFORM la_outbox_fail(id, 'again') FROM linked_audiences.outbox WHERE destination = 'hook' ORDER BY seq LIMIT 1;
EXCEPTION WHEN undefined_object THEN RAISE NOTICE 'a dead row cannot fail again: %', SQLSTATE;
END $$;
SELECT la_outbox_read('nowhere');
-- Release: claimed rows go back without counting an attempt, visible again after `after`.
SELECT la_define_audience('everyone', '{"all": []}') IS NOT NULL AS defined;
SELECT la_create_destination('relay', 'segment') IS NOT NULL AS created;
SELECT la_activate('everyone', 'relay', 'Audience Entered') > 0 AS activated;
SET client_min_messages = warning;
SELECT la_compute_audience('everyone')->'events_written' AS events;
RESET client_min_messages;
CREATE TEMP TABLE claimed AS SELECT id, aggregateid, attempts FROM la_outbox_read('relay', 2);
SELECT aggregateid, attempts FROM claimed ORDER BY aggregateid;
SELECT la_outbox_release(ARRAY(SELECT id FROM claimed WHERE aggregateid = 'u-1')) AS released;
SELECT la_outbox_release(ARRAY(SELECT id FROM claimed WHERE aggregateid = 'u-2'), '1 hour') AS released_for_an_hour;
SELECT aggregateid, attempts FROM la_outbox_read('relay', 10) ORDER BY aggregateid;
SELECT la_outbox_release(ARRAY(SELECT id FROM claimed WHERE aggregateid = 'u-1')) AS released_again;
SELECT la_outbox_release(ARRAY(SELECT id FROM claimed), '-1 second');
SELECT s.attempts, s.visible_at > now() + interval '50 minutes' AS hidden_for_an_hour
FROM linked_audiences.outbox_state s JOIN claimed c USING (id) WHERE c.aggregateid = 'u-2';
DROP TABLE claimed;
-- Pruning removes acknowledged rows only.
SELECT la_outbox_prune('0 seconds') AS pruned;
SELECT count(*) AS braze_rows_left FROM linked_audiences.outbox WHERE destination = 'braze';
SELECT (SELECT count(*) FROM linked_audiences.outbox o
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.outbox_state s WHERE s.id = o.id)) AS rows_without_state,
       (SELECT count(*) FROM linked_audiences.outbox_state s
        WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.outbox o WHERE o.id = s.id)) AS state_without_rows;
-- The outbox is insert-only.
UPDATE linked_audiences.outbox SET type = 'x' WHERE seq = (SELECT max(seq) FROM linked_audiences.outbox);

-- An event over 32 KB is cut to fit and marked; the run counts it.
INSERT INTO transactions (id, card_id, amount, created_at)
SELECT 20000 + g, 1000, g, '2026-11-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 600) g;
SELECT la_define_audience('big_spenders', '{"relationship": "transactions", "count": {"more_than": 100}}') IS NOT NULL;
SELECT la_activate('big_spenders', 'segment', 'Audience Entered',
  properties => '{"relationships": {"transactions": ["amount", "created_at", "card_id"]}}') > 0 AS activated;
SET client_min_messages = warning;
SELECT la_compute_audience('big_spenders') - 'duration_ms' - 'run_id' AS result;
RESET client_min_messages;
SELECT aggregateid, octet_length(payload::text) <= 32768 AS fits, payload->'properties'->'__truncated' AS truncated,
       jsonb_array_length(payload->'properties'->'transactions') < 600 AS cut
FROM linked_audiences.outbox WHERE audience = 'big_spenders';
SELECT events_written, events_truncated FROM linked_audiences.runs ORDER BY id DESC LIMIT 1;

-- A retry delay must be given, and not negative (as la_outbox_release's).
SELECT la_outbox_fail('00000000-0000-0000-0000-000000000000', 'boom', NULL);
SELECT la_outbox_fail('00000000-0000-0000-0000-000000000000', 'boom', '-1 minute');
