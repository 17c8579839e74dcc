-- A commerce warehouse shaped for Citus, generated deterministically (no random()):
-- psql -v n=<profiles> -v distribute=on|off -f warehouse.sql
--
-- Owned by a profile (carry profile_id, distributed by it and co-located with profiles;
-- their primary keys are unique only together with profile_id, as Citus requires, and
-- their ids repeat across profiles):
--   profiles, profile_identifiers, accounts, subscriptions, orders, line_items, carts,
--   cart_items (a junction with the key), reviews, events
-- Shared lookup data (no profile key: reference tables, a copy on every node):
--   countries, products, tags, product_tags (a junction without the key)
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP TABLE IF EXISTS events, reviews, cart_items, carts, product_tags, tags, line_items,
    orders, products, subscriptions, accounts, profile_identifiers, profiles, countries CASCADE;

CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL, region text NOT NULL);
CREATE TABLE profiles (
    id           bigint PRIMARY KEY,
    user_id      text NOT NULL,
    email        text NOT NULL,
    plan         text,
    country_code text,
    created_at   timestamptz NOT NULL
);
CREATE TABLE profile_identifiers (
    profile_id bigint NOT NULL,
    type       text NOT NULL,
    value      text NOT NULL,
    PRIMARY KEY (profile_id, type, value)
);
CREATE TABLE accounts (
    profile_id bigint NOT NULL,
    id         bigint NOT NULL,
    email      text NOT NULL,
    status     text NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE INDEX ON accounts (email);
CREATE TABLE subscriptions (
    profile_id bigint NOT NULL,
    id         bigint NOT NULL,
    account_id bigint NOT NULL,
    status     text NOT NULL,
    tier       text NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE INDEX ON subscriptions (profile_id, account_id);
CREATE TABLE orders (
    profile_id bigint NOT NULL,
    id         bigint NOT NULL,
    status     text NOT NULL,
    total      numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE TABLE products (
    sku      text PRIMARY KEY,
    name     text NOT NULL,
    category text NOT NULL,
    price    numeric(10,2) NOT NULL,
    in_stock boolean NOT NULL
);
CREATE TABLE line_items (
    profile_id  bigint NOT NULL,
    id          bigint NOT NULL,
    order_id    bigint NOT NULL,
    product_sku text NOT NULL,
    quantity    integer NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE INDEX ON line_items (profile_id, order_id);
CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE product_tags (
    product_sku text NOT NULL,
    tag_id      bigint NOT NULL,
    PRIMARY KEY (product_sku, tag_id)
);
CREATE TABLE carts (
    profile_id bigint NOT NULL,
    id         bigint NOT NULL,
    status     text NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE TABLE cart_items (
    profile_id  bigint NOT NULL,
    cart_id     bigint NOT NULL,
    product_sku text NOT NULL,
    quantity    integer NOT NULL,
    PRIMARY KEY (profile_id, cart_id, product_sku)
);
CREATE TABLE reviews (
    profile_id  bigint NOT NULL,
    id          bigint NOT NULL,
    product_sku text NOT NULL,
    rating      integer NOT NULL,
    PRIMARY KEY (profile_id, id)
);
CREATE INDEX ON reviews (product_sku);
CREATE TABLE events (
    profile_id  bigint NOT NULL,
    id          bigint NOT NULL,
    event       text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    properties  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (profile_id, id)
);
CREATE INDEX ON events (profile_id, event);

\if :distribute
-- Distributed by profile and co-located with profiles; lookup tables replicated.
SELECT create_distributed_table('profiles', 'id');
SELECT create_distributed_table(t, 'profile_id', colocate_with => 'profiles')
FROM unnest(ARRAY['profile_identifiers', 'accounts', 'subscriptions', 'orders', 'line_items',
                  'carts', 'cart_items', 'reviews', 'events']) t;
SELECT create_reference_table(t) FROM unnest(ARRAY['countries', 'products', 'tags', 'product_tags']) t;
\endif

INSERT INTO countries VALUES
  ('DE', 'Germany', 'EU'), ('FR', 'France', 'EU'), ('US', 'United States', 'NA'),
  ('CA', 'Canada', 'NA'), ('JP', 'Japan', 'APAC');
INSERT INTO tags VALUES (1, 'sale'), (2, 'new'), (3, 'eco');
INSERT INTO products
SELECT 'sku-' || i, 'product ' || i,
       (ARRAY['toys', 'books', 'garden', 'food'])[1 + i % 4],
       (5 + (i * 37) % 120)::numeric(10,2), i % 7 <> 0
FROM generate_series(1, 200) i;
INSERT INTO product_tags
SELECT 'sku-' || i, 1 + (i + k) % 3 FROM generate_series(1, 200) i, generate_series(0, i % 2) k;

INSERT INTO profiles
SELECT i, 'u-' || i, 'user' || i || '@example.com',
       CASE WHEN i % 5 = 0 THEN NULL ELSE (ARRAY['free', 'premium', 'trial'])[1 + i % 3] END,
       (ARRAY['DE', 'FR', 'US', 'CA', 'JP', NULL])[1 + i % 6],
       timestamptz '2026-01-01' + (i % 300) * interval '1 day'
FROM generate_series(1, :n) i;
INSERT INTO profile_identifiers SELECT id, 'email', email FROM profiles;
-- An account per profile with an even id, reached by email (external_id).
INSERT INTO accounts SELECT id, 1, email, CASE WHEN id % 8 = 0 THEN 'closed' ELSE 'open' END
FROM profiles WHERE id % 2 = 0;
INSERT INTO subscriptions
SELECT a.profile_id, s, a.id, CASE WHEN (a.profile_id + s * s) % 3 = 0 THEN 'lapsed' ELSE 'active' END,
       (ARRAY['basic', 'gold'])[1 + (a.profile_id + s) % 2]
FROM accounts a, generate_series(1, 1 + a.profile_id::int % 3) s;
-- 0 to 5 orders per profile, ids 1..k within each profile.
INSERT INTO orders
SELECT p.id, o, (ARRAY['completed', 'completed', 'cancelled', 'pending'])[1 + (p.id + o) % 4],
       ((p.id * 13 + o * 71) % 400 + 10)::numeric(12,2),
       timestamptz '2026-06-01' + ((p.id + o * 17) % 150) * interval '1 day'
FROM profiles p, generate_series(1, (p.id % 6)::int) o;
INSERT INTO line_items
SELECT o.profile_id, row_number() OVER (PARTITION BY o.profile_id ORDER BY o.id, l), o.id,
       'sku-' || (1 + (o.profile_id * 7 + o.id * 11 + l * 3) % 200), 1 + (o.profile_id + l) % 4
FROM orders o, generate_series(1, 1 + ((o.profile_id * 3 + o.id) % 4)::int) l;
INSERT INTO carts SELECT id, 1, CASE WHEN id % 4 = 0 THEN 'abandoned' ELSE 'open' END
FROM profiles WHERE id % 3 <> 0;
INSERT INTO cart_items
SELECT c.profile_id, c.id, 'sku-' || (1 + (c.profile_id * 5 + k * 29) % 200), 1 + k
FROM carts c, generate_series(1, 1 + (c.profile_id % 3)::int) k
ON CONFLICT DO NOTHING;
INSERT INTO reviews
SELECT profile_id, id, product_sku, 1 + (profile_id * 3 + id) % 5
FROM line_items WHERE (profile_id + id) % 5 = 0;
INSERT INTO events
SELECT o.profile_id, o.id, 'Order Completed', o.created_at,
       jsonb_build_object('total', o.total, 'currency', CASE WHEN o.profile_id % 4 = 0 THEN 'EUR' ELSE 'USD' END)
FROM orders o WHERE o.status = 'completed';
INSERT INTO events
SELECT p.id, 1000 + k, 'Page Viewed', timestamptz '2026-09-01' + (p.id * k % 60) * interval '1 day',
       jsonb_build_object('path', '/p/' || (p.id * k % 9))
FROM profiles p, generate_series(1, (p.id % 4)::int) k;
ANALYZE;
