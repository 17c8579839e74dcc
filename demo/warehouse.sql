-- A small sample warehouse covering the Linked Audiences use cases: households and
-- pets; accounts and subscriptions; accounts, credit cards and transactions; carts and
-- products through a junction table; and an events table. Hand-built so that every
-- audience over it has a known answer (the pg_regress suite relies on it).
DROP TABLE IF EXISTS events, cart_items, products, carts, transactions, credit_cards,
    subscriptions, accounts, pets, profile_identifiers, profiles, households CASCADE;

CREATE TABLE households (
    id   bigint PRIMARY KEY,
    name text NOT NULL,
    city text
);
CREATE TABLE profiles (
    id           bigint PRIMARY KEY,
    user_id      text UNIQUE NOT NULL,
    email        text,
    first_name   text,
    plan         text,
    household_id bigint REFERENCES households,
    created_at   timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00'
);
CREATE TABLE profile_identifiers (
    profile_id bigint NOT NULL REFERENCES profiles,
    type       text NOT NULL,
    value      text NOT NULL,
    PRIMARY KEY (profile_id, type, value)
);
CREATE INDEX ON profile_identifiers (type, value);
CREATE TABLE pets (
    id           bigint PRIMARY KEY,
    household_id bigint NOT NULL REFERENCES households,
    name         text NOT NULL,
    type         text
);
CREATE INDEX ON pets (household_id);
CREATE TABLE accounts (
    id     bigint PRIMARY KEY,
    email  text NOT NULL,
    name   text NOT NULL,
    status text NOT NULL DEFAULT 'open'
);
CREATE INDEX ON accounts (email);
CREATE TABLE subscriptions (
    id         bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts,
    status     text NOT NULL,
    tier       text NOT NULL,
    started_at date NOT NULL
);
CREATE INDEX ON subscriptions (account_id);
CREATE TABLE credit_cards (
    id         bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts,
    name       text NOT NULL,
    balance    numeric(12,2) NOT NULL DEFAULT 0,
    status     text NOT NULL DEFAULT 'active'
);
CREATE INDEX ON credit_cards (account_id);
CREATE TABLE transactions (
    id         bigint PRIMARY KEY,
    card_id    bigint NOT NULL REFERENCES credit_cards,
    amount     numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON transactions (card_id);
CREATE TABLE carts (
    id         bigint PRIMARY KEY,
    profile_id bigint NOT NULL REFERENCES profiles,
    status     text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ON carts (profile_id);
CREATE TABLE products (
    sku      text PRIMARY KEY,
    name     text NOT NULL,
    price    numeric(10,2) NOT NULL,
    in_stock boolean NOT NULL
);
CREATE TABLE cart_items (
    id          bigint PRIMARY KEY,
    cart_id     bigint NOT NULL REFERENCES carts,
    product_sku text NOT NULL REFERENCES products,
    quantity    integer NOT NULL
);
CREATE INDEX ON cart_items (cart_id);
CREATE TABLE events (
    id         bigserial PRIMARY KEY,
    profile_id bigint NOT NULL REFERENCES profiles,
    event      text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON events (profile_id, event, "timestamp");

INSERT INTO households VALUES
    (1, 'Smith', 'Portland'), (2, 'Jones', 'Austin'), (3, 'Lee', 'Boston'), (4, 'Diaz', 'Denver');

INSERT INTO profiles (id, user_id, email, first_name, plan, household_id) VALUES
    (1, 'u-1', 'ann@example.com',  'Ann',  'premium', 1),
    (2, 'u-2', 'bob@example.com',  'Bob',  'free',    2),
    (3, 'u-3', 'cara@example.com', 'Cara', 'premium', 3),
    (4, 'u-4', 'dan@example.com',  'Dan',  'free',    NULL),
    (5, 'u-5', 'eve@example.com',  'Eve',  NULL,      4),
    (6, 'u-6', 'finn@example.com', 'Finn', 'free',    1);

INSERT INTO profile_identifiers VALUES
    (1, 'email', 'ann@example.com'), (2, 'email', 'bob@example.com'),
    (3, 'email', 'cara@example.com'), (4, 'email', 'dan@example.com'),
    (5, 'phone', '+15550100'), (6, 'email', 'finn@example.com');

INSERT INTO pets VALUES
    (1, 1, 'Tom', 'cat'), (2, 1, 'Rex', 'dog'), (3, 2, 'Bubbles', 'fish'),
    (4, 3, 'Luna', 'cat'), (5, 3, 'Milo', 'cat'), (6, 4, 'Spot', 'dog'),
    (7, 4, 'Mystery', NULL);

-- Ann has two accounts (10 and 14); Eve has none (her only identifier is a phone).
INSERT INTO accounts VALUES
    (10, 'ann@example.com', 'Ann personal', 'open'), (11, 'bob@example.com', 'Bob', 'open'),
    (12, 'cara@example.com', 'Cara', 'open'), (13, 'dan@example.com', 'Dan', 'open'),
    (14, 'ann@example.com', 'Ann business', 'open'), (15, 'finn@example.com', 'Finn', 'closed');

INSERT INTO subscriptions VALUES
    (100, 10, 'active',   'premium', '2025-03-01'),
    (101, 11, 'active',   'basic',   '2025-06-01'),
    (102, 12, 'canceled', 'premium', '2024-01-15'),
    (103, 13, 'active',   'premium', '2026-02-01'),
    (104, 15, 'past_due', 'premium', '2025-11-11');

INSERT INTO credit_cards VALUES
    (1000, 10, 'Owly Card',  120.50, 'active'),
    (1001, 11, 'Owly Card',    0.00, 'active'),
    (1002, 12, 'Other Card',  50.00, 'active'),
    (1003, 13, 'Owly Card',  900.00, 'active'),
    (1004, 14, 'Owly Card',   10.00, 'frozen'),
    (1005, 15, 'Owly Card',    0.00, 'active');

-- Transactions per card: 1000: 6, 1001: 5, 1002: 8, 1003: 7, 1004: 2, 1005: none.
INSERT INTO transactions (id, card_id, amount, created_at)
SELECT row_number() OVER (ORDER BY c.card, g.n), c.card, 10.00 * g.n,
       '2026-10-01 12:00:00+00'::timestamptz + g.n * interval '1 day'
FROM (VALUES (1000, 6), (1001, 5), (1002, 8), (1003, 7), (1004, 2)) AS c(card, n_tx),
     generate_series(1, c.n_tx) AS g(n);

INSERT INTO carts VALUES
    (500, 1, 'open', '2026-11-20 10:00:00+00'), (501, 2, 'abandoned', '2026-11-01 09:00:00+00'),
    (502, 3, 'open', '2026-11-25 18:30:00+00');
INSERT INTO products VALUES
    ('SKU-CATFOOD', 'Cat food', 19.99, true), ('SKU-LEASH', 'Leash', 12.00, false),
    ('SKU-TANK', 'Fish tank', 89.00, true);
INSERT INTO cart_items VALUES
    (1, 500, 'SKU-CATFOOD', 2), (2, 500, 'SKU-LEASH', 1), (3, 501, 'SKU-TANK', 1),
    (4, 502, 'SKU-CATFOOD', 1);

INSERT INTO events (profile_id, event, "timestamp", properties) VALUES
    (1, 'Order Completed', '2026-11-02 10:00:00+00', '{"total": 42.5, "currency": "USD", "items": {"count": 3}}'),
    (1, 'Order Completed', '2026-11-15 10:00:00+00', '{"total": 12, "currency": "USD"}'),
    (2, 'Order Completed', '2026-06-01 10:00:00+00', '{"total": 99, "currency": "EUR"}'),
    (2, 'Page Viewed',     '2026-11-20 08:00:00+00', '{"path": "/pricing"}'),
    (3, 'Order Completed', '2026-11-21 10:00:00+00', '{"total": "n/a", "currency": "USD"}'),
    (4, 'Page Viewed',     '2026-11-22 08:00:00+00', '{"path": "/"}');
