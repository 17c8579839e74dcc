//! The SPI edge of audiences: the compile environment, literal checks, storage.

use crate::compile::sql::{LiteralCheck, ParamValue};
use crate::compile::{compile, Compiled, Ctx};
use crate::error::{Kind, Problem, Result};
use crate::graph::catalog::Catalog;
use crate::graph::model::DataGraph;
use crate::graph::spi as graph_spi;
use crate::graph::validate::ValidatedGraph;
use crate::sql::{internal, jsonb_row};
use pgrx::datum::DatumWithOid;
use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Everything a compile reads, loaded once.
pub struct Env {
    pub valid: ValidatedGraph,
    pub audiences: BTreeMap<String, Value>,
}

impl Env {
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx::new(&self.valid, &self.audiences)
    }

    pub fn graph(&self) -> &DataGraph {
        self.valid.graph()
    }

    pub fn cat(&self) -> &Catalog {
        self.valid.cat()
    }
}

/// The stored graph (which must still be valid against the catalog), its catalog
/// snapshot and the stored audience definitions.
pub fn load_env() -> Result<Env> {
    let graph = graph_spi::load_graph()?;
    if graph.profile.is_none() {
        return Err(
            Problem::new(Kind::NotInPrerequisiteState, "", "no Data Graph is defined").with_hint(
                "Define one first with la_define_data_graph or the la_register_* functions.",
            ),
        );
    }
    let cat = graph_spi::load_stored_catalog(&graph)?;
    // Whether the stored graph still holds (tables, columns, types), whoever asks: what
    // the caller may read is checked per audience, for the tables it reads (compile).
    let valid = ValidatedGraph::check(graph, cat, crate::max_depth()).map_err(|ps| {
        let p = &ps[0];
        Problem::new(
            p.kind,
            "",
            format!(
                "the stored Data Graph is no longer valid: {}",
                p.full_message()
            ),
        )
        .with_opt_hint(p.hint.clone())
    })?;
    Ok(Env {
        valid,
        audiences: stored_definitions()?,
    })
}

pub fn stored_definitions() -> Result<BTreeMap<String, Value>> {
    let v = jsonb_row(
        "SELECT coalesce(pg_catalog.jsonb_object_agg(key, definition), '{}') FROM linked_audiences.audience",
        &[],
    )?
    .unwrap_or_else(|| json!({}));
    serde_json::from_value(v).map_err(internal)
}

/// Problems of literals that do not convert to their column's type.
pub fn literal_problems(checks: &[LiteralCheck]) -> Result<Vec<Problem>> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let arg: Vec<Value> = checks
        .iter()
        .map(|c| json!({"path": c.path, "value": c.value, "type": c.sql_type}))
        .collect();
    let bad = jsonb_row(
        "SELECT linked_audiences.literal_problems($1)",
        &[JsonB(Value::Array(arg)).into()],
    )?
    .unwrap_or_else(|| json!([]));
    Ok(bad
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let path = b["path"].as_str().unwrap_or_default();
            let ty = checks
                .iter()
                .find(|c| c.path == path)
                .map_or("", |c| c.sql_type.as_str());
            Problem::invalid(
                path,
                format!(
                    "value is not a valid {ty}: {}",
                    b["error"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect())
}

/// Compiles a definition and checks its literals against Postgres' own casts.
pub fn compile_checked(
    env: &Env,
    def: &Value,
    own_key: Option<&str>,
) -> std::result::Result<Compiled, Vec<Problem>> {
    let compiled = compile(&env.ctx(), def, own_key)?;
    let bad = literal_problems(&compiled.literal_checks).map_err(|p| vec![p])?;
    if bad.is_empty() {
        Ok(compiled)
    } else {
        Err(bad)
    }
}

/// SPI arguments for the compiled parameters: `text` and `text[]`.
pub fn args(params: &[ParamValue]) -> Vec<DatumWithOid<'static>> {
    params
        .iter()
        .map(|p| match p {
            ParamValue::Text(s) => s.clone().into(),
            ParamValue::TextArray(a) => a.clone().into(),
        })
        .collect()
}

/// A stored audience.
#[derive(Debug, Clone, Deserialize)]
pub struct Stored {
    pub id: i64,
    pub key: String,
    pub version: i32,
    pub enabled: bool,
    pub definition: Value,
    pub depends_on: Vec<String>,
}

pub fn by_key(key: &str) -> Result<Option<Stored>> {
    jsonb_row(
        "SELECT pg_catalog.to_jsonb(a) FROM linked_audiences.audience a WHERE a.key = $1",
        &[key.into()],
    )?
    .map(|v| serde_json::from_value(v).map_err(internal))
    .transpose()
}

/// The audience, or 42704 with the nearest keys.
pub fn require(key: &str) -> Result<Stored> {
    if let Some(s) = by_key(key)? {
        return Ok(s);
    }
    let keys = stored_definitions()?;
    let hint = crate::names::hint_for(key, keys.keys().map(String::as_str), "audiences");
    Err(Problem::new(
        Kind::UndefinedObject,
        "key",
        format!("audience \"{key}\" does not exist"),
    )
    .with_opt_hint(hint))
}

/// Serializes changes to audience definitions.
pub fn lock_audiences() -> Result<()> {
    pgrx::spi::Spi::run("LOCK TABLE linked_audiences.audience IN SHARE ROW EXCLUSIVE MODE")
        .map_err(internal)
}
