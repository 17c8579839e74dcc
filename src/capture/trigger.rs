//! The capture trigger (`la_capture_changes` installs it, statement-level, on every
//! table the graph reads): records, once per statement and set-based, the distinct
//! values of the link columns (the trigger's arguments after the relation's name) of the
//! rows in the statement's transition tables; a TRUNCATE is recorded as such.
//!
//! Written in Rust rather than plpgsql for what it costs writers: the INSERT of each
//! (table, event, columns) is prepared once per session and kept (as plpgsql keeps its
//! static statements), so a single-row transaction pays for executing one cached plan,
//! not for building, parsing and planning a dynamic statement every time.
//!
//! `SECURITY DEFINER` with a pinned search_path (a documented exception to "functions
//! run as the caller"): writers to the warehouse need no grant on the extension's tables.

use crate::compile::sql::quote_literal;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

thread_local! {
    /// The prepared INSERTs, by their SQL text (one per table, event and columns).
    static PLANS: RefCell<HashMap<String, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
    /// The (relation oid, name) pairs found to be captured tables in this session.
    static CAPTURED: RefCell<HashSet<(u32, String)>> = RefCell::new(HashSet::new());
}

/// Refuses to run unless called by a trigger `la_capture_changes` installed: one on a
/// captured table, naming that table, whose transition tables have the names the INSERT
/// reads. The function runs as its owner: without these checks, a role that may create
/// a trigger on a table of its own could make it read a relation of its choosing (a
/// temporary view shadowing an undeclared transition table) with the owner's rights, or
/// write the change log at will.
fn check_installed(trigger: &PgTrigger<'_>, relation: &str, op: &PgTriggerOperation) {
    let refuse = |why: &str| -> ! {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("linked_audiences.capture_rows: {why}"),
            "Only the triggers la_capture_changes() installs may call this function."
        );
    };
    let new_name = trigger.new_transition_table_name().ok().flatten();
    let old_name = trigger.old_transition_table_name().ok().flatten();
    let declared = match op {
        PgTriggerOperation::Insert => new_name == Some("la_new_rows"),
        PgTriggerOperation::Delete => old_name == Some("la_old_rows"),
        PgTriggerOperation::Update => {
            new_name == Some("la_new_rows") && old_name == Some("la_old_rows")
        }
        PgTriggerOperation::Truncate => true,
    };
    if !declared {
        refuse("the trigger does not declare the transition tables it reads");
    }
    let oid = match trigger.relation() {
        Ok(r) => u32::from(r.oid()),
        Err(_) => refuse("no relation"),
    };
    let key = (oid, relation.to_string());
    if CAPTURED.with(|c| c.borrow().contains(&key)) {
        return;
    }
    let captured = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM linked_audiences.capture c WHERE c.tables ? $1)
                AND pg_catalog.to_regclass($1) = $2::pg_catalog.oid",
        &[relation.into(), pg_sys::Oid::from(oid).into()],
    );
    if captured != Ok(Some(true)) {
        refuse(&format!(
            "{relation} is not a table la_capture_changes() captures, or not this trigger's"
        ));
    }
    CAPTURED.with(|c| c.borrow_mut().insert(key));
}

/// An identifier quoted as Postgres' `quote_ident` would, always (the trigger's
/// arguments are column names as the catalog spells them).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The INSERT recording one statement's changes to `relation`: the distinct
/// (column, value) pairs of the rows in `rows_from`, or the TRUNCATE marker.
pub fn record_sql(relation: &str, columns: &[String], rows_from: Option<&str>) -> String {
    let Some(rows_from) = rows_from else {
        return format!(
            "INSERT INTO linked_audiences.change_log (relation, col, value) VALUES ({}, '', NULL)",
            quote_literal(relation)
        );
    };
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "({}, x.{}::pg_catalog.text)",
                quote_literal(c),
                quote_ident(c)
            )
        })
        .collect();
    format!(
        "INSERT INTO linked_audiences.change_log (relation, col, value) \
         SELECT DISTINCT {}, v.col, v.value FROM {rows_from} x, LATERAL (VALUES {}) v(col, value) \
         WHERE v.value IS NOT NULL",
        quote_literal(relation),
        values.join(", ")
    )
}

#[pg_trigger(sql = "
CREATE FUNCTION linked_audiences.capture_rows() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn capture_rows<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let args = trigger.extra_args()?;
    let Some((relation, columns)) = args.split_first() else {
        error!("linked_audiences.capture_rows: the trigger names no relation");
    };
    let op = trigger.op()?;
    check_installed(trigger, relation, &op);
    let rows_from = match op {
        PgTriggerOperation::Insert => Some("la_new_rows"),
        PgTriggerOperation::Delete => Some("la_old_rows"),
        PgTriggerOperation::Update => {
            Some("(SELECT * FROM la_new_rows UNION ALL SELECT * FROM la_old_rows)")
        }
        PgTriggerOperation::Truncate => None,
    };
    let sql = record_sql(relation, columns, rows_from);
    let data = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    let done = Spi::connect_mut(|client| {
        // The transition tables, by the names the trigger gave them, for this connection.
        // SAFETY: the trigger data is the one Postgres called us with, valid for the call.
        unsafe { pg_sys::SPI_register_trigger_data(data) };
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if !plans.contains_key(&sql) {
                let plan = client.prepare_mut(sql.as_str(), &[])?.keep();
                plans.insert(sql.clone(), plan);
            }
            let plan = plans.get(&sql).expect("inserted above");
            client.update(plan, None, &[]).map(|_| ())
        })
    });
    if let Err(e) = done {
        error!("linked_audiences.capture_rows: {e}");
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_link_values_and_truncates() {
        assert_eq!(
            record_sql("public.pets", &["id".into(), "hou\"se".into()], Some("la_new_rows")),
            "INSERT INTO linked_audiences.change_log (relation, col, value) SELECT DISTINCT 'public.pets', v.col, v.value \
             FROM la_new_rows x, LATERAL (VALUES ('id', x.\"id\"::pg_catalog.text), ('hou\"se', x.\"hou\"\"se\"::pg_catalog.text)) v(col, value) \
             WHERE v.value IS NOT NULL"
        );
        assert_eq!(
            record_sql("public.o'k", &[], None),
            "INSERT INTO linked_audiences.change_log (relation, col, value) VALUES ('public.o''k', '', NULL)"
        );
    }
}
