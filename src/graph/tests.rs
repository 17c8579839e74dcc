//! Unit tests of the graph model and validator over a catalog that mirrors
//! demo/warehouse.sql.

use super::catalog::tests::table;
use super::catalog::{Catalog, Lookup};
use super::model::{parse, DataGraph};
use super::validate::{validate, Report, DEFAULT_MAX_DEPTH};
use super::{edit, to_dot};
use serde_json::{json, Value};

pub fn demo_graph_json() -> Value {
    serde_json::from_str(include_str!("../../demo/graph.json")).unwrap()
}

/// The demo warehouse's tables, as the catalog would describe them.
pub fn demo_catalog() -> Catalog {
    let mut t = Vec::new();
    t.push(table(
        "public",
        "households",
        &[("id", "bigint"), ("name", "text"), ("city", "text")],
        &["id"],
    ));
    t.push(table(
        "public",
        "profiles",
        &[
            ("id", "bigint"),
            ("user_id", "text"),
            ("email", "text"),
            ("first_name", "text"),
            ("plan", "text"),
            ("household_id", "bigint"),
            ("created_at", "timestamp with time zone"),
        ],
        &["id", "user_id"],
    ));
    t.push(table(
        "public",
        "profile_identifiers",
        &[
            ("profile_id", "bigint"),
            ("type", "text"),
            ("value", "text"),
        ],
        &["profile_id", "type"],
    ));
    t.push(table(
        "public",
        "pets",
        &[
            ("id", "bigint"),
            ("household_id", "bigint"),
            ("name", "text"),
            ("type", "text"),
        ],
        &["id", "household_id"],
    ));
    t.push(table(
        "public",
        "accounts",
        &[
            ("id", "bigint"),
            ("email", "text"),
            ("name", "text"),
            ("status", "text"),
        ],
        &["id", "email"],
    ));
    t.push(table(
        "public",
        "subscriptions",
        &[
            ("id", "bigint"),
            ("account_id", "bigint"),
            ("status", "text"),
            ("tier", "text"),
            ("started_at", "date"),
        ],
        &["id", "account_id"],
    ));
    t.push(table(
        "public",
        "credit_cards",
        &[
            ("id", "bigint"),
            ("account_id", "bigint"),
            ("name", "text"),
            ("balance", "numeric"),
            ("status", "text"),
        ],
        &["id", "account_id"],
    ));
    t.push(table(
        "public",
        "transactions",
        &[
            ("id", "bigint"),
            ("card_id", "bigint"),
            ("amount", "numeric"),
            ("created_at", "timestamp with time zone"),
        ],
        &["id", "card_id"],
    ));
    t.push(table(
        "public",
        "carts",
        &[
            ("id", "bigint"),
            ("profile_id", "bigint"),
            ("status", "text"),
            ("updated_at", "timestamp with time zone"),
        ],
        &["id", "profile_id"],
    ));
    t.push(table(
        "public",
        "products",
        &[
            ("sku", "text"),
            ("name", "text"),
            ("price", "numeric"),
            ("in_stock", "boolean"),
        ],
        &["sku"],
    ));
    t.push(table(
        "public",
        "cart_items",
        &[
            ("id", "bigint"),
            ("cart_id", "bigint"),
            ("product_sku", "text"),
            ("quantity", "integer"),
        ],
        &["id", "cart_id"],
    ));
    t.push(table(
        "public",
        "events",
        &[
            ("id", "bigint"),
            ("profile_id", "bigint"),
            ("event", "text"),
            ("timestamp", "timestamp with time zone"),
            ("properties", "jsonb"),
        ],
        &["id", "profile_id"],
    ));
    let mut cat = Catalog::default();
    let names: Vec<String> = t.iter().map(|t| t.display()).collect();
    for tb in t {
        cat.tables.insert(tb.display(), Lookup::Found(tb));
    }
    // Anything else resolves as missing, with every table as a candidate.
    cat.tables.insert(
        "public.pet".into(),
        Lookup::Missing {
            candidates: names.clone(),
        },
    );
    cat.tables.insert(
        "public.nowhere".into(),
        Lookup::Missing { candidates: names },
    );
    cat
}

