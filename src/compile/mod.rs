//! The audience compiler: (graph, catalog snapshot, definition) -> SQL text plus
//! parameters. Pure: no SPI. Identifiers come only from the catalog snapshot, already
//! quoted by Postgres; every user value becomes a `$n` parameter.
//!
//! Shape of the SQL: a boolean condition over the profile row `p`. A relationship node
//! is an `EXISTS` semi-join along its path; with a count or an aggregate it is a
//! grouped subquery (`GROUP BY` the join key, `HAVING` the threshold) joined by
//! `EXISTS`, or by `NOT EXISTS` with the negated threshold when profiles without
//! related rows match too (`{"exactly": 0}`, `{"at_most": n}`, `sum < v`). Every
//! condition is read as true or false, never unknown: a predicate in a positive
//! position is left as SQL writes it (a NULL drops the row, as false would, and keeps
//! index conditions and estimates intact), and every `not` is `IS NOT TRUE`, so it
//! selects exactly the rows its operand does not, NULLs included.

pub mod sql;

use crate::audience::model::{
    parse, AggFn, Aggregate, Count, EventNode, Filter, Node, NodeKind, Op, Operand, Predicate,
    RelNode, Subject, Window,
};
use crate::error::{Kind, Problem};
use crate::graph::catalog::{comparable, Catalog, Column, Table};
use crate::graph::joins::{resolve, ResolvedJoin};
use crate::graph::model::{DataGraph, Entity, Join};
use crate::names::{hint_for, path_key};
use serde_json::Value;
use sql::{LiteralCheck, ParamValue};
use std::collections::BTreeMap;

/// What the compiler reads: the graph, the catalog snapshot of its tables, and the
/// stored definitions of other audiences (for `{"audience": key}`).
pub struct Ctx<'a> {
    pub graph: &'a DataGraph,
    pub cat: &'a Catalog,
    pub audiences: &'a BTreeMap<String, Value>,
}

/// The profile table as SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSql {
    pub table: String,
    /// Quoted primary key column.
    pub pk: String,
    /// The primary key's type, to cast text ids back for index lookups.
    pub pk_type: String,
    /// Quoted column sent as userId.
    pub user_id: String,
}

/// How to select the rows of one relationship that satisfy a node, per profile: `FROM
/// {from} WHERE {correlation} AND {conds}`, where `correlation` refers to the profile
/// row as `p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySelect {
    pub relationship: String,
    pub entity: String,
    pub from: String,
    pub correlation: String,
    pub conds: Vec<String>,
    pub target_alias: String,
    /// Quoted primary key column of the entity.
    pub target_pk: String,
}

impl EntitySelect {
    /// `WHERE` body: the correlation to `p` and the conditions.
    pub fn where_sql(&self) -> String {
        let mut all = vec![self.correlation.clone()];
        all.extend(self.conds.iter().cloned());
        all.join(" AND ")
    }
}

/// One node of the definition as compiled (not those inside referenced audiences),
/// for explanations (`la_explain_profile`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSql {
    pub path: String,
    /// The node's condition, over the profile row `p` and, for a node nested under a
    /// relationship node, over that node's row (`scope`'s `candidates.target_alias`).
    pub condition: String,
    /// The path of the enclosing relationship node, for a nested node.
    pub scope: Option<String>,
    /// Relationship node: its rows that pass `where` and the nested conditions. Event
    /// node: the matching events (`target_pk` is the timestamp column).
    pub rows: Option<EntitySelect>,
    /// Relationship node: its rows that pass `where` (those nested nodes are evaluated
    /// for).
    pub candidates: Option<EntitySelect>,
}

/// A compiled audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub profile: ProfileSql,
    /// Boolean SQL over the profile row `p`.
    pub condition: String,
    pub params: Vec<ParamValue>,
    /// Audience keys referenced directly.
    pub depends_on: Vec<String>,
    /// Relationship slugs the definition names.
    pub relationships: Vec<String>,
    pub entity_selects: Vec<EntitySelect>,
    pub literal_checks: Vec<LiteralCheck>,
    /// The members read straight from the events table, when that is the same set
    /// without joining the profiles (see `Compiler::event`).
    pub direct: Option<String>,
    /// Every node of the definition, in the order compiled.
    pub nodes: Vec<NodeSql>,
    /// Every table the audience reads (quoted), including those left out of the SQL.
    pub tables: Vec<String>,
    /// A condition compares with `now()` (`within_last`, `not_within_last`, an event
    /// window `last`): membership changes with the clock, not only with writes.
    pub uses_now: bool,
    /// Those comparisons: whose rows change sides as time passes.
    pub clock: Vec<ClockWindow>,
}

/// A comparison of a timestamp column with `now()` minus an interval: between two
/// computes at `then` and `now`, exactly the rows with a timestamp in
/// `[then - interval, now - interval)` changed sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockWindow {
    /// The table (quoted), the timestamp column (quoted), and the interval as written.
    pub table: String,
    pub column: String,
    pub interval: String,
}

impl Compiled {
    /// The members: one row per profile, `profile_id` as text.
    pub fn members_sql(&self) -> String {
        if let Some(d) = &self.direct {
            return d.clone();
        }
        format!(
            "SELECT p.{pk}::pg_catalog.text AS profile_id\nFROM {t} p\nWHERE {c}",
            pk = self.profile.pk,
            t = self.profile.table,
            c = self.condition
        )
    }

    /// The members among the profiles whose ids (as text) are in `ids` (a relation with a
    /// `profile_id` column): an incremental compute evaluates only those.
    pub fn members_among_sql(&self, ids: &str) -> String {
        format!(
            "SELECT p.{pk}::pg_catalog.text AS profile_id\nFROM {t} p\nWHERE p.{pk} IN (SELECT d.profile_id::{ty} FROM {ids} d) AND {c}",
            pk = self.profile.pk,
            ty = self.profile.pk_type,
            t = self.profile.table,
            c = self.condition
        )
    }

    /// Up to `limit` members (a parameter placeholder) with their traits and up to ten
    /// matched entities per relationship, as one jsonb array.
    pub fn sample_sql(&self, limit: &str) -> String {
        let mut by_slug: Vec<(&str, Vec<&EntitySelect>)> = Vec::new();
        for s in &self.entity_selects {
            match by_slug.iter_mut().find(|(k, _)| *k == s.relationship) {
                Some((_, v)) => v.push(s),
                None => by_slug.push((&s.relationship, vec![s])),
            }
        }
        let entities: Vec<String> = by_slug
            .iter()
            .map(|(slug, selects)| {
                let parts: Vec<String> = selects
                    .iter()
                    .map(|s| {
                        format!(
                            "SELECT {a}.{pk}::pg_catalog.text AS id, pg_catalog.to_jsonb({a}) AS r FROM {f} WHERE {w}",
                            a = s.target_alias,
                            pk = s.target_pk,
                            f = s.from,
                            w = s.where_sql()
                        )
                    })
                    .collect();
                format!(
                    "pg_catalog.jsonb_build_object({}, (SELECT coalesce(pg_catalog.jsonb_agg(x.r ORDER BY x.id), '[]') FROM (SELECT DISTINCT ON (u.id) u.id, u.r FROM ({}) u ORDER BY u.id LIMIT 10) x))",
                    sql::quote_literal(slug),
                    parts.join(" UNION ALL ")
                )
            })
            .collect();
        let entities = if entities.is_empty() {
            "'{}'::pg_catalog.jsonb".to_string()
        } else {
            entities.join(" || ")
        };
        format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(s.row ORDER BY s.ord), '[]') FROM (\
             SELECT p.{pk} AS ord, pg_catalog.jsonb_build_object('profile_id', p.{pk}::pg_catalog.text, \
             'user_id', p.{uid}::pg_catalog.text, 'traits', pg_catalog.to_jsonb(p), 'entities', {entities}) AS row \
             FROM {t} p WHERE {c} ORDER BY p.{pk} LIMIT {limit}) s",
            pk = self.profile.pk,
            uid = self.profile.user_id,
            t = self.profile.table,
            c = self.condition
        )
    }

    pub fn count_sql(&self) -> String {
        if let Some(d) = &self.direct {
            return format!("SELECT pg_catalog.count(*) FROM ({d}) d");
        }
        format!(
            "SELECT pg_catalog.count(*) FROM {} p WHERE {}",
            self.profile.table, self.condition
        )
    }
}

/// Compiles a definition. `own_key` is the key being defined, if any, so that a
/// reference back to it is caught as a cycle.
pub fn compile(
    ctx: &Ctx<'_>,
    def: &Value,
    own_key: Option<&str>,
) -> Result<Compiled, Vec<Problem>> {
    let node = parse(def)?;
    compile_node(ctx, &node, own_key)
}

pub fn compile_node(
    ctx: &Ctx<'_>,
    node: &Node,
    own_key: Option<&str>,
) -> Result<Compiled, Vec<Problem>> {
    compile_node_with(ctx, node, own_key, Strategy::Grouped)
}

