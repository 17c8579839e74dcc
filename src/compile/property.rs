//! Predicates on event properties: a JSON path into the properties column, each value
//! typed by its JSON literal (number, string, boolean); a property of another JSON type,
//! or a missing one, does not match (and never raises).

use super::*;

impl<'a> Compiler<'a> {
    /// A predicate on an event property: typed by the literal; a property of another
    /// JSON type, or a missing one, does not match (and never raises).
    pub(super) fn property(&mut self, p: &Predicate, keys: &[String], row: &Row<'a>) -> Sql {
        let graph = self.ctx.graph;
        let sp = path_key(&p.path, "property");
        let Some(pc) = graph
            .events
            .as_ref()
            .and_then(|e| e.properties_column.as_ref())
            .and_then(|c| row.table.column(c))
            .cloned()
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
        let path_param = self.params.array(keys.to_vec(), "pg_catalog.text");
        let x = format!(
            "({}.{}::pg_catalog.jsonb #> {path_param})",
            row.alias, pc.quoted
        );
        let vp = path_key(&p.path, "value");
        let ci = p.case_insensitive;
        let typed = |json_type: &str, body: String| {
            format!("CASE WHEN pg_catalog.jsonb_typeof({x}) = '{json_type}' THEN coalesce({body}, false) ELSE false END")
        };
        let s = format!("({x} #>> '{{}}')");
        let low = |v: &str| {
            if ci {
                format!("pg_catalog.lower({v})")
            } else {
                v.to_string()
            }
        };
        // The JSON type and SQL of one literal.
        let lit = |c: &mut Self,
                   v: &Value,
                   path: &str|
         -> Result<(&'static str, String), Recorded> {
            match v {
                Value::Number(n) => Ok((
                    "number",
                    c.typed_param(&n.to_string(), "pg_catalog.numeric"),
                )),
                Value::String(t) => Ok(("string", c.typed_param(t, "pg_catalog.text"))),
                Value::Bool(b) => Ok(("boolean", c.typed_param(&b.to_string(), "pg_catalog.bool"))),
                other => Err(c.problem(Problem::invalid(
                    path,
                    format!(
                        "expected a number, string or boolean, got {}",
                        crate::json::type_name(other)
                    ),
                ))),
            }
        };
        let compare = |json_type: &str, v: &str, sym: &str| -> String {
            match json_type {
                "number" => typed("number", format!("({x})::pg_catalog.numeric {sym} {v}")),
                "boolean" => typed("boolean", format!("({x})::pg_catalog.bool {sym} {v}")),
                _ => typed("string", format!("{} {sym} {}", low(&s), low(v))),
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
        let positive = match p.op {
            Op::IsNull => {
                return Ok(format!(
                    "({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')"
                ))
            }
            Op::IsNotNull => {
                return Ok(format!(
                    "NOT ({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')"
                ))
            }
            Op::Equals | Op::NotEquals => {
                let (t, v) = lit(self, value.as_ref().unwrap_or(&Value::Null), &vp)?;
                compare(t, &v, "=")
            }
            Op::In | Op::NotIn => {
                let Some(Value::Array(items)) = &value else {
                    return Err(self.problem(Problem::invalid(vp, "expected an array of values")));
                };
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let (t, v) = lit(self, item, &format!("{vp}[{i}]"))?;
                    parts.push(compare(t, &v, "="));
                }
                if parts.is_empty() {
                    "false".to_string()
                } else {
                    format!("({})", parts.join(" OR "))
                }
            }
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                let Some(Value::String(t)) = &value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" compares with a string", p.op.name()),
                    )));
                };
                let v = self.typed_param(t, "pg_catalog.text");
                let (l, r) = (low(&s), low(&v));
                let body = match p.op {
                    Op::Contains | Op::NotContains => format!("pg_catalog.strpos({l}, {r}) > 0"),
                    Op::StartsWith => format!("pg_catalog.starts_with({l}, {r})"),
                    _ => format!("pg_catalog.right({l}, pg_catalog.length({r})) = {r}"),
                };
                typed("string", body)
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let Some(Value::Number(n)) = &value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        format!("\"{}\" on a property compares with a number", p.op.name()),
                    )));
                };
                let v = self.typed_param(&n.to_string(), "pg_catalog.numeric");
                let sym = match p.op {
                    Op::Gt => ">",
                    Op::Gte => ">=",
                    Op::Lt => "<",
                    _ => "<=",
                };
                compare("number", &v, sym)
            }
            Op::Between => {
                let pair = match &value {
                    Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_number) => {
                        a.clone()
                    }
                    _ => {
                        return Err(self.problem(Problem::invalid(
                            vp,
                            "between on a property takes two numbers [low, high]",
                        )))
                    }
                };
                let lo = self.typed_param(&pair[0].to_string(), "pg_catalog.numeric");
                let hi = self.typed_param(&pair[1].to_string(), "pg_catalog.numeric");
                typed(
                    "number",
                    format!("({x})::pg_catalog.numeric BETWEEN {lo} AND {hi}"),
                )
            }
            op => {
                return Err(self.problem(
                    Problem::invalid(path_key(&p.path, "op"), format!("operator \"{}\" does not apply to event properties", op.name()))
                        .with_hint("Use a column of the events table for dates, or the event's \"within\" window."),
                ));
            }
        };
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
        Ok(match p.op {
            Op::NotEquals | Op::NotIn | Op::NotContains => format!("NOT ({positive})"),
            _ => positive,
        })
    }
}
