//! The typed plan: what a definition means over a validated graph, before any SQL is
//! written. Every name is resolved to its catalog entry (tables, columns, the join of
//! each hop), every value is kept with the type it is compared as, and every problem is
//! recorded with its JSON path while planning (`Planner`, in `nodes.rs`, `path.rs`,
//! `relationship.rs`, `predicate.rs`, `property.rs`). `optimize.rs` then decides how
//! each relationship and event node is evaluated, and `render.rs` writes the SQL.
//!
//! Rows are numbered (`RowId`): the profile row is 0, and every related row, event row
//! included, gets the next number when planned. A reference to another row
//! (`{"ref": "household.name"}`) names its `RowId`, so the optimizer sees which rows a
//! condition refers to without reading SQL.

use super::*;
use crate::graph::model::Entity;

pub(super) type RowId = usize;

/// The profile row.
pub(super) const PROFILE: RowId = 0;

/// A row in scope while planning: the profile, or a related row.
#[derive(Clone)]
pub(super) struct Row<'a> {
    pub(super) id: RowId,
    /// "profile", "events", or the relationship slug.
    pub(super) slug: String,
    pub(super) table: &'a Table,
    pub(super) entity: Option<&'a Entity>,
}

impl Row<'_> {
    pub(super) fn what(&self) -> String {
        match self.entity {
            Some(e) => format!("entity \"{}\"", e.slug),
            None => "the profile".to_string(),
        }
    }
}

/// A value compared with something: passed as text and cast to `ty` (a type name from
/// the catalog, or `pg_catalog.*`).
#[derive(Debug, Clone)]
pub(super) struct Val {
    pub(super) text: String,
    pub(super) ty: String,
}

impl Val {
    pub(super) fn new(text: impl Into<String>, ty: &str) -> Self {
        Val {
            text: text.into(),
            ty: ty.to_string(),
        }
    }
}

/// What a comparison compares with: a value, or another row's column.
#[derive(Debug, Clone)]
pub(super) enum Rhs<'a> {
    Value(Val),
    Ref(RowId, &'a Column),
}

/// What a column predicate tests, by operator family.
#[derive(Debug, Clone)]
pub(super) enum Test<'a> {
    /// `is_null` (true) or `is_not_null` (false).
    Null(bool),
    /// `in`, or `not_in` (`negated`): the items and their element type.
    In {
        negated: bool,
        items: Vec<String>,
        ty: String,
    },
    Between(Val, Val),
    /// `within_last` (`within`) or `not_within_last` an interval.
    Clock {
        within: bool,
        interval: Val,
    },
    /// `equals`, `not_equals`, the orderings, `before`, `after`, and the patterns
    /// (`contains`, `not_contains`, `starts_with`, `ends_with`).
    Compare(Op, Rhs<'a>),
}

