//! Change capture for incremental computes. Pure: which tables of the graph to capture
//! and which of their columns to record, and the SQL that maps recorded values up the
//! relationship paths to the profiles they touch.
//!
//! A statement-level trigger per table and event records, for every row a statement
//! inserts, updates or deletes (old and new rows alike), the values of the table's *link
//! columns* into `linked_audiences.change_log (tx, relation, col, value)`:
//! - the profile table: its primary key;
//! - the identifiers and events tables: their profile key;
//! - an entity table: the column each relationship to it joins its parent on (a pet's
//!   `household_id`), so a row that moves between parents dirties both;
//! - a junction table: its column joined to the parent (`cart_id`).
//!
//! A profile is affected by a row exactly when the row lies on one of the profile's
//! paths, and a row lies on a path through its link value: mapping each recorded value up
//! the path (the parent rows joined on it, their own link values, and so on to the
//! profile) gives every profile whose conditions may have changed.

pub mod api;
pub(crate) mod direct;
mod trigger;

use crate::compile::sql::{quote_literal, Params};
use crate::graph::catalog::{Catalog, Column, Table};
use crate::graph::joins::{resolve, ResolvedJoin};
use crate::graph::model::{DataGraph, Placed};

/// Whether the change log has lost no row since the compute position `cp` (a
/// `compute_position` row): a `capture_alive` row is written after the last crash (both
/// tables are unlogged and emptied together) and the position's snapshot sees it, or the
/// position's own compute wrote it. SQL, for a query where `cp` is in scope.
pub const LOG_COMPLETE_SINCE_CP: &str = "EXISTS (SELECT FROM linked_audiences.capture_alive k
    WHERE pg_catalog.pg_visible_in_snapshot(k.since, cp.snapshot) OR k.since = cp.tx)";

/// One table to capture, with the link columns to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured<'a> {
    pub table: &'a Table,
    pub columns: Vec<String>,
}

/// A table the graph reads that triggers cannot capture (a view, a foreign table, a
/// partitioned table written to through its partitions), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncapturable {
    pub table: String,
    pub reason: String,
}

/// The tables to capture and their link columns, in a stable order.
pub fn plan<'a>(graph: &DataGraph, cat: &'a Catalog) -> Vec<Captured<'a>> {
    let mut out: Vec<Captured<'a>> = Vec::new();
    let mut add = |table_ref: &str, column: &str| {
        let Some(t) = cat.table(table_ref) else {
            return;
        };
        if t.column(column).is_none() {
            return;
        }
        match out.iter_mut().find(|c| c.table.quoted == t.quoted) {
            Some(c) if !c.columns.iter().any(|x| x == column) => c.columns.push(column.into()),
            Some(_) => {}
            None => out.push(Captured {
                table: t,
                columns: vec![column.into()],
            }),
        }
    };
    if let Some(p) = &graph.profile {
        add(&p.table_ref, &p.primary_key);
        if let Some(ids) = &p.identifiers {
            add(&ids.table_ref, &ids.profile_key);
        }
    }
    if let Some(ev) = &graph.events {
        add(&ev.table_ref, &ev.profile_key);
    }
    for placed in graph.relationships() {
        let Some(entity) = graph.entity(&placed.rel.related_entity) else {
            continue;
        };
        match resolve(&placed) {
            Ok(ResolvedJoin::Direct { child_column, .. })
            | Ok(ResolvedJoin::ExternalId { child_column, .. }) => {
                add(&entity.table_ref, &child_column)
            }
            Ok(ResolvedJoin::Junction {
                table_ref,
                left_column,
                child_column,
                ..
            }) => {
                add(&entity.table_ref, &child_column);
                add(&table_ref, &left_column);
            }
            Err(_) => {}
        }
    }
    out
}

