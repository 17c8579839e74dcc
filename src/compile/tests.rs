//! Unit tests of the compiler over the demo graph and catalog.

use super::sql::ParamValue;
use super::*;
use crate::graph::catalog::Lookup;
use crate::graph::model::parse as parse_graph;
use crate::graph::tests::{demo_catalog, demo_graph_json};
use serde_json::json;

fn ctx_with<R>(audiences: &[(&str, Value)], f: impl FnOnce(&Ctx<'_>) -> R) -> R {
    let graph = parse_graph(&demo_graph_json()).unwrap();
    let cat = demo_catalog();
    let audiences: BTreeMap<String, Value> = audiences
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let valid = ValidatedGraph::check(graph, cat, 6).unwrap();
    let ctx = Ctx::new(&valid, &audiences);
    f(&ctx)
}

fn ok(def: Value) -> Compiled {
    ctx_with(&[], |ctx| {
        compile(ctx, &def, None).unwrap_or_else(|e| panic!("{e:#?}"))
    })
}

fn texts(c: &Compiled) -> Vec<String> {
    c.params
        .iter()
        .map(|p| match p {
            ParamValue::Text(s) => s.clone(),
            ParamValue::TextArray(a) => format!("{a:?}"),
        })
        .collect()
}

/// (sqlstate, "path: message", hint) of the first problem.
fn err(def: Value) -> (String, String, Option<String>) {
    err_with(&[], def, None)
}

fn err_with(
    audiences: &[(&str, Value)],
    def: Value,
    own: Option<&str>,
) -> (String, String, Option<String>) {
    ctx_with(audiences, |ctx| {
        let ps = compile(ctx, &def, own).expect_err("expected a problem");
        (
            ps[0].kind.sqlstate().to_string(),
            ps[0].full_message(),
            ps[0].hint.clone(),
        )
    })
}

#[test]
fn trait_predicates() {
    let c = ok(json!({"trait": "plan", "op": "equals", "value": "premium"}));
    assert_eq!(c.condition, "(p.plan = $1::text)");
    assert_eq!(texts(&c), vec!["premium"]);
    assert_eq!(
        c.members_sql(),
        "SELECT p.id::pg_catalog.text AS profile_id\nFROM public.profiles p\nWHERE (p.plan = $1::text)"
    );

    let c =
        ok(json!({"trait": "plan", "op": "not_equals", "value": "free", "case_insensitive": true}));
    assert_eq!(
        c.condition,
        "(pg_catalog.lower(p.plan) IS DISTINCT FROM pg_catalog.lower($1::text))"
    );

    let c = ok(json!({"trait": "plan", "op": "not_in", "value": ["free", "trial"]}));
    assert_eq!(
        c.condition,
        "NOT coalesce(p.plan = ANY ($1::text[]), false)"
    );
    assert_eq!(texts(&c), vec!["[\"free\", \"trial\"]"]);

    let c = ok(json!({"trait": "household_id", "op": "between", "value": [1, 3]}));
    assert_eq!(
        c.condition,
        "(p.household_id BETWEEN $1::bigint AND $2::bigint)"
    );
    assert_eq!(c.literal_checks.len(), 2);

    let c = ok(json!({"trait": "created_at", "op": "within_last", "value": "30 days"}));
    assert_eq!(
        c.condition,
        "(p.created_at >= pg_catalog.now() - $1::pg_catalog.interval)"
    );

    let c = ok(json!({"trait": "email", "op": "ends_with", "value": "@example.com"}));
    assert_eq!(
        c.condition,
        "(pg_catalog.right((p.email) COLLATE pg_catalog.\"default\", pg_catalog.length($1::pg_catalog.text)) = $1::pg_catalog.text)"
    );

    let c = ok(json!({"trait": "email", "op": "equals", "value": {"ref": "profile.user_id"}}));
    assert_eq!(c.condition, "(p.email = p.user_id)");

    let c = ok(json!({"not": {"all": [{"trait": "plan", "op": "is_null"}, {"any": []}]}}));
    assert_eq!(c.condition, "(((p.plan IS NULL) AND false)) IS NOT TRUE");
}

#[test]
fn relationships_compile_to_semi_joins() {
    // Cat owners: the implied path profile -> household -> pets.
    let c = ok(
        json!({"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.households r1 JOIN public.pets r2 ON r2.household_id = r1.id WHERE r1.id = p.household_id AND (r2.type = $1::text))"
    );
    assert_eq!(c.relationships, vec!["pets"]);
    assert_eq!(c.entity_selects.len(), 1);
    assert_eq!(
        c.entity_selects[0].where_sql(),
        "r1.id = p.household_id AND (r2.type = $1::text)"
    );

    // An external id: the identifiers table joins the profile.
    let c = ok(json!({"relationship": "subscriptions", "where": {"all": [
        {"column": "status", "op": "equals", "value": "active"},
        {"column": "tier", "op": "equals", "value": "premium"}]}}));
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.profile_identifiers i2 JOIN public.accounts r1 ON r1.email = i2.value AND i2.type = $1::text JOIN public.subscriptions r3 ON r3.account_id = r1.id WHERE i2.profile_id = p.id AND ((r3.status = $2::text) AND (r3.tier = $3::text)))"
    );
    assert_eq!(texts(&c), vec!["email", "active", "premium"]);

    // A junction table.
    let c = ok(
        json!({"relationship": "cart_products", "where": {"column": "in_stock", "op": "equals", "value": false}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.carts r1 JOIN public.cart_items j3 JOIN public.products r2 ON r2.sku = j3.product_sku ON j3.cart_id = r1.id WHERE r1.profile_id = p.id AND (r2.in_stock = $1::boolean))"
    );
}

/// A foreign key from pets to households makes the household row a pass-through: the
/// pets join the profile directly, unless a condition refers to the household.
/// Compiles a definition over the demo graph and the given catalog.
fn compile_with(cat: &crate::graph::catalog::Catalog, def: Value) -> Compiled {
    let graph = parse_graph(&demo_graph_json()).unwrap();
    let audiences = BTreeMap::new();
    let valid = ValidatedGraph::check(graph, cat.clone(), 6).unwrap();
    let ctx = Ctx::new(&valid, &audiences);
    compile(&ctx, &def, None).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// The first problem's (sqlstate, "path: message") compiling over the given catalog.
fn compile_err_with(cat: &crate::graph::catalog::Catalog, def: Value) -> (String, String) {
    let graph = parse_graph(&demo_graph_json()).unwrap();
    let audiences = BTreeMap::new();
    let valid = ValidatedGraph::check(graph, cat.clone(), 6).unwrap();
    let ctx = Ctx::new(&valid, &audiences);
    let ps = compile(&ctx, &def, None).expect_err("expected a problem");
    (ps[0].kind.sqlstate().to_string(), ps[0].full_message())
}

/// `public.table.column REFERENCES public.target (id)`.
fn add_foreign_key(
    cat: &mut crate::graph::catalog::Catalog,
    table: &str,
    column: &str,
    target: &str,
) {
    use crate::graph::catalog::ForeignKey;
    if let Some(Lookup::Found(t)) = cat.tables.get_mut(&format!("public.{table}")) {
        t.foreign_keys.push(ForeignKey {
            column: column.into(),
            ref_schema: "public".into(),
            ref_table: target.into(),
            ref_column: "id".into(),
        });
    }
}

#[test]
fn pass_through_rows_are_left_out_when_a_foreign_key_allows() {
    let mut cat = demo_catalog();
    let cats = json!({"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}});
    // Without a foreign key the household stays: a pet may name a household that does not exist.
    assert!(compile_with(&cat, cats.clone())
        .condition
        .contains("public.households"));
    add_foreign_key(&mut cat, "pets", "household_id", "households");
    let c = compile_with(&cat, cats);
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.pets r2 WHERE r2.household_id = p.household_id AND (r2.type = $1::text))"
    );
    // Entity selects keep the whole path (they name the household's rows too).
    assert_eq!(
        c.entity_selects[0].where_sql(),
        "r1.id = p.household_id AND (r2.type = $1::text)"
    );
    // Counts stay exact: the household's key is unique.
    let c = compile_with(
        &cat,
        json!({"relationship": "pets", "count": {"at_least": 2}}),
    );
    assert!(
        !c.condition.contains("households") && c.condition.contains("count(*)"),
        "{}",
        c.condition
    );
    // A condition that refers to the household keeps it.
    let c = compile_with(
        &cat,
        json!({"relationship": "pets", "where": {"column": "name", "op": "equals", "value": {"ref": "household.name"}}}),
    );
    assert!(
        c.condition.contains("public.households r1"),
        "{}",
        c.condition
    );
    // A household under row-level security stays in the join: its policies apply as
    // they would to any graph table. One the caller may not read is refused (42501),
    // even though the join would leave it out.
    for (readable, row_security) in [(false, false), (true, true)] {
        let mut guarded = cat.clone();
        if let Some(Lookup::Found(h)) = guarded.tables.get_mut("public.households") {
            h.readable = readable;
            h.row_security = row_security;
        }
        let def = json!({"relationship": "pets", "count": {"at_least": 2}});
        if !readable {
            assert_eq!(compile_err_with(&guarded, def).0, "42501");
            continue;
        }
        let c = compile_with(&guarded, def);
        assert!(
            c.condition.contains("public.households r1"),
            "{}",
            c.condition
        );
    }
}

#[test]
fn event_counts_read_members_straight_from_events_when_a_foreign_key_allows() {
    let twice = json!({"event": "Order Completed", "within": {"last": "30 days"}, "count": {"at_least": 2}});
    let plain = demo_catalog();
    // Without a foreign key an event may name a profile that does not exist: joined.
    let c = compile_with(&plain, twice.clone());
    assert!(c.direct.is_none());
    assert!(c.members_sql().contains("FROM public.profiles p"));
    let mut cat = plain.clone();
    add_foreign_key(&mut cat, "events", "profile_id", "profiles");
    let c = compile_with(&cat, twice.clone());
    assert_eq!(
        c.members_sql(),
        "SELECT g2.k::pg_catalog.text AS profile_id\nFROM (SELECT e1.profile_id AS k FROM public.events e1 WHERE e1.event = $1::text AND e1.timestamp >= pg_catalog.now() - $2::pg_catalog.interval GROUP BY 1 HAVING pg_catalog.count(*) >= $3::pg_catalog.int8) g2\nWHERE g2.k IS NOT NULL"
    );
    assert_eq!(
        c.count_sql(),
        format!("SELECT pg_catalog.count(*) FROM ({}) d", c.members_sql())
    );
    // The general condition stays for samples and for audiences that refer to this one.
    assert!(c.condition.contains("WHERE g2.k = p.id"), "{}", c.condition);
    // Not when it is one condition among others, when the count holds for profiles
    // without events, or when the caller may not read the profiles or a policy could
    // hide some of them.
    for def in [
        json!({"all": [twice.clone(), {"trait": "plan", "op": "equals", "value": "premium"}]}),
        json!({"not": twice.clone()}),
        json!({"event": "Order Completed", "count": {"at_most": 2}}),
        json!({"event": "Order Completed"}),
    ] {
        assert!(compile_with(&cat, def.clone()).direct.is_none(), "{def}");
    }
    for (readable, row_security) in [(false, false), (true, true)] {
        let mut guarded = cat.clone();
        if let Some(Lookup::Found(p)) = guarded.tables.get_mut("public.profiles") {
            p.readable = readable;
            p.row_security = row_security;
        }
        if !readable {
            // Refused outright (42501): the caller may not read the profiles.
            assert_eq!(compile_err_with(&guarded, twice.clone()).0, "42501");
            continue;
        }
        assert!(compile_with(&guarded, twice.clone()).direct.is_none());
    }
}

#[test]
fn counts_group_and_having() {
    // Owly Card holders with more than five transactions on that card.
    let c = ok(json!({"relationship": "credit_cards",
        "where": {"column": "name", "op": "equals", "value": "Owly Card"},
        "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]}));
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.profile_identifiers i2 JOIN public.accounts r1 ON r1.email = i2.value AND i2.type = $1::text JOIN public.credit_cards r3 ON r3.account_id = r1.id WHERE i2.profile_id = p.id AND (r3.name = $2::text) AND EXISTS (SELECT 1 FROM (SELECT r4.card_id AS k FROM public.transactions r4 GROUP BY 1 HAVING pg_catalog.count(*) > $3::pg_catalog.int8) g5 WHERE g5.k = r3.id))"
    );
    // The nested node's entities are reached through Owly Cards.
    let tx = c
        .entity_selects
        .iter()
        .find(|s| s.relationship == "transactions")
        .unwrap();
    assert!(
        tx.from
            .starts_with("public.profile_identifiers i2 JOIN public.accounts r1"),
        "{}",
        tx.from
    );
    assert!(
        tx.conds.contains(&"r4.card_id = r3.id".to_string()),
        "{:?}",
        tx.conds
    );

    // Without: exactly 0 is an anti-join on the keys that have some.
    let c = ok(json!({"relationship": "pets", "count": {"exactly": 0}}));
    assert_eq!(
        c.condition,
        "NOT EXISTS (SELECT 1 FROM (SELECT r1.id AS k FROM public.households r1 JOIN public.pets r2 ON r2.household_id = r1.id GROUP BY 1 HAVING (pg_catalog.count(*) = $1::pg_catalog.int8) IS NOT TRUE) g3 WHERE g3.k = p.household_id)"
    );

    // Rows reached through a junction (or an external id) can repeat: distinct keys.
    let c = ok(json!({"relationship": "cart_products", "count": {"at_least": 2}}));
    assert!(
        c.condition
            .contains("HAVING pg_catalog.count(DISTINCT r2.sku) >= $1::pg_catalog.int8"),
        "{}",
        c.condition
    );

    // An aggregate over rows that can repeat runs over distinct (key, row) pairs.
    let c = ok(
        json!({"relationship": "cart_products", "aggregate": {"fn": "sum", "column": "price", "op": "gt", "value": 30}}),
    );
    assert!(
        c.condition.contains("FROM (SELECT DISTINCT ON (1, 2) r1.profile_id AS k, r2.sku AS row_key, r2.price AS v FROM public.carts r1"),
        "{}",
        c.condition
    );
    assert!(
        c.condition.contains(
            "GROUP BY 1 HAVING (coalesce(pg_catalog.sum(d4.v), 0) > $1::pg_catalog.numeric)"
        ),
        "{}",
        c.condition
    );

    // An aggregate that holds over no rows (sum 0 < 100) also takes the anti-join.
    let c = ok(
        json!({"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "lt", "value": 100}}),
    );
    assert!(c.condition.starts_with("NOT EXISTS"), "{}", c.condition);
    assert!(c.condition.contains("HAVING ((coalesce(pg_catalog.sum(r4.amount), 0) < $2::pg_catalog.numeric)) IS NOT TRUE"), "{}", c.condition);
    // avg over no rows is null and matches nothing.
    let c = ok(
        json!({"relationship": "transactions", "count": {"at_least": 2},
        "aggregate": {"fn": "avg", "column": "amount", "op": "gte", "value": 10}}),
    );
    assert!(
        c.condition.starts_with("EXISTS (SELECT 1 FROM (SELECT i"),
        "{}",
        c.condition
    );
    assert!(c.condition.contains("HAVING pg_catalog.count(*) >= $2::pg_catalog.int8 AND (pg_catalog.avg(r4.amount) >= $3::pg_catalog.numeric)"), "{}", c.condition);
}

#[test]
fn events_and_windows() {
    let c = ok(
        json!({"event": "Order Completed", "within": {"last": "30 days"},
        "where": {"property": "total", "op": "gt", "value": 20}, "count": {"at_least": 2}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM (SELECT e1.profile_id AS k FROM public.events e1 WHERE e1.event = $1::text AND e1.\"timestamp\" >= pg_catalog.now() - $2::pg_catalog.interval AND CASE WHEN pg_catalog.jsonb_typeof((e1.properties::pg_catalog.jsonb #> $3::pg_catalog.text[])) = 'number' THEN coalesce(((e1.properties::pg_catalog.jsonb #> $3::pg_catalog.text[]))::pg_catalog.numeric > $4::pg_catalog.numeric, false) ELSE false END GROUP BY 1 HAVING pg_catalog.count(*) >= $5::pg_catalog.int8) g2 WHERE g2.k = p.id)"
            .replace("e1.\"timestamp\"", "e1.timestamp")
    );
    let c = ok(
        json!({"event": "Order Completed", "within": {"between": ["2026-11-01", "2026-11-30"]},
        "where": {"property": "currency", "op": "not_equals", "value": "USD"}}),
    );
    assert!(
        c.condition.contains(
            "e1.timestamp BETWEEN $2::timestamp with time zone AND $3::timestamp with time zone"
        ),
        "{}",
        c.condition
    );
    assert!(
        c.condition
            .contains("NOT (CASE WHEN pg_catalog.jsonb_typeof"),
        "{}",
        c.condition
    );
}

#[test]
fn audiences_are_compiled_in_and_cycles_refused() {
    let cats = json!({"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}});
    ctx_with(&[("cat_owners", cats.clone())], |ctx| {
        let c = compile(ctx, &json!({"all": [{"audience": "cat_owners"}, {"audience": "cat_owners", "member": false}]}), None).unwrap();
        assert!(
            c.condition
                .starts_with("((EXISTS (SELECT 1 FROM public.households"),
            "{}",
            c.condition
        );
        assert!(c.condition.contains(" AND ((EXISTS"), "{}", c.condition);
        assert!(c.condition.ends_with(")) IS NOT TRUE)"), "{}", c.condition);
        assert_eq!(c.depends_on, vec!["cat_owners"]);
        // A referenced audience's entities are not this audience's.
        assert!(c.entity_selects.is_empty());
    });
    let (code, msg, _) = err_with(
        &[
            ("a", json!({"audience": "b"})),
            ("b", json!({"audience": "c"})),
        ],
        json!({"audience": "a"}),
        Some("c"),
    );
    assert_eq!(code, "22023");
    assert_eq!(
        msg,
        "$.audience: cycle: audience references form a loop (c -> a -> b -> c)"
    );
    let (_, msg, hint) = err_with(
        &[("cat_owners", cats)],
        json!({"audience": "cat_owner"}),
        None,
    );
    assert_eq!(msg, "$.audience: audience \"cat_owner\" does not exist");
    assert_eq!(hint.as_deref(), Some("Did you mean \"cat_owners\"?"));
}

#[test]
fn errors_have_paths_codes_and_hints() {
    let cases: Vec<(Value, &str, &str, Option<&str>)> = vec![
        (json!({"all": [{"relationship": "pets", "where": {"column": "typ", "op": "equals", "value": "cat"}}]}),
         "42703", "$.all[0].where.column: column \"typ\" does not exist on entity \"pets\"", Some("Did you mean \"type\"?")),
        (json!({"relationship": "petz"}), "22023", "$.relationship: relationship \"petz\" does not exist", Some("Did you mean \"pets\"?")),
        (json!({"trait": "plna", "op": "equals", "value": "x"}), "42703",
         "$.trait: trait \"plna\" does not exist on the profile table public.profiles", Some("Did you mean \"plan\"?")),
        (json!({"trait": "plan", "op": "equal", "value": "x"}), "22023", "$.op: unknown operator \"equal\"", Some("Did you mean \"equals\" or \"not_equals\"?")),
        (json!({"trait": "household_id", "op": "contains", "value": "1"}), "22023",
         "$.op: operator \"contains\" does not apply to \"household_id\" (bigint)",
         Some("Operators for bigint: equals, not_equals, in, not_in, is_null, is_not_null, gt, gte, lt, lte, between.")),
        (json!({"trait": "household_id", "op": "equals", "value": "1"}), "22023",
         "$.value: expected a number for \"household_id\" (bigint), got a string", None),
        (json!({"relationship": "credit_cards", "relationships": [{"relationship": "pets"}]}), "22023",
         "$.relationships[0].relationship: relationship \"pets\" is not below \"credit_cards\"", Some("Relationships below \"credit_cards\": transactions.")),
        (json!({"relationship": "transactions", "where": {"column": "amount", "op": "gt", "value": {"ref": "pets.id"}}}), "22023",
         "$.where.value.ref: \"pets\" is not the profile or an ancestor relationship of this row", None),
        (json!({"relationship": "pets", "count": {"at_lest": 1}}), "22023", "$.count: a count has exactly one threshold", None),
        (json!({"relationship": "pets", "count": {"at_least": -1}}), "22023", "$.count.at_least: expected a whole number from 0 to 2147483647, got -1", None),
        (json!({"relationship": "pets", "aggregate": {"fn": "median", "column": "id", "op": "gt", "value": 1}}), "22023",
         "$.aggregate.fn: unknown aggregate function \"median\"", None),
        (json!({"relationship": "pets", "aggregate": {"fn": "sum", "column": "name", "op": "gt", "value": 1}}), "22023",
         "$.aggregate.column: cannot take sum of column \"name\" (text)", None),
        (json!({"event": "Order Completed", "within": {"last": "30 days", "before": "2026-01-01"}}), "22023",
         "$.within: a window has exactly one of last, after, before, between", None),
        (json!({"trait": "plan", "op": "is_null", "value": 1}), "22023", "$.value: \"is_null\" takes no value", None),
        (json!({"trait": 5, "op": "equals", "value": 1}), "22023", "$.trait: expected a string, got a number", None),
        (json!({"relationship": "pets", "were": {}}), "22023", "$.were: unknown key \"were\"", Some("Did you mean \"where\"?")),
        (json!({"trait": "plan", "relationship": "pets"}), "22023", "$: a node is one thing, but it has both \"trait\" and \"relationship\"", None),
        (json!({"event": "Signed Up", "where": {"property": "plan", "op": "within_last", "value": "1 day"}}), "22023",
         "$.where.op: operator \"within_last\" does not apply to event properties", None),
    ];
    for (def, code, msg, hint) in cases {
        let (c, m, h) = err(def.clone());
        assert_eq!((c.as_str(), m.as_str()), (code, msg), "for {def}");
        if let Some(hint) = hint {
            assert_eq!(h.as_deref(), Some(hint), "for {def}");
        }
    }
}

#[test]
fn hostile_values_stay_parameters() {
    let evil = "x'); DROP TABLE pets; --\\";
    let c = ok(
        json!({"relationship": "pets", "where": {"column": "name", "op": "in", "value": [evil]}}),
    );
    assert!(!c.condition.contains("DROP"));
    assert_eq!(texts(&c), vec![format!("{:?}", vec![evil])]);
    let inlined = sql::inline(&c.condition, &c.params);
    assert!(
        inlined.contains("E'{\"x''); DROP TABLE pets; --\\\\\\\\\"}'::text[]"),
        "{inlined}"
    );
}

/// A hostile corpus: valid definitions mutated with hostile strings, numbers out of
/// range, wrong JSON types, deep nesting and large sizes. The compiler never panics,
/// and no hostile string ever reaches the SQL text: user values are parameters only.
#[test]
fn hostile_corpus_never_panics_or_injects() {
    use super::corpus::{corpus, too_deep, wide, MARK};
    let cats = json!({"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}});
    let defs = corpus(800);
    assert!(defs.len() > 5000, "only {} cases", defs.len());
    ctx_with(&[("cat_owners", cats)], |ctx| {
        for def in &defs {
            if let Ok(c) = compile(ctx, def, None) {
                let sql = c.members_sql()
                    + &c.entity_selects
                        .iter()
                        .map(|s| s.where_sql())
                        .collect::<String>();
                assert!(
                    !sql.contains(MARK) && !sql.contains("Ω"),
                    "a user value reached the SQL: {def}\n{sql}"
                );
            }
        }
        // Deep nesting and large definitions are refused with a clear error, not a crash.
        let e = compile(ctx, &too_deep(), None).unwrap_err();
        assert!(
            e[0].message.contains("nests deeper than 32 levels"),
            "{:?}",
            e[0]
        );
        let e = compile(ctx, &wide(5000), None).unwrap_err();
        assert!(e[0].message.contains("more than 2000 nodes"), "{:?}", e[0]);
        assert!(compile(ctx, &wide(1500), None).is_ok());
    });
}

/// A warehouse distributed by profile (Citus): orders, line items, reviews, carts,
/// shipments and gift cards carry `profile_key` and are unique only together with it;
/// products is a reference table; cart_items and order_gift_cards are junctions with
/// the key, order_shipments one without.
fn citus_graph_json() -> Value {
    json!({
      "entities": [
        {"slug": "orders", "table_ref": "public.orders", "primary_key": "id", "profile_key": "profile_id"},
        {"slug": "line_items", "table_ref": "public.line_items", "primary_key": "id", "profile_key": "profile_id"},
        {"slug": "products", "table_ref": "public.products", "primary_key": "sku"},
        {"slug": "reviews", "table_ref": "public.reviews", "primary_key": "id", "profile_key": "profile_id"},
        {"slug": "carts", "table_ref": "public.carts", "primary_key": "id", "profile_key": "profile_id"},
        {"slug": "shipments", "table_ref": "public.shipments", "primary_key": "id", "profile_key": "profile_id"},
        {"slug": "gift_cards", "table_ref": "public.gift_cards", "primary_key": "id", "profile_key": "profile_id"}
      ],
      "profile": {"table_ref": "public.profiles", "primary_key": "id", "relationships": [
        {"slug": "orders", "related_entity": "orders", "trait": {"name": "id", "join_key": "profile_id"},
         "relationships": [
           {"slug": "line_items", "related_entity": "line_items", "join_on": "orders.id = line_items.order_id",
            "relationships": [
              {"slug": "products", "related_entity": "products", "join_on": "line_items.product_sku = products.sku",
               "relationships": [
                 {"slug": "reviews", "related_entity": "reviews", "join_on": "products.sku = reviews.product_sku"}]}]},
           {"slug": "shipments", "related_entity": "shipments",
            "junction_table": {"table_ref": "public.order_shipments",
                               "left_join_on": "orders.id = order_id", "right_join_on": "shipment_id = shipments.id"}},
           {"slug": "gift_cards", "related_entity": "gift_cards",
            "junction_table": {"table_ref": "public.order_gift_cards", "profile_key": "profile_id",
                               "left_join_on": "orders.id = order_id", "right_join_on": "gift_card_id = gift_cards.id"}}]},
        {"slug": "carts", "related_entity": "carts", "trait": {"name": "id", "join_key": "profile_id"},
         "relationships": [
           {"slug": "cart_products", "related_entity": "products",
            "junction_table": {"table_ref": "public.cart_items", "profile_key": "profile_id",
                               "left_join_on": "carts.id = cart_id", "right_join_on": "product_sku = products.sku"}}]}]}
    })
}

fn citus_catalog() -> crate::graph::catalog::Catalog {
    use crate::graph::catalog::tests::table;
    use crate::graph::catalog::Catalog;
    let keyed = |name: &str, cols: &[(&str, &str)]| {
        let mut t = table("public", name, cols, &["profile_id"]);
        t.unique_sets = vec![vec!["profile_id".into(), "id".into()]];
        t
    };
    let tables = vec![
        table(
            "public",
            "profiles",
            &[("id", "bigint"), ("plan", "text")],
            &["id"],
        ),
        keyed(
            "orders",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("status", "text"),
            ],
        ),
        keyed(
            "line_items",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("order_id", "bigint"),
                ("product_sku", "text"),
                ("quantity", "integer"),
            ],
        ),
        table(
            "public",
            "products",
            &[("sku", "text"), ("category", "text"), ("price", "numeric")],
            &["sku"],
        ),
        keyed(
            "reviews",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("product_sku", "text"),
                ("rating", "integer"),
            ],
        ),
        keyed(
            "carts",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("status", "text"),
            ],
        ),
        table(
            "public",
            "cart_items",
            &[
                ("profile_id", "bigint"),
                ("cart_id", "bigint"),
                ("product_sku", "text"),
            ],
            &["profile_id"],
        ),
        keyed(
            "shipments",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("carrier", "text"),
            ],
        ),
        table(
            "public",
            "order_shipments",
            &[("order_id", "bigint"), ("shipment_id", "bigint")],
            &[],
        ),
        keyed(
            "gift_cards",
            &[
                ("profile_id", "bigint"),
                ("id", "bigint"),
                ("balance", "numeric"),
            ],
        ),
        table(
            "public",
            "order_gift_cards",
            &[
                ("profile_id", "bigint"),
                ("order_id", "bigint"),
                ("gift_card_id", "bigint"),
            ],
            &["profile_id"],
        ),
    ];
    let mut cat = Catalog::default();
    for t in tables {
        cat.tables.insert(t.display(), Lookup::Found(t));
    }
    cat
}

fn citus_ok(def: Value) -> Compiled {
    let graph = parse_graph(&citus_graph_json()).unwrap();
    let cat = citus_catalog();
    let valid = ValidatedGraph::check(graph, cat, 6).unwrap_or_else(|ps| panic!("{ps:#?}"));
    let audiences = BTreeMap::new();
    let ctx = Ctx::new(&valid, &audiences);
    compile(&ctx, &def, None).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Profile keys are equated on each hop where both sides carry one; hops to a table
/// without one (a reference table) join as written, and so do the hops out of it.
#[test]
fn profile_keys_are_equated_on_each_hop_where_both_sides_carry_one() {
    // Keyed -> keyed -> reference -> keyed: the two first hops are co-located, the
    // product joins as written, and so do its reviews (anyone's: no key to equate with).
    let c = citus_ok(
        json!({"relationship": "reviews", "where": {"column": "rating", "op": "gte", "value": 4}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id JOIN public.products r3 ON r3.sku = r2.product_sku JOIN public.reviews r4 ON r4.product_sku = r3.sku WHERE r1.profile_id = p.id AND (r4.rating >= $1::integer))"
    );
    // Keyed -> keyed -> reference (the common case: an order's line items' products).
    let c = citus_ok(
        json!({"relationship": "products", "where": {"column": "category", "op": "equals", "value": "toys"}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id JOIN public.products r3 ON r3.sku = r2.product_sku WHERE r1.profile_id = p.id AND (r3.category = $1::text))"
    );
    // A nested node starts at an order row: its key is equated in the subquery.
    let c = citus_ok(json!({"relationship": "orders",
        "relationships": [{"relationship": "line_items", "count": {"at_least": 2}}]}));
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.orders r1 WHERE r1.profile_id = p.id AND EXISTS (SELECT 1 FROM (SELECT r2.order_id AS k FROM public.line_items r2 WHERE r2.profile_id = r1.profile_id GROUP BY 1 HAVING pg_catalog.count(*) >= $1::pg_catalog.int8) g3 WHERE g3.k = r1.id))"
    );
    // A primary key unique only together with the profile key: a co-located hop on
    // (order_id, profile_id) reaches each line item once, so counts need no DISTINCT.
    let c = citus_ok(json!({"relationship": "line_items", "count": {"at_least": 3}}));
    assert!(
        c.condition
            .contains("HAVING pg_catalog.count(*) >= $1::pg_catalog.int8"),
        "{}",
        c.condition
    );
    // Entity selects carry the same equalities.
    let c = citus_ok(json!({"relationship": "line_items"}));
    assert_eq!(c.entity_selects[0].where_sql(), "r1.profile_id = p.id");
    assert_eq!(
        c.entity_selects[0].from,
        "public.orders r1 JOIN public.line_items r2 ON r2.order_id = r1.id AND r2.profile_id = r1.profile_id"
    );
}

#[test]
fn junctions_with_and_without_a_profile_key() {
    // A junction with a key, to a reference table: the junction's key equals the cart's.
    let c = citus_ok(
        json!({"relationship": "cart_products", "where": {"column": "price", "op": "gt", "value": 10}}),
    );
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.carts r1 JOIN public.cart_items j3 JOIN public.products r2 ON r2.sku = j3.product_sku ON j3.cart_id = r1.id AND j3.profile_id = r1.profile_id WHERE r1.profile_id = p.id AND (r2.price > $1::numeric))"
    );
    // A junction with a key between keyed rows: junction = parent, child = junction.
    let c = citus_ok(json!({"relationship": "gift_cards"}));
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.orders r1 JOIN public.order_gift_cards j3 JOIN public.gift_cards r2 ON r2.id = j3.gift_card_id AND r2.profile_id = j3.profile_id ON j3.order_id = r1.id AND j3.profile_id = r1.profile_id WHERE r1.profile_id = p.id)"
    );
    // A junction without a key (a reference table) between keyed rows: the child's key
    // equals the parent's across it.
    let c = citus_ok(json!({"relationship": "shipments"}));
    assert_eq!(
        c.condition,
        "EXISTS (SELECT 1 FROM public.orders r1 JOIN public.order_shipments j3 JOIN public.shipments r2 ON r2.id = j3.shipment_id ON j3.order_id = r1.id AND r2.profile_id = r1.profile_id WHERE r1.profile_id = p.id)"
    );
    // Rows through a junction can repeat: counts stay distinct.
    let c = citus_ok(json!({"relationship": "gift_cards", "count": {"at_least": 2}}));
    assert!(
        c.condition.contains("count(DISTINCT r2.id)"),
        "{}",
        c.condition
    );
}

/// Per profile (for the few profiles an incremental compute evaluates), counts and
/// aggregates are correlated aggregate queries: HAVING without GROUP BY decides for the
/// empty set too, so "exactly 0" needs no anti-join. A count alone reads at most its
/// threshold + 1 rows (one more parameter than grouped, after the same ones).
#[test]
fn per_profile_counts_are_correlated() {
    let owly = json!({"relationship": "credit_cards",
        "where": {"column": "name", "op": "equals", "value": "Owly Card"},
        "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]});
    let (grouped, per) = ctx_with(&[], |ctx| {
        (
            compile_for(ctx, &owly, None, Strategy::Grouped).unwrap(),
            compile_for(ctx, &owly, None, Strategy::PerProfile).unwrap(),
        )
    });
    assert_eq!(
        per.condition,
        "EXISTS (SELECT 1 FROM public.profile_identifiers i2 JOIN public.accounts r1 ON r1.email = i2.value AND i2.type = $1::text JOIN public.credit_cards r3 ON r3.account_id = r1.id WHERE i2.profile_id = p.id AND (r3.name = $2::text) AND EXISTS (SELECT 1 FROM (SELECT 1 FROM public.transactions r4 WHERE r4.card_id = r3.id LIMIT $4::pg_catalog.int8) c6 HAVING pg_catalog.count(*) > $3::pg_catalog.int8))"
    );
    assert_eq!(per.params[..3], grouped.params[..]);
    assert_eq!(per.params[3], ParamValue::Text("6".into()));
    let none = ctx_with(&[], |ctx| {
        compile_for(
            ctx,
            &json!({"relationship": "pets", "count": {"exactly": 0}}),
            None,
            Strategy::PerProfile,
        )
        .unwrap()
    });
    assert_eq!(
        none.condition,
        "EXISTS (SELECT 1 FROM (SELECT 1 FROM public.households r1 JOIN public.pets r2 ON r2.household_id = r1.id WHERE r1.id = p.household_id LIMIT $2::pg_catalog.int8) c4 HAVING pg_catalog.count(*) = $1::pg_catalog.int8)"
    );
    assert_eq!(none.params[1], ParamValue::Text("1".into()));
    // Rows that can repeat are counted distinct, and an aggregate needs every row: no cap.
    let spend = ctx_with(&[], |ctx| {
        compile_for(
            ctx,
            &json!({"relationship": "transactions", "count": {"at_least": 2},
                    "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 100}}),
            None,
            Strategy::PerProfile,
        )
        .unwrap()
    });
    assert!(!spend.condition.contains("LIMIT"), "{}", spend.condition);
}

/// Comparisons with now() are recorded, with the table and column they read, so an
/// incremental compute can evaluate the rows that crossed a boundary as time passed.
#[test]
fn clock_windows_are_recorded() {
    let c = ok(json!({"all": [
        {"event": "Order Completed", "within": {"last": "30 days"}},
        {"trait": "created_at", "op": "within_last", "value": "7 days"},
        {"relationship": "pets", "where": {"column": "name", "op": "equals", "value": "Tom"}}]}));
    assert!(c.uses_now);
    assert_eq!(
        c.clock,
        vec![
            ClockWindow {
                table: "public.events".into(),
                column: "timestamp".into(),
                interval: "30 days".into()
            },
            ClockWindow {
                table: "public.profiles".into(),
                column: "created_at".into(),
                interval: "7 days".into()
            },
        ]
    );
    assert!(!ok(json!({"trait": "plan", "op": "is_null"})).uses_now);
}

/// Plans and optimizes a definition over the demo graph and the given catalog; `check`
/// reads the optimized plan's condition.
fn optimized<R>(
    cat: &crate::graph::catalog::Catalog,
    def: Value,
    strategy: Strategy,
    check: impl FnOnce(&plan::Cond<'_>) -> R,
) -> R {
    let graph = parse_graph(&demo_graph_json()).unwrap();
    let audiences = BTreeMap::new();
    let valid = ValidatedGraph::check(graph, cat.clone(), 6).unwrap();
    let ctx = Ctx::new(&valid, &audiences);
    let node = parse(&def).unwrap();
    let mut p = plan::plan(&ctx, &node, None).unwrap_or_else(|e| panic!("{e:#?}"));
    optimize::optimize(&mut p.cond, strategy);
    check(&p.cond)
}

/// (shape, short) of a definition that is one relationship node.
fn rel_decisions(
    cat: &crate::graph::catalog::Catalog,
    def: Value,
    strategy: Strategy,
) -> (plan::Shape, bool) {
    optimized(cat, def, strategy, |c| match c {
        plan::Cond::Rel(r) => (r.shape, r.short),
        _ => panic!("not a relationship node"),
    })
}

#[test]
fn the_optimizer_decides_on_the_plan_not_on_sql() {
    use plan::Shape::*;
    let mut cat = demo_catalog();
    let cats = json!({"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}});
    let twice = json!({"relationship": "pets", "count": {"at_least": 2}});
    let named = json!({"relationship": "pets", "where": {"column": "name", "op": "equals", "value": {"ref": "household.name"}}});
    // Without a foreign key the household row is no pass-through.
    assert_eq!(
        rel_decisions(&cat, cats.clone(), Strategy::Grouped),
        (Exists, false)
    );
    add_foreign_key(&mut cat, "pets", "household_id", "households");
    assert_eq!(rel_decisions(&cat, cats, Strategy::Grouped), (Exists, true));
    assert_eq!(
        rel_decisions(&cat, twice.clone(), Strategy::Grouped),
        (Grouped, true)
    );
    assert_eq!(
        rel_decisions(&cat, twice, Strategy::PerProfile),
        (PerProfile, true)
    );
    // A reference to the household (row 1 of the plan) keeps it.
    assert_eq!(
        rel_decisions(&cat, named.clone(), Strategy::Grouped),
        (Exists, false)
    );
    optimized(&cat, named, Strategy::Grouped, |c| {
        assert!(plan::refers_to(c, 1) && !plan::refers_to(c, plan::PROFILE));
    });
    // An event count reads its members from the events only as the whole definition,
    // with a foreign key, and not when it refers to the profile.
    add_foreign_key(&mut cat, "events", "profile_id", "profiles");
    let direct = |def: Value| {
        optimized(&cat, def, Strategy::Grouped, |c| match c {
            plan::Cond::Event(e) => e.direct,
            _ => false,
        })
    };
    assert!(direct(
        json!({"event": "Order Completed", "count": {"at_least": 2}})
    ));
    assert!(!direct(
        json!({"event": "Order Completed", "count": {"at_most": 2}})
    ));
    assert!(!direct(json!({"event": "Order Completed"})));
}
