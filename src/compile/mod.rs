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
//!
//! The files, in the order a definition flows through them:
//! - `mod.rs`: the entry points (`compile`, `compile_for` with a `Strategy`), the
//!   compiler's state and the one place parameters are numbered (`param`);
//! - `nodes.rs`: all / any / not, traits, audience references, events;
//! - `path.rs`: the relationships a node implies and how their rows join, with the
//!   pass-through row a foreign key lets us leave out;
//! - `relationship.rs`: relationship nodes, counts and aggregates;
//! - `predicate.rs`: filters and predicates, values typed as their columns, the column
//!   type's own operators;
//! - `property.rs`: predicates on event properties, typed by their JSON literals;
//! - `shape.rs`: the SQL shapes of a condition over related rows (semi-join, grouped,
//!   per profile);
//! - `query.rs`: what comes out: the compiled query and the SQL built from it (members,
//!   count, sample), its entity selects and per-node SQL;
//! - `sql.rs`: parameters and their display with typed literals.

pub mod sql;

use crate::audience::model::{
    parse, AggFn, Aggregate, Count, EventNode, Filter, Node, NodeKind, Op, Operand, Predicate,
    RelNode, Subject, Window,
};
use crate::error::{Kind, Problem};
use crate::graph::catalog::{comparable, Catalog, Column, Table};
use crate::graph::joins::{resolve, ResolvedJoin};
use crate::graph::model::{DataGraph, Entity};
use crate::graph::validate::ValidatedGraph;
use crate::names::{hint_for, path_key};
use serde_json::Value;
use sql::{LiteralCheck, Params};
use std::collections::BTreeMap;

mod nodes;
mod path;
mod predicate;
mod property;
mod query;
mod relationship;
mod shape;

use path::{alike, Row};
use predicate::{class, Class};
pub use query::{ClockWindow, Compiled, EntitySelect, NodeSql, ProfileSql};
use shape::{exists, grouped, per_profile};

/// What the compiler reads: a validated graph with the catalog snapshot of its tables,
/// and the stored definitions of other audiences (for `{"audience": key}`).
pub struct Ctx<'a> {
    graph: &'a DataGraph,
    cat: &'a Catalog,
    audiences: &'a BTreeMap<String, Value>,
}

impl<'a> Ctx<'a> {
    pub fn new(valid: &'a ValidatedGraph, audiences: &'a BTreeMap<String, Value>) -> Self {
        Ctx {
            graph: valid.graph(),
            cat: valid.cat(),
            audiences,
        }
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
    let (Some(pk), Some(user_id)) = (
        table.column(&profile.primary_key),
        table.column(profile.user_id.as_deref().unwrap_or(&profile.primary_key)),
    ) else {
        return Err(vec![Problem::new(
            Kind::UndefinedColumn,
            "$",
            "the profile table lacks its key columns",
        )]);
    };
    let mut c = Compiler {
        ctx,
        params: Params::default(),
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
        referenced: Vec::new(),
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
    let condition = match condition {
        Ok(sql) if c.problems.is_empty() => sql,
        _ => return Err(c.problems),
    };
    Ok(Compiled {
        profile: ProfileSql {
            table: table.quoted.clone(),
            pk: pk.quoted.clone(),
            pk_type: pk.value_type().to_string(),
            user_id: user_id.quoted.clone(),
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

struct Compiler<'a> {
    ctx: &'a Ctx<'a>,
    params: Params,
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
    /// The aliases of rows a `{"ref": ...}` operand refers to, in the order met.
    referenced: Vec<String>,
    strategy: Strategy,
    direct: Option<String>,
}

/// Proof that a problem was recorded: only `record` makes one, so a node cannot fail
/// without saying why.
mod recorded {
    use crate::error::Problem;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Recorded(());

    pub fn record(problems: &mut Vec<Problem>, p: Problem) -> Recorded {
        problems.push(p);
        Recorded(())
    }
}
use recorded::Recorded;

/// A node's SQL, or `Recorded` when it has a problem (compiling goes on with the other
/// nodes, so that every problem of a definition is reported at once).
type Sql = Result<String, Recorded>;

/// Every result, or `Recorded` when one failed (after all were tried).
fn all_of(parts: Vec<Sql>) -> Result<Vec<String>, Recorded> {
    parts.into_iter().collect()
}

impl<'a> Compiler<'a> {
    fn problem(&mut self, p: Problem) -> Recorded {
        recorded::record(&mut self.problems, p)
    }

    /// A graph lookup that validation guarantees (the graph was validated against this
    /// catalog snapshot); a miss is our bug, reported at `at`.
    fn found<T>(&mut self, v: Option<T>, at: &str, what: &str) -> Result<T, Recorded> {
        v.ok_or_else(|| self.missing(at, what))
    }

    /// The problem of a lookup that validation guarantees and that missed.
    fn missing(&mut self, at: &str, what: &str) -> Recorded {
        self.problem(Problem::new(
            Kind::Internal,
            at,
            format!(
                "linked_audiences internal error: {what} is missing from the validated Data Graph"
            ),
        ))
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

    /// `$n::type`: every value is typed in the SQL, so preview, the displayed SQL (which
    /// inlines literals) and compute all compare by the same type.
    fn typed_param(&mut self, s: &str, sql_type: &str) -> String {
        self.params.typed(s, sql_type)
    }

    /// A value compared with `column`, typed as the column (see `Column::value_type`).
    fn column_value(&mut self, s: &str, column: &Column) -> String {
        self.typed_param(s, column.value_type())
    }
}

#[cfg(any(test, feature = "pg_test"))]
pub mod corpus;
#[cfg(test)]
mod tests;
