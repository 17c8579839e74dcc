//! The SQL functions of SPEC section 1 (they change the Data Graph). Thin: parse
//! arguments, call the core, report. They live above `graph/`, `audience/` and
//! `compile/`: a change that would break a defined audience is refused here, so the
//! graph layer itself imports nothing from the layers built on it.

use crate::error::{problems_json, Problem, Result};
use crate::graph::catalog::Catalog;
use crate::graph::model::{
    parse, parse_entity, parse_event_source, parse_part, parse_relationship, DataGraph, Identifiers,
};
use crate::graph::validate::{validate, Report, ValidatedGraph};
use crate::graph::{edit, spi, summary, to_dot};
use crate::json::Doc;
use crate::{max_depth, raise, raise_all};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// Validates a graph against the live catalog.
fn check(graph: &DataGraph) -> Result<(Catalog, Report)> {
    let cat = spi::load_catalog(graph)?;
    let report = validate(graph, &cat, max_depth());
    Ok((cat, report))
}

/// Validates and stores a graph, returning the summary. Nothing is stored on error.
fn save(graph: DataGraph) -> Result<Value> {
    let (cat, report) = check(&graph)?;
    if !report.problems.is_empty() {
        return Err(Problem::first_of(&report.problems));
    }
    let valid =
        ValidatedGraph::check(graph, cat, max_depth()).map_err(|ps| Problem::first_of(&ps))?;
    refuse_if_audiences_break(&valid)?;
    spi::store_graph(valid.graph(), valid.cat())?;
    Ok(summary(valid.graph(), &report.warnings))
}

/// A graph change that would break a defined audience is refused, listing them.
fn refuse_if_audiences_break(valid: &ValidatedGraph) -> Result<()> {
    let audiences = crate::audience::spi::stored_definitions()?;
    let ctx = crate::compile::Ctx::new(valid, &audiences);
    let mut broken: Vec<(String, Problem)> = Vec::new();
    for (key, def) in &audiences {
        let problem = match crate::compile::compile(&ctx, def, Some(key)) {
            Err(mut ps) => Some(ps.remove(0)),
            Ok(c) => crate::audience::spi::literal_problems(&c.literal_checks)?
                .into_iter()
                .next(),
        };
        if let Some(p) = problem {
            broken.push((key.clone(), p));
        }
    }
    if broken.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = broken.iter().map(|(k, _)| k.as_str()).collect();
    let detail = broken
        .iter()
        .map(|(k, p)| format!("{k}: {}", p.full_message()))
        .collect::<Vec<_>>()
        .join("\n");
    Err(Problem::new(
        crate::error::Kind::DependentObjectsStillExist,
        "",
        format!("the change would break audiences: {}", keys.join(", ")),
    )
    .with_hint("Redefine or drop those audiences first.")
    .with_detail(detail))
}

/// Loads the stored graph under the graph lock, applies `change` (one piece of the
/// graph), saves it.
fn change(f: impl FnOnce(&mut DataGraph) -> Result<()>) -> JsonB {
    apply(f, true)
}

fn apply(f: impl FnOnce(&mut DataGraph) -> Result<()>, piecewise: bool) -> JsonB {
    let run = || -> Result<Value> {
        spi::lock_graph()?;
        let mut g = spi::load_graph()?;
        let stored = piecewise.then(|| g.clone());
        let hint = |p: Problem| match &stored {
            Some(stored) => gone_hint(p, stored),
            None => p,
        };
        f(&mut g).map_err(hint)?;
        let summary = save(g).map_err(hint)?;
        // Change capture follows the graph.
        if crate::sql::schema_0_3()? {
            Spi::run("SELECT linked_audiences.capture_sync()").map_err(crate::sql::internal)?;
        }
        Ok(summary)
    };
    match run() {
        Ok(v) => JsonB(v),
        Err(p) => raise(&p),
    }
}

/// A table or column dropped under the stored graph cannot be edited away piece by
/// piece (removing the relationship leaves its entity naming the table; removing the
/// entity first is refused while the relationship uses it): when the stored graph itself
/// names a missing table or column, every refusal of a piecewise edit says how to get out.
fn gone_hint(p: Problem, stored: &DataGraph) -> Problem {
    use crate::error::Kind;
    let gone = |k: Kind| matches!(k, Kind::UndefinedTable | Kind::UndefinedColumn);
    if stored.profile.is_none() {
        return p;
    }
    let broken =
        check(stored).is_ok_and(|(_, report)| report.problems.iter().any(|q| gone(q.kind)));
    if !broken {
        return p;
    }
    let more =
        "The stored graph names a table or column that no longer exists: define the graph again \
                as a whole without what is gone, la_define_data_graph(<la_data_graph() edited>).";
    let hint = match &p.hint {
        Some(h) => format!("{h} {more}"),
        None => more.to_string(),
    };
    p.with_hint(hint)
}

fn parsed<T>(r: std::result::Result<T, Vec<Problem>>) -> T {
    r.unwrap_or_else(|ps| raise_all(&ps))
}

/// Replaces the stored Data Graph with `graph`, atomically, after validating it.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_define_data_graph(graph: Doc) -> JsonB {
    let g = parsed(parse(&graph.or_raise("graph")));
    apply(
        |stored| {
            *stored = g;
            Ok(())
        },
        false,
    )
}