/// How counts and aggregates are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Grouped once for all profiles (`GROUP BY` the key, then a semi-join): the plan
    /// for evaluating every profile.
    Grouped,
    /// Per profile, correlated (`EXISTS (SELECT 1 ... WHERE key = p.key HAVING ...)`):
    /// the plan for a few profiles, as an incremental compute evaluates; its cost
    /// follows their rows, not the table's.
    PerProfile,
}

/// Compiles a definition with a strategy for counts and aggregates (same members).
pub fn compile_for(
    ctx: &Ctx<'_>,
    def: &Value,
    own_key: Option<&str>,
    strategy: Strategy,
) -> Result<Compiled, Vec<Problem>> {
    let node = parse(def)?;
    compile_node_with(ctx, &node, own_key, strategy)
}

fn compile_node_with(
    ctx: &Ctx<'_>,
    node: &Node,
    own_key: Option<&str>,
    strategy: Strategy,
) -> Result<Compiled, Vec<Problem>> {
    let Some(profile) = ctx.graph.profile.as_ref() else {
        return Err(vec![Problem::new(
            Kind::NotInPrerequisiteState,
            "$",
            "the Data Graph has no profile table",
        )
        .with_hint(
            "Define the Data Graph first: la_define_data_graph or la_register_profile.",
        )]);
    };
    let Some(table) = ctx.cat.table(&profile.table_ref) else {
        return Err(vec![Problem::new(
            Kind::UndefinedTable,
            "$",
            format!("the profile table \"{}\" does not exist", profile.table_ref),
        )]);
    };
    let col = |name: &str| table.column(name).map(|c| c.quoted.clone());
    let (Some(pk), Some(user_id)) = (
        col(&profile.primary_key),
        col(profile.user_id.as_deref().unwrap_or(&profile.primary_key)),
    ) else {
        return Err(vec![Problem::new(
            Kind::UndefinedColumn,
            "$",
            "the profile table lacks its key columns",
        )]);
    };
    let mut c = Compiler {
        ctx,
        params: Vec::new(),
        checks: Vec::new(),
        problems: Vec::new(),
        aliases: 0,
        stack: own_key.map(|k| vec![k.to_string()]).unwrap_or_default(),
        depends_on: Vec::new(),
        relationships: Vec::new(),
        entity_selects: Vec::new(),
        collect: true,
        top_event: matches!(node.kind, NodeKind::Event(_)),
        direct: None,
        reads: Vec::new(),
        nodes: Vec::new(),
        scopes: Vec::new(),
        pending: None,
        clock: Vec::new(),
        strategy,
    };
    c.read("$".into(), table);
    let scope = vec![Row {
        slug: "profile".into(),
        alias: "p".into(),
        table,
        entity: None,
    }];
    let condition = c.node(node, &scope);
    c.unreadable_tables();
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Compiled {
        profile: ProfileSql {
            table: table.quoted.clone(),
            pk,
            pk_type: table
                .column(&profile.primary_key)
                .map(|c| c.value_type().to_string())
                .unwrap_or_default(),
            user_id,
        },
        condition,
        params: c.params,
        depends_on: c.depends_on,
        relationships: c.relationships,
        entity_selects: c.entity_selects,
        literal_checks: c.checks,
        direct: c.direct,
        nodes: c.nodes,
        tables: c.reads.iter().map(|(_, t)| t.quoted.clone()).collect(),
        uses_now: !c.clock.is_empty(),
        clock: c.clock,
    })
}

/// A row in scope: the profile, or a related row.
#[derive(Clone)]
struct Row<'a> {
    /// "profile", or the relationship slug.
    slug: String,
    alias: String,
    table: &'a Table,
    entity: Option<&'a Entity>,
}

impl Row<'_> {
    fn what(&self) -> String {
        match self.entity {
            Some(e) => format!("entity \"{}\"", e.slug),
            None => "the profile".to_string(),
        }
    }
}

/// A path of joins from a row in scope down to a relationship's rows.
struct Chain<'a> {
    from: String,
    /// Join conditions that are not in `from`'s ON clauses.
    conds: Vec<String>,
    /// The expression inside the subquery that equals `outer`.
    anchor: String,
    /// The expression on the scope row.
    outer: String,
    rows: Vec<Row<'a>>,
    /// Whether one target row can be reached more than once from one anchor value
    /// (a junction, an external id, or a join on a parent column that is not unique):
    /// counts must then be of distinct rows.
    may_repeat: bool,
    /// The same path without its first row, when a foreign key makes that row a pure
    /// pass-through (see `passes_through`): usable when nothing refers to `dropped`.
    short: Option<Short>,
    /// Every table the path joins (entities, junctions, identifiers), even those an
    /// optimization leaves out.
    tables: Vec<&'a Table>,
}

/// A chain's `from` and `anchor` with its first row left out.
struct Short {
    from: String,
    anchor: String,
    dropped: String,
}

/// Whether a row R joined as `P.pa = R.rk` and joined on as `C.cb = R.rk` (the same key)
/// can be left out, `C.cb = P.pa` standing for both joins, without changing any result:
/// a validated foreign key (C.cb or P.pa referencing R.rk, which is then unique) makes
/// R's row exist whenever the direct comparison holds, and R.rk being unique keeps
/// repetitions as they were. The three columns have the same type (or are all
/// integers), so comparing them directly means what comparing through R did. Only when
/// the caller may read R and R has no row-level security: a policy could hide R's row,
/// and a role without SELECT on R must not compute over it.
fn passes_through(p: &Table, pa: &str, r: &Table, rk: &str, c: &Table, cb: &str) -> bool {
    let (Some(a), Some(k), Some(b)) = (p.column(pa), r.column(rk), c.column(cb)) else {
        return false;
    };
    alike(a, k)
        && alike(k, b)
        && r.readable
        && !r.row_security
        && r.unique_on(&[rk])
        && (c.references(cb, r, rk) || p.references(pa, r, rk))
}

/// Whether two columns' values compare and print alike: one type, or both integers
/// (int2, int4, int8).
fn alike(a: &Column, b: &Column) -> bool {
    const INTEGERS: [u32; 3] = [20, 21, 23];
    a.type_oid == b.type_oid || (INTEGERS.contains(&a.type_oid) && INTEGERS.contains(&b.type_oid))
}

/// Whether SQL text refers to a table alias (`alias.` not preceded by a name character).
fn mentions(sql: &str, alias: &str) -> bool {
    let needle = format!("{alias}.");
    sql.match_indices(&needle).any(|(i, _)| {
        !sql[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"')
    })
}

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Text,
    Number,
    Temporal,
    Bool,
    Other,
}

fn class(c: &Column) -> Class {
    match c.category {
        'S' => Class::Text,
        'N' => Class::Number,
        'D' if c.value_type().starts_with("date") || c.value_type().starts_with("timestamp") => {
            Class::Temporal
        }
        'B' => Class::Bool,
        _ => Class::Other,
    }
}

fn ops_for(cls: Class) -> Vec<Op> {
    use Op::*;
    let mut ops = vec![Equals, NotEquals, In, NotIn, IsNull, IsNotNull];
    match cls {
        Class::Text => ops.extend([Contains, NotContains, StartsWith, EndsWith]),
        Class::Number => ops.extend([Gt, Gte, Lt, Lte, Between]),
        Class::Temporal => ops.extend([
            Gt,
            Gte,
            Lt,
            Lte,
            Between,
            WithinLast,
            NotWithinLast,
            Before,
            After,
        ]),
        Class::Bool | Class::Other => {}
    }
    ops
}

fn op_names(ops: &[Op]) -> String {
    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
}

struct Compiler<'a> {
    ctx: &'a Ctx<'a>,
    params: Vec<ParamValue>,
    checks: Vec<LiteralCheck>,
    problems: Vec<Problem>,
    aliases: usize,
    /// Audience keys being compiled, outermost first: a key met again is a cycle.
    stack: Vec<String>,
    depends_on: Vec<String>,
    relationships: Vec<String>,
    entity_selects: Vec<EntitySelect>,
    /// False inside referenced audiences: their entities are not this audience's.
    collect: bool,
    /// The definition is one event condition: it may yield a direct members query.
    top_event: bool,
    /// Every table the audience reads, with the JSON path of the node that reads it
    /// first, including tables an optimization leaves out of the SQL: the caller must be
    /// able to read each (its grants and row-level security decide the members).
    reads: Vec<(String, &'a Table)>,
    /// The nodes compiled so far (see `NodeSql`).
    nodes: Vec<NodeSql>,
    /// Paths of the relationship nodes enclosing the node being compiled.
    scopes: Vec<String>,
    /// The rows and candidates of the relationship or event node just compiled.
    pending: Option<(EntitySelect, Option<EntitySelect>)>,
    /// The comparisons with `now()` (see `ClockWindow`).
    clock: Vec<ClockWindow>,
    strategy: Strategy,
    direct: Option<String>,
}