pub(crate) fn check_with(doc: &Value, max_depth: usize) -> Report {
    match parse(doc) {
        Ok(g) => validate(&g, &demo_catalog(), max_depth),
        Err(problems) => Report {
            problems,
            warnings: vec![],
        },
    }
}

/// (sqlstate, "path: message", hint) of each problem.
fn problems(doc: &Value) -> Vec<(String, String, Option<String>)> {
    check_with(doc, DEFAULT_MAX_DEPTH)
        .problems
        .iter()
        .map(|p| {
            (
                p.kind.sqlstate().to_string(),
                p.full_message(),
                p.hint.clone(),
            )
        })
        .collect()
}

fn only_problem(doc: &Value) -> (String, String, Option<String>) {
    let mut ps = problems(doc);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    ps.remove(0)
}

/// Applies a change to the demo graph's JSON at a JSON pointer.
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = demo_graph_json();
    *doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    doc
}

#[test]
fn demo_graph_is_valid_and_round_trips() {
    let doc = demo_graph_json();
    let report = check_with(&doc, DEFAULT_MAX_DEPTH);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    let g = parse(&doc).unwrap();
    assert_eq!(g.to_json(), doc);
    assert_eq!(parse(&g.to_json()).unwrap(), g);
    assert_eq!(g.entities.len(), 8);
    assert_eq!(g.relationships().len(), 8);
    assert_eq!(g.max_depth(), 3);
    assert_eq!(
        g.path_to("transactions").unwrap(),
        vec!["accounts", "credit_cards", "transactions"]
    );
}

#[test]
fn shape_errors_carry_paths_and_hints() {
    let (code, msg, _) = only_problem(&with("/entities/1/slug", json!(7)));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        (
            "22023",
            "$.entities[1].slug: expected a string, got a number"
        )
    );

    let ps = problems(&with(
        "/profile/relationships/0/relationships/0",
        json!({
        "slug": "pets", "related_entity": "pets", "join_onn": "households.id = pets.household_id"}),
    ));
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].1, "$.profile.relationships[0].relationships[0]: a relationship needs one way to join its parent");
    assert!(ps[0].2.as_ref().unwrap().contains("join_on"));
    assert_eq!(
        ps[1].1,
        "$.profile.relationships[0].relationships[0].join_onn: unknown key \"join_onn\""
    );
    assert_eq!(ps[1].2.as_deref(), Some("Did you mean \"join_on\"?"));

    let mut doc = demo_graph_json();
    doc["profile"]["primary_kye"] = json!("id");
    let ps = problems(&doc);
    assert_eq!(ps.len(), 1);
    assert_eq!(
        ps[0].1,
        "$.profile.primary_kye: unknown key \"primary_kye\""
    );
    assert_eq!(ps[0].2.as_deref(), Some("Did you mean \"primary_key\"?"));

    let (_, msg, _) = only_problem(&json!([]));
    assert_eq!(msg, "$: expected an object, got an array");

    let mut doc = demo_graph_json();
    doc["profile"]["relationships"][1]["join_on"] = json!("accounts.id = x.y");
    let (_, msg, _) = only_problem(&doc);
    assert_eq!(
        msg,
        "$.profile.relationships[1].join_on: a relationship joins its parent one way, but both \"external_id\" and \"join_on\" are given"
    );
}

#[test]
fn unknown_tables_and_columns() {
    let (code, msg, hint) = only_problem(&with("/entities/1/table_ref", json!("public.pet")));
    assert_eq!(code, "42P01");
    assert_eq!(
        msg,
        "$.entities[1].table_ref: table \"public.pet\" does not exist"
    );
    assert_eq!(hint.as_deref(), Some("Did you mean \"public.pets\"?"));

    let (code, msg, hint) = only_problem(&with("/entities/1/primary_key", json!("idd")));
    assert_eq!(code, "42703");
    assert_eq!(
        msg,
        "$.entities[1].primary_key: column \"idd\" does not exist on table public.pets"
    );
    assert_eq!(hint.as_deref(), Some("Did you mean \"id\"?"));

    let (code, msg, _) = only_problem(&with(
        "/profile/relationships/0/trait/name",
        json!("househld_id"),
    ));
    assert_eq!(code, "42703");
    assert_eq!(
        msg,
        "$.profile.relationships[0].trait.name: column \"househld_id\" does not exist on table public.profiles"
    );

    let (code, msg, _) = only_problem(&with("/events/timestamp_column", json!("ts")));
    assert_eq!(code, "42703");
    assert!(msg.starts_with("$.events.timestamp_column: column \"ts\""));
}

