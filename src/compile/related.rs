//! Rendering relationship and event nodes: the joins of a path, the node's condition in
//! the shape the optimizer chose, and its entity selects (how its rows are reached from
//! the profile, for entity tracking, samples and explanations).

use super::plan::*;
use super::*;

/// A path's joins as SQL.
struct Joins {
    from: String,
    /// Join conditions that are not in `from`'s ON clauses.
    conds: Vec<String>,
    /// The expression inside the subquery that equals `outer`.
    anchor: String,
    /// The expression on the scope row.
    outer: String,
    /// The equality of `anchor` and `outer`.
    eq: String,
    /// `from` and `anchor` without the first row (when the plan leaves it out).
    short: Option<(String, String)>,
}

impl Renderer {
    fn joins(&mut self, hops: &[Hop<'_>], short: bool) -> Joins {
        let mut j = Joins {
            from: String::new(),
            conds: Vec::new(),
            anchor: String::new(),
            outer: String::new(),
            eq: String::new(),
            short: None,
        };
        for (i, hop) in hops.iter().enumerate() {
            let alias = self.alias_row(hop.row, "r");
            let parent = self.aliases[hop.parent].clone();
            let (piece, junction, (a, eq, o)) = match &hop.join {
                HopJoin::Direct { parent: pc, child } => (
                    format!("{} {alias}", hop.table.quoted),
                    String::new(),
                    equate(&alias, child, &parent, pc),
                ),
                HopJoin::ExternalId {
                    ids,
                    key,
                    type_column,
                    value_column,
                    id_type,
                    child,
                    profile_pk,
                } => {
                    let ia = self.alias("i");
                    let p = self.params.typed(id_type.clone(), type_column.value_type());
                    let (c, ceq, v) = equate(&alias, child, &ia, value_column);
                    let piece = format!(
                        "{it} {ia} JOIN {t} {alias} ON {c} {ceq} {v} AND {ia}.{ty} {eq} {p}",
                        it = ids.quoted,
                        t = hop.table.quoted,
                        ty = type_column.quoted,
                        eq = type_column.op("="),
                    );
                    let join = equate(&ia, key, &parent, profile_pk);
                    (piece, ia, join)
                }
                HopJoin::Junction {
                    table,
                    parent: pc,
                    left,
                    right,
                    child,
                    inner,
                } => {
                    let ja = self.alias("j");
                    let mut on = equality(equate(&alias, child, &ja, right));
                    if let Some((ck, jk)) = inner {
                        on.push_str(&format!(" AND {}", equality(equate(&alias, ck, &ja, jk))));
                    }
                    let piece = format!(
                        "{} {ja} JOIN {} {alias} ON {on}",
                        table.quoted, hop.table.quoted
                    );
                    let join = equate(&ja, left, &parent, pc);
                    (piece, ja, join)
                }
            };
            let side = |s: Side| match s {
                Side::Parent => parent.as_str(),
                Side::Junction => junction.as_str(),
                Side::Child => alias.as_str(),
            };
            let on: Vec<String> = hop
                .keys
                .iter()
                .map(|k| equality(equate(side(k.left.0), k.left.1, side(k.right.0), k.right.1)))
                .collect();
            if i == 0 {
                j.from = piece;
                j.anchor = a;
                j.outer = o;
                j.eq = eq;
                j.conds.extend(on);
                continue;
            }
            let mut all = vec![format!("{a} {eq} {o}")];
            all.extend(on);
            if i == 1 && short {
                j.short = Some((piece.clone(), a.clone()));
            } else if let Some((from, _)) = j.short.as_mut() {
                from.push_str(&format!(" JOIN {piece} ON {}", all.join(" AND ")));
            }
            j.from
                .push_str(&format!(" JOIN {piece} ON {}", all.join(" AND ")));
        }
        j
    }

    /// A relationship node. `lineage` is how the scope row is reached from the profile,
    /// for the entity selects of nested nodes.
    pub(super) fn rel(&mut self, r: &RelPlan<'_>, lineage: Option<&EntitySelect>) -> String {
        self.pending = None;
        self.scopes.push(r.path.clone());
        let sql = self.rel_body(r, lineage);
        self.scopes.pop();
        self.record(&r.path, &sql);
        sql
    }

    fn rel_body(&mut self, r: &RelPlan<'_>, lineage: Option<&EntitySelect>) -> String {
        let joins = self.joins(&r.hops, r.short);
        let target = self.aliases[r.target].clone();
        let mut row_conds = joins.conds.clone();
        if let Some(f) = &r.filter {
            let w = self.cond(f);
            row_conds.push(w);
        }
        let where_only = row_conds.clone();
        let own = format!("{} {} {}", joins.anchor, joins.eq, joins.outer);
        // The entity select of this node: how its rows are reached from the profile.
        let select = EntitySelect {
            relationship: r.slug.clone(),
            entity: r.entity.clone(),
            from: match lineage {
                None => joins.from.clone(),
                Some(l) => format!("{}, {}", l.from, joins.from),
            },
            correlation: match lineage {
                None => own.clone(),
                Some(l) => l.correlation.clone(),
            },
            conds: match lineage {
                None => where_only.clone(),
                Some(l) => {
                    let mut c = l.conds.clone();
                    c.push(own.clone());
                    c.extend(where_only.iter().cloned());
                    c
                }
            },
            target_alias: target.clone(),
            target_pk: r.target_pk.quoted.clone(),
        };
        for child in &r.children {
            let c = self.rel(child, Some(&select));
            row_conds.push(c);
        }
        let mut full = select.clone();
        full.conds
            .extend(row_conds[where_only.len()..].iter().cloned());
        if self.collect {
            self.entity_selects.push(full.clone());
        }
        self.pending = Some((full, Some(select.clone())));
        let (path_from, path_anchor) = match &joins.short {
            Some((from, anchor)) => (from.clone(), anchor.clone()),
            None => (joins.from.clone(), joins.anchor.clone()),
        };
        if r.shape == Shape::Exists {
            return exists(
                &path_from,
                &path_anchor,
                &joins.eq,
                &joins.outer,
                &row_conds,
            );
        }
        // An aggregate over rows that can repeat runs over each (key, row) once: the
        // rows are made distinct first, then counted as they come.
        let dedupe = r.may_repeat && r.aggregate.is_some();
        let (from, anchor, conds, value) = match (&r.aggregate, dedupe) {
            (Some(agg), true) => {
                let d = self.alias("d");
                let where_sql = if row_conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", row_conds.join(" AND "))
                };
                (
                    format!(
                        "(SELECT DISTINCT ON (1, 2) {path_anchor} AS k, {target}.{pk} AS row_key, {target}.{col} AS v FROM {path_from}{where_sql}) {d}",
                        pk = r.target_pk.quoted,
                        col = agg.column.quoted,
                    ),
                    format!("{d}.k"),
                    Vec::new(),
                    Some(format!("{d}.v")),
                )
            }
            _ => (path_from, path_anchor, row_conds.clone(), None),
        };
        let mut having = Vec::new();
        if let Some(cnt) = r.count {
            let p = self
                .params
                .typed(cnt.threshold().to_string(), "pg_catalog.int8");
            // Rows that cannot repeat are counted as they come (a hash aggregate);
            // otherwise distinct primary keys.
            let counted = if r.may_repeat && !dedupe {
                format!("pg_catalog.count(DISTINCT {target}.{})", r.target_pk.quoted)
            } else {
                "pg_catalog.count(*)".to_string()
            };
            having.push(format!("{counted} {} {p}", cnt.sql_op()));
        }
        if let Some(agg) = &r.aggregate {
            let c = value.unwrap_or_else(|| format!("{target}.{}", agg.column.quoted));
            having.push(self.aggregate(agg, &c));
        }
        let g = self.alias("g");
        let having = having.join(" AND ");
        match r.shape {
            Shape::PerProfile => {
                // A count of rows counted as they come, alone, needs only its first rows.
                let cap = match (r.count, &r.aggregate, r.may_repeat) {
                    (Some(cnt), None, false) => self.cap(cnt),
                    _ => None,
                };
                per_profile(
                    &from,
                    &anchor,
                    &joins.eq,
                    &joins.outer,
                    &conds,
                    &having,
                    cap,
                )
            }
            _ => grouped(
                &from,
                &anchor,
                &joins.eq,
                &joins.outer,
                &conds,
                &having,
                r.empty_holds(),
                &g,
            ),
        }
    }

