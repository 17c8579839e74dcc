//! The definition's nodes: all, any, not, traits, audience references and events.

use super::*;

impl<'a> Compiler<'a> {
    pub(super) fn node(&mut self, n: &Node, scope: &[Row<'a>]) -> Sql {
        let sql = self.node_body(n, scope)?;
        if !matches!(n.kind, NodeKind::Relationship(_) | NodeKind::Event(_)) {
            self.record(&n.path, &sql);
        }
        Ok(sql)
    }

    /// Notes a node's condition (and the rows of a relationship or event node just
    /// compiled), unless inside a referenced audience.
    pub(super) fn record(&mut self, path: &str, condition: &str) {
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

    pub(super) fn node_body(&mut self, n: &Node, scope: &[Row<'a>]) -> Sql {
        Ok(match &n.kind {
            NodeKind::All(items) | NodeKind::Any(items) => {
                let (joiner, empty) = if matches!(n.kind, NodeKind::All(_)) {
                    (" AND ", "true")
                } else {
                    (" OR ", "false")
                };
                if items.is_empty() {
                    return Ok(empty.to_string());
                }
                let parts = all_of(items.iter().map(|c| self.node(c, scope)).collect())?;
                format!("({})", parts.join(joiner))
            }
            NodeKind::Not(inner) => format!("({}) IS NOT TRUE", self.node(inner, scope)?),
            NodeKind::Trait(pred) => {
                let row = scope[0].clone();
                self.predicate(pred, &row, &scope[..1], "trait")?
            }
            NodeKind::Audience { key, member } => {
                let cond = self.audience(key, &n.path, scope)?;
                if *member {
                    cond
                } else {
                    format!("({cond}) IS NOT TRUE")
                }
            }
            NodeKind::Relationship(r) => self.rel_node(r, scope, None)?,
            NodeKind::Event(e) => self.event(e, scope)?,
        })
    }

    pub(super) fn audience(&mut self, key: &str, path: &str, scope: &[Row<'a>]) -> Sql {
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
        Ok(format!("({})", cond?))
    }

    pub(super) fn event(&mut self, e: &EventNode, scope: &[Row<'a>]) -> Sql {
        self.pending = None;
        let sql = self.event_body(e, scope)?;
        self.record(&e.path, &sql);
        Ok(sql)
    }

    pub(super) fn event_body(&mut self, e: &EventNode, scope: &[Row<'a>]) -> Sql {
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
        let col = |name: &str| table.column(name).map(|c| c.quoted.clone());
        let (key, name_col, ts) = match (
            col(&ev.profile_key),
            col(&ev.name_column),
            col(&ev.timestamp_column),
        ) {
            (Some(k), Some(n), Some(t)) => (k, n, t),
            _ => return Err(self.missing(&at, "a column of the events table")),
        };
        let profile = &scope[0];
        let pk = graph
            .profile
            .as_ref()
            .and_then(|p| profile.table.column(&p.primary_key))
            .map(|c| c.quoted.clone());
        let pk = self.found(pk, &at, "the profile's primary key")?;
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
            let w = self.filter(f, &row, &scope[..1])?;
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
        Ok(match e.count.unwrap_or(Count::AtLeast(1)) {
            Count::AtLeast(1) => exists(&from, &anchor, &outer, &conds),
            cnt => {
                let p = self.typed_param(&cnt.threshold().to_string(), "pg_catalog.int8");
                let having = format!("pg_catalog.count(*) {} {p}", cnt.sql_op());
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
                        // (The whole definition is this node: any reference is its own.)
                        && !self.referenced.contains(&profile.alias)
                    {
                        self.direct = Some(format!(
                            "SELECT {g}.k::pg_catalog.text AS profile_id\nFROM (SELECT {anchor} AS k FROM {from} WHERE {w} GROUP BY 1 HAVING {having}) {g}\nWHERE {g}.k IS NOT NULL",
                            w = conds.join(" AND "),
                        ));
                    }
                }
                if self.strategy == Strategy::PerProfile {
                    return Ok(per_profile(&from, &anchor, &outer, &conds, &having));
                }
                grouped(&from, &anchor, &outer, &conds, &having, cnt.holds(0), &g)
            }
        })
    }
}
