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
//! A definition flows through three passes, each in its own files:
//!
//! 1. **Plan** (`plan.rs` holds the plan's types): the definition is resolved against
//!    the validated graph and its catalog snapshot, and every problem is recorded with
//!    its JSON path. `nodes.rs` plans all / any / not, traits, audience references and
//!    events; `path.rs` the relationships a node implies and how their rows join;
//!    `relationship.rs` relationship nodes, counts and aggregates; `predicate.rs`
//!    filters and predicates (values typed as their columns); `property.rs` predicates
//!    on event properties.
//! 2. **Optimize** (`optimize.rs`): how each relationship and event node is evaluated
//!    (semi-join, grouped, per profile), pass-through rows left out, members read
//!    straight from grouped events; decided on the plan's structure.
//! 3. **Render** (`render.rs` for conditions and predicates, `related.rs` for
//!    relationship and event nodes, `shape.rs` for their SQL shapes): aliases, `$n`
//!    parameters (created only by `sql::Params`) and the column types' own operators.
//!
//! `query.rs` is what comes out: the compiled query and the SQL built from it (members,
//! count, sample), its entity selects and per-node SQL; `sql.rs` its parameters and
//! their display with typed literals.

pub mod sql;

use crate::audience::model::{
    parse, AggFn, Aggregate, Count, EventNode, Filter, Node, NodeKind, Op, Operand, Predicate,
    RelNode, Subject, Window,
};
use crate::error::{Kind, Problem};
use crate::graph::catalog::{comparable, Catalog, Column, Table};
use crate::graph::joins::{resolve, ResolvedJoin};
use crate::graph::model::DataGraph;
use crate::graph::validate::ValidatedGraph;
use crate::names::{hint_for, path_key};
use serde_json::Value;
use sql::{LiteralCheck, Params};
use std::collections::BTreeMap;

mod nodes;
mod optimize;
mod path;
mod plan;
mod predicate;
mod property;
mod query;
mod related;
mod relationship;
mod render;
mod shape;

use path::alike;
use predicate::{class, Class};
pub use query::{ClockWindow, Compiled, EntitySelect, NodeSql, ProfileSql};
pub use related::{equality, equate};
use render::Renderer;
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
    let mut plan = plan::plan(ctx, node, own_key)?;
    optimize::optimize(&mut plan.cond, strategy);
    Ok(render::render(plan))
}

/// Proof that a problem was recorded: only `record` makes one, so a node cannot fail
/// to plan without saying why.
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

#[cfg(any(test, feature = "pg_test"))]
pub mod corpus;
#[cfg(test)]
mod tests;