    /// The fewest rows that decide `count` (its threshold + 1) as a parameter, and an
    /// alias for the rows read; none past the largest count.
    fn cap(&mut self, count: Count) -> Option<(String, String)> {
        let limit = count.threshold().checked_add(1)?;
        let limit = self.params.typed(limit.to_string(), "pg_catalog.int8");
        Some((limit, self.alias("c")))
    }

    /// The HAVING expression of an aggregate of `c`. `min` and `max` are the column
    /// type's own (citext's compare case-insensitively) and compare with its operators.
    fn aggregate(&mut self, a: &AggPlan<'_>, c: &str) -> String {
        let column = a.column;
        let own = matches!(a.func, AggFn::Min | AggFn::Max);
        let expr = match a.func {
            AggFn::Sum => format!("coalesce(pg_catalog.sum({c}), 0)"),
            AggFn::Avg => format!("pg_catalog.avg({c})"),
            AggFn::Min => format!("{}({c})", column.aggregate("min")),
            AggFn::Max => format!("{}({c})", column.aggregate("max")),
            AggFn::CountDistinct => format!("pg_catalog.count(DISTINCT {c})"),
        };
        let sym = |name: &str| {
            if own {
                column.op(name)
            } else {
                name.to_string()
            }
        };
        let values: Vec<String> = a.values.iter().map(|v| self.value(v)).collect();
        let own_order = own && (column.has_own_op(">=") || column.has_own_op("<="));
        let sql = match a.op {
            Op::Between if own_order => format!(
                "{expr} {} {} AND {expr} {} {}",
                sym(">="),
                values[0],
                sym("<="),
                values[1]
            ),
            Op::Between => format!("{expr} BETWEEN {} AND {}", values[0], values[1]),
            op => {
                let name = match op {
                    Op::Equals => "=",
                    Op::NotEquals => "<>",
                    Op::Gt => ">",
                    Op::Gte => ">=",
                    Op::Lt => "<",
                    _ => "<=",
                };
                format!("{expr} {} {}", sym(name), values[0])
            }
        };
        format!("({sql})")
    }

