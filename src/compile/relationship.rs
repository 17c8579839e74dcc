//! Planning relationship nodes: the path, the filter on its rows, nested nodes, and
//! counts and aggregates.

use super::nodes::all_of;
use super::plan::*;
use super::*;

impl<'a> Planner<'a> {
    /// A relationship node at the scope row.
    pub(super) fn rel_node(
        &mut self,
        n: &RelNode,
        scope: &[Row<'a>],
    ) -> Result<RelPlan<'a>, Recorded> {
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
        let filter = match &n.filter {
            Some(f) => Some(self.filter(f, &target, &ancestors)?),
            None => None,
        };
        let mut nested_scope = ancestors.clone();
        nested_scope.push(target.clone());
        let Some(entity) = target.entity else {
            return Err(self.missing(&at, "the relationship's entity"));
        };
        let target_pk = target.table.column(&entity.primary_key);
        let target_pk = self.found(target_pk, &at, "the entity's primary key")?;
        let key_unique = target
            .table
            .unique_key(&entity.primary_key, entity.profile_key.as_deref());
        let children = n
            .relationships
            .iter()
            .map(|child| self.rel_node(child, &nested_scope))
            .collect();
        let children = all_of(children)?;
        let count = n.count.or(if n.aggregate.is_none() {
            Some(Count::AtLeast(1))
        } else {
            None
        });
        let aggregate = match &n.aggregate {
            Some(a) => Some(self.aggregate(a, &target)?),
            None => None,
        };
        Ok(RelPlan {
            path: n.path.clone(),
            slug: n.slug.clone(),
            entity: entity.slug.clone(),
            hops: chain.hops,
            target: target.id,
            target_pk,
            filter,
            children,
            count,
            aggregate,
            // Rows of an entity whose key is not unique (no primary key or unique index
            // on it, alone or with the profile key) count once per key.
            may_repeat: chain.may_repeat || !key_unique,
            droppable: chain.droppable,
            short: false,
            shape: Shape::Exists,
        })
    }

    /// The HAVING expression of an aggregate and whether it holds over no rows.
    pub(super) fn aggregate(
        &mut self,
        a: &Aggregate,
        target: &Row<'a>,
    ) -> Result<AggPlan<'a>, Recorded> {
        let cp = path_key(&a.path, "column");
        let Some(column) = target.table.column(&a.column) else {
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
        let cls = class(column);
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
        // Values compare as the column for min and max, as numbers otherwise; `empty` is
        // the aggregate's value over no rows, when it has one.
        let (value_col, empty) = match a.func {
            AggFn::Sum | AggFn::CountDistinct => (None, Some(0.0)),
            AggFn::Avg => (None, None),
            AggFn::Min | AggFn::Max => (Some(column), None),
        };
        // Other values compare as the aggregate's result: a sum of reals is a real (0.1
        // must equal a sum of one real 0.1), an average of floats a double; numeric else.
        let result_type = match (a.func, column.value_type()) {
            (AggFn::Sum, "real") => "pg_catalog.float4",
            (AggFn::Sum | AggFn::Avg, "real" | "double precision") => "pg_catalog.float8",
            _ => "pg_catalog.numeric",
        };
        let vp = path_key(&a.path, "value");
        let num = |s: &mut Self, v: &Value, path: &str| -> Result<(Val, f64), Recorded> {
            match (value_col, v) {
                (Some(col), _) => {
                    let val = s.literal(v, col, class(col), path)?;
                    Ok((val, v.as_f64().unwrap_or(0.0)))
                }
                (None, Value::Number(n)) => Ok((
                    Val::new(n.to_string(), result_type),
                    n.as_f64().unwrap_or(0.0),
                )),
                (None, other) => Err(s.problem(Problem::invalid(
                    path,
                    format!("expected a number, got {}", crate::json::type_name(other)),
                ))),
            }
        };
        let (values, empty_holds) = if a.op == Op::Between {
            let Some(pair) = a.value.as_array().filter(|v| v.len() == 2) else {
                return Err(self.problem(Problem::invalid(vp, "between takes [low, high]")));
            };
            let (lo, l) = num(self, &pair[0], &format!("{vp}[0]"))?;
            let (hi, h) = num(self, &pair[1], &format!("{vp}[1]"))?;
            (vec![lo, hi], empty.is_some_and(|z| l <= z && z <= h))
        } else {
            let (v, x) = num(self, &a.value, &vp)?;
            let holds = empty.is_some_and(|z| match a.op {
                Op::Equals => z == x,
                Op::NotEquals => z != x,
                Op::Gt => z > x,
                Op::Gte => z >= x,
                Op::Lt => z < x,
                _ => z <= x,
            });
            (vec![v], holds)
        };
        Ok(AggPlan {
            func: a.func,
            column,
            op: a.op,
            values,
            empty_holds,
        })
    }
}