/// The SQL of the profile ids (as text, as `audience_members` stores them) touched by
/// the rows of `log` (a relation with columns `relation`, `col`, `value`). Identifier
/// types of external ids are parameters added to `params`. Only the tables in `reads`
/// (quoted, those an audience reads) are mapped: a change to any other cannot move it.
pub fn dirty_profiles_sql(
    graph: &DataGraph,
    cat: &Catalog,
    log: &str,
    params: &mut Params,
    reads: &[String],
) -> Option<String> {
    let read = |t: &Table| reads.contains(&t.quoted);
    let profile = graph.profile.as_ref()?;
    let pt = cat.table(&profile.table_ref)?;
    let pk = pt.column(&profile.primary_key)?;
    let mut m = Mapper {
        graph,
        cat,
        log,
        profile: pt,
        pk,
        params,
    };
    let mut parts = vec![m.logged(pt, pk)];
    if let Some(ids) = &profile.identifiers {
        if let Some((it, key)) = cat
            .table(&ids.table_ref)
            .and_then(|t| Some((t, t.column(&ids.profile_key)?)))
            .filter(|(t, _)| read(t))
        {
            parts.push(m.logged(it, key));
        }
    }
    if let Some(ev) = &graph.events {
        if let Some((et, key)) = cat
            .table(&ev.table_ref)
            .and_then(|t| Some((t, t.column(&ev.profile_key)?)))
            .filter(|(t, _)| read(t))
        {
            parts.push(m.logged(et, key));
        }
    }
    for placed in graph.relationships() {
        let entity_table = graph
            .entity(&placed.rel.related_entity)
            .and_then(|e| cat.table(&e.table_ref));
        if entity_table.is_some_and(read) {
            parts.extend(m.relationship(&placed));
        }
    }
    Some(parts.join("\nUNION\n"))
}

/// The rows whose timestamps crossed a clock window's boundary between the previous
/// compute's now() (`then`, a placeholder) and this one's, as change log rows (relation,
/// col, value) of their link columns: `UNION ALL` branches to append to the log's rows.
/// The intervals are parameters added to `params`.
pub fn clock_rows_sql(
    graph: &DataGraph,
    cat: &Catalog,
    windows: &[crate::compile::ClockWindow],
    then: &str,
    params: &mut Params,
) -> String {
    let planned = plan(graph, cat);
    let mut sql = String::new();
    let mut intervals: Vec<(String, String)> = Vec::new();
    for w in windows {
        let Some(c) = planned.iter().find(|c| c.table.quoted == w.table) else {
            continue;
        };
        let iv = match intervals.iter().find(|(i, _)| *i == w.interval) {
            Some((_, p)) => p.clone(),
            None => {
                let p = params.typed(w.interval.clone(), "pg_catalog.interval");
                intervals.push((w.interval.clone(), p.clone()));
                p
            }
        };
        for col in &c.columns {
            let Some(column) = c.table.column(col) else {
                continue;
            };
            sql.push_str(&format!(
                "\nUNION ALL SELECT {r}, {n}, t.{q}::pg_catalog.text FROM {t} t \
                 WHERE t.{ts} >= {then} - {iv} AND t.{ts} < pg_catalog.now() - {iv}",
                r = quote_literal(&c.table.quoted),
                n = quote_literal(&column.name),
                q = column.quoted,
                t = c.table.quoted,
                ts = w.column,
            ));
        }
    }
    sql
}

struct Mapper<'a> {
    graph: &'a DataGraph,
    cat: &'a Catalog,
    log: &'a str,
    profile: &'a Table,
    pk: &'a Column,
    /// The statement's parameters (identifier types are added).
    params: &'a mut Params,
}

/// Text values (a query of one column `v`) of the column `from`.
struct Values<'c> {
    sql: String,
    from: &'c Column,
}

impl<'a> Mapper<'a> {
    /// Values recorded for `table.column`.
    fn values(&self, table: &Table, column: &Column) -> String {
        format!(
            "SELECT l.value FROM {log} l WHERE l.relation = {r} AND l.col = {c}",
            log = self.log,
            r = quote_literal(&table.quoted),
            c = quote_literal(&column.name),
        )
    }

    /// Values that are profile ids (the profile's key, or a profile key column).
    fn logged(&self, table: &Table, column: &Column) -> String {
        if std::ptr::eq(table, self.profile) {
            return self.values(table, column);
        }
        // Re-typed through the profile key, so it prints as the profile's key does.
        format!(
            "SELECT x.v::{t}::pg_catalog.text FROM ({}) x(v)",
            self.values(table, column),
            t = self.pk.value_type()
        )
    }