    /// An event node.
    pub(super) fn event(&mut self, e: &EventPlan<'_>) -> String {
        self.pending = None;
        let sql = self.event_body(e);
        self.record(&e.path, &sql);
        sql
    }

    fn event_body(&mut self, e: &EventPlan<'_>) -> String {
        let alias = self.alias_row(e.row, "e");
        let ts = format!("{alias}.{}", e.ts.quoted);
        let name = self.value(&e.name);
        let mut conds = vec![format!(
            "{alias}.{} {} {name}",
            e.name_column.quoted,
            e.name_column.op("=")
        )];
        if let Some(w) = &e.window {
            let cond = match w {
                WindowPlan::Last(i) => format!("{ts} >= pg_catalog.now() - {}", self.value(i)),
                WindowPlan::After(t) => format!("{ts} > {}", self.value(t)),
                WindowPlan::Before(t) => format!("{ts} < {}", self.value(t)),
                WindowPlan::Between(a, b) => {
                    let lo = self.value(a);
                    let hi = self.value(b);
                    format!("{ts} BETWEEN {lo} AND {hi}")
                }
            };
            conds.push(cond);
        }
        if let Some(f) = &e.filter {
            let w = self.cond(f);
            conds.push(w);
        }
        let from = format!("{} {alias}", e.table.quoted);
        let (anchor, eq, outer) = equate(&alias, e.key, &self.aliases[PROFILE], e.profile_pk);
        self.pending = Some((
            EntitySelect {
                relationship: String::new(),
                entity: "events".into(),
                from: from.clone(),
                correlation: format!("{anchor} {eq} {outer}"),
                conds: conds.clone(),
                target_alias: alias.clone(),
                target_pk: e.ts.quoted.clone(),
            },
            None,
        ));
        if e.shape == Shape::Exists {
            return exists(&from, &anchor, &eq, &outer, &conds);
        }
        let p = self
            .params
            .typed(e.count.threshold().to_string(), "pg_catalog.int8");
        let having = format!("pg_catalog.count(*) {} {p}", e.count.sql_op());
        let g = self.alias("g");
        if e.direct {
            self.direct = Some(format!(
                "SELECT {g}.k::pg_catalog.text AS profile_id\nFROM (SELECT {anchor} AS k FROM {from} WHERE {w} GROUP BY 1 HAVING {having}) {g}\nWHERE {g}.k IS NOT NULL",
                w = conds.join(" AND "),
            ));
        }
        match e.shape {
            Shape::PerProfile => {
                let cap = self.cap(e.count);
                per_profile(&from, &anchor, &eq, &outer, &conds, &having, cap)
            }
            _ => grouped(
                &from,
                &anchor,
                &eq,
                &outer,
                &conds,
                &having,
                e.count.holds(0),
                &g,
            ),
        }
    }
}

/// `a.ca` and `b.cb` as an equality with the columns' type's own operator (citext's is
/// case-insensitive): when the types differ and one brings its own operators, the other
/// side is cast to it, whichever side it is on. (sides, operator)
pub fn equate(a: &str, ca: &Column, b: &str, cb: &Column) -> (String, String, String) {
    let (x, y, owner) = ca.compared_with(
        format!("{a}.{}", ca.quoted),
        cb,
        format!("{b}.{}", cb.quoted),
    );
    (x, owner.op("="), y)
}

/// `x op y`.
pub fn equality((x, op, y): (String, String, String)) -> String {
    format!("{x} {op} {y}")
}
