-- Audiences of every node kind over tests/citus/graph.json, defined identically on the
-- single node and on Citus. Audiences that others refer to come first.
SET client_min_messages = warning;
CREATE TEMP TABLE citus_audiences (ord int, key text, definition jsonb, colocated boolean DEFAULT true);
INSERT INTO citus_audiences (ord, key, definition) VALUES
 -- traits
 (1, 'premium', '{"trait": "plan", "op": "equals", "value": "premium"}'),
 (2, 'no_plan_or_trial', '{"any": [{"trait": "plan", "op": "is_null"}, {"trait": "plan", "op": "in", "value": ["trial"]}]}'),
 -- a first-level hop to a reference table (profile -> countries)
 (3, 'in_europe', '{"relationship": "country", "where": {"column": "region", "op": "equals", "value": "EU"}}'),
 -- relationships: where, count, aggregate, nested
 (4, 'has_completed_order', '{"relationship": "orders", "where": {"column": "status", "op": "equals", "value": "completed"}}'),
 (5, 'frequent', '{"relationship": "orders", "count": {"at_least": 4}}'),
 (6, 'no_orders', '{"relationship": "orders", "count": {"exactly": 0}}'),
 (7, 'big_spenders', '{"relationship": "orders", "where": {"column": "status", "op": "not_equals", "value": "cancelled"}, "aggregate": {"fn": "sum", "column": "total", "op": "gt", "value": 800}}'),
 (8, 'low_avg', '{"relationship": "orders", "count": {"at_least": 2}, "aggregate": {"fn": "avg", "column": "total", "op": "lt", "value": 150}}'),
 (9, 'big_baskets', '{"relationship": "orders", "where": {"column": "status", "op": "equals", "value": "completed"}, "relationships": [{"relationship": "line_items", "count": {"at_least": 3}}]}'),
 (10, 'qty_total', '{"relationship": "line_items", "aggregate": {"fn": "sum", "column": "quantity", "op": "gte", "value": 20}}'),
 -- implied paths through a reference table (orders -> line_items -> products)
 (11, 'toy_buyers', '{"relationship": "products", "where": {"column": "category", "op": "equals", "value": "toys"}}'),
 (12, 'many_categories', '{"relationship": "products", "aggregate": {"fn": "count_distinct", "column": "category", "op": "gte", "value": 3}}'),
 (13, 'pricey_item', '{"relationship": "orders", "relationships": [{"relationship": "products", "where": {"column": "price", "op": "gt", "value": 120}}]}'),
 -- a junction without the key, between reference tables (products -> tags)
 (14, 'bought_on_sale', '{"relationship": "tags", "where": {"column": "name", "op": "equals", "value": "sale"}}'),
 -- a junction with the key (carts -> cart_items -> products)
 (15, 'cart_out_of_stock', '{"relationship": "cart_products", "where": {"column": "in_stock", "op": "equals", "value": false}}'),
 (16, 'cart_two_products', '{"relationship": "carts", "where": {"column": "status", "op": "equals", "value": "open"}, "relationships": [{"relationship": "cart_products", "count": {"at_least": 2}}]}'),
 -- external_id (identifiers distributed by profile) and below
 (17, 'active_basic', '{"relationship": "subscriptions", "where": {"all": [{"column": "status", "op": "equals", "value": "active"}, {"column": "tier", "op": "equals", "value": "basic"}]}}'),
 (18, 'open_account_lapsed', '{"relationship": "accounts", "where": {"column": "status", "op": "equals", "value": "open"}, "relationships": [{"relationship": "subscriptions", "where": {"column": "status", "op": "equals", "value": "lapsed"}, "count": {"at_least": 2}}]}'),
 -- events with windows, where and counts
 (19, 'two_orders_autumn', '{"event": "Order Completed", "within": {"between": ["2026-08-01", "2026-10-31"]}, "count": {"at_least": 2}}'),
 (20, 'recent_viewers', '{"event": "Page Viewed", "within": {"after": "2026-10-01"}}'),
 (21, 'eur_buyers', '{"event": "Order Completed", "where": {"property": "currency", "op": "equals", "value": "EUR"}, "within": {"last": "100 years"}}'),
 (22, 'no_big_event', '{"event": "Order Completed", "where": {"property": "total", "op": "gt", "value": 300}, "count": {"exactly": 0}}'),
 -- references to other audiences, not, all/any
 (23, 'premium_spenders', '{"all": [{"audience": "premium"}, {"audience": "big_spenders"}]}'),
 (24, 'toys_not_europe', '{"all": [{"audience": "toy_buyers"}, {"audience": "in_europe", "member": false}]}'),
 (25, 'mixed', '{"any": [{"not": {"audience": "has_completed_order"}}, {"all": [{"audience": "cart_out_of_stock"}, {"trait": "created_at", "op": "before", "value": "2026-06-01"}]}]}'),
 (26, 'ref_to_profile', '{"relationship": "accounts", "where": {"column": "email", "op": "equals", "value": {"ref": "profile.email"}}}');
-- A keyed entity reached through a reference table (orders -> line_items -> products ->
-- reviews by anyone): that hop cannot be co-located.
INSERT INTO citus_audiences VALUES
 (27, 'bought_well_reviewed', '{"relationship": "product_reviews", "where": {"column": "rating", "op": "equals", "value": 5}}', false);
SELECT la_define_audience(key, definition, description =>
         CASE WHEN NOT colocated THEN 'not co-located: a keyed entity reached through a reference table' END)
FROM citus_audiences ORDER BY ord;
