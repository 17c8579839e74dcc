//! Relationship nodes: an EXISTS semi-join along the path, or counts and aggregates
//! (grouped for all profiles, or per profile), and their entity selects.

use super::*;

impl<'a> Compiler<'a> {
    /// A relationship node at the scope row. `lineage` is how the scope row is reached
    /// from the profile, for the entity selects of nested nodes.
    pub(super) fn rel_node(
        &mut self,
        n: &RelNode,
        scope: &[Row<'a>],
        lineage: Option<&EntitySelect>,
    ) -> Sql {
        self.pending = None;
        self.scopes.push(n.path.clone());
        let sql = self.rel_node_body(n, scope, lineage);
        self.scopes.pop();
        let sql = sql?;
        self.record(&n.path, &sql);
        Ok(sql)
    }

    pub(super) fn rel_node_body(
        &mut self,
        n: &RelNode,
        scope: &[Row<'a>],
        lineage: Option<&EntitySelect>,
    ) -> Sql {
        let at = path_key(&n.path, "relationship");
        let hops = self.hops(&n.slug, &at, scope)?;
        let chain = self.chain(&hops, scope, &at)?;
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
            let w = self.filter(f, &target, &ancestors)?;
            row_conds.push(w);
        }
        let where_only = row_conds.clone();
        let mut nested_scope = ancestors.clone();
        nested_scope.push(target.clone());
        // The entity select of this node: how its rows are reached from the profile.
        let (entity, target_pk) = match target.entity {
            Some(e) => (
                e.slug.clone(),
                target
                    .table
                    .column(&e.primary_key)
                    .map(|c| c.quoted.clone()),
            ),
            None => return Err(self.missing(&at, "the relationship's entity")),
        };
        let target_pk = self.found(target_pk, &at, "the entity's primary key")?;
        let select = EntitySelect {
            relationship: n.slug.clone(),
            entity,
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
            target_pk,
        };
        let children = n
            .relationships
            .iter()
            .map(|child| self.rel_node(child, &nested_scope, Some(&select)))
            .collect();
        row_conds.extend(all_of(children)?);
        let mut full = select.clone();
        full.conds
            .extend(row_conds[where_only.len()..].iter().cloned());
        if self.collect {
            self.entity_selects.push(full.clone());
        }
        self.pending = Some((full, Some(select.clone())));
        // The path without its pass-through first row, unless a condition refers to it.
        let (path_from, path_anchor) = match &chain.short {
            Some(s) if !self.referenced.contains(&s.dropped) => (s.from.clone(), s.anchor.clone()),
            _ => (chain.from.clone(), chain.anchor.clone()),
        };
        let count = n.count.or(if n.aggregate.is_none() {
            Some(Count::AtLeast(1))
        } else {
            None
        });
        if count == Some(Count::AtLeast(1)) && n.aggregate.is_none() {
            return Ok(exists(&path_from, &path_anchor, &chain.outer, &row_conds));
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
        let (from, anchor, conds) = if let (true, Some(col)) = (dedupe, &agg_column) {
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
            let p = self.typed_param(&cnt.threshold().to_string(), "pg_catalog.int8");
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
            having.push(format!("{counted} {} {p}", cnt.sql_op()));
            empty_holds &= cnt.holds(0);
        }
        if let Some(agg) = &n.aggregate {
            let value = dedupe.then(|| format!("{d}.v"));
            let (sql, holds) = self.aggregate(agg, &target, value.as_deref())?;
            having.push(sql);
            empty_holds &= holds;
        }
        let g = self.alias("g");
        if self.strategy == Strategy::PerProfile {
            return Ok(per_profile(
                &from,
                &anchor,
                &chain.outer,
                &conds,
                &having.join(" AND "),
            ));
        }
        Ok(grouped(
            &from,
            &anchor,
            &chain.outer,
            &conds,
            &having.join(" AND "),
            empty_holds,
            &g,
        ))
    }

    /// The HAVING expression of an aggregate and whether it holds over no rows.
    pub(super) fn aggregate(
        &mut self,
        a: &Aggregate,
        target: &Row<'a>,
        value: Option<&str>,
    ) -> Result<(String, bool), Recorded> {
        let cp = path_key(&a.path, "column");
        let Some(column) = target.table.column(&a.column).cloned() else {
            let hint = hint_for(
                &a.column,
                target.table.column_names(),
                &format!("columns of {}", target.what()),
            );
            return Err(self.problem(
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
            ));
        };
        let cls = class(&column);
        let numeric_only = matches!(a.func, AggFn::Sum | AggFn::Avg);
        if numeric_only && cls != Class::Number
            || matches!(a.func, AggFn::Min | AggFn::Max)
                && matches!(cls, Class::Bool | Class::Other)
        {
            return Err(self.problem(Problem::invalid(
                cp,
                format!(
                    "cannot take {:?} of column \"{}\" ({})",
                    a.func, column.name, column.type_name
                )
                .to_lowercase(),
            )));
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
        let num = |s: &mut Self, v: &Value, path: &str| -> Result<(String, f64), Recorded> {
            match (&value_col, v) {
                (Some(col), _) => {
                    let sql = s.literal(v, col, class(col), path)?;
                    Ok((sql, v.as_f64().unwrap_or(0.0)))
                }
                (None, Value::Number(n)) => {
                    let p = s.typed_param(&n.to_string(), "pg_catalog.numeric");
                    Ok((p, n.as_f64().unwrap_or(0.0)))
                }
                (None, other) => Err(s.problem(Problem::invalid(
                    path,
                    format!("expected a number, got {}", crate::json::type_name(other)),
                ))),
            }
        };
        let (sql, holds) = if a.op == Op::Between {
            let Some(pair) = a.value.as_array().filter(|v| v.len() == 2) else {
                return Err(self.problem(Problem::invalid(vp, "between takes [low, high]")));
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
        Ok((format!("({sql})"), holds))
    }
}