/// The problems of a graph as data: `[]` when it is valid. Nothing is stored.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_validate_data_graph(graph: Doc) -> JsonB {
    let problems = match graph
        .json("graph")
        .map_err(|p| vec![p])
        .and_then(|g| parse(&g))
    {
        Err(ps) => ps,
        Ok(g) => match check(&g) {
            Ok((_, report)) => report.problems,
            Err(p) => vec![p],
        },
    };
    JsonB(problems_json(&problems))
}

/// The stored graph, as JSON.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn la_data_graph() -> JsonB {
    JsonB(spi::load_graph().unwrap_or_else(|p| raise(&p)).to_json())
}

/// The stored graph as Graphviz DOT text.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn la_data_graph_dot() -> String {
    to_dot(&spi::load_graph().unwrap_or_else(|p| raise(&p)))
}

#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION la_register_profile(table_ref regclass, primary_key text, user_id text DEFAULT NULL) \
           RETURNS jsonb VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn la_register_profile(
    table_ref: Option<pg_sys::Oid>,
    primary_key: Option<String>,
    user_id: Option<String>,
) -> JsonB {
    let table_ref = crate::given(table_ref, "table_ref");
    let primary_key = crate::given(primary_key, "primary_key");
    change(|g| {
        let table = spi::regclass_name(table_ref)?;
        edit::set_profile(g, table, primary_key, user_id);
        Ok(())
    })
}

#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION la_register_identifiers(table_ref regclass, profile_key text, type_column text, value_column text) \
           RETURNS jsonb STRICT VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn la_register_identifiers(
    table_ref: pg_sys::Oid,
    profile_key: String,
    type_column: String,
    value_column: String,
) -> JsonB {
    change(|g| {
        let table_ref = spi::regclass_name(table_ref)?;
        edit::set_identifiers(
            g,
            Identifiers {
                table_ref,
                profile_key,
                type_column,
                value_column,
            },
        )
    })
}

#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION la_register_entity(slug text, table_ref regclass, primary_key text, name text DEFAULT NULL, enrichment_enabled boolean DEFAULT true) \
           RETURNS jsonb VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn la_register_entity(
    slug: Option<String>,
    table_ref: Option<pg_sys::Oid>,
    primary_key: Option<String>,
    name: Option<String>,
    enrichment_enabled: Option<bool>,
) -> JsonB {
    let slug = crate::given(slug, "slug");
    let table_ref = crate::given(table_ref, "table_ref");
    let primary_key = crate::given(primary_key, "primary_key");
    change(|g| {
        let table_ref = spi::regclass_name(table_ref)?;
        let doc = json!({"slug": slug, "name": name, "table_ref": table_ref,
                         "primary_key": primary_key, "enrichment_enabled": enrichment_enabled});
        edit::upsert_entity(g, parsed(parse_part(parse_entity, &doc, "$")));
        Ok(())
    })
}

#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION la_register_relationship(slug text, related_entity text, parent text DEFAULT NULL, \
           join_on text DEFAULT NULL, \"trait\" jsonb DEFAULT NULL, external_id jsonb DEFAULT NULL, \
           junction_table jsonb DEFAULT NULL, name text DEFAULT NULL) \
           RETURNS jsonb VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
#[allow(clippy::too_many_arguments)]
fn la_register_relationship(
    slug: Option<String>,
    related_entity: Option<String>,
    parent: Option<String>,
    join_on: Option<String>,
    trait_join: Option<Doc>,
    external_id: Option<Doc>,
    junction_table: Option<Doc>,
    name: Option<String>,
) -> JsonB {
    let slug = crate::given(slug, "slug");
    let related_entity = crate::given(related_entity, "related_entity");
    let doc = json!({
        "slug": slug, "related_entity": related_entity, "name": name, "join_on": join_on,
        "trait": trait_join.map(|j| j.or_raise("trait")),
        "external_id": external_id.map(|j| j.or_raise("external_id")),
        "junction_table": junction_table.map(|j| j.or_raise("junction_table")),
    });
    let rel = parsed(parse_part(parse_relationship, &doc, "$"));
    change(|g| edit::upsert_relationship(g, parent.as_deref(), rel))
}

#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION la_register_event_source(table_ref regclass, profile_key text, name_column text, timestamp_column text, properties_column text DEFAULT NULL) \
           RETURNS jsonb VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn la_register_event_source(
    table_ref: Option<pg_sys::Oid>,
    profile_key: Option<String>,
    name_column: Option<String>,
    timestamp_column: Option<String>,
    properties_column: Option<String>,
) -> JsonB {
    use crate::given;
    let table_ref = given(table_ref, "table_ref");
    let profile_key = given(profile_key, "profile_key");
    let name_column = given(name_column, "name_column");
    let timestamp_column = given(timestamp_column, "timestamp_column");
    change(|g| {
        let table_ref = spi::regclass_name(table_ref)?;
        let doc = json!({"table_ref": table_ref, "profile_key": profile_key, "name_column": name_column,
                         "timestamp_column": timestamp_column, "properties_column": properties_column});
        edit::set_events(g, parsed(parse_part(parse_event_source, &doc, "$")));
        Ok(())
    })
}

/// Removes an entity; refused while a relationship (or an audience) uses it.
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn la_unregister_entity(slug: String) -> JsonB {
    change(|g| edit::remove_entity(g, &slug))
}

/// Removes a relationship; refused while it has nested relationships (or an audience
/// uses it).
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn la_unregister_relationship(slug: String) -> JsonB {
    change(|g| edit::remove_relationship(g, &slug))
}
