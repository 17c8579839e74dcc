//! Small SPI helpers shared by the SQL edges.

use crate::error::{Kind, Problem, Result};
use crate::json::Doc;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use serde_json::Value;

/// An internal error: a bug or a broken invariant, never bad input.
pub fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::new(
        Kind::Internal,
        "",
        format!("linked_audiences internal error: {e}"),
    )
}

/// The first column of the first row as jsonb; `None` when there is no row or it is
/// NULL. No row limit is passed to SPI: with one, Postgres never runs the query in
/// parallel.
pub fn jsonb_row(sql: &str, args: &[DatumWithOid<'_>]) -> Result<Option<Value>> {
    Spi::connect(|client| {
        let table = client.select(sql, None, args)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_one::<Doc>()
    })
    .map_err(|e: pgrx::spi::Error| internal(e))?
    .map(|d| d.json("the result"))
    .transpose()
}

/// Like `jsonb_row`, for a read-only query run with the latest snapshot of the
/// database rather than the transaction's: what the catalog says now, as Postgres's own
/// caches see it, also inside a REPEATABLE READ transaction (`graph::cache` relies on it).
pub fn jsonb_row_latest(sql: &str, args: &[DatumWithOid<'_>]) -> Result<Option<Value>> {
    let query = std::ffi::CString::new(sql).map_err(internal)?;
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| {
            a.datum()
                .map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime())
        })
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    let doc = Spi::connect(|_client| {
        // SAFETY: inside an SPI connection; the plan, values and nulls outlive the
        // call, and the result is read before the connection ends.
        unsafe {
            let plan = pg_sys::SPI_prepare(query.as_ptr(), types.len() as i32, types.as_mut_ptr());
            if plan.is_null() {
                let code = pg_sys::SPI_result;
                return Err(format!("SPI_prepare failed ({code})"));
            }
            let rc = pg_sys::SPI_execute_snapshot(
                plan,
                values.as_mut_ptr(),
                nulls.as_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                0,
            );
            pg_sys::SPI_freeplan(plan);
            if rc != pg_sys::SPI_OK_SELECT as i32 {
                return Err(format!("SPI_execute_snapshot returned {rc}"));
            }
            let table = pg_sys::SPI_tuptable;
            if pg_sys::SPI_processed == 0 || table.is_null() {
                return Ok(None);
            }
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
            Ok(<Doc as pgrx::FromDatum>::from_datum(datum, isnull))
        }
    })
    .map_err(internal)?;
    doc.map(|d| d.json("the result")).transpose()
}

/// Like `jsonb_row`, for a statement that writes (INSERT ... RETURNING).
pub fn jsonb_write(sql: &str, args: &[DatumWithOid<'_>]) -> Result<Option<Value>> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, None, args)?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get_one::<Doc>()
    })
    .map_err(|e: pgrx::spi::Error| internal(e))?
    .map(|d| d.json("the result"))
    .transpose()
}

/// Whether the database's schema of the extension is at 0.3.0 or later. A server whose
/// library was updated keeps serving databases still on an earlier version's schema
/// until `ALTER EXTENSION linked_audiences UPDATE`, with that version's behavior where
/// the schema differs (the columns 0.3.0 added).
pub fn schema_0_3() -> Result<bool> {
    let v = jsonb_row(
        "SELECT pg_catalog.to_jsonb(e.extversion) FROM pg_catalog.pg_extension e WHERE e.extname = 'linked_audiences'",
        &[],
    )?;
    Ok(!matches!(
        v.as_ref().and_then(Value::as_str),
        Some("0.1.0" | "0.2.0")
    ))
}