    /// `expr` (a value of `column`) among the text values of `values` (of the column
    /// `from`), compared as the join compares them (see `compile`'s `equate`): by the
    /// type's own equality (citext's is case-insensitive), the side without one cast to
    /// the other's type when the types differ.
    fn typed_in(expr: &str, column: &Column, values: &Values<'_>) -> String {
        let v = &values.sql;
        let owner = column.comparison_owner(values.from);
        let ty = owner.value_type();
        let e = if std::ptr::eq(owner, column) {
            expr.to_string()
        } else {
            format!("{expr}::{ty}")
        };
        let op = owner.op("=");
        if op == "=" {
            return format!("{e} IN (SELECT x.v::{ty} FROM ({v}) x(v))");
        }
        format!("{e} {op} ANY (ARRAY(SELECT x.v::{ty} FROM ({v}) x(v)))")
    }

    /// The profiles touched through one relationship: by its entity's rows and, for a
    /// junction, by the junction's rows.
    fn relationship(&mut self, placed: &Placed<'_>) -> Vec<String> {
        let Some(entity) = self.graph.entity(&placed.rel.related_entity) else {
            return vec![];
        };
        let Some(table) = self.cat.table(&entity.table_ref) else {
            return vec![];
        };
        let Ok(join) = resolve(placed) else {
            return vec![];
        };
        let child_column = match &join {
            ResolvedJoin::Direct { child_column, .. }
            | ResolvedJoin::ExternalId { child_column, .. }
            | ResolvedJoin::Junction { child_column, .. } => child_column.clone(),
        };
        let mut out = Vec::new();
        if let Some(cc) = table.column(&child_column) {
            let values = Values {
                sql: self.values(table, cc),
                from: cc,
            };
            out.extend(self.up(placed, &values));
        }
        if let ResolvedJoin::Junction {
            table_ref,
            left_column,
            ..
        } = &join
        {
            if let Some((jt, lc)) = self
                .cat
                .table(table_ref)
                .and_then(|t| Some((t, t.column(left_column)?)))
            {
                let values = Values {
                    sql: self.values(jt, lc),
                    from: lc,
                };
                out.extend(self.rows_of_parents(placed, &values));
            }
        }
        out
    }

    /// The profiles reaching rows of `placed` whose join column (to the parent) holds one
    /// of `values`.
    fn up(&mut self, placed: &Placed<'_>, values: &Values<'a>) -> Option<String> {
        match resolve(placed).ok()? {
            ResolvedJoin::Direct { .. } => self.rows_of_parents(placed, values),
            ResolvedJoin::Junction {
                table_ref,
                left_column,
                right_column,
                ..
            } => {
                let jt = self.cat.table(&table_ref)?;
                let (lc, rc) = (jt.column(&left_column)?, jt.column(&right_column)?);
                let via = format!(
                    "SELECT j.{lc}::pg_catalog.text FROM {jt} j WHERE {cond}",
                    lc = lc.quoted,
                    jt = jt.quoted,
                    cond = Self::typed_in(&format!("j.{}", rc.quoted), rc, values)
                );
                self.rows_of_parents(placed, &Values { sql: via, from: lc })
            }
            ResolvedJoin::ExternalId { id_type, .. } => {
                let ids = self.graph.profile.as_ref()?.identifiers.as_ref()?;
                let it = self.cat.table(&ids.table_ref)?;
                let (key, ty, val) = (
                    it.column(&ids.profile_key)?,
                    it.column(&ids.type_column)?,
                    it.column(&ids.value_column)?,
                );
                let p = self.params.typed(id_type, ty.value_type());
                Some(format!(
                    "SELECT i.{key}::{pkt}::pg_catalog.text FROM {it} i WHERE i.{ty} {eq} {p} AND {cond}",
                    key = key.quoted,
                    pkt = self.pk.value_type(),
                    it = it.quoted,
                    ty = ty.quoted,
                    eq = ty.op("="),
                    cond = Self::typed_in(&format!("i.{}", val.quoted), val, values)
                ))
            }
        }
    }

