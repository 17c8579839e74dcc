-- A distributed form of the compute's statements, written by hand for one audience
-- (toy_buyers, with its Audience Entered activation's enrichment) to show that each
-- pushes down or moves only the changes. Not the extension's code: a proposal, run by
-- `tests/citus/citus.sh --explore` on the Citus database after the suite.
--
-- The state tables carry the profile key in the profile table's type (bigint here) as
-- their distribution column, co-located with the profiles; profile_id stays as text.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS la_proposal CASCADE;
CREATE SCHEMA la_proposal;
CREATE TABLE la_proposal.audience_members (
    audience_id bigint NOT NULL, profile_key bigint NOT NULL, profile_id text NOT NULL,
    entered_at timestamptz NOT NULL, PRIMARY KEY (audience_id, profile_key));
CREATE TABLE la_proposal.membership_changes (
    run_id bigint NOT NULL, audience_id bigint NOT NULL, profile_key bigint NOT NULL,
    profile_id text NOT NULL, relationship text, entity_id text, change text NOT NULL,
    at timestamptz NOT NULL);
CREATE INDEX ON la_proposal.membership_changes (run_id);
SELECT create_distributed_table('la_proposal.audience_members', 'profile_key', colocate_with => 'profiles');
SELECT create_distributed_table('la_proposal.membership_changes', 'profile_key', colocate_with => 'profiles');
-- The outbox stays a local table on the coordinator, where consumers read it.
CREATE TABLE la_proposal.outbox (seq bigserial PRIMARY KEY, aggregateid text, type text, payload jsonb);

\set aud 11
\set run 1
\echo '-- 1. who entered, logged (INSERT .. SELECT, co-located: pushed down, nothing moves)'
EXPLAIN (COSTS OFF)
INSERT INTO la_proposal.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT :run, :aud, p.id, p.id::text, 'entered', now() FROM public.profiles p
WHERE EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
              JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text))
  AND NOT EXISTS (SELECT 1 FROM la_proposal.audience_members m WHERE m.audience_id = :aud AND m.profile_key = p.id);
INSERT INTO la_proposal.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT :run, :aud, p.id, p.id::text, 'entered', now() FROM public.profiles p
WHERE EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
              JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text))
  AND NOT EXISTS (SELECT 1 FROM la_proposal.audience_members m WHERE m.audience_id = :aud AND m.profile_key = p.id);
\echo '-- 2. who exited, logged (a stored member the condition no longer holds for)'
EXPLAIN (COSTS OFF)
INSERT INTO la_proposal.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT :run, :aud, m.profile_key, m.profile_id, 'exited', now() FROM la_proposal.audience_members m
WHERE m.audience_id = :aud AND NOT EXISTS (
  SELECT 1 FROM public.profiles p WHERE p.id = m.profile_key
    AND EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
                JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text)));
\echo '-- 3. apply: insert the entered (co-located INSERT .. SELECT from the log)'
EXPLAIN (COSTS OFF)
INSERT INTO la_proposal.audience_members (audience_id, profile_key, profile_id, entered_at)
SELECT audience_id, profile_key, profile_id, at FROM la_proposal.membership_changes
WHERE run_id = :run AND audience_id = :aud AND change = 'entered';
INSERT INTO la_proposal.audience_members (audience_id, profile_key, profile_id, entered_at)
SELECT audience_id, profile_key, profile_id, at FROM la_proposal.membership_changes
WHERE run_id = :run AND audience_id = :aud AND change = 'entered';
\echo '-- 4. apply: delete the exited (multi-shard DELETE with a co-located subquery; no ctid)'
EXPLAIN (COSTS OFF)
DELETE FROM la_proposal.audience_members m WHERE m.audience_id = :aud AND EXISTS (
  SELECT 1 FROM la_proposal.membership_changes c WHERE c.run_id = :run AND c.change = 'exited'
    AND c.audience_id = m.audience_id AND c.profile_key = m.profile_key);
\echo '-- 5. the outbox: events built on the workers from the changes (enrichment co-located), only the changes move to the coordinator'
EXPLAIN (COSTS OFF)
INSERT INTO la_proposal.outbox (aggregateid, type, payload)
SELECT p.user_id, 'Audience Entered', jsonb_build_object('type', 'track', 'event', 'Audience Entered', 'userId', p.user_id,
  'properties', jsonb_build_object('audience_key', 'toy_buyers', 'email', p.email, 'products',
     (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('sku', r3.sku, 'category', r3.category, '__entity', 'products')), '[]')
      FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
      JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND r3.category = 'toys')))
FROM la_proposal.membership_changes c JOIN public.profiles p ON p.id = c.profile_key
WHERE c.run_id = :run AND c.audience_id = :aud AND c.change = 'entered'
ORDER BY p.user_id;
INSERT INTO la_proposal.outbox (aggregateid, type, payload)
SELECT p.user_id, 'Audience Entered', jsonb_build_object('type', 'track', 'event', 'Audience Entered', 'userId', p.user_id,
  'properties', jsonb_build_object('audience_key', 'toy_buyers', 'email', p.email, 'products',
     (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('sku', r3.sku, 'category', r3.category, '__entity', 'products')), '[]')
      FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
      JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND r3.category = 'toys')))
FROM la_proposal.membership_changes c JOIN public.profiles p ON p.id = c.profile_key
WHERE c.run_id = :run AND c.audience_id = :aud AND c.change = 'entered'
ORDER BY p.user_id;
\echo '-- 6. NOTIFY as its own statement over the local outbox (a void column cannot be an intermediate result)'
SELECT pg_notify('linked_audiences_outbox', d) FROM (SELECT DISTINCT 'braze' AS d FROM la_proposal.outbox) x;
\echo '-- result: members, changes, outbox rows, and whether members equal the extension''s own compute of toy_buyers'
SELECT (SELECT count(*) FROM la_proposal.audience_members) AS members,
       (SELECT count(*) FROM la_proposal.membership_changes) AS changes,
       (SELECT count(*) FROM la_proposal.outbox) AS outbox,
       (SELECT count(*) FROM public.profiles p WHERE EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
              JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text))) AS expected;
\echo '-- a second run after half the toys become books (rolled back): exits logged, then deleted'
BEGIN;
UPDATE public.products SET category = 'books' WHERE category = 'toys' AND sku < 'sku-5';
\set run 2
INSERT INTO la_proposal.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT :run, :aud, m.profile_key, m.profile_id, 'exited', now() FROM la_proposal.audience_members m
WHERE m.audience_id = :aud AND NOT EXISTS (
  SELECT 1 FROM public.profiles p WHERE p.id = m.profile_key
    AND EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
                JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text)));
DELETE FROM la_proposal.audience_members m WHERE m.audience_id = :aud AND EXISTS (
  SELECT 1 FROM la_proposal.membership_changes c WHERE c.run_id = :run AND c.change = 'exited'
    AND c.audience_id = m.audience_id AND c.profile_key = m.profile_key);
SELECT (SELECT count(*) FROM la_proposal.membership_changes WHERE run_id = 2) AS exited,
       (SELECT count(*) FROM la_proposal.audience_members) AS members,
       (SELECT count(*) FROM public.profiles p WHERE EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id
              JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = 'toys'::text))) AS expected;
ROLLBACK;
DROP SCHEMA la_proposal CASCADE;
