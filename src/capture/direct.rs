//! A statement that touched one row (the common case of a writer's small transaction)
//! has its link values written into the change log directly: read from the transition
//! tables, turned into text and inserted with the log's indexes maintained, as Postgres
//! writes its own catalogs, without starting and ending an executor plan for two or
//! three values. A statement of several rows goes through the prepared set-based
//! INSERT (`trigger.rs`), and so does a single row whenever this path cannot be sure to
//! record exactly what that INSERT would: a link column not found, a column type whose
//! cast to text is not its output function, an index on the log other than a plain
//! column list. Every such check is made before anything is written.

use pgrx::pg_sys;
use std::ffi::CStr;

thread_local! {
    /// Statements recorded by this path in this session (tests check which path ran).
    static RECORDED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `value::pg_catalog.text`'s function for `typid`, when it is the output function
/// (an I/O conversion, or a binary relabelling as varchar's, whose output is the same
/// text); `None` for a cast function of its own (bool's 'true', bpchar's trimmed
/// blanks, inet's mask). Looked up each time (a syscache lookup): nothing kept can go
/// stale.
unsafe fn output_function(typid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let mut cast = pg_sys::InvalidOid;
    // SAFETY: catalog lookups of a type the relation's descriptor names.
    let path = unsafe {
        pg_sys::find_coercion_pathway(
            pg_sys::TEXTOID,
            typid,
            pg_sys::CoercionContext::COERCION_EXPLICIT,
            &mut cast,
        )
    };
    if path != pg_sys::CoercionPathType::COERCION_PATH_COERCEVIAIO
        && path != pg_sys::CoercionPathType::COERCION_PATH_RELABELTYPE
    {
        return None;
    }
    let mut output = pg_sys::InvalidOid;
    let mut varlena = false;
    // SAFETY: as above.
    unsafe { pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena) };
    Some(output)
}

/// The one row of a transition table, in a slot of the relation's descriptor (to drop
/// with `ExecDropSingleTupleTableSlot`); null when there is none. Read through a read
/// pointer of its own, as a transition table scan does, so other readers of the same
/// table (another AFTER trigger) are not disturbed.
unsafe fn only_row(
    rows: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: `rows` is a transition table of the firing statement, `desc` its
    // relation's descriptor.
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        let pointer = pg_sys::tuplestore_alloc_read_pointer(rows, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(rows, pointer);
        pg_sys::tuplestore_rescan(rows);
        let found = pg_sys::tuplestore_gettupleslot(rows, true, false, slot);
        pg_sys::tuplestore_select_read_pointer(rows, 0);
        if found {
            slot
        } else {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            std::ptr::null_mut()
        }
    }
}

/// The texts of the link columns in the one row of a transition table; none when the
/// statement has no such table (an INSERT's old rows, a DELETE's new ones) or it is empty.
unsafe fn row_texts(
    rows: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
    columns: &[(i32, pg_sys::Oid)],
) -> Vec<Option<Vec<u8>>> {
    if rows.is_null() {
        return vec![];
    }
    // SAFETY: as `only_row` and `texts` require; the slot is dropped once read.
    unsafe {
        let slot = only_row(rows, desc);
        if slot.is_null() {
            return vec![];
        }
        let out = texts(slot, columns);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        out
    }
}

/// The text of each link column's value in `slot` (`None` for a NULL), as
/// `column::pg_catalog.text` gives it.
unsafe fn texts(
    slot: *mut pg_sys::TupleTableSlot,
    columns: &[(i32, pg_sys::Oid)],
) -> Vec<Option<Vec<u8>>> {
    columns
        .iter()
        .map(|&(attnum, output)| {
            let mut null = false;
            // SAFETY: `attnum` is an attribute of the slot's descriptor.
            unsafe {
                let datum = pg_sys::slot_getattr(slot, attnum, &mut null);
                if null {
                    return None;
                }
                let text = pg_sys::OidOutputFunctionCall(output, datum);
                let bytes = CStr::from_ptr(text).to_bytes().to_vec();
                pg_sys::pfree(text.cast());
                Some(bytes)
            }
        })
        .collect()
}

