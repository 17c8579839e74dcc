//! "Why is this profile in?": `la_explain_profile` evaluates every node of a definition
//! for one profile, from the same compiled query that preview and compute run (each
//! node's condition as compiled, `compile::NodeSql`), so its root is membership exactly
//! as they decide it.

use super::model::{parse, AggFn, Node, NodeKind, RelNode};
use super::spi::{args, compile_checked, literal_problems, load_env, require, Env};
use crate::compile::sql::{LiteralCheck, Params};
use crate::compile::{Compiled, EntitySelect, NodeSql};
use crate::error::{Kind, Problem, Result};
use crate::json::Doc;
use crate::sql::jsonb_row;
use crate::{ok_or_raise, raise};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// Rows listed per node, at most (counts are always whole).
const SHOWN: usize = 10;

/// Explains a definition for one profile.
#[pg_extern(name = "la_explain_profile", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_explain_profile_definition(definition: Doc, profile_id: &str) -> JsonB {
    let definition = definition.or_raise("definition");
    let env = ok_or_raise(load_env());
    JsonB(ok_or_raise(explain(&env, &definition, None, profile_id)))
}

/// Explains a defined audience for one profile.
#[pg_extern(name = "la_explain_profile", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_explain_profile_key(audience: &str, profile_id: &str) -> JsonB {
    let trimmed = audience.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        raise(
            &Problem::invalid(
                "audience",
                "this looks like a definition, but it was taken as an audience key",
            )
            .with_hint("Cast it to jsonb: la_explain_profile('{...}'::jsonb, '42')."),
        );
    }
    let stored = ok_or_raise(require(audience));
    let env = ok_or_raise(load_env());
    JsonB(ok_or_raise(explain(
        &env,
        &stored.definition,
        Some(audience),
        profile_id,
    )))
}

/// The explanation of `definition` for `profile_id`: its tree, each node with `matched`.
pub fn explain(
    env: &Env,
    definition: &Value,
    own_key: Option<&str>,
    profile_id: &str,
) -> Result<Value> {
    let compiled =
        compile_checked(env, definition, own_key).map_err(|ps| Problem::first_of(&ps))?;
    let bad = literal_problems(&[LiteralCheck {
        path: "profile_id".into(),
        value: profile_id.into(),
        sql_type: compiled.profile.pk_type.clone(),
    }])?;
    if let Some(p) = bad.into_iter().next() {
        return Err(p);
    }
    let e = Explainer::new(env, &compiled, profile_id);
    let exists = e.one(&format!(
        "SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM {} p WHERE {}))",
        compiled.profile.table,
        e.this_profile()
    ))?;
    if exists != json!(true) {
        return Err(Problem::new(
            Kind::UndefinedObject,
            "profile_id",
            format!("profile \"{profile_id}\" does not exist"),
        ));
    }
    let node = parse(definition).map_err(|ps| Problem::first_of(&ps))?;
    e.node(&node, definition)
}

struct Explainer<'a> {
    env: &'a Env,
    compiled: &'a Compiled,
    profile_id: &'a str,
    /// `$n` of the profile id, after the compiled parameters.
    id_param: String,
    /// The compiled parameters, the profile id, and the values added since (bound to
    /// every query: each sees the ones it refers to).
    params: std::cell::RefCell<Params>,
}

impl<'a> Explainer<'a> {
    fn new(env: &'a Env, compiled: &'a Compiled, profile_id: &'a str) -> Self {
        let mut params = compiled.params.clone();
        let id_param = params.typed(profile_id, &compiled.profile.pk_type);
        Explainer {
            env,
            compiled,
            profile_id,
            id_param,
            params: params.into(),
        }
    }

    /// `p.<key> = $id`: the profile row explained.
    fn this_profile(&self) -> String {
        format!("p.{} = {}", self.compiled.profile.pk, self.id_param)
    }

    /// `<profile> p, <the select's rows> WHERE <their conditions> AND <this profile>`:
    /// the rows of a select reached from the profile explained.
    fn reached(&self, s: &EntitySelect) -> String {
        format!(
            "{t} p, {from} WHERE {w} AND {me}",
            t = self.compiled.profile.table,
            from = s.from,
            w = s.where_sql(),
            me = self.this_profile()
        )
    }

    /// Runs a query with the compiled parameters and the profile id bound.
    fn one(&self, sql: &str) -> Result<Value> {
        Ok(jsonb_row(sql, &args(&self.params.borrow()))?.unwrap_or(Value::Null))
    }