/// A condition over the rows in scope.
pub(super) enum Cond<'a> {
    /// `all` (true) or `any` (false) with no items.
    Const(bool),
    All(Vec<Cond<'a>>),
    Any(Vec<Cond<'a>>),
    Not(Box<Cond<'a>>),
    /// A definition node other than a relationship or event: recorded for explanations
    /// under its JSON path once rendered.
    Node(String, Box<Cond<'a>>),
    Pred(Pred<'a>),
    Property(Property<'a>),
    /// A referenced audience's plan (its nodes are not this audience's).
    Audience(Box<Cond<'a>>),
    Rel(Box<RelPlan<'a>>),
    Event(Box<EventPlan<'a>>),
}

/// A test of `row.column`.
pub(super) struct Pred<'a> {
    pub(super) row: RowId,
    pub(super) column: &'a Column,
    /// Both sides `lower()`ed, compared as text.
    pub(super) case_insensitive: bool,
    pub(super) test: Test<'a>,
}

/// A predicate on an event property (`properties #> keys`): each value with the JSON
/// type it matches (`number`, `string`, `boolean`).
pub(super) struct Property<'a> {
    pub(super) row: RowId,
    pub(super) column: &'a Column,
    pub(super) keys: Vec<String>,
    pub(super) op: Op,
    pub(super) case_insensitive: bool,
    pub(super) values: Vec<(&'static str, Val)>,
}

/// How a relationship or event node is evaluated (decided by `optimize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// At least one row: a semi-join.
    Exists,
    /// A threshold, grouped once for all profiles.
    Grouped,
    /// A threshold, correlated per profile.
    PerProfile,
}

/// Which row of a hop a column is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Parent,
    Junction,
    Child,
}

/// One equality of a hop beyond its join (profile keys, for co-location).
#[derive(Clone)]
pub(super) struct KeyEq<'a> {
    pub(super) left: (Side, &'a Column),
    pub(super) right: (Side, &'a Column),
}

/// How a hop's rows join to its parent row.
pub(super) enum HopJoin<'a> {
    /// `child.child = parent.parent`.
    Direct {
        parent: &'a Column,
        child: &'a Column,
    },
    /// Through the identifiers table: `ids.key = parent.profile_pk`, rows of type
    /// `id_type` whose value is `child.child`.
    ExternalId {
        ids: &'a Table,
        key: &'a Column,
        type_column: &'a Column,
        value_column: &'a Column,
        id_type: String,
        child: &'a Column,
        profile_pk: &'a Column,
    },
    /// Through a junction table: `junction.left = parent.parent`, `child.child =
    /// junction.right`; `inner` equates the child's profile key with the junction's.
    Junction {
        table: &'a Table,
        parent: &'a Column,
        left: &'a Column,
        right: &'a Column,
        child: &'a Column,
        inner: Option<(&'a Column, &'a Column)>,
    },
}

/// One relationship hop: the rows of `table` (row `row`) below row `parent`.
pub(super) struct Hop<'a> {
    pub(super) row: RowId,
    pub(super) parent: RowId,
    pub(super) table: &'a Table,
    pub(super) join: HopJoin<'a>,
    /// Equalities of profile keys on this hop (none that repeats the join itself).
    pub(super) keys: Vec<KeyEq<'a>>,
}

/// An aggregate's threshold: `func(column) op values`.
pub(super) struct AggPlan<'a> {
    pub(super) func: AggFn,
    pub(super) column: &'a Column,
    pub(super) op: Op,
    pub(super) values: Vec<Val>,
    /// Whether it holds over no rows.
    pub(super) empty_holds: bool,
}

/// A relationship node.
pub(super) struct RelPlan<'a> {
    pub(super) path: String,
    pub(super) slug: String,
    pub(super) entity: String,
    /// From the scope row down to the target row.
    pub(super) hops: Vec<Hop<'a>>,
    pub(super) target: RowId,
    pub(super) target_pk: &'a Column,
    pub(super) filter: Option<Cond<'a>>,
    pub(super) children: Vec<RelPlan<'a>>,
    /// `None` with an aggregate and no count.
    pub(super) count: Option<Count>,
    pub(super) aggregate: Option<AggPlan<'a>>,
    /// One target row can be reached more than once from one scope row (a junction, an
    /// external id, a join on a parent column that is not unique).
    pub(super) may_repeat: bool,
    /// The first row passes through (see `path::passes_through`) and no key equality
    /// needs it: it may be left out unless a condition refers to it.
    pub(super) droppable: bool,
    /// Decided by `optimize`: the first row is left out of the condition's SQL.
    pub(super) short: bool,
    /// Decided by `optimize`.
    pub(super) shape: Shape,
}

impl RelPlan<'_> {
    /// A count or aggregate holds for a scope row without related rows.
    pub(super) fn empty_holds(&self) -> bool {
        self.count.is_none_or(|c| c.holds(0))
            && self.aggregate.as_ref().is_none_or(|a| a.empty_holds)
    }
}

/// When events happened, with its values typed.
pub(super) enum WindowPlan {
    /// Within the last interval (`pg_catalog.interval`).
    Last(Val),
    After(Val),
    Before(Val),
    Between(Val, Val),
}

/// An event node.
pub(super) struct EventPlan<'a> {
    pub(super) path: String,
    pub(super) row: RowId,
    pub(super) table: &'a Table,
    /// The events' profile key, name and timestamp columns; the profile's primary key.
    pub(super) key: &'a Column,
    pub(super) name_column: &'a Column,
    pub(super) ts: &'a Column,
    pub(super) profile_pk: &'a Column,
    pub(super) name: Val,
    pub(super) window: Option<WindowPlan>,
    pub(super) filter: Option<Cond<'a>>,
    pub(super) count: Count,
    /// The definition is this node, and a foreign key makes each events' profile key a
    /// profile the caller sees that prints as the profile key does: the members can be
    /// the grouped keys themselves (decided by `optimize`, into `direct`).
    pub(super) direct_possible: bool,
    pub(super) direct: bool,
    pub(super) shape: Shape,
}