#[test]
fn join_on_errors() {
    let at = "/profile/relationships/1/relationships/1/join_on";
    let (code, msg, hint) =
        only_problem(&with(at, json!("households.id = credit_cards.account_id")));
    assert_eq!(code, "22023");
    assert_eq!(
        msg,
        "$.profile.relationships[1].relationships[1].join_on: join_on must compare a column of \"accounts\" with a column of \"credit_cards\", but it names households and credit_cards"
    );
    assert_eq!(
        hint.as_deref(),
        Some("Compare a column of \"accounts\" with one of \"credit_cards\", for example \"accounts.id = credit_cards.<column>\".")
    );

    // Either order works; the wrong column is named.
    let (code, msg, hint) = only_problem(&with(at, json!("credit_cards.acount_id = accounts.id")));
    assert_eq!(code, "42703");
    assert_eq!(
        msg,
        "$.profile.relationships[1].relationships[1].join_on: column \"acount_id\" does not exist on table public.credit_cards"
    );
    assert_eq!(hint.as_deref(), Some("Did you mean \"account_id\"?"));

    let (code, msg, _) = only_problem(&with(at, json!("accounts.id; DROP TABLE x")));
    assert_eq!(code, "22023");
    assert!(
        msg.starts_with("$.profile.relationships[1].relationships[1].join_on: expected the form"),
        "{msg}"
    );

    // Incomparable types: a bigint with a text column.
    let (code, msg, _) = only_problem(&with(at, json!("accounts.email = credit_cards.account_id")));
    assert_eq!(code, "22023");
    assert_eq!(
        msg,
        "$.profile.relationships[1].relationships[1].join_on: cannot join public.accounts.email (text) with public.credit_cards.account_id (bigint): the types are not comparable"
    );
}

#[test]
fn slugs_entities_depth_and_cycles() {
    // The entity slug is malformed, and the relationship to "pets" no longer finds it.
    let ps = problems(&with("/entities/1/slug", json!("Pets")));
    assert_eq!(ps.len(), 2);
    assert_eq!(
        (ps[0].0.as_str(), ps[0].1.as_str()),
        ("22023", "$.entities[1].slug: invalid entity slug \"Pets\"")
    );
    assert_eq!(
        ps[1].1,
        "$.profile.relationships[0].relationships[0].related_entity: entity \"pets\" is not defined"
    );

    let ps = problems(&with("/entities/1/slug", json!("households")));
    assert_eq!(
        ps[0].1,
        "$.entities[1].slug: duplicate entity slug \"households\""
    );

    let (code, msg, hint) = only_problem(&with(
        "/profile/relationships/0/relationships/0/related_entity",
        json!("petz"),
    ));
    assert_eq!(code, "22023");
    assert_eq!(msg, "$.profile.relationships[0].relationships[0].related_entity: entity \"petz\" is not defined");
    assert_eq!(hint.as_deref(), Some("Did you mean \"pets\"?"));

    let ps = problems(&with("/profile/relationships/2/slug", json!("household")));
    assert_eq!(ps.len(), 1);
    assert_eq!(
        ps[0].1,
        "$.profile.relationships[2].slug: duplicate relationship slug \"household\""
    );

    let report = check_with(&demo_graph_json(), 2);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        report.problems[0].full_message(),
        "$.profile.relationships[1].relationships[1].relationships[0]: relationship \"transactions\" is at depth 3, deeper than the limit of 2"
    );

    let (code, msg, _) = only_problem(&with(
        "/profile/relationships/1/relationships/1/relationships/0",
        json!({"slug": "owner", "related_entity": "accounts", "join_on": "credit_cards.account_id = accounts.id"}),
    ));
    assert_eq!(code, "22023");
    assert_eq!(
        msg,
        "$.profile.relationships[1].relationships[1].relationships[0].related_entity: cycle: entity \"accounts\" already appears on this path (profile -> accounts -> credit_cards -> accounts)"
    );
}