    fn compiled_node(&self, path: &str) -> Option<&'a NodeSql> {
        self.compiled.nodes.iter().find(|n| n.path == path)
    }

    /// The explanation of one node and its children.
    fn node(&self, n: &Node, root: &Value) -> Result<Value> {
        let mut out = json!({"path": n.path});
        match &n.kind {
            NodeKind::All(items) | NodeKind::Any(items) => {
                out["node"] = json!(if matches!(n.kind, NodeKind::All(_)) {
                    "all"
                } else {
                    "any"
                });
                let children: Result<Vec<Value>> =
                    items.iter().map(|c| self.node(c, root)).collect();
                out["children"] = Value::Array(children?);
            }
            NodeKind::Not(inner) => {
                out["node"] = json!("not");
                out["children"] = json!([self.node(inner, root)?]);
            }
            NodeKind::Trait(_) => {
                out["node"] = json!("trait");
                out["definition"] = at(root, &n.path).cloned().unwrap_or(Value::Null);
                if let Some(name) = out["definition"]["trait"].as_str() {
                    out["value"] = self.trait_value(name)?;
                }
            }
            NodeKind::Audience { key, .. } => {
                out["node"] = json!("audience");
                out["definition"] = at(root, &n.path).cloned().unwrap_or(Value::Null);
                if let Some(def) = self.env.audiences.get(key) {
                    out["audience"] = explain(self.env, def, Some(key), self.profile_id)?;
                }
            }
            NodeKind::Relationship(r) => return self.relationship(r, root),
            NodeKind::Event(_) => {
                out["node"] = json!("event");
                out["definition"] = at(root, &n.path).cloned().unwrap_or(Value::Null);
                if let Some(rows) = self.compiled_node(&n.path).and_then(|c| c.rows.as_ref()) {
                    let found = self.rows(rows, None, "DESC", None)?;
                    out["count"] = found["count"].clone();
                    out["timestamps"] = found["rows"].clone();
                }
            }
        }
        out["matched"] = self.matched(&n.path)?;
        Ok(out)
    }

    /// A relationship node: its count (and aggregate) and up to ten rows, and its nested
    /// nodes evaluated for each of its rows that pass `where`.
    fn relationship(&self, r: &RelNode, root: &Value) -> Result<Value> {
        let mut out = json!({"path": r.path, "node": "relationship"});
        let mut def = at(root, &r.path).cloned().unwrap_or(Value::Null);
        if let Some(o) = def.as_object_mut() {
            o.remove("relationships");
        }
        out["definition"] = def;
        let c = self.compiled_node(&r.path);
        let scope = c
            .and_then(|c| c.scope.as_deref())
            .and_then(|s| self.compiled_node(s));
        let agg = r.aggregate.as_ref().and_then(|a| {
            let col = self.column(&r.slug, &a.column)?;
            Some((a.func, col))
        });
        match (
            c.and_then(|c| c.rows.as_ref()),
            scope.and_then(|s| s.candidates.as_ref()),
        ) {
            (Some(rows), None) => {
                let found = self.rows(rows, None, "ASC", agg.as_ref())?;
                for k in ["count", "rows", "aggregate"] {
                    if !found[k].is_null() {
                        out[k] = found[k].clone();
                    }
                }
            }
            (Some(rows), Some(parent)) => {
                out["evaluated_for"] = self.per_parent(&r.path, rows, parent, agg.as_ref())?;
            }
            _ => {}
        }
        let children: Result<Vec<Value>> = r
            .relationships
            .iter()
            .map(|child| self.relationship(child, root))
            .collect();
        if !r.relationships.is_empty() {
            out["children"] = Value::Array(children?);
        }
        out["matched"] = self.matched(&r.path)?;
        Ok(out)
    }

    /// Whether a node holds: for the profile, or, nested under a relationship node, for
    /// at least one of that node's rows that pass its `where`.
    fn matched(&self, path: &str) -> Result<Value> {
        let Some(c) = self.compiled_node(path) else {
            return Ok(Value::Null);
        };
        let sql = match c.scope.as_deref().and_then(|s| self.compiled_node(s)).and_then(|s| s.candidates.as_ref()) {
            None => format!(
                "SELECT pg_catalog.to_jsonb(coalesce((SELECT ({cond}) IS TRUE FROM {t} p WHERE {me}), false))",
                cond = c.condition,
                t = self.compiled.profile.table,
                me = self.this_profile()
            ),
            Some(parent) => format!(
                "SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM {} AND ({}) IS TRUE))",
                self.reached(parent),
                c.condition
            ),
        };
        self.one(&sql)
    }

    /// For a nested node: each of the enclosing node's rows that pass its `where` (up to
    /// ten, by key), whether the node holds for it, and its own count and rows there.
    fn per_parent(
        &self,
        path: &str,
        rows: &EntitySelect,
        parent: &EntitySelect,
        agg: Option<&(AggFn, String)>,
    ) -> Result<Value> {
        let c = self.compiled_node(path).expect("found by the caller");
        let keys = self.one(&format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(x.k ORDER BY x.k), '[]') FROM (
                 SELECT DISTINCT {a}.{pk} AS k FROM {from} ORDER BY 1 LIMIT {SHOWN}) x",
            a = parent.target_alias,
            pk = parent.target_pk,
            from = self.reached(parent),
        ))?;
        let mut out = Vec::new();
        for k in keys.as_array().cloned().unwrap_or_default() {
            let key = match &k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let lit = self.params.borrow_mut().typed(key, "pg_catalog.text");
            let on_row = format!(
                "{}.{}::pg_catalog.text = {lit}",
                parent.target_alias, parent.target_pk
            );
            let holds = self.one(&format!(
                "SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM {} AND {on_row} AND ({}) IS TRUE))",
                self.reached(parent),
                c.condition
            ))?;
            let found = self.rows(rows, Some(&on_row), "ASC", agg)?;
            let mut entry =
                json!({"row": k, "matched": holds, "count": found["count"], "rows": found["rows"]});
            if !found["aggregate"].is_null() {
                entry["aggregate"] = found["aggregate"].clone();
            }
            out.push(entry);
        }
        Ok(Value::Array(out))
    }

    /// The distinct rows of a select for the profile (optionally restricted): their
    /// count, up to ten keys, and an aggregate over them.
    fn rows(
        &self,
        s: &EntitySelect,
        restrict: Option<&str>,
        order: &str,
        agg: Option<&(AggFn, String)>,
    ) -> Result<Value> {
        let extra = restrict.map(|r| format!(" AND {r}")).unwrap_or_default();
        let aggregate = match agg {
            None => "NULL".to_string(),
            Some((func, col)) => {
                let f = match func {
                    AggFn::Sum => "coalesce(pg_catalog.sum(d.v), 0)".to_string(),
                    AggFn::Avg => "pg_catalog.avg(d.v)".to_string(),
                    AggFn::Min => "pg_catalog.min(d.v)".to_string(),
                    AggFn::Max => "pg_catalog.max(d.v)".to_string(),
                    AggFn::CountDistinct => "pg_catalog.count(DISTINCT d.v)".to_string(),
                };
                format!(
                    "(SELECT pg_catalog.to_jsonb({f}) FROM (SELECT DISTINCT ON ({a}.{pk}) {a}.{col} AS v FROM {from}{extra}) d)",
                    a = s.target_alias,
                    pk = s.target_pk,
                    from = self.reached(s),
                )
            }
        };
        // Events are counted one by one; related rows by key.
        let distinct = if s.entity == "events" {
            ""
        } else {
            "DISTINCT "
        };
        let key = if s.entity == "events" {
            format!("{a}.{pk}, {a}.ctid", a = s.target_alias, pk = s.target_pk)
        } else {
            format!("{}.{}", s.target_alias, s.target_pk)
        };
        self.one(&format!(
            "WITH r AS (SELECT {distinct}{key} FROM {from}{extra})
             SELECT pg_catalog.jsonb_build_object(
                 'count', (SELECT pg_catalog.count(*) FROM r),
                 'rows', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x.k) ORDER BY x.k {order})
                                   FROM (SELECT r.{pk} AS k FROM r ORDER BY 1 {order} LIMIT {SHOWN}) x), '[]'),
                 'aggregate', {aggregate})",
            from = self.reached(s),
            pk = s.target_pk,
        ))
    }

    /// The profile's value of a trait (a column the catalog names).
    fn trait_value(&self, name: &str) -> Result<Value> {
        let table = self
            .env
            .graph()
            .profile
            .as_ref()
            .and_then(|p| self.env.cat().table(&p.table_ref));
        let Some(col) = table.and_then(|t| t.column(name)) else {
            return Ok(Value::Null);
        };
        self.one(&format!(
            "SELECT pg_catalog.to_jsonb(p.{}) FROM {} p WHERE {}",
            col.quoted,
            self.compiled.profile.table,
            self.this_profile()
        ))
    }

    /// The quoted name of a column of a relationship's entity.
    fn column(&self, relationship: &str, column: &str) -> Option<String> {
        let placed = self.env.graph().relationship(relationship)?;
        let entity = self.env.graph().entity(&placed.rel.related_entity)?;
        let table = self.env.cat().table(&entity.table_ref)?;
        table.column(column).map(|c| c.quoted.clone())
    }
}

/// The value at a node path (`$`, `$.all[0]`, `$.not`, `$.relationships[1]`...).
fn at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = root;
    for part in path.strip_prefix('$')?.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.find('[') {
            Some(i) => (
                &part[..i],
                part[i + 1..part.len() - 1].parse::<usize>().ok(),
            ),
            None => (part, None),
        };
        v = v.get(name)?;
        if let Some(i) = index {
            v = v.get(i)?;
        }
    }
    Some(v)
}
