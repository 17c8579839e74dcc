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

/// Where a statement's rows are read from: its transition tables, by the names the
/// trigger gave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// An INSERT's new rows or a DELETE's old rows (`la_new_rows` / `la_old_rows`).
    One(&'static str),
    /// An UPDATE's old and new rows.
    Both,
    /// A TRUNCATE: no rows, the fact itself is recorded.
    Truncate,
}

/// The INSERT recording one statement's changes to `relation`: the distinct
/// (column, value) pairs of the statement's rows, or the TRUNCATE marker.
///
/// `single`: the statement touched one row, the common case of a writer's small
/// transaction. Its pairs are distinct as they come (one per column; an UPDATE's old
/// value only where it differs from the new one), so the statement reads the row
/// without the sort and de-duplication a set of rows needs: fewer plan nodes to start
/// and end on every single-row statement.
pub fn record_sql(relation: &str, columns: &[String], rows: Rows, single: bool) -> String {
    let relation = quote_literal(relation);
    let insert = "INSERT INTO linked_audiences.change_log (relation, col, value)";
    let pair = |col: &str, value: String| format!("({}, {value})", quote_literal(col));
    let text = |row: &str, col: &str| format!("{row}.{}::pg_catalog.text", quote_ident(col));
    // Each column's value in the row `x`.
    let values = || -> String {
        let pairs: Vec<String> = columns.iter().map(|c| pair(c, text("x", c))).collect();
        pairs.join(", ")
    };
    let filtered = |from: &str, values: String, distinct: &str| {
        format!(
            "{insert} SELECT {distinct}{relation}, v.col, v.value FROM {from}, \
             LATERAL (VALUES {values}) v(col, value) WHERE v.value IS NOT NULL"
        )
    };
    match (rows, single) {
        (Rows::Truncate, _) => format!("{insert} VALUES ({relation}, '', NULL)"),
        (Rows::One(table), single) => filtered(
            &format!("{table} x"),
            values(),
            if single { "" } else { "DISTINCT " },
        ),
        (Rows::Both, true) => {
            let pairs: Vec<String> = columns
                .iter()
                .flat_map(|c| {
                    [
                        pair(c, text("n", c)),
                        pair(c, format!("NULLIF({}, {})", text("o", c), text("n", c))),
                    ]
                })
                .collect();
            filtered("la_new_rows n, la_old_rows o", pairs.join(", "), "")
        }
        (Rows::Both, false) => filtered(
            "(SELECT * FROM la_new_rows UNION ALL SELECT * FROM la_old_rows) x",
            values(),
            "DISTINCT ",
        ),
    }
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
    let data = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    // SAFETY: the trigger data is the one Postgres called us with, valid for the call;
    // a transition table the trigger does not declare is a null pointer, counted as 0.
    let count = |t: *mut pg_sys::Tuplestorestate| {
        if t.is_null() {
            0
        } else {
            unsafe { pg_sys::tuplestore_tuple_count(t) }
        }
    };
    let (new_rows, old_rows) = unsafe { (count((*data).tg_newtable), count((*data).tg_oldtable)) };
    let (rows, single) = match op {
        PgTriggerOperation::Insert => (Rows::One("la_new_rows"), new_rows == 1),
        PgTriggerOperation::Delete => (Rows::One("la_old_rows"), old_rows == 1),
        PgTriggerOperation::Update => (Rows::Both, new_rows == 1 && old_rows == 1),
        PgTriggerOperation::Truncate => (Rows::Truncate, false),
    };
    // A statement that touched no row has nothing to record.
    if rows != Rows::Truncate && new_rows + old_rows == 0 {
        return Ok(None);
    }
    // SAFETY: the trigger data Postgres called us with.
    if single && unsafe { super::direct::record_single_row(data, relation, columns) } {
        return Ok(None);
    }
    let sql = record_sql(relation, columns, rows, single);
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
        let cols = ["id".to_string(), "hou\"se".to_string()];
        assert_eq!(
            record_sql("public.pets", &cols, Rows::One("la_new_rows"), false),
            "INSERT INTO linked_audiences.change_log (relation, col, value) SELECT DISTINCT 'public.pets', v.col, v.value \
             FROM la_new_rows x, LATERAL (VALUES ('id', x.\"id\"::pg_catalog.text), ('hou\"se', x.\"hou\"\"se\"::pg_catalog.text)) v(col, value) \
             WHERE v.value IS NOT NULL"
        );
        assert_eq!(
            record_sql("public.o'k", &[], Rows::Truncate, false),
            "INSERT INTO linked_audiences.change_log (relation, col, value) VALUES ('public.o''k', '', NULL)"
        );
    }

    #[test]
    fn a_single_row_is_recorded_without_deduplication() {
        let cols = ["id".to_string(), "household_id".to_string()];
        assert_eq!(
            record_sql("public.pets", &cols, Rows::One("la_old_rows"), true),
            "INSERT INTO linked_audiences.change_log (relation, col, value) SELECT 'public.pets', v.col, v.value \
             FROM la_old_rows x, LATERAL (VALUES ('id', x.\"id\"::pg_catalog.text), ('household_id', x.\"household_id\"::pg_catalog.text)) v(col, value) \
             WHERE v.value IS NOT NULL"
        );
        // An update's old value only where it differs from the new one.
        assert_eq!(
            record_sql("public.pets", &cols[1..], Rows::Both, true),
            "INSERT INTO linked_audiences.change_log (relation, col, value) SELECT 'public.pets', v.col, v.value \
             FROM la_new_rows n, la_old_rows o, LATERAL (VALUES ('household_id', n.\"household_id\"::pg_catalog.text), \
             ('household_id', NULLIF(o.\"household_id\"::pg_catalog.text, n.\"household_id\"::pg_catalog.text))) v(col, value) \
             WHERE v.value IS NOT NULL"
        );
        // Several rows: both sides, de-duplicated.
        assert_eq!(
            record_sql("public.pets", &cols[..1], Rows::Both, false),
            "INSERT INTO linked_audiences.change_log (relation, col, value) SELECT DISTINCT 'public.pets', v.col, v.value \
             FROM (SELECT * FROM la_new_rows UNION ALL SELECT * FROM la_old_rows) x, \
             LATERAL (VALUES ('id', x.\"id\"::pg_catalog.text)) v(col, value) WHERE v.value IS NOT NULL"
        );
    }
}