#[test]
fn first_level_and_junction_rules() {
    let (code, msg, _) = only_problem(&with(
        "/profile/relationships/0",
        json!({"slug": "household", "related_entity": "households", "join_on": "profiles.household_id = households.id"}),
    ));
    assert_eq!(code, "22023");
    assert_eq!(
        msg,
        "$.profile.relationships[0].join_on: a first-level relationship joins the profile by \"trait\" or \"external_id\""
    );

    let j = "/profile/relationships/2/relationships/0/junction_table";
    let (code, msg, _) = only_problem(&with(
        &format!("{j}/left_join_on"),
        json!("carts.id = cart"),
    ));
    assert_eq!(code, "42703");
    assert_eq!(
        msg,
        "$.profile.relationships[2].relationships[0].junction_table.left_join_on: column \"cart\" does not exist on table public.cart_items"
    );
    let (code, msg, _) = only_problem(&with(
        &format!("{j}/right_join_on"),
        json!("product_sku = carts.id"),
    ));
    assert_eq!(code, "22023");
    assert!(
        msg.contains("right_join_on must compare a column of \"products\""),
        "{msg}"
    );
    let mut doc = demo_graph_json();
    doc.pointer_mut(j)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("right_join_on");
    let (_, msg, _) = only_problem(&doc);
    assert_eq!(
        msg,
        "$.profile.relationships[2].relationships[0].junction_table.right_join_on: required key \"right_join_on\" is missing"
    );
    let (code, _, hint) = only_problem(&with(&format!("{j}/table_ref"), json!("public.nowhere")));
    assert_eq!(code, "42P01");
    assert!(hint.is_some());
}

#[test]
fn external_id_needs_identifiers_and_warnings() {
    let mut doc = demo_graph_json();
    doc["profile"]
        .as_object_mut()
        .unwrap()
        .remove("identifiers");
    let (code, msg, _) = only_problem(&doc);
    assert_eq!(code, "55000");
    assert_eq!(
        msg,
        "$.profile.relationships[1].external_id: the profile has no identifiers table to match an external_id against"
    );

    // An unindexed join column is a warning, not a problem.
    let mut cat = demo_catalog();
    if let Some(Lookup::Found(t)) = cat.tables.get_mut("public.pets") {
        t.indexed.retain(|c| c != "household_id");
    }
    let g = parse(&demo_graph_json()).unwrap();
    let report = validate(&g, &cat, DEFAULT_MAX_DEPTH);
    assert!(report.problems.is_empty());
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(
        report.warnings[0].full_message(),
        "$.profile.relationships[0].relationships[0].join_on: no index leads with public.pets(household_id); joins from households will scan public.pets"
    );
    assert_eq!(
        report.warnings[0].hint.as_deref(),
        Some("CREATE INDEX ON public.pets (household_id);")
    );

    // A table the role cannot read.
    let mut cat = demo_catalog();
    if let Some(Lookup::Found(t)) = cat.tables.get_mut("public.pets") {
        t.readable = false;
    }
    let report = validate(&g, &cat, DEFAULT_MAX_DEPTH);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind.sqlstate(), "42501");
    assert_eq!(
        report.problems[0].full_message(),
        "$.entities[1].table_ref: permission denied for table public.pets"
    );
}

