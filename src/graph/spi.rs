//! The SPI edge of the Data Graph: reading the catalog snapshot, storing and loading
//! the graph.

use super::cache;
use super::catalog::{split_table_ref, Catalog, Lookup, Table};
use super::model::{parse, DataGraph};
use crate::error::{Kind, Problem, Result};
use crate::sql::{internal, jsonb_row, jsonb_row_latest};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// The tables named by `$1` (schemas; '' for an unqualified name) and `$2` (names), with their columns, privileges, indexes and foreign keys, as a JSON array in
/// the same order (null where there is no such table). One query for the whole graph.
const TABLES_SQL: &str = r#"
SELECT coalesce(pg_catalog.jsonb_agg((
    SELECT pg_catalog.jsonb_build_object(
        'oid', c.oid::pg_catalog.int8,
        'quoted', pg_catalog.format('%I.%I', n.nspname, c.relname),
        'schema', n.nspname,
        'name', c.relname,
        'readable', pg_catalog.has_table_privilege(c.oid, 'SELECT'),
        'row_security', c.relrowsecurity,
        'columns', (
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', a.attname,
                       'quoted', pg_catalog.quote_ident(a.attname),
                       'type_name', pg_catalog.format_type(a.atttypid, a.atttypmod),
                       'base_type', pg_catalog.format_type(a.atttypid, NULL),
                       'type_oid', a.atttypid::pg_catalog.int8,
                       'base_oid', bt.oid::pg_catalog.int8,
                       'category', t.typcategory,
                       'param_type', CASE bt.oid
                           WHEN 'pg_catalog.bpchar'::pg_catalog.regtype THEN 'pg_catalog.bpchar'
                           WHEN 'pg_catalog.bit'::pg_catalog.regtype THEN 'pg_catalog.varbit'
                           ELSE pg_catalog.format_type(bt.oid, NULL) END,
                       'operators', (
                           SELECT coalesce(pg_catalog.jsonb_object_agg(x.k, x.v), '{}') FROM (
                               SELECT o.oprname AS k,
                                      pg_catalog.format('OPERATOR(%I.%s)', ons.nspname, o.oprname) AS v
                               FROM pg_catalog.pg_operator o
                               JOIN pg_catalog.pg_namespace ons ON ons.oid = o.oprnamespace
                               WHERE o.oprleft = bt.oid AND o.oprright = bt.oid
                                 AND o.oprname IN ('=', '<>', '<', '<=', '>', '>=', '~~')
                                 AND ons.nspname OPERATOR(pg_catalog.<>) 'pg_catalog'
                               UNION ALL
                               -- The type's own min and max (citext's compare as citext).
                               SELECT f.proname OPERATOR(pg_catalog.||) '()',
                                      pg_catalog.format('%I.%I', fns.nspname, f.proname)
                               FROM pg_catalog.pg_proc f
                               JOIN pg_catalog.pg_namespace fns ON fns.oid = f.pronamespace
                               WHERE f.prokind = 'a' AND f.proname IN ('min', 'max') AND f.pronargs = 1
                                 AND f.proargtypes[0] = bt.oid
                                 AND fns.nspname OPERATOR(pg_catalog.<>) 'pg_catalog') x)) ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
            -- A domain's base type, through domains over domains.
            CROSS JOIN LATERAL (
                WITH RECURSIVE d(oid, typtype, base) AS (
                    SELECT t.oid, t.typtype, t.typbasetype
                    UNION ALL
                    SELECT x.oid, x.typtype, x.typbasetype
                    FROM d JOIN pg_catalog.pg_type x ON x.oid = d.base WHERE d.typtype = 'd')
                SELECT d.oid FROM d WHERE d.typtype <> 'd') bt
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
        'indexed', (
            SELECT coalesce(pg_catalog.jsonb_agg(DISTINCT a.attname), '[]')
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = c.oid),
        'in_schemas', CASE WHEN w.schema OPERATOR(pg_catalog.=) '' THEN (
            SELECT pg_catalog.jsonb_agg(n2.nspname ORDER BY n2.nspname)
            FROM pg_catalog.pg_class c2
            JOIN pg_catalog.pg_namespace n2 ON n2.oid = c2.relnamespace
            WHERE c2.relkind IN ('r', 'p', 'v', 'm', 'f') AND c2.relname OPERATOR(pg_catalog.=) w.name
              AND n2.nspname OPERATOR(pg_catalog.=) ANY (u.schemas)) END,
        'unique_sets', (
            SELECT coalesce(pg_catalog.jsonb_agg((
                SELECT pg_catalog.jsonb_agg(a.attname)
                FROM pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:i.indnkeyatts - 1]) AS k(n)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)), '[]')
            FROM pg_catalog.pg_index i
            WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL),
        'foreign_keys', (
            SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'column', a.attname, 'ref_schema', rn.nspname, 'ref_table', rc.relname,
                       'ref_column', ra.attname, 'ref_oid', rc.oid::pg_catalog.int8)), '[]')
            FROM pg_catalog.pg_constraint k
            JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            JOIN pg_catalog.pg_class rc ON rc.oid = k.confrelid
            JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
            JOIN pg_catalog.pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
            WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.convalidated AND NOT k.condeferrable
              AND pg_catalog.array_length(k.conkey, 1) = 1))
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND c.relname OPERATOR(pg_catalog.=) w.name
      AND CASE WHEN w.schema OPERATOR(pg_catalog.=) '' THEN n.nspname OPERATOR(pg_catalog.=) ANY (u.schemas)
               ELSE n.nspname OPERATOR(pg_catalog.=) w.schema END
    ORDER BY n.nspname OPERATOR(pg_catalog.<>) 'public', n.nspname
    LIMIT 1) ORDER BY w.ord), '[]')
FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) WITH ORDINALITY AS w(schema, name, ord),
     -- Where an unqualified name may resolve: user schemas the caller can use.
     (SELECT pg_catalog.array_agg(n.nspname) AS schemas FROM pg_catalog.pg_namespace n
      WHERE n.nspname NOT IN ('information_schema', 'linked_audiences') AND n.nspname NOT LIKE 'pg\_%'
        AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')) AS u
"#;

/// Tables a user could have meant, for hints.
const CANDIDATES_SQL: &str = r#"
SELECT coalesce(pg_catalog.jsonb_agg(n.nspname || '.' || c.relname ORDER BY n.nspname, c.relname), '[]')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'linked_audiences')
  AND n.nspname NOT LIKE 'pg\_%'
"#;

/// Reads what the catalog says about every table the graph names.
pub fn load_catalog(graph: &DataGraph) -> Result<Catalog> {
    load_catalog_with(graph, &serde_json::Map::new())
}

/// The catalog of the stored graph: each table where it resolved when the graph was
/// defined, whatever the search_path is now.
pub fn load_stored_catalog(graph: &DataGraph) -> Result<Catalog> {
    let resolved = jsonb_row("SELECT tables FROM linked_audiences.data_graph", &[])?
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    load_catalog_with(graph, &resolved)
}

