//! Planning predicates on event properties: a JSON path into the properties column,
//! each value typed by its JSON literal (number, string, boolean); a property of another
//! JSON type, or a missing one, does not match (and never raises).

use super::nodes::Planned;
use super::plan::*;
use super::*;

impl<'a> Planner<'a> {
    /// A predicate on an event property: typed by the literal; a property of another
    /// JSON type, or a missing one, does not match (and never raises).
    pub(super) fn property(
        &mut self,
        p: &Predicate,
        keys: &[String],
        row: &Row<'a>,
    ) -> Planned<'a> {
        let graph = self.ctx.graph;
        let sp = path_key(&p.path, "property");
        let Some(pc) = graph
            .events
            .as_ref()
            .and_then(|e| e.properties_column.as_ref())
            .and_then(|c| row.table.column(c))
        else {
            return Err(self.problem(
                Problem::new(
                    Kind::NotInPrerequisiteState,
                    sp,
                    "the event source has no properties column",
                )
                .with_hint("Name properties_column in the graph's events."),
            ));
        };
        let values = self.property_values(p)?;
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
            return Err(self.problem(Problem::invalid(
                path_key(&p.path, "case_insensitive"),
                "case_insensitive applies to string comparisons",
            )));
        }
        Ok(Cond::Property(Property {
            row: row.id,
            column: pc,
            keys: keys.to_vec(),
            op: p.op,
            case_insensitive: p.case_insensitive,
            values,
        }))
    }

    /// The values a property predicate compares with, each with the JSON type it
    /// matches.
    fn property_values(&mut self, p: &Predicate) -> Result<Vec<(&'static str, Val)>, Recorded> {
        let vp = path_key(&p.path, "value");
        // The JSON type and SQL of one literal.
        let lit = |c: &mut Self, v: &Value, path: &str| -> Result<(&'static str, Val), Recorded> {
            match v {
                Value::Number(n) => Ok(("number", Val::new(n.to_string(), "pg_catalog.numeric"))),
                Value::String(t) => Ok(("string", Val::new(t.clone(), "pg_catalog.text"))),
                Value::Bool(b) => Ok(("boolean", Val::new(b.to_string(), "pg_catalog.bool"))),
                other => Err(c.problem(Problem::invalid(
                    path,
                    format!(
                        "expected a number, string or boolean, got {}",
                        crate::json::type_name(other)
                    ),
                ))),
            }
        };
        let value = match &p.value {
            Some(Operand::Ref { path, .. }) => {
                return Err(self.problem(Problem::invalid(
                    path.as_str(),
                    "event properties compare with literal values only",
                )));
            }
            Some(Operand::Literal(v)) => Some(v.clone()),
            None => None,
        };
        Ok(match p.op {
            Op::IsNull | Op::IsNotNull => Vec::new(),
            Op::Equals | Op::NotEquals => {
                vec![lit(self, value.as_ref().unwrap_or(&Value::Null), &vp)?]
            }
            Op::In | Op::NotIn => {
                let Some(Value::Array(items)) = &value else {
                    return Err(self.problem(Problem::invalid(vp, "expected an array of values")));
                };
                let mut values = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    values.push(lit(self, item, &format!("{vp}[{i}]"))?);
                }
                values
            }
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                let Some(Value::String(t)) = &value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" compares with a string", p.op.name()),
                    )));
                };
                vec![("string", Val::new(t.clone(), "pg_catalog.text"))]
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let Some(Value::Number(n)) = &value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" on a property compares with a number", p.op.name()),
                    )));
                };
                vec![("number", Val::new(n.to_string(), "pg_catalog.numeric"))]
            }
            Op::Between => match &value {
                Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_number) => a
                    .iter()
                    .map(|n| ("number", Val::new(n.to_string(), "pg_catalog.numeric")))
                    .collect(),
                _ => {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        "between on a property takes two numbers [low, high]",
                    )))
                }
            },
            op => {
                return Err(self.problem(
                    Problem::invalid(path_key(&p.path, "op"), format!("operator \"{}\" does not apply to event properties", op.name()))
                        .with_hint("Use a column of the events table for dates, or the event's \"within\" window."),
                ));
            }
        })
    }
}