#[test]
fn edits() {
    let mut g: DataGraph = parse(&demo_graph_json()).unwrap();
    // Unknown parent; a cycle; removing an entity in use; removing a subtree root.
    let pets = g.relationship("pets").unwrap().rel.clone();
    let e = edit::upsert_relationship(&mut g, Some("pet"), pets.clone()).unwrap_err();
    assert_eq!(
        e.full_message(),
        "parent: relationship \"pet\" does not exist"
    );
    assert_eq!(e.hint.as_deref(), Some("Did you mean \"pets\"?"));
    let accounts = g.relationship("accounts").unwrap().rel.clone();
    let e = edit::upsert_relationship(&mut g, Some("transactions"), accounts).unwrap_err();
    assert!(
        e.message.starts_with("cycle: relationship \"accounts\""),
        "{}",
        e.message
    );
    let e = edit::remove_entity(&mut g, "pets").unwrap_err();
    assert_eq!(e.kind.sqlstate(), "2BP01");
    assert_eq!(e.message, "entity \"pets\" is used by relationships: pets");
    let e = edit::remove_relationship(&mut g, "credit_cards").unwrap_err();
    assert_eq!(
        e.message,
        "relationship \"credit_cards\" has nested relationships: transactions"
    );

    // Moving pets to the top level keeps it once; unregistering works bottom up.
    edit::upsert_relationship(&mut g, Some("household"), pets).unwrap();
    assert_eq!(g.relationships().len(), 8);
    edit::remove_relationship(&mut g, "pets").unwrap();
    edit::remove_entity(&mut g, "pets").unwrap();
    assert!(g.relationship("pets").is_none());
    assert_eq!(g.entities.len(), 7);
}

#[test]
fn dot_output() {
    let g = parse(&demo_graph_json()).unwrap();
    let dot = to_dot(&g);
    assert!(dot.starts_with("digraph data_graph {"));
    assert!(
        dot.contains("profile -> \"rel:household\" [label=\"household_id = id\"];"),
        "{dot}"
    );
    assert!(dot.contains(
        "\"rel:household\" -> \"rel:pets\" [label=\"households.id = pets.household_id\"];"
    ));
    assert!(
        dot.contains("\"rel:carts\" -> \"rel:cart_products\" [label=\"via public.cart_items\"];")
    );
    assert!(dot.contains("profile -> events"));
    assert!(dot.trim_end().ends_with('}'));
}

/// A junction table may name `profile_key` (a distributed junction on Citus): checked
/// like an entity's, kept in the stored graph.
#[test]
fn junction_tables_may_name_a_profile_key() {
    let junction = |key: &str| {
        let mut doc = demo_graph_json();
        doc["profile"]["relationships"][2]["relationships"][0]["junction_table"]["profile_key"] =
            json!(key);
        doc
    };
    let doc = junction("cart_id");
    let report = check_with(&doc, DEFAULT_MAX_DEPTH);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    let g = parse(&doc).unwrap();
    assert_eq!(g.to_json(), doc);

    let (code, msg, hint) = only_problem(&junction("profile_idd"));
    assert_eq!(code, "42703");
    assert_eq!(
        msg,
        "$.profile.relationships[2].relationships[0].junction_table.profile_key: column \"profile_idd\" does not exist on table public.cart_items"
    );
    assert!(hint.is_some());

    let (code, msg, _) = only_problem(&junction("product_sku"));
    assert_eq!(code, "22023");
    assert!(
        msg.starts_with("$.profile.relationships[2].relationships[0].junction_table.profile_key: "),
        "{msg}"
    );
}

/// An entity that carries the profile key below one that does not cannot be joined
/// co-located on Citus: a warning names the join, before any audience fails.
#[test]
fn keyed_entity_below_an_unkeyed_one_is_a_colocation_warning() {
    let mut doc = demo_graph_json();
    let pets = doc["entities"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["slug"] == "pets")
        .unwrap();
    pets["profile_key"] = json!("household_id");
    let report = check_with(&doc, DEFAULT_MAX_DEPTH);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    let w: Vec<&crate::error::Problem> = report
        .warnings
        .iter()
        .filter(|w| w.message.contains("cannot be co-located"))
        .collect();
    assert_eq!(w.len(), 1, "{:#?}", report.warnings);
    assert_eq!(w[0].path, "$.profile.relationships[0].relationships[0]");
    assert!(w[0]
        .message
        .starts_with("\"pets\" carries profile_key but its parent \"households\" does not"));
    // Without any profile key, no such warning.
    let plain = check_with(&demo_graph_json(), DEFAULT_MAX_DEPTH);
    assert!(!plain
        .warnings
        .iter()
        .any(|w| w.message.contains("co-located")));
}
