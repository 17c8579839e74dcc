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
