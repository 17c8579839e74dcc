//! The SQL functions of SPEC section 2. Thin: parse arguments, call the core, report.

use super::spi::{args, compile_checked, load_env, lock_audiences, require, Env};
use crate::compile::sql::inline;
use crate::compile::Compiled;
use crate::error::{problems_json, Kind, Problem, Result};
use crate::json::Doc;
use crate::names::is_valid_slug;
use crate::sql::{internal, jsonb_row, jsonb_write};
use crate::{ok_or_raise, raise, raise_all};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

fn compiled_or_raise(env: &Env, def: &Value, own_key: Option<&str>) -> Compiled {
    compile_checked(env, def, own_key).unwrap_or_else(|ps| raise_all(&ps))
}

fn check_key(key: &str) -> Result<()> {
    if is_valid_slug(key) {
        Ok(())
    } else {
        Err(
            Problem::invalid("key", format!("invalid audience key \"{key}\""))
                .with_hint("An audience key matches ^[a-z][a-z0-9_]{0,62}$."),
        )
    }
}

/// Defines an audience, or a new version of an existing one (its membership carries
/// over). Nothing is stored when the definition does not compile.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_define_audience(
    key: Option<&str>,
    definition: Option<Doc>,
    name: default!(Option<String>, "NULL"),
    description: default!(Option<String>, "NULL"),
    enabled: default!(Option<bool>, true),
) -> JsonB {
    let key = crate::given(key, "key");
    let enabled = crate::given(enabled, "enabled");
    ok_or_raise(check_key(key));
    let definition = crate::given(definition, "definition").or_raise("definition");
    ok_or_raise(lock_audiences());
    let env = ok_or_raise(load_env());
    let compiled = compiled_or_raise(&env, &definition, Some(key));
    let stored = jsonb_write(
        "WITH a AS (
             INSERT INTO linked_audiences.audience AS a
                 (key, name, description, enabled, definition, depends_on, relationships)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (key) DO UPDATE
             SET name = coalesce(excluded.name, a.name),
                 description = coalesce(excluded.description, a.description),
                 enabled = excluded.enabled,
                 definition = excluded.definition,
                 depends_on = excluded.depends_on,
                 relationships = excluded.relationships,
                 version = a.version + 1,
                 updated_at = pg_catalog.now()
             RETURNING a.id, a.key, a.version, a.definition, a.name, a.description),
         v AS (
             INSERT INTO linked_audiences.audience_version (audience_id, version, definition, name, description)
             SELECT id, version, definition, name, description FROM a)
         SELECT pg_catalog.jsonb_build_object('key', key, 'id', id, 'version', version) FROM a",
        &[
            key.into(),
            name.into(),
            description.into(),
            enabled.into(),
            JsonB(definition).into(),
            compiled.depends_on.clone().into(),
            compiled.relationships.clone().into(),
        ],
    );
    JsonB(ok_or_raise(stored).unwrap_or(Value::Null))
}

/// The problems of a definition as data: `[]` when it is valid.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_validate_audience(definition: Doc) -> JsonB {
    let problems = match (definition.json("definition"), load_env()) {
        (Err(p), _) | (_, Err(p)) => vec![p],
        (Ok(definition), Ok(env)) => compile_checked(&env, &definition, None)
            .err()
            .unwrap_or_default(),
    };
    JsonB(problems_json(&problems))
}

fn preview(compiled: &Compiled, sample: i32) -> Result<Value> {
    if sample < 0 {
        return Err(Problem::invalid(
            "sample",
            format!("the sample size must be zero or positive, got {sample}"),
        ));
    }
    let params = args(&compiled.params);
    let count = jsonb_row(
        &format!("SELECT pg_catalog.to_jsonb(({}))", compiled.count_sql()),
        &params,
    )?
    .unwrap_or(json!(0));
    let mut with_sample = compiled.params.clone();
    let sql = compiled.sample_sql(&mut with_sample, sample.clamp(0, 1000).into());
    let sample = jsonb_row(&sql, &args(&with_sample))?.unwrap_or(json!([]));
    Ok(json!({
        "count": count,
        "sample": sample,
        "sql": inline(&compiled.members_sql(), &compiled.params),
    }))
}

