//! `la_capture_changes`: installs (or removes) the capture triggers on every table the
//! graph reads, and keeps them in step with graph changes (`capture_sync`).

use super::plan;
use crate::audience::spi::load_env;
use crate::compile::sql::quote_literal;
use crate::error::{Kind, Problem, Result};
use crate::sql::{internal, jsonb_row, jsonb_write};
use crate::{ok_or_raise, raise};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

const TRIGGERS: [&str; 4] = [
    "la_capture_insert",
    "la_capture_update",
    "la_capture_delete",
    "la_capture_truncate",
];

/// Turns change capture on (installing statement-level triggers with transition tables
/// on every table the graph reads) or off (removing them); returns the tables captured.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_capture_changes(enabled: default!(bool, true)) -> JsonB {
    JsonB(ok_or_raise(set_capture(enabled)))
}

/// After a graph change: the triggers follow the new graph when capture is on.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION linked_audiences.capture_sync() RETURNS void \
           VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn capture_sync() {
    let on = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(c.enabled) FROM linked_audiences.capture c",
        &[],
    ));
    if on == Some(Value::Bool(true)) {
        ok_or_raise(set_capture(true));
    }
}

fn run(sql: &str) -> Result<()> {
    Spi::run(sql).map_err(internal)
}

fn set_capture(enabled: bool) -> Result<Value> {
    // Triggers now on tables, whatever the graph says (it may have changed).
    let existing: Vec<String> = serde_json::from_value(
        jsonb_row(
            "SELECT coalesce(pg_catalog.jsonb_agg(DISTINCT pg_catalog.format('%I.%I', n.nspname, c.relname)), '[]')
             FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE t.tgfoid = 'linked_audiences.capture_rows()'::pg_catalog.regprocedure",
            &[],
        )?
        .unwrap_or(json!([])),
    )
    .map_err(internal)?;
    if !enabled {
        for t in &existing {
            drop_triggers(t)?;
        }
        jsonb_write(
            "WITH c AS (UPDATE linked_audiences.capture SET enabled = false, started_tx = NULL, tables = '[]'),
                  a AS (DELETE FROM linked_audiences.capture_alive)
             DELETE FROM linked_audiences.change_log RETURNING '{}'::pg_catalog.jsonb",
            &[],
        )?;
        return Ok(json!([]));
    }
    let env = load_env()?;
    let planned = plan(env.graph(), env.cat());
    let mut captured = Vec::new();
    let mut skipped = Vec::new();
    for c in &planned {
        let info = jsonb_row(
            "SELECT pg_catalog.jsonb_build_object('kind', c.relkind::pg_catalog.text,
                        'trigger', pg_catalog.has_table_privilege(c.oid, 'TRIGGER'))
             FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
            &[c.table.quoted.as_str().into()],
        )?
        .unwrap_or(Value::Null);
        let kind = info["kind"].as_str().unwrap_or("");
        if kind != "r" {
            let what = match kind {
                "v" => "a view",
                "m" => "a materialized view",
                "f" => "a foreign table",
                "p" => "a partitioned table (its partitions can be written to directly)",
                _ => "not a table",
            };
            skipped.push((c.table.quoted.clone(), what));
            continue;
        }
        if info["trigger"] != json!(true) {
            return Err(Problem::new(
                Kind::InsufficientPrivilege,
                "enabled",
                format!("permission denied to create triggers on table {}", c.table.display()),
            )
            .with_hint(format!(
                "Capture installs triggers on every table the graph reads: run la_capture_changes() as the table's owner, or GRANT TRIGGER ON {} TO the role that runs it.",
                c.table.quoted
            )));
        }
        install(&c.table.quoted, &c.columns)?;
        captured.push(json!({"table": c.table.quoted, "columns": c.columns}));
    }
    for t in existing
        .iter()
        .filter(|t| !captured.iter().any(|c| c["table"] == json!(t)))
    {
        drop_triggers(t)?;
    }
    for (t, why) in &skipped {
        pgrx::warning!(
            "linked_audiences: changes to {t} cannot be captured: it is {why}; audiences that read it compute in full"
        );
    }
    let tables: Vec<&Value> = captured.iter().map(|c| &c["table"]).collect();
    // The log is complete from here on (again, when a crash had emptied it).
    jsonb_write(
        "WITH a AS (INSERT INTO linked_audiences.capture_alive (since)
                    SELECT pg_catalog.pg_current_xact_id()
                    WHERE NOT EXISTS (SELECT FROM linked_audiences.capture_alive))
         UPDATE linked_audiences.capture
         SET tables = $1, started_tx = CASE WHEN enabled THEN started_tx ELSE pg_catalog.pg_current_xact_id() END,
             enabled = true
         RETURNING '{}'::pg_catalog.jsonb",
        &[JsonB(json!(tables)).into()],
    )?;
    Ok(Value::Array(captured))
}

/// The four statement-level triggers of one table: insert, update and delete record the
/// link values of their transition tables; truncate records that it happened.
fn install(table: &str, columns: &[String]) -> Result<()> {
    drop_triggers(table)?;
    let mut args = vec![quote_literal(table)];
    args.extend(columns.iter().map(|c| quote_literal(c)));
    let args = args.join(", ");
    for (name, event, referencing) in [
        (
            TRIGGERS[0],
            "INSERT",
            "REFERENCING NEW TABLE AS la_new_rows",
        ),
        (
            TRIGGERS[1],
            "UPDATE",
            "REFERENCING OLD TABLE AS la_old_rows NEW TABLE AS la_new_rows",
        ),
        (
            TRIGGERS[2],
            "DELETE",
            "REFERENCING OLD TABLE AS la_old_rows",
        ),
        (TRIGGERS[3], "TRUNCATE", ""),
    ] {
        run(&format!(
            "CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} FOR EACH STATEMENT \
             EXECUTE FUNCTION linked_audiences.capture_rows({args})"
        ))?;
    }
    Ok(())
}

fn drop_triggers(table: &str) -> Result<()> {
    // Only those that exist: DROP TRIGGER IF EXISTS would say so for each that does not.
    let existing = jsonb_row(
        "SELECT coalesce(pg_catalog.jsonb_agg(t.tgname), '[]') FROM pg_catalog.pg_trigger t
         WHERE t.tgrelid = pg_catalog.to_regclass($1) AND t.tgname = ANY ($2)",
        &[table.into(), TRIGGERS.to_vec().into()],
    )?
    .unwrap_or_default();
    for name in TRIGGERS {
        if existing
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == name))
        {
            run(&format!("DROP TRIGGER IF EXISTS {name} ON {table}"))?;
        }
    }
    Ok(())
}

/// Raised by a compute asked for `incremental` when only a full compute is exact.
pub fn not_incremental(reason: &str) -> ! {
    raise(
        &Problem::new(
            Kind::NotInPrerequisiteState,
            "mode",
            format!("an incremental compute would not be exact: {reason}"),
        )
        .with_hint("Use mode => 'auto' (it computes in full when needed) or 'full'."),
    )
}