const FALSE: &str = "false";

impl<'a> Compiler<'a> {
    fn problem(&mut self, p: Problem) -> String {
        self.problems.push(p);
        FALSE.to_string()
    }

    /// Notes a comparison of `table.column` with `now()` minus `interval`.
    fn clock(&mut self, table: &Table, column: &str, interval: &str) {
        let w = ClockWindow {
            table: table.quoted.clone(),
            column: column.to_string(),
            interval: interval.to_string(),
        };
        if !self.clock.contains(&w) {
            self.clock.push(w);
        }
    }

    /// Notes that the audience reads `table` for the node at `path`.
    fn read(&mut self, path: String, table: &'a Table) {
        if !self.reads.iter().any(|(_, t)| t.quoted == table.quoted) {
            self.reads.push((path, table));
        }
    }

    /// A problem (42501) for each table the audience reads that the caller may not.
    fn unreadable_tables(&mut self) {
        let denied: Vec<Problem> = self
            .reads
            .iter()
            .filter(|(_, t)| !t.readable)
            .map(|(path, t)| {
                Problem::new(
                    Kind::InsufficientPrivilege,
                    path.as_str(),
                    format!("permission denied for table {}", t.display()),
                )
                .with_hint(format!(
                    "This audience reads {}: the role that previews or computes it needs SELECT on it (GRANT SELECT ON {} TO ...).",
                    t.display(),
                    t.quoted
                ))
            })
            .collect();
        self.problems.extend(denied);
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    fn param(&mut self, v: ParamValue) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    fn text_param(&mut self, s: &str) -> String {
        self.param(ParamValue::Text(s.to_string()))
    }

    /// `$n::type`: every value is typed in the SQL, so preview (which binds text), the
    /// displayed SQL (which inlines literals) and compute all compare by the same type.
    fn typed_param(&mut self, s: &str, sql_type: &str) -> String {
        let p = self.text_param(s);
        format!("{p}::{sql_type}")
    }

    /// A value compared with `column`, typed as the column (see `Column::value_type`).
    fn column_value(&mut self, s: &str, column: &Column) -> String {
        self.typed_param(s, column.value_type())
    }

    // ---- nodes -------------------------------------------------------------------

    fn node(&mut self, n: &Node, scope: &[Row<'a>]) -> String {
        let sql = self.node_body(n, scope);
        if !matches!(n.kind, NodeKind::Relationship(_) | NodeKind::Event(_)) {
            self.record(&n.path, &sql);
        }
        sql
    }

    /// Notes a node's condition (and the rows of a relationship or event node just
    /// compiled), unless inside a referenced audience.
    fn record(&mut self, path: &str, condition: &str) {
        let pending = self.pending.take();
        if !self.collect {
            return;
        }
        let (rows, candidates) = match pending {
            Some((r, c)) => (Some(r), c),
            None => (None, None),
        };
        self.nodes.push(NodeSql {
            path: path.to_string(),
            condition: condition.to_string(),
            scope: self.scopes.last().cloned(),
            rows,
            candidates,
        });
    }

    fn node_body(&mut self, n: &Node, scope: &[Row<'a>]) -> String {
        match &n.kind {
            NodeKind::All(items) | NodeKind::Any(items) => {
                let (joiner, empty) = if matches!(n.kind, NodeKind::All(_)) {
                    (" AND ", "true")
                } else {
                    (" OR ", "false")
                };
                if items.is_empty() {
                    return empty.to_string();
                }
                let parts: Vec<String> = items.iter().map(|c| self.node(c, scope)).collect();
                format!("({})", parts.join(joiner))
            }
            NodeKind::Not(inner) => format!("({}) IS NOT TRUE", self.node(inner, scope)),
            NodeKind::Trait(pred) => {
                let row = scope[0].clone();
                self.predicate(pred, &row, &scope[..1], "trait")
            }
            NodeKind::Audience { key, member } => {
                let cond = self.audience(key, &n.path, scope);
                if *member {
                    cond
                } else {
                    format!("({cond}) IS NOT TRUE")
                }
            }
            NodeKind::Relationship(r) => self.rel_node(r, scope, None),
            NodeKind::Event(e) => self.event(e, scope),
        }
    }

    fn audience(&mut self, key: &str, path: &str, scope: &[Row<'a>]) -> String {
        let at = path_key(path, "audience");
        if let Some(i) = self.stack.iter().position(|k| k == key) {
            let mut cycle: Vec<&str> = self.stack[i..].iter().map(String::as_str).collect();
            cycle.push(key);
            return self.problem(
                Problem::invalid(
                    at,
                    format!(
                        "cycle: audience references form a loop ({})",
                        cycle.join(" -> ")
                    ),
                )
                .with_hint("Audience references must form a DAG."),
            );
        }
        let Some(def) = self.ctx.audiences.get(key) else {
            let hint = hint_for(
                key,
                self.ctx.audiences.keys().map(String::as_str),
                "audiences",
            );
            return self.problem(
                Problem::invalid(at, format!("audience \"{key}\" does not exist"))
                    .with_opt_hint(hint),
            );
        };
        if self.stack.len() <= 1 && !self.depends_on.iter().any(|k| k == key) {
            self.depends_on.push(key.to_string());
        }
        let node = match parse(def) {
            Ok(n) => n,
            Err(ps) => {
                return self.problem(Problem::invalid(
                    at,
                    format!(
                        "audience \"{key}\" does not parse: {}",
                        ps[0].full_message()
                    ),
                ))
            }
        };
        let before = self.problems.len();
        let collect = std::mem::replace(&mut self.collect, false);
        self.stack.push(key.to_string());
        let cond = self.node(&node, &scope[..1]);
        self.stack.pop();
        self.collect = collect;
        if self.problems.len() > before {
            let inner: Vec<Problem> = self.problems.drain(before..).collect();
            // A cycle found deeper is reported as is; anything else is the referenced
            // audience's own problem.
            if let Some(cycle) = inner.iter().find(|p| p.message.starts_with("cycle:")) {
                let msg = cycle.message.clone();
                return self.problem(
                    Problem::invalid(path_key(path, "audience"), msg)
                        .with_hint("Audience references must form a DAG."),
                );
            }
            return self.problem(
                Problem::invalid(
                    at,
                    format!(
                        "audience \"{key}\" no longer compiles: {}",
                        inner[0].full_message()
                    ),
                )
                .with_opt_hint(inner[0].hint.clone()),
            );
        }
        format!("({cond})")
    }

    /// The relationship rows below the scope row down to `slug`.
    fn hops(&mut self, slug: &str, at: &str, scope: &[Row<'a>]) -> Option<Vec<String>> {
        let graph = self.ctx.graph;
        let current = scope.last().expect("scope has the profile");
        let Some(full) = graph.path_to(slug) else {
            let all: Vec<String> = graph
                .relationships()
                .iter()
                .map(|p| p.rel.slug.clone())
                .collect();
            let hint = hint_for(slug, all.iter().map(String::as_str), "relationships");
            self.problem(
                Problem::invalid(at, format!("relationship \"{slug}\" does not exist"))
                    .with_opt_hint(hint),
            );
            return None;
        };
        let base = if current.entity.is_none() {
            Vec::new()
        } else {
            graph.path_to(&current.slug).unwrap_or_default()
        };
        if full.len() <= base.len() || full[..base.len()] != base[..] {
            let below: Vec<String> = graph
                .relationships()
                .iter()
                .filter(|p| {
                    graph
                        .path_to(&p.rel.slug)
                        .is_some_and(|t| t.len() > base.len() && t[..base.len()] == base[..])
                })
                .map(|p| p.rel.slug.clone())
                .collect();
            let hint = if below.is_empty() {
                format!("Nothing is related below \"{}\".", current.slug)
            } else {
                format!(
                    "Relationships below \"{}\": {}.",
                    current.slug,
                    below.join(", ")
                )
            };
            self.problem(
                Problem::invalid(
                    at,
                    format!("relationship \"{slug}\" is not below \"{}\"", current.slug),
                )
                .with_hint(hint),
            );
            return None;
        }
        Some(full[base.len()..].to_vec())
    }

    /// Builds the joins for `hops` starting at the scope row.
    fn chain(&mut self, hops: &[String], scope: &[Row<'a>]) -> Option<Chain<'a>> {
        let graph = self.ctx.graph;
        let cat = self.ctx.cat;
        let mut from = String::new();
        let mut conds = Vec::new();
        let mut rows: Vec<Row<'a>> = Vec::new();
        let mut tables: Vec<&'a Table> = Vec::new();
        let (mut anchor, mut outer) = (String::new(), String::new());
        let mut may_repeat = false;
        let mut short: Option<Short> = None;
        // The first hop's join columns, when it is a direct join: (parent's, its own).
        let mut first_direct: Option<(String, String)> = None;
        let internal = |what: String| {
            Problem::new(
                Kind::Internal,
                "$",
                format!("linked_audiences internal error: {what}"),
            )
        };
        // Co-location: on each hop where both sides carry a profile key (the profile's
        // primary key for the profile, `profile_key` for entities and junctions), the
        // keys are equated too: Citus joins distributed tables only on their
        // distribution column. Hops to tables without one join as written.
        for (i, slug) in hops.iter().enumerate() {
            let placed = graph.relationship(slug)?;
            let entity = graph.entity(&placed.rel.related_entity)?;
            let Some(table) = cat.table(&entity.table_ref) else {
                self.problems.push(internal(format!(
                    "table {} of entity {} missing",
                    entity.table_ref, entity.slug
                )));
                return None;
            };
            tables.push(table);
            let alias = self.alias("r");
            let parent = if i == 0 {
                scope.last().cloned()?
            } else {
                rows[i - 1].clone()
            };
            let join = match resolve(&placed) {
                Ok(j) => j,
                Err(e) => {
                    self.problems.push(internal(e.message));
                    return None;
                }
            };
            let col = |t: &Table, name: &str| t.column(name).map(|c| c.quoted.clone());
            let mut on: Vec<String> = Vec::new();
            let mut piece = String::new();
            // The profile keys of this hop's parent and child rows, when they carry one.
            let parent_key = profile_key_name(graph, &parent);
            let child_key = entity
                .profile_key
                .as_deref()
                .filter(|k| table.column(k).is_some());
            may_repeat |= match &join {
                // Unique on the join column, or on it together with the profile key when
                // the hop equates keys (a primary key unique per profile on Citus).
                ResolvedJoin::Direct { parent_column, .. } => {
                    i > 0
                        && !parent.table.unique_on(&[parent_column.as_str()])
                        && !(child_key.is_some()
                            && parent_key.as_deref().is_some_and(|k| {
                                parent.table.unique_on(&[parent_column.as_str(), k])
                            }))
                }
                // One identifier row per (profile, type, value) reaches each row once.
                ResolvedJoin::ExternalId { .. } => !graph
                    .profile
                    .as_ref()
                    .and_then(|p| p.identifiers.as_ref())
                    .and_then(|ids| {
                        let t = cat.table(&ids.table_ref)?;
                        Some(t.unique_on(&[&ids.profile_key, &ids.type_column, &ids.value_column]))
                    })
                    .unwrap_or(false),
                ResolvedJoin::Junction { .. } => true,
            };
            let mut through: Option<bool> = None;
            let mut keyed_junction = false;
            let (a, o) = match join {
                ResolvedJoin::Direct {
                    parent_column,
                    child_column,
                } => {
                    let pc = col(parent.table, &parent_column)?;
                    let cc = col(table, &child_column)?;
                    piece.push_str(&format!("{} {alias}", table.quoted));
                    if i == 0 {
                        first_direct = Some((parent_column.clone(), child_column.clone()));
                    } else if i == 1 {
                        through = Some(first_direct.as_ref().is_some_and(|(pa, rk)| {
                            *rk == parent_column
                                && passes_through(
                                    scope.last().map(|r| r.table).unwrap_or(parent.table),
                                    pa,
                                    parent.table,
                                    rk,
                                    table,
                                    &child_column,
                                )
                        }));
                    }
                    (format!("{alias}.{cc}"), format!("{}.{pc}", parent.alias))
                }
                ResolvedJoin::ExternalId {
                    id_type,
                    child_column,
                } => {
                    let profile = graph.profile.as_ref()?;
                    let ids = profile.identifiers.as_ref()?;
                    let it = cat.table(&ids.table_ref)?;
                    tables.push(it);
                    let ia = self.alias("i");
                    let cc = col(table, &child_column)?;
                    let key = col(it, &ids.profile_key)?;
                    let ty_col = it.column(&ids.type_column)?;
                    let (ty, eq) = (ty_col.quoted.clone(), ty_col.op("="));
                    let val = col(it, &ids.value_column)?;
                    let p = self.column_value(&id_type, ty_col);
                    piece.push_str(&format!(
                        "{it} {ia} JOIN {t} {alias} ON {alias}.{cc} = {ia}.{val} AND {ia}.{ty} {eq} {p}",
                        it = it.quoted,
                        t = table.quoted
                    ));
                    let ppk = col(parent.table, &profile.primary_key)?;
                    (format!("{ia}.{key}"), format!("{}.{ppk}", parent.alias))
                }
                ResolvedJoin::Junction {
                    table_ref,
                    parent_column,
                    left_column,
                    right_column,
                    child_column,
                } => {
                    let jt = cat.table(&table_ref)?;
                    tables.push(jt);
                    let ja = self.alias("j");
                    let pc = col(parent.table, &parent_column)?;
                    let lc = col(jt, &left_column)?;
                    let rc = col(jt, &right_column)?;
                    let cc = col(table, &child_column)?;
                    // The junction's own profile key: equated with each side that has one.
                    let jk = match &placed.rel.join {
                        Join::Junction(j) => j.profile_key.as_deref().and_then(|k| col(jt, k)),
                        _ => None,
                    };
                    let mut inner = format!("{alias}.{cc} = {ja}.{rc}");
                    if let Some(jk) = &jk {
                        if let Some(ck) = child_key.and_then(|k| col(table, k)) {
                            if (&ck, jk) != (&cc, &rc) {
                                inner.push_str(&format!(" AND {alias}.{ck} = {ja}.{jk}"));
                            }
                        }
                        if let Some(ppk) = parent_key.as_deref().and_then(|k| col(parent.table, k))
                        {
                            on.push(format!("{ja}.{jk} = {}.{ppk}", parent.alias));
                        }
                    }
                    piece.push_str(&format!(
                        "{} {ja} JOIN {} {alias} ON {inner}",
                        jt.quoted, table.quoted
                    ));
                    keyed_junction = jk.is_some();
                    (format!("{ja}.{lc}"), format!("{}.{pc}", parent.alias))
                }
            };
            // The child's key equals the parent's, unless a junction with a key of its
            // own carries the equality across (junction = parent, child = junction).
            if !keyed_junction {
                if let (Some(ck), Some(ppk)) = (
                    child_key.and_then(|k| col(table, k)),
                    parent_key.as_deref().and_then(|k| col(parent.table, k)),
                ) {
                    on.push(format!("{alias}.{ck} = {}.{ppk}", parent.alias));
                }
            }
            // A join on the profile key itself needs no second equality.
            on.retain(|c| *c != format!("{a} = {o}"));
            if i == 0 {
                from = piece;
                anchor = a;
                outer = o;
                conds.extend(on);
            } else {
                // Not when this hop equates profile keys with the row left out.
                if through == Some(true) && on.is_empty() {
                    short = Some(Short {
                        from: piece.clone(),
                        anchor: a.clone(),
                        dropped: rows[0].alias.clone(),
                    });
                } else if let Some(s) = short.as_mut() {
                    let mut on = on.clone();
                    on.insert(0, format!("{a} = {o}"));
                    s.from
                        .push_str(&format!(" JOIN {piece} ON {}", on.join(" AND ")));
                }
                on.insert(0, format!("{a} = {o}"));
                from.push_str(&format!(" JOIN {piece} ON {}", on.join(" AND ")));
            }
            rows.push(Row {
                slug: slug.clone(),
                alias,
                table,
                entity: Some(entity),
            });
        }
        Some(Chain {
            from,
            conds,
            anchor,
            outer,
            rows,
            may_repeat,
            short,
            tables,
        })
    }

    /// A relationship node at the scope row. `lineage` is how the scope row is reached
    /// from the profile, for the entity selects of nested nodes.
    fn rel_node(
        &mut self,
        n: &RelNode,
        scope: &[Row<'a>],
        lineage: Option<&EntitySelect>,
    ) -> String {
        self.pending = None;
        self.scopes.push(n.path.clone());
        let sql = self.rel_node_body(n, scope, lineage);
        self.scopes.pop();
        self.record(&n.path, &sql);
        sql
    }

    fn rel_node_body(
        &mut self,
        n: &RelNode,
        scope: &[Row<'a>],
        lineage: Option<&EntitySelect>,
    ) -> String {
        let at = path_key(&n.path, "relationship");
        let Some(hops) = self.hops(&n.slug, &at, scope) else {
            return FALSE.into();
        };
        let Some(chain) = self.chain(&hops, scope) else {
            return FALSE.into();
        };
        for t in chain.tables.clone() {
            self.read(at.clone(), t);
        }
        if !self.relationships.contains(&n.slug) {
            self.relationships.push(n.slug.clone());
        }
        let target = chain
            .rows
            .last()
            .cloned()
            .expect("a chain has one row at least");
        let mut ancestors: Vec<Row<'a>> = scope.to_vec();
        ancestors.extend(chain.rows[..chain.rows.len() - 1].iter().cloned());
        let mut row_conds = chain.conds.clone();
        if let Some(f) = &n.filter {
            let w = self.filter(f, &target, &ancestors);
            row_conds.push(w);
        }
        let where_only = row_conds.clone();
        let mut nested_scope = ancestors.clone();
        nested_scope.push(target.clone());
        // The entity select of this node: how its rows are reached from the profile.
        let select = EntitySelect {
            relationship: n.slug.clone(),
            entity: target.entity.map(|e| e.slug.clone()).unwrap_or_default(),
            from: match lineage {
                None => chain.from.clone(),
                Some(l) => format!("{}, {}", l.from, chain.from),
            },
            correlation: match lineage {
                None => format!("{} = {}", chain.anchor, chain.outer),
                Some(l) => l.correlation.clone(),
            },
            conds: match lineage {
                None => where_only.clone(),
                Some(l) => {
                    let mut c = l.conds.clone();
                    c.push(format!("{} = {}", chain.anchor, chain.outer));
                    c.extend(where_only.iter().cloned());
                    c
                }
            },
            target_alias: target.alias.clone(),
            target_pk: target
                .entity
                .and_then(|e| target.table.column(&e.primary_key))
                .map(|c| c.quoted.clone())
                .unwrap_or_default(),
        };
        for child in &n.relationships {
            let c = self.rel_node(child, &nested_scope, Some(&select));
            row_conds.push(c);
        }
        let mut full = select.clone();
        full.conds
            .extend(row_conds[where_only.len()..].iter().cloned());
        if self.collect {
            self.entity_selects.push(full.clone());
        }
        self.pending = Some((full, Some(select.clone())));
        // The path without its pass-through first row, unless a condition refers to it.
        let (path_from, path_anchor) = match &chain.short {
            Some(s) if !row_conds.iter().any(|c| mentions(c, &s.dropped)) => {
                (s.from.clone(), s.anchor.clone())
            }
            _ => (chain.from.clone(), chain.anchor.clone()),
        };
        let count = n.count.or(if n.aggregate.is_none() {
            Some(Count::AtLeast(1))
        } else {
            None
        });
        if count == Some(Count::AtLeast(1)) && n.aggregate.is_none() {
            return exists(&path_from, &path_anchor, &chain.outer, &row_conds);
        }
        // An aggregate over rows that can repeat runs over each (key, row) once: the
        // rows are made distinct first, then counted as they come.
        let agg_column = n
            .aggregate
            .as_ref()
            .and_then(|a| target.table.column(&a.column))
            .map(|c| c.quoted.clone());
        let dedupe = chain.may_repeat && agg_column.is_some();
        let d = if dedupe {
            self.alias("d")
        } else {
            String::new()
        };
        let (from, anchor, conds) = if dedupe {
            let where_sql = if row_conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", row_conds.join(" AND "))
            };
            (
                format!(
                    "(SELECT DISTINCT ON (1, 2) {anchor} AS k, {t}.{pk} AS row_key, {t}.{col} AS v FROM {from}{where_sql}) {d}",
                    anchor = path_anchor,
                    t = target.alias,
                    pk = select.target_pk,
                    col = agg_column.clone().unwrap_or_default(),
                    from = path_from,
                ),
                format!("{d}.k"),
                Vec::new(),
            )
        } else {
            (path_from, path_anchor, row_conds.clone())
        };
        let mut having = Vec::new();
        let mut empty_holds = true;
        if let Some(cnt) = count {
            let p = self.text_param(&cnt.threshold().to_string());
            // Rows that cannot repeat are counted as they come (a hash aggregate);
            // otherwise distinct primary keys.
            let counted = if chain.may_repeat && !dedupe {
                format!(
                    "pg_catalog.count(DISTINCT {}.{})",
                    target.alias, select.target_pk
                )
            } else {
                "pg_catalog.count(*)".to_string()
            };
            having.push(format!("{counted} {} {p}::pg_catalog.int8", cnt.sql_op()));
            empty_holds &= cnt.holds(0);
        }
        if let Some(agg) = &n.aggregate {
            let value = dedupe.then(|| format!("{d}.v"));
            match self.aggregate(agg, &target, value.as_deref()) {
                Some((sql, holds)) => {
                    having.push(sql);
                    empty_holds &= holds;
                }
                None => return FALSE.into(),
            }
        }
        let g = self.alias("g");
        if self.strategy == Strategy::PerProfile {
            return per_profile(&from, &anchor, &chain.outer, &conds, &having.join(" AND "));
        }
        grouped(
            &from,
            &anchor,
            &chain.outer,
            &conds,
            &having.join(" AND "),
            empty_holds,
            &g,
        )
    }

    fn event(&mut self, e: &EventNode, scope: &[Row<'a>]) -> String {
        self.pending = None;
        let sql = self.event_body(e, scope);
        self.record(&e.path, &sql);
        sql
    }

    fn event_body(&mut self, e: &EventNode, scope: &[Row<'a>]) -> String {
        let top = std::mem::take(&mut self.top_event);
        let at = path_key(&e.path, "event");
        let graph = self.ctx.graph;
        let Some(ev) = graph.events.as_ref() else {
            return self.problem(
                Problem::new(
                    Kind::NotInPrerequisiteState,
                    at,
                    "the Data Graph has no event source",
                )
                .with_hint("Add \"events\" to the graph or call la_register_event_source."),
            );
        };
        let Some(table) = self.ctx.cat.table(&ev.table_ref) else {
            return FALSE.into();
        };
        self.read(at.to_string(), table);
        let col = |name: &str| table.column(name).map(|c| c.quoted.clone());
        let (Some(key), Some(name_col), Some(ts)) = (
            col(&ev.profile_key),
            col(&ev.name_column),
            col(&ev.timestamp_column),
        ) else {
            return FALSE.into();
        };
        let profile = &scope[0];
        let pk = graph
            .profile
            .as_ref()
            .and_then(|p| profile.table.column(&p.primary_key))
            .map(|c| c.quoted.clone())
            .unwrap_or_default();
        let alias = self.alias("e");
        let row = Row {
            slug: "events".into(),
            alias: alias.clone(),
            table,
            entity: None,
        };
        let name_column = table.column(&ev.name_column).expect("checked above");
        let name = self.column_value(&e.name, name_column);
        let eq = name_column.op("=");
        let mut conds = vec![format!("{alias}.{name_col} {eq} {name}")];
        if let Some(w) = &e.within {
            let ts_col = table
                .column(&ev.timestamp_column)
                .expect("checked above")
                .clone();
            let wp = path_key(&e.path, "within");
            let lit =
                |c: &mut Self, key: &str, v: &str| c.typed_text(v, &ts_col, &path_key(&wp, key));
            let cond = match w {
                Window::Last(i) => {
                    let p = self.interval(i, &path_key(&wp, "last"));
                    self.clock(table, &ts, i);
                    format!("{alias}.{ts} >= pg_catalog.now() - {p}")
                }
                Window::After(t) => format!("{alias}.{ts} > {}", lit(self, "after", t)),
                Window::Before(t) => format!("{alias}.{ts} < {}", lit(self, "before", t)),
                Window::Between(a, b) => {
                    let lo = lit(self, "between[0]", a);
                    let hi = lit(self, "between[1]", b);
                    format!("{alias}.{ts} BETWEEN {lo} AND {hi}")
                }
            };
            conds.push(cond);
        }
        if let Some(f) = &e.filter {
            let w = self.filter(f, &row, &scope[..1]);
            conds.push(w);
        }
        let from = format!("{} {alias}", table.quoted);
        let anchor = format!("{alias}.{key}");
        let outer = format!("{}.{pk}", profile.alias);
        self.pending = Some((
            EntitySelect {
                relationship: String::new(),
                entity: "events".into(),
                from: from.clone(),
                correlation: format!("{anchor} = {outer}"),
                conds: conds.clone(),
                target_alias: alias.clone(),
                target_pk: ts.clone(),
            },
            None,
        ));
        match e.count.unwrap_or(Count::AtLeast(1)) {
            Count::AtLeast(1) => exists(&from, &anchor, &outer, &conds),
            cnt => {
                let p = self.text_param(&cnt.threshold().to_string());
                let having = format!("pg_catalog.count(*) {} {p}::pg_catalog.int8", cnt.sql_op());
                let g = self.alias("g");
                // The whole definition is "at least n such events": the grouped keys are
                // the members themselves when a foreign key makes each one a profile that
                // the caller sees (readable, no row-level security) and it prints as the
                // profile key does (same type, or integers). Joining the profiles back,
                // as the general form does, would only cost a scan of them.
                let key_col = table.column(&ev.profile_key);
                let pk_col = graph
                    .profile
                    .as_ref()
                    .and_then(|p| profile.table.column(&p.primary_key));
                if let (true, Some(kc), Some(pc)) = (top, key_col, pk_col) {
                    if !cnt.holds(0)
                        && alike(kc, pc)
                        && profile.table.readable
                        && !profile.table.row_security
                        && table.references(&ev.profile_key, profile.table, &pc.name)
                        && !conds.iter().any(|c| mentions(c, &profile.alias))
                    {
                        self.direct = Some(format!(
                            "SELECT {g}.k::pg_catalog.text AS profile_id\nFROM (SELECT {anchor} AS k FROM {from} WHERE {w} GROUP BY 1 HAVING {having}) {g}\nWHERE {g}.k IS NOT NULL",
                            w = conds.join(" AND "),
                        ));
                    }
                }
                if self.strategy == Strategy::PerProfile {
                    return per_profile(&from, &anchor, &outer, &conds, &having);
                }
                grouped(&from, &anchor, &outer, &conds, &having, cnt.holds(0), &g)
            }
        }
    }

    // ---- aggregates ----------------------------------------------------------------

    /// The HAVING expression of an aggregate and whether it holds over no rows.
    fn aggregate(
        &mut self,
        a: &Aggregate,
        target: &Row<'a>,
        value: Option<&str>,
    ) -> Option<(String, bool)> {
        let cp = path_key(&a.path, "column");
        let Some(column) = target.table.column(&a.column).cloned() else {
            let hint = hint_for(
                &a.column,
                target.table.column_names(),
                &format!("columns of {}", target.what()),
            );
            self.problem(
                Problem::new(
                    Kind::UndefinedColumn,
                    cp,
                    format!(
                        "column \"{}\" does not exist on {}",
                        a.column,
                        target.what()
                    ),
                )
                .with_opt_hint(hint),
            );
            return None;
        };
        let cls = class(&column);
        let numeric_only = matches!(a.func, AggFn::Sum | AggFn::Avg);
        if numeric_only && cls != Class::Number
            || matches!(a.func, AggFn::Min | AggFn::Max)
                && matches!(cls, Class::Bool | Class::Other)
        {
            self.problem(Problem::invalid(
                cp,
                format!(
                    "cannot take {:?} of column \"{}\" ({})",
                    a.func, column.name, column.type_name
                )
                .to_lowercase(),
            ));
            return None;
        }
        let c = value.map_or_else(
            || format!("{}.{}", target.alias, column.quoted),
            str::to_string,
        );
        let (expr, value_col, empty): (String, Option<Column>, Option<f64>) = match a.func {
            AggFn::Sum => (format!("coalesce(pg_catalog.sum({c}), 0)"), None, Some(0.0)),
            AggFn::Avg => (format!("pg_catalog.avg({c})"), None, None),
            AggFn::Min => (format!("pg_catalog.min({c})"), Some(column.clone()), None),
            AggFn::Max => (format!("pg_catalog.max({c})"), Some(column.clone()), None),
            AggFn::CountDistinct => (format!("pg_catalog.count(DISTINCT {c})"), None, Some(0.0)),
        };
        let vp = path_key(&a.path, "value");
        let num = |s: &mut Self, v: &Value, path: &str| -> Option<(String, f64)> {
            match (&value_col, v) {
                (Some(col), _) => {
                    let sql = s.literal(v, col, class(col), path)?;
                    Some((sql, v.as_f64().unwrap_or(0.0)))
                }
                (None, Value::Number(n)) => {
                    let p = s.text_param(&n.to_string());
                    Some((
                        format!("{p}::pg_catalog.numeric"),
                        n.as_f64().unwrap_or(0.0),
                    ))
                }
                (None, other) => {
                    s.problem(Problem::invalid(
                        path,
                        format!("expected a number, got {}", crate::json::type_name(other)),
                    ));
                    None
                }
            }
        };
        let (sql, holds) = if a.op == Op::Between {
            let Some(pair) = a.value.as_array().filter(|v| v.len() == 2) else {
                self.problem(Problem::invalid(vp, "between takes [low, high]"));
                return None;
            };
            let (lo, l) = num(self, &pair[0], &format!("{vp}[0]"))?;
            let (hi, h) = num(self, &pair[1], &format!("{vp}[1]"))?;
            (
                format!("{expr} BETWEEN {lo} AND {hi}"),
                empty.is_some_and(|z| l <= z && z <= h),
            )
        } else {
            let (v, x) = num(self, &a.value, &vp)?;
            let (sym, holds) = match a.op {
                Op::Equals => ("=", empty.is_some_and(|z| z == x)),
                Op::NotEquals => ("<>", empty.is_some_and(|z| z != x)),
                Op::Gt => (">", empty.is_some_and(|z| z > x)),
                Op::Gte => (">=", empty.is_some_and(|z| z >= x)),
                Op::Lt => ("<", empty.is_some_and(|z| z < x)),
                _ => ("<=", empty.is_some_and(|z| z <= x)),
            };
            (format!("{expr} {sym} {v}"), holds)
        };
        Some((format!("({sql})"), holds))
    }

    // ---- filters and predicates -------------------------------------------------

    fn filter(&mut self, f: &Filter, row: &Row<'a>, ancestors: &[Row<'a>]) -> String {
        match f {
            Filter::All(items) | Filter::Any(items) => {
                let (joiner, empty) = if matches!(f, Filter::All(_)) {
                    (" AND ", "true")
                } else {
                    (" OR ", "false")
                };
                if items.is_empty() {
                    return empty.into();
                }
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| self.filter(i, row, ancestors))
                    .collect();
                format!("({})", parts.join(joiner))
            }
            Filter::Not(inner) => format!("({}) IS NOT TRUE", self.filter(inner, row, ancestors)),
            Filter::Pred(p) => self.predicate(p, row, ancestors, "column"),
        }
    }

    fn predicate(
        &mut self,
        p: &Predicate,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
        subject_key: &str,
    ) -> String {
        let name = match &p.subject {
            Subject::Property(path) => return self.property(p, path, row),
            Subject::Column(name) => name,
        };
        let sp = path_key(&p.path, subject_key);
        let Some(column) = row.table.column(name).cloned() else {
            let (msg, what) = if subject_key == "trait" {
                (
                    format!(
                        "trait \"{name}\" does not exist on the profile table {}",
                        row.table.display()
                    ),
                    "traits".to_string(),
                )
            } else if row.slug == "events" {
                (
                    format!(
                        "column \"{name}\" does not exist on the events table {}",
                        row.table.display()
                    ),
                    "columns".to_string(),
                )
            } else {
                (
                    format!("column \"{name}\" does not exist on {}", row.what()),
                    format!("columns of {}", row.what()),
                )
            };
            let hint = hint_for(name, row.table.column_names(), &what);
            return self.problem(Problem::new(Kind::UndefinedColumn, sp, msg).with_opt_hint(hint));
        };
        let cls = class(&column);
        let allowed = ops_for(cls);
        if !allowed.contains(&p.op) {
            return self.problem(
                Problem::invalid(
                    path_key(&p.path, "op"),
                    format!(
                        "operator \"{}\" does not apply to \"{}\" ({})",
                        p.op.name(),
                        column.name,
                        column.type_name
                    ),
                )
                .with_hint(format!(
                    "Operators for {}: {}.",
                    column.type_name,
                    op_names(&allowed)
                )),
            );
        }
        if p.case_insensitive && cls != Class::Text {
            return self.problem(Problem::invalid(
                path_key(&p.path, "case_insensitive"),
                format!(
                    "case_insensitive applies to text columns, and \"{}\" is {}",
                    column.name, column.type_name
                ),
            ));
        }
        let e = format!("{}.{}", row.alias, column.quoted);
        let ci = p.case_insensitive;
        let low = |s: &str| {
            if ci {
                format!("pg_catalog.lower({s})")
            } else {
                s.to_string()
            }
        };
        let vp = path_key(&p.path, "value");
        // The column type's own operators (citext's `=` is case-insensitive); with
        // case_insensitive both sides are lower()ed text, compared as text.
        let sym = |name: &str| {
            if ci {
                name.to_string()
            } else {
                column.op(name)
            }
        };
        match p.op {
            Op::IsNull => format!("({e} IS NULL)"),
            Op::IsNotNull => format!("({e} IS NOT NULL)"),
            Op::In | Op::NotIn => {
                let Some(list) = self.list(p.value.as_ref(), &column, cls, &vp) else {
                    return FALSE.into();
                };
                let cond = if ci {
                    format!(
                        "{} = ANY (SELECT pg_catalog.lower(x) FROM pg_catalog.unnest({list}) x)",
                        low(&e)
                    )
                } else {
                    format!("{e} {} ANY ({list})", sym("="))
                };
                if p.op == Op::In {
                    format!("({cond})")
                } else {
                    format!("NOT coalesce({cond}, false)")
                }
            }
            Op::Between => {
                let Some(Operand::Literal(Value::Array(pair))) = p
                    .value
                    .as_ref()
                    .filter(|v| matches!(v, Operand::Literal(Value::Array(a)) if a.len() == 2))
                else {
                    return self.problem(Problem::invalid(
                        vp,
                        "between takes a two-element array [low, high]",
                    ));
                };
                let lo = self.literal(&pair[0], &column, cls, &format!("{vp}[0]"));
                let hi = self.literal(&pair[1], &column, cls, &format!("{vp}[1]"));
                match (lo, hi) {
                    (Some(lo), Some(hi)) if column.has_own_op(">=") || column.has_own_op("<=") => {
                        format!("({e} {} {lo} AND {e} {} {hi})", sym(">="), sym("<="))
                    }
                    (Some(lo), Some(hi)) => format!("({e} BETWEEN {lo} AND {hi})"),
                    _ => FALSE.into(),
                }
            }
            Op::WithinLast | Op::NotWithinLast => {
                let Some(Operand::Literal(Value::String(i))) = &p.value else {
                    return self.problem(Problem::invalid(
                        vp,
                        "expected an interval such as \"30 days\"",
                    ));
                };
                let iv = self.interval(i, &vp);
                self.clock(row.table, &column.quoted, i);
                if p.op == Op::WithinLast {
                    format!("({e} >= pg_catalog.now() - {iv})")
                } else {
                    format!("({e} < pg_catalog.now() - {iv})")
                }
            }
            op => {
                // Pattern operators take the value as text, as written (a char(n)
                // value is not padded or trimmed).
                let text_value = match p.value.as_ref() {
                    Some(Operand::Literal(Value::String(t)))
                        if matches!(
                            op,
                            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith
                        ) =>
                    {
                        Some(self.typed_param(t, "pg_catalog.text"))
                    }
                    _ => None,
                };
                let v = match text_value {
                    Some(v) => v,
                    None => match self.operand(p.value.as_ref(), &column, cls, &vp, row, ancestors)
                    {
                        Some(v) => v,
                        None => return FALSE.into(),
                    },
                };
                let (l, r) = (low(&e), low(&v));
                let own_eq = !ci && column.has_own_op("=");
                match p.op {
                    Op::Equals => format!("({l} {} {r})", sym("=")),
                    // IS DISTINCT FROM would look `=` up by name, missing the type's own.
                    Op::NotEquals if own_eq => format!(
                        "(({l} {} {r}) IS NOT TRUE AND ({l} IS NOT NULL OR {r} IS NOT NULL))",
                        sym("=")
                    ),
                    Op::NotEquals => format!("({l} IS DISTINCT FROM {r})"),
                    Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                        self.pattern(p.op, &e, &v, &column, ci)
                    }
                    Op::Gt | Op::After => format!("({e} {} {v})", sym(">")),
                    Op::Gte => format!("({e} {} {v})", sym(">=")),
                    Op::Lt | Op::Before => format!("({e} {} {v})", sym("<")),
                    Op::Lte => format!("({e} {} {v})", sym("<=")),
                    _ => unreachable!("handled above"),
                }
            }
        }
    }

    /// `contains`, `not_contains`, `starts_with`, `ends_with` on a text column `e`
    /// against `v`. A type with its own LIKE (citext's is case-insensitive) matches
    /// with it, the value's `%`, `_` and `\` escaped; any other text type compares as
    /// text (`char(n)` without its padding).
    fn pattern(&mut self, op: Op, e: &str, v: &str, column: &Column, ci: bool) -> String {
        if !ci && column.has_own_op("~~") {
            let escaped = format!(
                "pg_catalog.replace(pg_catalog.replace(pg_catalog.replace({v}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"
            );
            let pattern = match op {
                Op::StartsWith => format!("{escaped} || '%'"),
                Op::EndsWith => format!("'%' || {escaped}"),
                _ => format!("'%' || {escaped} || '%'"),
            };
            let like = format!(
                "{e} {} ({pattern})::{}",
                column.op("~~"),
                column.value_type()
            );
            return if op == Op::NotContains {
                format!("NOT coalesce({like}, false)")
            } else {
                format!("({like})")
            };
        }
        let low = |s: &str| {
            if ci {
                format!("pg_catalog.lower({s})")
            } else {
                s.to_string()
            }
        };
        let (l, r) = (low(e), low(v));
        match op {
            Op::Contains => format!("(pg_catalog.strpos({l}, {r}) > 0)"),
            Op::NotContains => format!("NOT coalesce(pg_catalog.strpos({l}, {r}) > 0, false)"),
            Op::StartsWith => format!("(pg_catalog.starts_with({l}, {r}))"),
            _ => format!("(pg_catalog.right({l}, pg_catalog.length({r})) = {r})"),
        }
    }

    /// The SQL for a value: a typed parameter, or a reference to another row.
    fn operand(
        &mut self,
        v: Option<&Operand>,
        column: &Column,
        cls: Class,
        path: &str,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
    ) -> Option<String> {
        match v? {
            Operand::Literal(v) => self.literal(v, column, cls, path),
            Operand::Ref {
                path,
                owner,
                column: rc,
            } => {
                // The profile is always in scope; a relationship only as an ancestor.
                let found = ancestors
                    .iter()
                    .rev()
                    .find(|r| r.slug == *owner && (r.entity.is_none() || r.alias != row.alias))
                    .cloned();
                let Some(target) = found else {
                    let names: Vec<&str> = ancestors
                        .iter()
                        .map(|r| r.slug.as_str())
                        .filter(|s| *s != row.slug)
                        .collect();
                    let hint = format!(
                        "References in scope here: {}.",
                        names
                            .iter()
                            .map(|n| format!("{n}.<column>"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.problem(
                        Problem::invalid(path.as_str(), format!("\"{owner}\" is not the profile or an ancestor relationship of this row"))
                            .with_hint(hint),
                    );
                    return None;
                };
                let Some(c) = target.table.column(rc) else {
                    let hint = hint_for(
                        rc,
                        target.table.column_names(),
                        &format!("columns of {}", target.what()),
                    );
                    self.problem(
                        Problem::new(
                            Kind::UndefinedColumn,
                            path.as_str(),
                            format!("column \"{rc}\" does not exist on {}", target.what()),
                        )
                        .with_opt_hint(hint),
                    );
                    return None;
                };
                if !comparable(c, column) {
                    self.problem(Problem::invalid(
                        path.as_str(),
                        format!(
                            "cannot compare \"{}\" ({}) with {}.{} ({})",
                            column.name, column.type_name, owner, c.name, c.type_name
                        ),
                    ));
                    return None;
                }
                Some(format!("{}.{}", target.alias, c.quoted))
            }
        }
    }

    /// A literal for a column: its JSON type must fit the column's class; its text is
    /// checked by Postgres when the audience is defined.
    fn literal(&mut self, v: &Value, column: &Column, cls: Class, path: &str) -> Option<String> {
        let text = match (cls, v) {
            (Class::Text, Value::String(s)) => return Some(self.column_value(s, column)),
            (Class::Number, Value::Number(n)) => number_text(n),
            (Class::Bool, Value::Bool(b)) => b.to_string(),
            (Class::Temporal, Value::String(s)) => s.clone(),
            (Class::Other, Value::String(s)) => s.clone(),
            (Class::Other, v) if !v.is_null() => v.to_string(),
            (_, v) => {
                let want = match cls {
                    Class::Text | Class::Temporal => "a string",
                    Class::Number => "a number",
                    Class::Bool => "a boolean",
                    Class::Other => "a value",
                };
                let hint = if cls == Class::Temporal {
                    Some(
                        "Write dates and timestamps as ISO strings, e.g. \"2026-11-28\"."
                            .to_string(),
                    )
                } else {
                    None
                };
                self.problem(
                    Problem::invalid(
                        path,
                        format!(
                            "expected {want} for \"{}\" ({}), got {}",
                            column.name,
                            column.type_name,
                            crate::json::type_name(v)
                        ),
                    )
                    .with_opt_hint(hint),
                );
                return None;
            }
        };
        Some(self.typed_text(&text, column, path))
    }

    /// `$n::type` for a text that must convert to the column's type.
    fn typed_text(&mut self, text: &str, column: &Column, path: &str) -> String {
        self.checks.push(LiteralCheck {
            path: path.to_string(),
            value: text.to_string(),
            sql_type: column.value_type().to_string(),
        });
        self.column_value(text, column)
    }

    fn interval(&mut self, text: &str, path: &str) -> String {
        self.checks.push(LiteralCheck {
            path: path.to_string(),
            value: text.to_string(),
            sql_type: "interval".into(),
        });
        let p = self.text_param(text);
        format!("{p}::pg_catalog.interval")
    }

    /// An array value for in/not_in, as `$n::type[]`.
    fn list(
        &mut self,
        v: Option<&Operand>,
        column: &Column,
        cls: Class,
        path: &str,
    ) -> Option<String> {
        let Some(Operand::Literal(Value::Array(items))) = v else {
            self.problem(Problem::invalid(path, "expected an array of values"));
            return None;
        };
        let mut texts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let t = match (cls, item) {
                (Class::Text, Value::String(s)) => s.clone(),
                (Class::Number, Value::Number(n)) => number_text(n),
                (Class::Bool, Value::Bool(b)) => b.to_string(),
                (Class::Temporal | Class::Other, Value::String(s)) => s.clone(),
                (Class::Other, v) if !v.is_null() => v.to_string(),
                (_, other) => {
                    self.problem(Problem::invalid(
                        ip,
                        format!(
                            "expected a value of \"{}\" ({}), got {}",
                            column.name,
                            column.type_name,
                            crate::json::type_name(other)
                        ),
                    ));
                    return None;
                }
            };
            if cls != Class::Text {
                self.checks.push(LiteralCheck {
                    path: ip,
                    value: t.clone(),
                    sql_type: column.value_type().to_string(),
                });
            }
            texts.push(t);
        }
        let p = self.param(ParamValue::TextArray(texts));
        Some(format!("{p}::{}[]", column.value_type()))
    }

    /// A predicate on an event property: typed by the literal; a property of another
    /// JSON type, or a missing one, does not match (and never raises).
    fn property(&mut self, p: &Predicate, keys: &[String], row: &Row<'a>) -> String {
        let graph = self.ctx.graph;
        let sp = path_key(&p.path, "property");
        let Some(pc) = graph
            .events
            .as_ref()
            .and_then(|e| e.properties_column.as_ref())
            .and_then(|c| row.table.column(c))
            .cloned()
        else {
            return self.problem(
                Problem::new(
                    Kind::NotInPrerequisiteState,
                    sp,
                    "the event source has no properties column",
                )
                .with_hint("Name properties_column in the graph's events."),
            );
        };
        let path_param = self.param(ParamValue::TextArray(keys.to_vec()));
        let x = format!(
            "({}.{}::pg_catalog.jsonb #> {path_param}::pg_catalog.text[])",
            row.alias, pc.quoted
        );
        let vp = path_key(&p.path, "value");
        let ci = p.case_insensitive;
        let typed = |json_type: &str, body: String| {
            format!("CASE WHEN pg_catalog.jsonb_typeof({x}) = '{json_type}' THEN coalesce({body}, false) ELSE false END")
        };
        let s = format!("({x} #>> '{{}}')");
        let low = |v: &str| {
            if ci {
                format!("pg_catalog.lower({v})")
            } else {
                v.to_string()
            }
        };
        // The JSON type and SQL of one literal.
        let lit = |c: &mut Self, v: &Value, path: &str| -> Option<(&'static str, String)> {
            match v {
                Value::Number(n) => {
                    let p = c.text_param(&n.to_string());
                    Some(("number", format!("{p}::pg_catalog.numeric")))
                }
                Value::String(t) => Some(("string", c.typed_param(t, "pg_catalog.text"))),
                Value::Bool(b) => {
                    let p = c.text_param(&b.to_string());
                    Some(("boolean", format!("{p}::pg_catalog.bool")))
                }
                other => {
                    c.problem(Problem::invalid(
                        path,
                        format!(
                            "expected a number, string or boolean, got {}",
                            crate::json::type_name(other)
                        ),
                    ));
                    None
                }
            }
        };
        let compare = |json_type: &str, v: &str, sym: &str| -> String {
            match json_type {
                "number" => typed("number", format!("({x})::pg_catalog.numeric {sym} {v}")),
                "boolean" => typed("boolean", format!("({x})::pg_catalog.bool {sym} {v}")),
                _ => typed("string", format!("{} {sym} {}", low(&s), low(v))),
            }
        };
        let value = match &p.value {
            Some(Operand::Ref { path, .. }) => {
                return self.problem(Problem::invalid(
                    path.as_str(),
                    "event properties compare with literal values only",
                ));
            }
            Some(Operand::Literal(v)) => Some(v.clone()),
            None => None,
        };
        let positive = match p.op {
            Op::IsNull => return format!("({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')"),
            Op::IsNotNull => {
                return format!("NOT ({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')")
            }
            Op::Equals | Op::NotEquals => {
                let Some((t, v)) = lit(self, value.as_ref().unwrap_or(&Value::Null), &vp) else {
                    return FALSE.into();
                };
                compare(t, &v, "=")
            }
            Op::In | Op::NotIn => {
                let Some(Value::Array(items)) = &value else {
                    return self.problem(Problem::invalid(vp, "expected an array of values"));
                };
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Some((t, v)) = lit(self, item, &format!("{vp}[{i}]")) else {
                        return FALSE.into();
                    };
                    parts.push(compare(t, &v, "="));
                }
                if parts.is_empty() {
                    "false".to_string()
                } else {
                    format!("({})", parts.join(" OR "))
                }
            }
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                let Some(Value::String(t)) = &value else {
                    return self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" compares with a string", p.op.name()),
                    ));
                };
                let v = self.typed_param(t, "pg_catalog.text");
                let (l, r) = (low(&s), low(&v));
                let body = match p.op {
                    Op::Contains | Op::NotContains => format!("pg_catalog.strpos({l}, {r}) > 0"),
                    Op::StartsWith => format!("pg_catalog.starts_with({l}, {r})"),
                    _ => format!("pg_catalog.right({l}, pg_catalog.length({r})) = {r}"),
                };
                typed("string", body)
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let Some(Value::Number(n)) = &value else {
                    return self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" on a property compares with a number", p.op.name()),
                    ));
                };
                let v = self.text_param(&n.to_string());
                let sym = match p.op {
                    Op::Gt => ">",
                    Op::Gte => ">=",
                    Op::Lt => "<",
                    _ => "<=",
                };
                compare("number", &format!("{v}::pg_catalog.numeric"), sym)
            }
            Op::Between => {
                let pair = match &value {
                    Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_number) => {
                        a.clone()
                    }
                    _ => {
                        return self.problem(Problem::invalid(
                            vp,
                            "between on a property takes two numbers [low, high]",
                        ))
                    }
                };
                let lo = self.text_param(&pair[0].to_string());
                let hi = self.text_param(&pair[1].to_string());
                typed("number", format!("({x})::pg_catalog.numeric BETWEEN {lo}::pg_catalog.numeric AND {hi}::pg_catalog.numeric"))
            }
            op => {
                return self.problem(
                    Problem::invalid(path_key(&p.path, "op"), format!("operator \"{}\" does not apply to event properties", op.name()))
                        .with_hint("Use a column of the events table for dates, or the event's \"within\" window."),
                );
            }
        };
        if p.case_insensitive
            && !matches!(
                p.op,
                Op::Equals
                    | Op::NotEquals
                    | Op::In
                    | Op::NotIn
                    | Op::Contains
                    | Op::NotContains
                    | Op::StartsWith
                    | Op::EndsWith
            )
        {
            return self.problem(Problem::invalid(
                path_key(&p.path, "case_insensitive"),
                "case_insensitive applies to string comparisons",
            ));
        }
        match p.op {
            Op::NotEquals | Op::NotIn | Op::NotContains => format!("NOT ({positive})"),
            _ => positive,
        }
    }
}