/// A planned definition.
pub(super) struct Plan<'a> {
    pub(super) cond: Cond<'a>,
    /// The number of rows (`RowId`s) planned.
    pub(super) rows: usize,
    pub(super) profile: &'a Table,
    pub(super) pk: &'a Column,
    pub(super) user_id: &'a Column,
    pub(super) depends_on: Vec<String>,
    pub(super) relationships: Vec<String>,
    pub(super) checks: Vec<LiteralCheck>,
    /// Every table the audience reads (quoted), including those left out of the SQL.
    pub(super) tables: Vec<String>,
    pub(super) clock: Vec<ClockWindow>,
}

/// Plans a definition over the validated graph; every problem, with its JSON path.
pub(super) fn plan<'a>(
    ctx: &'a Ctx<'a>,
    node: &Node,
    own_key: Option<&str>,
) -> Result<Plan<'a>, Vec<Problem>> {
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
    let mut planner = Planner {
        ctx,
        checks: Vec::new(),
        problems: Vec::new(),
        rows: 0,
        stack: own_key.map(|k| vec![k.to_string()]).unwrap_or_default(),
        depends_on: Vec::new(),
        relationships: Vec::new(),
        top_event: matches!(node.kind, NodeKind::Event(_)),
        reads: Vec::new(),
        clock: Vec::new(),
    };
    planner.read("$".into(), table);
    let scope = vec![planner.row("profile", table, None)];
    let cond = planner.node(node, &scope);
    planner.unreadable_tables();
    match cond {
        Ok(cond) if planner.problems.is_empty() => Ok(Plan {
            cond,
            rows: planner.rows,
            profile: table,
            pk,
            user_id,
            depends_on: planner.depends_on,
            relationships: planner.relationships,
            checks: planner.checks,
            tables: planner
                .reads
                .iter()
                .map(|(_, t)| t.quoted.clone())
                .collect(),
            clock: planner.clock,
        }),
        _ => Err(planner.problems),
    }
}

/// Whether `cond` refers to row `row` with a `{"ref": ...}` operand.
pub(super) fn refers_to(cond: &Cond<'_>, row: RowId) -> bool {
    match cond {
        Cond::Const(_) | Cond::Property(_) => false,
        Cond::All(items) | Cond::Any(items) => items.iter().any(|c| refers_to(c, row)),
        Cond::Not(c) | Cond::Node(_, c) | Cond::Audience(c) => refers_to(c, row),
        Cond::Pred(p) => matches!(p.test, Test::Compare(_, Rhs::Ref(r, _)) if r == row),
        Cond::Rel(r) => rel_refers_to(r, row),
        Cond::Event(e) => e.filter.as_ref().is_some_and(|f| refers_to(f, row)),
    }
}