    /// The profiles reaching parent rows of `placed` whose join column (the parent side
    /// of `placed`'s join) holds one of `values`.
    fn rows_of_parents(&mut self, placed: &Placed<'_>, values: &Values<'a>) -> Option<String> {
        let parent_column = match resolve(placed).ok()? {
            ResolvedJoin::Direct { parent_column, .. }
            | ResolvedJoin::Junction { parent_column, .. } => parent_column,
            ResolvedJoin::ExternalId { .. } => return None,
        };
        match placed.parent {
            None => {
                let pc = self.profile.column(&parent_column)?;
                Some(format!(
                    "SELECT p.{pk}::pg_catalog.text FROM {pt} p WHERE {cond}",
                    pk = self.pk.quoted,
                    pt = self.profile.quoted,
                    cond = Self::typed_in(&format!("p.{}", pc.quoted), pc, values)
                ))
            }
            Some(parent) => {
                let grand = self.graph.relationship(&parent.slug)?;
                let pe = self.graph.entity(&parent.related_entity)?;
                let pt = self.cat.table(&pe.table_ref)?;
                let pc = pt.column(&parent_column)?;
                let own = match resolve(&grand).ok()? {
                    ResolvedJoin::Direct { child_column, .. }
                    | ResolvedJoin::ExternalId { child_column, .. }
                    | ResolvedJoin::Junction { child_column, .. } => child_column,
                };
                let oc = pt.column(&own)?;
                let parents = format!(
                    "SELECT t.{oc}::pg_catalog.text FROM {pt} t WHERE {cond}",
                    oc = oc.quoted,
                    pt = pt.quoted,
                    cond = Self::typed_in(&format!("t.{}", pc.quoted), pc, values)
                );
                self.up(
                    &grand,
                    &Values {
                        sql: parents,
                        from: oc,
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::model::parse;
    use crate::graph::tests::{demo_catalog, demo_graph_json};

    #[test]
    fn plan_records_link_columns() {
        let graph = parse(&demo_graph_json()).unwrap();
        let cat = demo_catalog();
        let p: Vec<(String, Vec<String>)> = plan(&graph, &cat)
            .into_iter()
            .map(|c| (c.table.quoted.clone(), c.columns))
            .collect();
        let get = |t: &str| p.iter().find(|(q, _)| q == t).map(|(_, c)| c.clone());
        assert_eq!(get("public.profiles"), Some(vec!["id".to_string()]));
        assert_eq!(get("public.pets"), Some(vec!["household_id".to_string()]));
        assert_eq!(get("public.households"), Some(vec!["id".to_string()]));
        assert_eq!(get("public.accounts"), Some(vec!["email".to_string()]));
        assert_eq!(get("public.cart_items"), Some(vec!["cart_id".to_string()]));
        assert_eq!(get("public.products"), Some(vec!["sku".to_string()]));
        assert_eq!(get("public.events"), Some(vec!["profile_id".to_string()]));
    }

    #[test]
    fn pets_map_up_through_households() {
        let graph = parse(&demo_graph_json()).unwrap();
        let cat = demo_catalog();
        let mut params = Params::default();
        params.text("before");
        params.text("after");
        let every: Vec<String> = [
            "profiles",
            "households",
            "pets",
            "accounts",
            "profile_identifiers",
        ]
        .iter()
        .map(|t| format!("public.{t}"))
        .collect();
        let sql = dirty_profiles_sql(&graph, &cat, "lg", &mut params, &every).unwrap();
        assert!(sql.contains(
            "SELECT p.id::pg_catalog.text FROM public.profiles p WHERE p.household_id IN (SELECT x.v::bigint FROM (SELECT t.id::pg_catalog.text FROM public.households t WHERE t.id IN (SELECT x.v::bigint FROM (SELECT l.value FROM lg l WHERE l.relation = 'public.pets' AND l.col = 'household_id') x(v))) x(v))"
        ), "{sql}");
        // The external id's type is a parameter.
        assert_eq!(
            params[2],
            crate::compile::sql::ParamValue::Text("email".into())
        );
        assert!(sql.contains("i.type = $3::text"), "{sql}");
    }

    #[test]
    fn only_the_tables_an_audience_reads_are_mapped() {
        let graph = parse(&demo_graph_json()).unwrap();
        let cat = demo_catalog();
        let reads = vec!["public.profiles".to_string(), "public.pets".to_string()];
        let sql = dirty_profiles_sql(&graph, &cat, "lg", &mut Params::default(), &reads).unwrap();
        assert!(sql.contains("l.relation = 'public.pets'"), "{sql}");
        assert!(sql.contains("l.relation = 'public.profiles'"), "{sql}");
        for other in [
            "transactions",
            "credit_cards",
            "accounts",
            "profile_identifiers",
            "events",
            "cart_items",
        ] {
            assert!(
                !sql.contains(&format!("l.relation = 'public.{other}'")),
                "{other}: {sql}"
            );
        }
    }
}
