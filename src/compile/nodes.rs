//! Planning the definition's nodes: all, any, not, traits, audience references and
//! events.

use super::plan::*;
use super::*;

/// A node's plan, or `Recorded` when it has a problem (planning goes on with the other
/// nodes, so that every problem of a definition is reported at once).
pub(super) type Planned<'a> = Result<Cond<'a>, Recorded>;

/// Every result, or `Recorded` when one failed (after all were tried).
pub(super) fn all_of<T>(parts: Vec<Result<T, Recorded>>) -> Result<Vec<T>, Recorded> {
    parts.into_iter().collect()
}

impl<'a> Planner<'a> {
    pub(super) fn node(&mut self, n: &Node, scope: &[Row<'a>]) -> Planned<'a> {
        let cond = match &n.kind {
            NodeKind::All(items) | NodeKind::Any(items) => {
                let all = matches!(n.kind, NodeKind::All(_));
                if items.is_empty() {
                    Cond::Const(all)
                } else {
                    let parts = all_of(items.iter().map(|c| self.node(c, scope)).collect())?;
                    if all {
                        Cond::All(parts)
                    } else {
                        Cond::Any(parts)
                    }
                }
            }
            NodeKind::Not(inner) => Cond::Not(Box::new(self.node(inner, scope)?)),
            NodeKind::Trait(pred) => {
                let row = scope[0].clone();
                self.predicate(pred, &row, &scope[..1], "trait")?
            }
            NodeKind::Audience { key, member } => {
                let cond = Cond::Audience(Box::new(self.audience(key, &n.path, scope)?));
                if *member {
                    cond
                } else {
                    Cond::Not(Box::new(cond))
                }
            }
            NodeKind::Relationship(r) => return Ok(Cond::Rel(Box::new(self.rel_node(r, scope)?))),
            NodeKind::Event(e) => return Ok(Cond::Event(Box::new(self.event(e, scope)?))),
        };
        Ok(Cond::Node(n.path.clone(), Box::new(cond)))
    }

    pub(super) fn audience(&mut self, key: &str, path: &str, scope: &[Row<'a>]) -> Planned<'a> {
        let at = path_key(path, "audience");
        if let Some(i) = self.stack.iter().position(|k| k == key) {
            let mut cycle: Vec<&str> = self.stack[i..].iter().map(String::as_str).collect();
            cycle.push(key);
            return Err(self.problem(
                Problem::invalid(
                    at,
                    format!(
                        "cycle: audience references form a loop ({})",
                        cycle.join(" -> ")
                    ),
                )
                .with_hint("Audience references must form a DAG."),
            ));
        }
        let Some(def) = self.ctx.audiences.get(key) else {
            let hint = hint_for(
                key,
                self.ctx.audiences.keys().map(String::as_str),
                "audiences",
            );
            return Err(self.problem(
                Problem::invalid(at, format!("audience \"{key}\" does not exist"))
                    .with_opt_hint(hint),
            ));
        };
        if self.stack.len() <= 1 && !self.depends_on.iter().any(|k| k == key) {
            self.depends_on.push(key.to_string());
        }
        let node = match parse(def) {
            Ok(n) => n,
            Err(ps) => {
                return Err(self.problem(Problem::invalid(
                    at,
                    format!(
                        "audience \"{key}\" does not parse: {}",
                        ps[0].full_message()
                    ),
                )))
            }
        };
        let before = self.problems.len();
        self.stack.push(key.to_string());
        let cond = self.node(&node, &scope[..1]);
        self.stack.pop();
        if self.problems.len() > before {
            let inner: Vec<Problem> = self.problems.drain(before..).collect();
            // A cycle found deeper is reported as is; anything else is the referenced
            // audience's own problem.
            if let Some(cycle) = inner.iter().find(|p| p.message.starts_with("cycle:")) {
                let msg = cycle.message.clone();
                return Err(self.problem(
                    Problem::invalid(path_key(path, "audience"), msg)
                        .with_hint("Audience references must form a DAG."),
                ));
            }
            return Err(self.problem(
                Problem::invalid(
                    at,
                    format!(
                        "audience \"{key}\" no longer compiles: {}",
                        inner[0].full_message()
                    ),
                )
                .with_opt_hint(inner[0].hint.clone()),
            ));
        }
        cond
    }

    pub(super) fn event(
        &mut self,
        e: &EventNode,
        scope: &[Row<'a>],
    ) -> Result<EventPlan<'a>, Recorded> {
        let top = std::mem::take(&mut self.top_event);
        let at = path_key(&e.path, "event");
        let graph = self.ctx.graph;
        let Some(ev) = graph.events.as_ref() else {
            return Err(self.problem(
                Problem::new(
                    Kind::NotInPrerequisiteState,
                    at,
                    "the Data Graph has no event source",
                )
                .with_hint("Add \"events\" to the graph or call la_register_event_source."),
            ));
        };
        let table = self.found(self.ctx.cat.table(&ev.table_ref), &at, "the events table")?;
        self.read(at.to_string(), table);
        let columns = (
            table.column(&ev.profile_key),
            table.column(&ev.name_column),
            table.column(&ev.timestamp_column),
        );
        let (key, name_column, ts) = match columns {
            (Some(k), Some(n), Some(t)) => (k, n, t),
            _ => return Err(self.missing(&at, "a column of the events table")),
        };
        let profile = &scope[0];
        let pk = graph
            .profile
            .as_ref()
            .and_then(|p| profile.table.column(&p.primary_key));
        let profile_pk = self.found(pk, &at, "the profile's primary key")?;
        let row = self.row("events", table, None);
        let name = Val::new(e.name.clone(), name_column.value_type());
        let wp = path_key(&e.path, "within");
        let window = match &e.within {
            None => None,
            Some(Window::Last(i)) => {
                self.clock(table, ts, i);
                Some(WindowPlan::Last(self.interval(i, &path_key(&wp, "last"))))
            }
            Some(Window::After(t)) => Some(WindowPlan::After(self.typed_text(
                t,
                ts,
                &path_key(&wp, "after"),
            ))),
            Some(Window::Before(t)) => Some(WindowPlan::Before(self.typed_text(
                t,
                ts,
                &path_key(&wp, "before"),
            ))),
            Some(Window::Between(a, b)) => Some(WindowPlan::Between(
                self.typed_text(a, ts, &path_key(&wp, "between[0]")),
                self.typed_text(b, ts, &path_key(&wp, "between[1]")),
            )),
        };
        let filter = match &e.filter {
            Some(f) => Some(self.filter(f, &row, &scope[..1])?),
            None => None,
        };
        // The grouped keys are the members themselves when a foreign key makes each one
        // a profile that the caller sees (readable, no row-level security) and it prints
        // as the profile key does (same type, or integers).
        let direct_possible = top
            && alike(key, profile_pk)
            && profile.table.readable
            && !profile.table.row_security
            && table.references(&ev.profile_key, profile.table, &profile_pk.name);
        Ok(EventPlan {
            path: e.path.clone(),
            row: row.id,
            table,
            key,
            name_column,
            ts,
            profile_pk,
            name,
            window,
            filter,
            count: e.count.unwrap_or(Count::AtLeast(1)),
            direct_possible,
            direct: false,
            shape: Shape::Exists,
        })
    }
}
