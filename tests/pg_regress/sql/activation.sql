-- Events as Segment sends them (SPEC section 4): entity events carry the triggering
-- entity flat with "__entity" at the top of properties and its own related rows nested;
-- an activation sends the changes computed after its creation, and with send_existing
-- also the current members or entities at its first compute; "Audience Membership
-- Changed" names the identify event.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\set ECHO none
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph') IS NOT NULL AS graph_defined;
\set ECHO all
RESET client_min_messages;

-- Accounts with an Owly Card that has transactions of 20 or more; carts with products
-- in stock.
SELECT la_define_audience('card_users', '{"relationship": "accounts", "relationships": [
  {"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
   "relationships": [{"relationship": "transactions", "where": {"column": "amount", "op": "gte", "value": 20}}]}]}') ->> 'key' AS defined;
SELECT la_define_audience('cart_owners', '{"relationship": "carts", "relationships": [
  {"relationship": "cart_products", "where": {"column": "in_stock", "op": "equals", "value": true}}]}') ->> 'key' AS defined;
SELECT la_create_destination(p, p, CASE p WHEN 'braze' THEN '{"space_id": "spa_123", "namespace": "spa_123"}' ELSE '{}' END::jsonb) ->> 'key' AS destination
FROM unnest(ARRAY['segment', 'braze', 'iterable', 'customerio', 'webhook']) p;

-- Entity Added for accounts, selecting its cards and their transactions: each account's
-- event lists only that account's matched cards, each card only its matched
-- transactions, nested as Segment's Linked Audiences guides show.
SELECT la_activate('card_users', d, 'Entity Added', 'accounts',
  '{"traits": ["first_name"], "relationships": {"accounts": ["name"], "credit_cards": ["name"], "transactions": ["amount"]}}') > 0 AS activated
FROM unnest(ARRAY['segment', 'braze', 'iterable', 'customerio', 'webhook']) d;
SELECT la_activate('cart_owners', 'braze', 'Entity Added', 'carts',
  '{"relationships": {"carts": ["status"], "cart_products": ["name"]}}', event_name => 'Cart Updated') > 0 AS activated;
SET client_min_messages = warning;
SELECT la_compute_audience('card_users') - 'duration_ms' - 'run_id' AS first_compute;
SELECT la_compute_audience('cart_owners') - 'duration_ms' - 'run_id' AS first_compute;
RESET client_min_messages;
SELECT destination, aggregateid, jsonb_pretty(payload->'properties') AS properties
FROM linked_audiences.outbox WHERE audience = 'card_users' AND destination = 'segment' ORDER BY seq;
SELECT jsonb_pretty((payload->'context'->'personas') - 'computation_id' - 'computation_run_id') AS braze_personas
FROM linked_audiences.outbox WHERE audience = 'card_users' AND destination = 'braze' ORDER BY seq LIMIT 1;
-- Each preset maps the same shape unchanged (Ann's business account).
SELECT destination, action, jsonb_pretty(mapped - 'time' - 'timestamp' - 'id' - 'event_id' - 'messageId' - 'context' - 'userId' - 'type') AS mapped
FROM linked_audiences.outbox
WHERE audience = 'card_users' AND payload->'properties'->>'accounts__id' = '14' ORDER BY destination;
SELECT aggregateid, jsonb_pretty(payload->'properties') AS cart_properties
FROM linked_audiences.outbox WHERE audience = 'cart_owners' ORDER BY seq;

-- An activation sends what is computed after it was created. Created now, without
-- send_existing, the next compute (no warehouse change) sends nothing, for every event
-- type; with send_existing its first compute sends every current member or entity.
SELECT la_activate('card_users', 'segment', e, CASE WHEN e LIKE 'Entity%' THEN 'credit_cards' END,
                   event_name => 'later: ' || e) > 0 AS activated
FROM unnest(ARRAY['Audience Entered', 'Audience Exited', 'Audience Membership Changed', 'Entity Added', 'Entity Removed']) e;
SELECT la_activate('card_users', 'webhook', e, CASE WHEN e LIKE 'Entity%' THEN 'credit_cards' END,
                   event_name => 'existing: ' || e, send_existing => true) > 0 AS activated
FROM unnest(ARRAY['Audience Entered', 'Audience Membership Changed', 'Entity Added']) e;
-- The old name is an alias, stored as the new one.
SELECT la_activate('cart_owners', 'iterable', 'Audience Entered and Exited', send_existing => true) > 0 AS activated;
SELECT event FROM linked_audiences.activation WHERE event_name IS NULL AND destination_id = (SELECT id FROM linked_audiences.destination WHERE key = 'iterable') AND entity IS NULL;
-- Exits and removals are only ever sent as they happen.
SELECT la_activate('card_users', 'webhook', 'Audience Exited', send_existing => true);
SELECT la_activate('card_users', 'webhook', 'Entity Removed', 'credit_cards', send_existing => true);
SET client_min_messages = warning;
SELECT result - 'duration_ms' - 'run_id' AS second_compute FROM la_compute_all();
RESET client_min_messages;
SELECT coalesce(payload->>'event', payload->>'type') AS event, destination, aggregateid,
       coalesce(payload->'properties'->>'credit_cards__id', '') AS card
FROM linked_audiences.outbox o
WHERE o.run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id)
ORDER BY 1, 2, 3, 4;
-- From then on, every activation sends changes only: Cara's card becomes an Owly Card,
-- so Cara enters and her account and card are added.
UPDATE credit_cards SET name = 'Owly Card' WHERE id = 1002;
SET client_min_messages = warning;
SELECT result - 'duration_ms' - 'run_id' AS third_compute FROM la_compute_all();
RESET client_min_messages;
SELECT coalesce(payload->>'event', payload->>'type') AS event, destination, aggregateid,
       coalesce(payload->'properties'->>'credit_cards__id', payload->'properties'->>'accounts__id', '') AS entity
FROM linked_audiences.outbox o
WHERE o.run_id IN (SELECT max(id) FROM linked_audiences.runs GROUP BY audience_id)
ORDER BY 1, 2, 3, 4;

-- A column an activation enriches from, renamed after it was created: the compute goes
-- on, says so, and the events go without it.
BEGIN;
SELECT la_create_destination('renamed_hook', 'webhook', '{"url": "https://example.com/hook"}') IS NOT NULL AS created;
SELECT la_define_audience('renamed_enrichment', '{"trait": "plan", "op": "equals", "value": "premium"}') ->> 'key' AS defined;
SELECT la_activate('renamed_enrichment', 'renamed_hook', 'Audience Entered', properties => '{"traits": ["first_name"]}') > 0 AS activated;
ALTER TABLE profiles RENAME COLUMN first_name TO given_name;
SELECT la_compute_audience('renamed_enrichment') ->> 'events_written' AS events_written;
SELECT payload -> 'properties' ? 'first_name' AS has_first_name FROM linked_audiences.outbox
WHERE destination = 'renamed_hook' LIMIT 1;
ROLLBACK;