/// Counts an audience and shows a sample of its members, without storing anything.
#[pg_extern(name = "la_preview_audience", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_preview_audience_definition(definition: Doc, sample: default!(i32, 10)) -> JsonB {
    let definition = definition.or_raise("definition");
    let env = ok_or_raise(load_env());
    let compiled = compiled_or_raise(&env, &definition, None);
    JsonB(ok_or_raise(preview(&compiled, sample)))
}

/// The same for a defined audience.
#[pg_extern(name = "la_preview_audience", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_preview_audience_key(key: &str, sample: default!(i32, 10)) -> JsonB {
    let trimmed = key.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        raise(
            &Problem::invalid(
                "key",
                "this looks like a definition, but it was taken as an audience key",
            )
            .with_hint("Cast it to jsonb: la_preview_audience('{...}'::jsonb)."),
        );
    }
    let stored = ok_or_raise(require(key));
    let env = ok_or_raise(load_env());
    let compiled = compiled_or_raise(&env, &stored.definition, Some(key));
    JsonB(ok_or_raise(preview(&compiled, sample)))
}

/// The compiled SQL of a definition, with its values inlined as quoted literals.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_audience_sql(definition: Doc) -> String {
    let definition = definition.or_raise("definition");
    let env = ok_or_raise(load_env());
    let compiled = compiled_or_raise(&env, &definition, None);
    inline(&compiled.members_sql(), &compiled.params)
}

/// Enables or disables an audience; disabled audiences are skipped by schedules.
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn la_set_audience_enabled(key: &str, enabled: bool) -> bool {
    ok_or_raise(require(key));
    ok_or_raise(
        pgrx::spi::Spi::run_with_args(
            "UPDATE linked_audiences.audience SET enabled = $2, updated_at = pg_catalog.now() WHERE key = $1",
            &[key.into(), enabled.into()],
        )
        .map_err(internal),
    );
    enabled
}

/// Drops an audience and its state; refused while another audience uses it.
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn la_drop_audience(key: &str) -> bool {
    ok_or_raise(lock_audiences());
    let stored = ok_or_raise(require(key));
    let users = ok_or_raise(jsonb_row(
        "SELECT coalesce(pg_catalog.jsonb_agg(key ORDER BY key), '[]') FROM linked_audiences.audience WHERE $1 = ANY (depends_on)",
        &[key.into()],
    ))
    .unwrap_or(json!([]));
    let users: Vec<String> = serde_json::from_value(users).unwrap_or_default();
    if !users.is_empty() {
        raise(
            &Problem::new(
                Kind::DependentObjectsStillExist,
                "key",
                format!(
                    "audience \"{key}\" is used by audiences: {}",
                    users.join(", ")
                ),
            )
            .with_hint("Redefine or drop those audiences first."),
        );
    }
    let activations = ok_or_raise(jsonb_row(
        "SELECT coalesce(pg_catalog.jsonb_agg(a.id ORDER BY a.id), '[]') FROM linked_audiences.activation a WHERE a.audience_id = $1",
        &[stored.id.into()],
    ))
    .unwrap_or(json!([]));
    if activations.as_array().is_some_and(|a| !a.is_empty()) {
        raise(
            &Problem::new(
                Kind::DependentObjectsStillExist,
                "key",
                format!("audience \"{key}\" is used by activations: {activations}"),
            )
            .with_hint("Delete those activations first (DELETE FROM linked_audiences.activation WHERE id = ...)."),
        );
    }
    // Its pg_cron job, then its state: members, entities and history, then the audience
    // (its versions and runs follow by ON DELETE CASCADE).
    ok_or_raise(
        pgrx::spi::Spi::run_with_args("SELECT linked_audiences.drop_job($1)", &[key.into()])
            .and_then(|_| {
                pgrx::spi::Spi::run_with_args(
                    "WITH m AS (DELETE FROM linked_audiences.audience_members WHERE audience_id = $1),
                          e AS (DELETE FROM linked_audiences.audience_entities WHERE audience_id = $1),
                          c AS (DELETE FROM linked_audiences.membership_changes WHERE audience_id = $1)
                     DELETE FROM linked_audiences.audience WHERE id = $1",
                    &[stored.id.into()],
                )
            })
            .map_err(internal),
    );
    true
}
