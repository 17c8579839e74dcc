//! Optimizations on the plan, decided from its structure (never from SQL text):
//!
//! - **Shape** of each relationship and event node: a semi-join when one row is enough;
//!   a threshold grouped once for all profiles, or correlated per profile when only a
//!   few are evaluated (`Strategy`).
//! - **Pass-through rows**: a relationship's first row that a foreign key makes a pure
//!   pass-through (`RelPlan::droppable`) is left out of the condition, unless a
//!   condition below the node refers to it.
//! - **Members straight from events**: a definition that is one event count, whose
//!   grouped keys are the members (`EventPlan::direct_possible`), reads its members from
//!   the events table without joining the profiles, unless it refers to the profile
//!   row.

use super::plan::*;
use super::Strategy;
use crate::audience::model::Count;

pub(super) fn optimize(cond: &mut Cond<'_>, strategy: Strategy) {
    match cond {
        Cond::Const(_) | Cond::Pred(_) | Cond::Property(_) => {}
        Cond::All(items) | Cond::Any(items) => {
            for c in items {
                optimize(c, strategy);
            }
        }
        Cond::Not(c) | Cond::Node(_, c) | Cond::Audience(c) => optimize(c, strategy),
        Cond::Rel(r) => relationship(r, strategy),
        Cond::Event(e) => event(e, strategy),
    }
}

/// A threshold's shape under `strategy`.
fn threshold(strategy: Strategy) -> Shape {
    match strategy {
        Strategy::Grouped => Shape::Grouped,
        Strategy::PerProfile => Shape::PerProfile,
    }
}

fn relationship(r: &mut RelPlan<'_>, strategy: Strategy) {
    if let Some(f) = r.filter.as_mut() {
        optimize(f, strategy);
    }
    for c in &mut r.children {
        relationship(c, strategy);
    }
    r.shape = if r.count == Some(Count::AtLeast(1)) && r.aggregate.is_none() {
        Shape::Exists
    } else {
        threshold(strategy)
    };
    r.short = r.droppable && !rel_refers_to(r, r.hops[0].row);
}

fn event(e: &mut EventPlan<'_>, strategy: Strategy) {
    if let Some(f) = e.filter.as_mut() {
        optimize(f, strategy);
    }
    e.shape = if e.count == Count::AtLeast(1) {
        Shape::Exists
    } else {
        threshold(strategy)
    };
    // (The whole definition is this node: any reference to the profile is its own.)
    e.direct = e.shape != Shape::Exists
        && e.direct_possible
        && !e.count.holds(0)
        && !e.filter.as_ref().is_some_and(|f| refers_to(f, PROFILE));
}