/// The attribute number and output function of each link column of `rel`; `None` when
/// one is not found or its text is not its output function's.
unsafe fn link_columns(
    rel: pg_sys::Relation,
    columns: &[String],
) -> Option<Vec<(i32, pg_sys::Oid)>> {
    // SAFETY: `rel` is the firing trigger's relation, open for the statement.
    let desc = unsafe { &*(*rel).rd_att };
    let attrs = unsafe { desc.attrs.as_slice(desc.natts as usize) };
    columns
        .iter()
        .map(|name| {
            let (i, attr) = attrs.iter().enumerate().find(|(_, a)| {
                // SAFETY: a NUL-terminated NameData.
                !a.attisdropped
                    && unsafe { CStr::from_ptr(a.attname.data.as_ptr()) }.to_bytes()
                        == name.as_bytes()
            })?;
            let output = unsafe { output_function(attr.atttypid) }?;
            Some((i as i32 + 1, output))
        })
        .collect()
}

/// Records the (column, text) pairs of a single-row statement: `new` and `old` are the
/// statement's transition tables (null when it has none). Returns `false`, having
/// written nothing, when this path cannot record them exactly as the set-based INSERT
/// would; the caller then records through that INSERT.
///
/// # Safety
/// `data` is the trigger data Postgres called the trigger with.
pub unsafe fn record_single_row(
    data: *const pg_sys::TriggerData,
    relation: &str,
    columns: &[String],
) -> bool {
    // SAFETY: the caller's contract; every pointer below comes from Postgres for this call.
    unsafe {
        let rel = (*data).tg_relation;
        let Some(links) = link_columns(rel, columns) else {
            return false;
        };
        let Some(log) = change_log() else {
            return false;
        };
        // The pairs first (reading is all that can fail before the log is opened).
        let desc = (*rel).rd_att;
        let new_texts = row_texts((*data).tg_newtable, desc, &links);
        let old_texts = row_texts((*data).tg_oldtable, desc, &links);
        let mut pairs: Vec<(usize, Vec<u8>)> = Vec::with_capacity(columns.len() * 2);
        for (i, value) in new_texts.iter().enumerate() {
            if let Some(v) = value {
                pairs.push((i, v.clone()));
            }
        }
        // An update's old value only where it differs from the new one.
        for (i, value) in old_texts.iter().enumerate() {
            if let Some(v) = value {
                if new_texts.get(i).and_then(|n| n.as_ref()) != Some(v) {
                    pairs.push((i, v.clone()));
                }
            }
        }
        let done = insert(log, relation, columns, &pairs);
        if done {
            RECORDED.with(|r| r.set(r.get() + 1));
        }
        done
    }
}

/// How many statements this session recorded by this path.
#[cfg(any(test, feature = "pg_test"))]
pub fn recorded() -> u64 {
    RECORDED.with(|r| r.get())
}

/// `linked_audiences.change_log`'s oid, if it exists.
unsafe fn change_log() -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups by name.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"linked_audiences".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        let log = pg_sys::get_relname_relid(c"change_log".as_ptr(), schema);
        (log != pg_sys::InvalidOid).then_some(log)
    }
}

/// Inserts the pairs into the log with its indexes maintained; `false` (nothing
/// written) when an index is not a plain list of columns.
unsafe fn insert(
    log: pg_sys::Oid,
    relation: &str,
    columns: &[String],
    pairs: &[(usize, Vec<u8>)],
) -> bool {
    // SAFETY: the log is opened, locked as an INSERT locks it, and closed here; the
    // tuples are formed with its own descriptor (tx, relation, col, value).
    unsafe {
        let rel = pg_sys::table_open(log, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        if (*desc).natts != 4 {
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return false;
        }
        let indexes = pg_sys::CatalogOpenIndexes(rel);
        let infos = match (*indexes).ri_NumIndices {
            0 => &[][..],
            n => std::slice::from_raw_parts((*indexes).ri_IndexRelationInfo, n as usize),
        };
        let plain = infos.iter().all(|&info| {
            (*info).ii_Expressions.is_null()
                && (*info).ii_Predicate.is_null()
                && (*info).ii_ExclusionOps.is_null()
        });
        if !plain {
            pg_sys::CatalogCloseIndexes(indexes);
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return false;
        }
        let tx = pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value);
        let relation = text(relation.as_bytes());
        for (i, value) in pairs {
            let mut values = [tx, relation, text(columns[*i].as_bytes()), text(value)];
            let mut nulls = [false; 4];
            let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::CatalogTupleInsertWithInfo(rel, tuple, indexes);
            pg_sys::heap_freetuple(tuple);
        }
        pg_sys::CatalogCloseIndexes(indexes);
        // The lock is kept to the end of the transaction, as an INSERT's is.
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        true
    }
}

/// A text datum of `bytes` (in the database's encoding, as the output function gave them).
unsafe fn text(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: palloc'd in the current memory context, freed with it.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            bytes.as_ptr().cast(),
            bytes.len() as i32,
        ))
    }
}