fn load_catalog_with(
    graph: &DataGraph,
    resolved: &serde_json::Map<String, Value>,
) -> Result<Catalog> {
    let mut cat = Catalog::default();
    // (table_ref, schema or "", name) of every well-formed reference.
    let mut wanted: Vec<(String, String, String)> = Vec::new();
    for table_ref in graph.table_refs() {
        match split_table_ref(&table_ref) {
            Err(why) => {
                cat.tables.insert(table_ref, Lookup::Malformed(why));
            }
            Ok(parts) => {
                let known = resolved
                    .get(&table_ref)
                    .and_then(|r| Some((r["schema"].as_str()?, r["name"].as_str()?)));
                let (schema, name) = match (known, parts.as_slice()) {
                    (Some((s, n)), _) => (s.to_string(), n.to_string()),
                    (None, [s, n]) => (s.clone(), n.clone()),
                    (None, [n]) => (String::new(), n.clone()),
                    _ => unreachable!("split_table_ref returns one or two parts"),
                };
                wanted.push((table_ref, schema, name));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(cat);
    }
    let key = cache::Key::new(wanted.iter().map(|w| (w.1.clone(), w.2.clone())).collect());
    let lookups = cache::lookups(&key, || read_tables(&key.tables))?;
    for ((table_ref, _, _), lookup) in wanted.into_iter().zip(lookups) {
        cat.tables.insert(table_ref, lookup);
    }
    Ok(cat)
}

/// What the catalog says now about each (schema or "", name), in order, with what
/// each table's entry depends on.
fn read_tables(tables: &[(String, String)]) -> Result<Vec<(Lookup, cache::Deps)>> {
    let schemas: Vec<String> = tables.iter().map(|w| w.0.clone()).collect();
    let names: Vec<String> = tables.iter().map(|w| w.1.clone()).collect();
    let found = jsonb_row_latest(TABLES_SQL, &[schemas.into(), names.into()])?
        .unwrap_or(Value::Array(vec![]));
    let found = found.as_array().cloned().unwrap_or_default();
    let mut candidates: Option<Vec<String>> = None;
    let mut out = Vec::with_capacity(tables.len());
    for i in 0..tables.len() {
        let mut deps = cache::Deps::default();
        let lookup = match found.get(i).filter(|v| !v.is_null()) {
            Some(t) => match t["in_schemas"].as_array().filter(|s| s.len() > 1) {
                Some(schemas) if t["schema"] != "public" => Lookup::Ambiguous(
                    schemas
                        .iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect(),
                ),
                _ => {
                    deps = depends(t);
                    Lookup::Found(serde_json::from_value::<Table>(t.clone()).map_err(internal)?)
                }
            },
            None => {
                if candidates.is_none() {
                    let v = jsonb_row_latest(CANDIDATES_SQL, &[])?;
                    candidates = Some(
                        v.and_then(|j| serde_json::from_value(j).ok())
                            .unwrap_or_default(),
                    );
                }
                Lookup::Missing {
                    candidates: candidates.clone().unwrap_or_default(),
                }
            }
        };
        out.push((lookup, deps));
    }
    Ok(out)
}

/// The table, the tables its foreign keys reference, and its columns' types.
fn depends(t: &Value) -> cache::Deps {
    let oids = |v: &Value, field: &str| -> Vec<u32> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x[field].as_u64().and_then(|o| u32::try_from(o).ok()))
            .collect()
    };
    let mut relations: Vec<u32> = t["oid"]
        .as_u64()
        .and_then(|o| u32::try_from(o).ok())
        .into_iter()
        .collect();
    relations.extend(oids(&t["foreign_keys"], "ref_oid"));
    let mut types = oids(&t["columns"], "type_oid");
    types.extend(oids(&t["columns"], "base_oid"));
    types.sort_unstable();
    types.dedup();
    cache::Deps { relations, types }
}

/// The qualified name of a relation given as regclass.
pub fn regclass_name(oid: pg_sys::Oid) -> Result<String> {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = $1)",
        &[oid.into()],
    )
    .map_err(internal)?
    .ok_or_else(|| {
        Problem::new(
            Kind::UndefinedTable,
            "table_ref",
            format!("relation with OID {} does not exist", oid.to_u32()),
        )
    })
}

/// Serializes graph mutations; readers are not blocked.
pub fn lock_graph() -> Result<()> {
    Spi::run("LOCK TABLE linked_audiences.data_graph IN SHARE ROW EXCLUSIVE MODE").map_err(internal)
}

/// The stored graph; an empty one when none was defined.
pub fn load_graph() -> Result<DataGraph> {
    match jsonb_row("SELECT graph FROM linked_audiences.data_graph", &[])? {
        None => Ok(DataGraph::default()),
        Some(j) => parse(&j).map_err(|mut ps| {
            internal(format!(
                "the stored graph does not parse: {}",
                ps.remove(0).full_message()
            ))
        }),
    }
}

/// Replaces the stored graph, with where each table resolved to.
pub fn store_graph(graph: &DataGraph, cat: &Catalog) -> Result<()> {
    let resolved: serde_json::Map<String, Value> = cat
        .tables
        .iter()
        .filter_map(|(r, l)| match l {
            Lookup::Found(t) => Some((r.clone(), json!({"schema": t.schema, "name": t.name}))),
            _ => None,
        })
        .collect();
    Spi::run_with_args(
        "INSERT INTO linked_audiences.data_graph AS g (singleton, graph, tables, updated_at)
         VALUES (true, $1, $2, pg_catalog.now())
         ON CONFLICT (singleton) DO UPDATE
         SET graph = excluded.graph, tables = excluded.tables, updated_at = excluded.updated_at",
        &[
            JsonB(graph.to_json()).into(),
            JsonB(Value::Object(resolved)).into(),
        ],
    )
    .map_err(internal)
}