/// The profile key column a row carries: its entity's `profile_key`, or the profile's
/// primary key for the profile; `None` when it has none (a reference table).
fn profile_key_name(graph: &DataGraph, row: &Row<'_>) -> Option<String> {
    let name = match row.entity {
        Some(e) => e.profile_key.as_deref()?,
        None => &graph.profile.as_ref()?.primary_key,
    };
    row.table.column(name).map(|_| name.to_string())
}

/// A JSON number as Postgres reads it: integral floats (`1.0`) as integers, so they fit
/// integer columns as JSON intends.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            format!("{}", f as i64)
        }
        _ => n.to_string(),
    }
}

fn exists(from: &str, anchor: &str, outer: &str, conds: &[String]) -> String {
    let mut all = vec![format!("{anchor} = {outer}")];
    all.extend(conds.iter().cloned());
    format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all.join(" AND "))
}

/// A threshold over related rows: the keys whose rows meet it, joined by EXISTS; or,
/// when no rows at all meets it too, the keys whose rows fail it, joined by NOT EXISTS.
fn grouped(
    from: &str,
    anchor: &str,
    outer: &str,
    conds: &[String],
    having: &str,
    empty_holds: bool,
    g: &str,
) -> String {
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let (neg, having) = if empty_holds {
        ("NOT ", format!("({having}) IS NOT TRUE"))
    } else {
        ("", having.to_string())
    };
    format!(
        "{neg}EXISTS (SELECT 1 FROM (SELECT {anchor} AS k FROM {from}{where_sql} GROUP BY 1 HAVING {having}) {g} WHERE {g}.k = {outer})"
    )
}

/// A count or aggregate evaluated for the scope row alone: an aggregate query without
/// GROUP BY returns one row even over no rows, so HAVING decides for the empty set too
/// (`exactly 0`, `sum < 100` hold there; `avg`, `min`, `max` are NULL and do not).
fn per_profile(from: &str, anchor: &str, outer: &str, conds: &[String], having: &str) -> String {
    let mut all = vec![format!("{anchor} = {outer}")];
    all.extend(conds.iter().cloned());
    format!(
        "EXISTS (SELECT 1 FROM {from} WHERE {} HAVING {having})",
        all.join(" AND ")
    )
}

#[cfg(any(test, feature = "pg_test"))]
pub mod corpus;
#[cfg(test)]
mod tests;