pub(super) fn rel_refers_to(r: &RelPlan<'_>, row: RowId) -> bool {
    r.filter.as_ref().is_some_and(|f| refers_to(f, row))
        || r.children.iter().any(|c| rel_refers_to(c, row))
}

/// The planner's state: what it has found so far, and the problems.
pub(super) struct Planner<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) checks: Vec<LiteralCheck>,
    pub(super) problems: Vec<Problem>,
    /// The number of rows planned so far (the next `RowId`).
    pub(super) rows: usize,
    /// Audience keys being planned, outermost first: a key met again is a cycle.
    pub(super) stack: Vec<String>,
    pub(super) depends_on: Vec<String>,
    pub(super) relationships: Vec<String>,
    /// The definition is one event condition (see `EventPlan::direct_possible`).
    pub(super) top_event: bool,
    /// Every table the audience reads, with the JSON path of the node that reads it
    /// first, including tables an optimization leaves out of the SQL: the caller must be
    /// able to read each (its grants and row-level security decide the members).
    pub(super) reads: Vec<(String, &'a Table)>,
    /// The comparisons with `now()` (see `ClockWindow`).
    pub(super) clock: Vec<ClockWindow>,
}

impl<'a> Planner<'a> {
    pub(super) fn problem(&mut self, p: Problem) -> Recorded {
        recorded::record(&mut self.problems, p)
    }

    /// A graph lookup that validation guarantees (the graph was validated against this
    /// catalog snapshot); a miss is our bug, reported at `at`.
    pub(super) fn found<T>(&mut self, v: Option<T>, at: &str, what: &str) -> Result<T, Recorded> {
        v.ok_or_else(|| self.missing(at, what))
    }

    /// The problem of a lookup that validation guarantees and that missed.
    pub(super) fn missing(&mut self, at: &str, what: &str) -> Recorded {
        self.problem(Problem::new(
            Kind::Internal,
            at,
            format!(
                "linked_audiences internal error: {what} is missing from the validated Data Graph"
            ),
        ))
    }

    /// A new row.
    pub(super) fn row(
        &mut self,
        slug: &str,
        table: &'a Table,
        entity: Option<&'a Entity>,
    ) -> Row<'a> {
        self.rows += 1;
        Row {
            id: self.rows - 1,
            slug: slug.to_string(),
            table,
            entity,
        }
    }

    /// Notes a comparison of `table.column` with `now()` minus `interval`.
    pub(super) fn clock(&mut self, table: &Table, column: &Column, interval: &str) {
        let w = ClockWindow {
            table: table.quoted.clone(),
            column: column.quoted.clone(),
            interval: interval.to_string(),
        };
        if !self.clock.contains(&w) {
            self.clock.push(w);
        }
    }

    /// Notes that the audience reads `table` for the node at `path`.
    pub(super) fn read(&mut self, path: String, table: &'a Table) {
        if !self.reads.iter().any(|(_, t)| t.quoted == table.quoted) {
            self.reads.push((path, table));
        }
    }

    /// A problem (42501) for each table the audience reads that the caller may not.
    pub(super) fn unreadable_tables(&mut self) {
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

    /// A text the database must confirm converts to `sql_type` when the audience is
    /// defined (`'1.5'::bigint` fails there, never mid-compute).
    pub(super) fn check(&mut self, path: &str, text: &str, sql_type: &str) {
        self.checks.push(LiteralCheck {
            path: path.to_string(),
            value: text.to_string(),
            sql_type: sql_type.to_string(),
        });
    }

    /// A value for `column` from a text that must convert to its type.
    pub(super) fn typed_text(&mut self, text: &str, column: &Column, path: &str) -> Val {
        self.check(path, text, column.value_type());
        Val::new(text, column.value_type())
    }

    /// An interval, checked as one.
    pub(super) fn interval(&mut self, text: &str, path: &str) -> Val {
        self.check(path, text, "interval");
        Val::new(text, "pg_catalog.interval")
    }
}
