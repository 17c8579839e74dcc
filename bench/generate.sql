-- The sample warehouse at a scale factor: psql -v scale=1 -f bench/generate.sql
-- scale 1 = 100,000 profiles, about 1 household and 1-3 pets each, 1-2 accounts with a
-- subscription each, 1-3 credit cards per account, 0-50 transactions per card, carts
-- with products, and about 10 events per profile. Deterministic: every "random" choice
-- is a hash of row numbers, so a scale always gives the same data. Set-based inserts.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET synchronous_commit = off;
\ir ../demo/warehouse.sql
TRUNCATE events, cart_items, products, carts, transactions, credit_cards, subscriptions,
         accounts, pets, profile_identifiers, profiles, households CASCADE;
-- A deterministic number in [0, n) from a row number and a salt.
CREATE OR REPLACE FUNCTION pg_temp.h(x bigint, salt int, n int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (abs(hashint8(x * 1000003 + salt)) % n)::int
$$;
SELECT greatest(1, round(:scale * 100000))::bigint AS n_profiles \gset

INSERT INTO households
SELECT g, 'Household ' || g, (ARRAY['Portland','Austin','Boston','Denver','Chicago','Seattle'])[1 + pg_temp.h(g, 1, 6)]
FROM generate_series(1, :n_profiles) g;

INSERT INTO profiles (id, user_id, email, first_name, plan, household_id, created_at)
SELECT g, 'u-' || g, 'user' || g || '@example.com',
       (ARRAY['Ann','Bob','Cara','Dan','Eve','Finn','Gus','Hana'])[1 + pg_temp.h(g, 2, 8)],
       (ARRAY['free','free','premium', NULL])[1 + pg_temp.h(g, 3, 4)],
       CASE WHEN pg_temp.h(g, 4, 10) = 0 THEN NULL ELSE g END,
       '2025-01-01'::timestamptz + pg_temp.h(g, 5, 700) * interval '1 day'
FROM generate_series(1, :n_profiles) g;

INSERT INTO profile_identifiers SELECT id, 'email', email FROM profiles;

INSERT INTO pets
SELECT row_number() OVER (), h.id, 'Pet ' || h.id || '-' || k,
       (ARRAY['cat','dog','fish','bird', NULL])[1 + pg_temp.h(h.id * 3 + k, 6, 5)]
FROM households h, generate_series(1, 3) k
WHERE k <= 1 + pg_temp.h(h.id, 7, 3);

INSERT INTO accounts
SELECT row_number() OVER (), p.email, 'Account ' || p.id || '-' || k, 'open'
FROM profiles p, generate_series(1, 2) k
WHERE k <= 1 + pg_temp.h(p.id, 8, 2);

INSERT INTO subscriptions
SELECT a.id, a.id, (ARRAY['active','active','canceled','past_due'])[1 + pg_temp.h(a.id, 9, 4)],
       (ARRAY['premium','basic','basic'])[1 + pg_temp.h(a.id, 10, 3)],
       '2024-01-01'::date + pg_temp.h(a.id, 11, 900)
FROM accounts a;

INSERT INTO credit_cards
SELECT row_number() OVER (), a.id, (ARRAY['Owly Card','Owly Card','Other Card'])[1 + pg_temp.h(a.id * 3 + k, 12, 3)],
       pg_temp.h(a.id * 3 + k, 13, 200000) / 100.0, 'active'
FROM accounts a, generate_series(1, 3) k
WHERE k <= 1 + pg_temp.h(a.id, 14, 3);

INSERT INTO transactions (id, card_id, amount, created_at)
SELECT row_number() OVER (), c.id, 1 + pg_temp.h(c.id * 64 + k, 15, 50000) / 100.0,
       '2026-01-01'::timestamptz + pg_temp.h(c.id * 64 + k, 16, 330) * interval '1 day'
FROM credit_cards c, generate_series(1, 50) k
WHERE k <= pg_temp.h(c.id, 17, 51);

INSERT INTO products
SELECT 'SKU-' || g, 'Product ' || g, 1 + pg_temp.h(g, 18, 10000) / 100.0, pg_temp.h(g, 19, 4) > 0
FROM generate_series(1, 1000) g;
INSERT INTO carts
SELECT p.id, p.id, (ARRAY['open','abandoned','ordered'])[1 + pg_temp.h(p.id, 20, 3)],
       '2026-10-01'::timestamptz + pg_temp.h(p.id, 21, 60) * interval '1 day'
FROM profiles p WHERE pg_temp.h(p.id, 22, 2) = 0;
INSERT INTO cart_items
SELECT row_number() OVER (), c.id, 'SKU-' || (1 + pg_temp.h(c.id * 5 + k, 23, 1000)), 1 + pg_temp.h(c.id, 24, 3)
FROM carts c, generate_series(1, 4) k
WHERE k <= 1 + pg_temp.h(c.id, 25, 4);

INSERT INTO events (profile_id, event, "timestamp", properties)
SELECT p.id, (ARRAY['Order Completed','Page Viewed','Page Viewed','Product Added'])[1 + pg_temp.h(p.id * 32 + k, 26, 4)],
       now() - pg_temp.h(p.id * 32 + k, 27, 120 * 24) * interval '1 hour',
       jsonb_build_object('total', pg_temp.h(p.id * 32 + k, 28, 30000) / 100.0, 'currency', 'USD')
FROM profiles p, generate_series(1, 20) k
WHERE k <= pg_temp.h(p.id, 29, 21);

ANALYZE;
SELECT (SELECT count(*) FROM profiles) AS profiles, (SELECT count(*) FROM pets) AS pets,
       (SELECT count(*) FROM accounts) AS accounts, (SELECT count(*) FROM credit_cards) AS cards,
       (SELECT count(*) FROM transactions) AS transactions, (SELECT count(*) FROM events) AS events;
