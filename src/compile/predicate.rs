//! Planning filters and predicates: the column resolved in the catalog, the operator
//! checked against the column's type, each value typed as its column (rendered with
//! the column type's own operators by `render.rs`).

use super::nodes::{all_of, Planned};
use super::plan::*;
use super::*;

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Text,
    Number,
    Temporal,
    Bool,
    Other,
}

pub(super) fn class(c: &Column) -> Class {
    match c.category {
        'S' => Class::Text,
        'N' => Class::Number,
        'D' if c.value_type().starts_with("date") || c.value_type().starts_with("timestamp") => {
            Class::Temporal
        }
        'B' => Class::Bool,
        _ => Class::Other,
    }
}

pub(super) fn ops_for(cls: Class) -> Vec<Op> {
    use Op::*;
    let mut ops = vec![Equals, NotEquals, In, NotIn, IsNull, IsNotNull];
    match cls {
        Class::Text => ops.extend([Contains, NotContains, StartsWith, EndsWith]),
        Class::Number => ops.extend([Gt, Gte, Lt, Lte, Between]),
        Class::Temporal => ops.extend([
            Gt,
            Gte,
            Lt,
            Lte,
            Between,
            WithinLast,
            NotWithinLast,
            Before,
            After,
        ]),
        Class::Bool | Class::Other => {}
    }
    ops
}

pub(super) fn op_names(ops: &[Op]) -> String {
    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
}

/// A JSON number as Postgres reads it: integral floats (`1.0`) as integers, so they fit
/// integer columns as JSON intends.
pub(super) fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            format!("{}", f as i64)
        }
        _ => n.to_string(),
    }
}

impl<'a> Planner<'a> {
    pub(super) fn filter(
        &mut self,
        f: &Filter,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
    ) -> Planned<'a> {
        Ok(match f {
            Filter::All(items) | Filter::Any(items) => {
                let all = matches!(f, Filter::All(_));
                if items.is_empty() {
                    return Ok(Cond::Const(all));
                }
                let parts = items
                    .iter()
                    .map(|i| self.filter(i, row, ancestors))
                    .collect();
                let parts = all_of(parts)?;
                if all {
                    Cond::All(parts)
                } else {
                    Cond::Any(parts)
                }
            }
            Filter::Not(inner) => Cond::Not(Box::new(self.filter(inner, row, ancestors)?)),
            Filter::Pred(p) => self.predicate(p, row, ancestors, "column")?,
        })
    }

    pub(super) fn predicate(
        &mut self,
        p: &Predicate,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
        subject_key: &str,
    ) -> Planned<'a> {
        let name = match &p.subject {
            Subject::Property(path) => return self.property(p, path, row),
            Subject::Column(name) => name,
        };
        let at = path_key(&p.path, subject_key);
        let column = self.subject_column(name, row, subject_key == "trait", &at)?;
        let cls = class(column);
        let allowed = ops_for(cls);
        if !allowed.contains(&p.op) {
            return Err(self.problem(
                Problem::invalid(
                    path_key(&p.path, "op"),
                    format!(
                        "operator \"{}\" does not apply to \"{}\" ({})",
                        p.op.name(),
                        column.name,
                        column.type_name
                    ),
                )
                .with_hint(format!(
                    "Operators for {}: {}.",
                    column.type_name,
                    op_names(&allowed)
                )),
            ));
        }
        if p.case_insensitive && cls != Class::Text {
            return Err(self.problem(Problem::invalid(
                path_key(&p.path, "case_insensitive"),
                format!(
                    "case_insensitive applies to text columns, and \"{}\" is {}",
                    column.name, column.type_name
                ),
            )));
        }
        let test = self.test(p, column, cls, row, ancestors)?;
        Ok(Cond::Pred(Pred {
            row: row.id,
            column,
            case_insensitive: p.case_insensitive,
            test,
        }))
    }

    /// The column a predicate tests (a profile trait when `is_trait`), by name; a
    /// problem at `at` naming the nearest names when there is none.
    fn subject_column(
        &mut self,
        name: &str,
        row: &Row<'a>,
        is_trait: bool,
        at: &str,
    ) -> Result<&'a Column, Recorded> {
        if let Some(column) = row.table.column(name) {
            return Ok(column);
        }
        let (msg, what) = if is_trait {
            (
                format!(
                    "trait \"{name}\" does not exist on the profile table {}",
                    row.table.display()
                ),
                "traits".to_string(),
            )
        } else if row.slug == "events" {
            (
                format!(
                    "column \"{name}\" does not exist on the events table {}",
                    row.table.display()
                ),
                "columns".to_string(),
            )
        } else {
            (
                format!("column \"{name}\" does not exist on {}", row.what()),
                format!("columns of {}", row.what()),
            )
        };
        let hint = hint_for(name, row.table.column_names(), &what);
        Err(self.problem(Problem::new(Kind::UndefinedColumn, at, msg).with_opt_hint(hint)))
    }

    /// What a predicate on `column` (of class `cls`) tests, its values typed.
    fn test(
        &mut self,
        p: &Predicate,
        column: &'a Column,
        cls: Class,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
    ) -> Result<Test<'a>, Recorded> {
        let vp = path_key(&p.path, "value");
        Ok(match p.op {
            Op::IsNull | Op::IsNotNull => Test::Null(p.op == Op::IsNull),
            Op::In | Op::NotIn => {
                let (items, ty) = self.list(p.value.as_ref(), column, cls, &vp)?;
                Test::In {
                    negated: p.op == Op::NotIn,
                    items,
                    ty,
                }
            }
            Op::Between => {
                let Some(Operand::Literal(Value::Array(pair))) = p
                    .value
                    .as_ref()
                    .filter(|v| matches!(v, Operand::Literal(Value::Array(a)) if a.len() == 2))
                else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        "between takes a two-element array [low, high]",
                    )));
                };
                let lo = self.literal(&pair[0], column, cls, &format!("{vp}[0]"));
                let hi = self.literal(&pair[1], column, cls, &format!("{vp}[1]"));
                Test::Between(lo?, hi?)
            }
            Op::WithinLast | Op::NotWithinLast => {
                let Some(Operand::Literal(Value::String(i))) = &p.value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        "expected an interval such as \"30 days\"",
                    )));
                };
                self.clock(row.table, column, i);
                Test::Clock {
                    within: p.op == Op::WithinLast,
                    interval: self.interval(i, &vp),
                }
            }
            // Pattern operators take the value as text, as written (a char(n) value is
            // not padded or trimmed).
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith
                if matches!(&p.value, Some(Operand::Literal(Value::String(_)))) =>
            {
                let Some(Operand::Literal(Value::String(t))) = &p.value else {
                    unreachable!("matched above")
                };
                Test::Compare(p.op, Rhs::Value(Val::new(t.clone(), "pg_catalog.text")))
            }
            op => Test::Compare(
                op,
                self.operand(p.value.as_ref(), column, cls, &vp, row, ancestors)?,
            ),
        })
    }

    /// The SQL for a value: a typed parameter, or a reference to another row.
    pub(super) fn operand(
        &mut self,
        v: Option<&Operand>,
        column: &Column,
        cls: Class,
        path: &str,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
    ) -> Result<Rhs<'a>, Recorded> {
        let Some(v) = v else {
            return Err(self.problem(Problem::invalid(path, "expected a value")));
        };
        match v {
            Operand::Literal(v) => Ok(Rhs::Value(self.literal(v, column, cls, path)?)),
            Operand::Ref {
                path,
                owner,
                column: rc,
            } => {
                // The profile is always in scope; a relationship only as an ancestor.
                let found = ancestors
                    .iter()
                    .rev()
                    .find(|r| r.slug == *owner && (r.entity.is_none() || r.id != row.id))
                    .cloned();
                let Some(target) = found else {
                    let names: Vec<&str> = ancestors
                        .iter()
                        .map(|r| r.slug.as_str())
                        .filter(|s| *s != row.slug)
                        .collect();
                    let hint = format!(
                        "References in scope here: {}.",
                        names
                            .iter()
                            .map(|n| format!("{n}.<column>"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    return Err(self.problem(
                        Problem::invalid(path.as_str(), format!("\"{owner}\" is not the profile or an ancestor relationship of this row"))
                            .with_hint(hint),
                    ));
                };
                let Some(c) = target.table.column(rc) else {
                    let hint = hint_for(
                        rc,
                        target.table.column_names(),
                        &format!("columns of {}", target.what()),
                    );
                    return Err(self.problem(
                        Problem::new(
                            Kind::UndefinedColumn,
                            path.as_str(),
                            format!("column \"{rc}\" does not exist on {}", target.what()),
                        )
                        .with_opt_hint(hint),
                    ));
                };
                if !comparable(c, column) {
                    return Err(self.problem(Problem::invalid(
                        path.as_str(),
                        format!(
                            "cannot compare \"{}\" ({}) with {}.{} ({})",
                            column.name, column.type_name, owner, c.name, c.type_name
                        ),
                    )));
                }
                Ok(Rhs::Ref(target.id, c))
            }
        }
    }

    /// A literal for a column: its JSON type must fit the column's class; its text is
    /// checked by Postgres when the audience is defined.
    pub(super) fn literal(
        &mut self,
        v: &Value,
        column: &Column,
        cls: Class,
        path: &str,
    ) -> Result<Val, Recorded> {
        let text = match (cls, v) {
            (Class::Text, Value::String(s)) => return Ok(Val::new(s.clone(), column.value_type())),
            (Class::Number, Value::Number(n)) => number_text(n),
            (Class::Bool, Value::Bool(b)) => b.to_string(),
            (Class::Temporal, Value::String(s)) => s.clone(),
            (Class::Other, Value::String(s)) => s.clone(),
            // An array column's value as a JSON array: its array literal.
            (Class::Other, Value::Array(items)) if column.category == 'A' => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                sql::array_literal(&texts)
            }
            (Class::Other, v) if !v.is_null() => v.to_string(),
            (_, v) => {
                let want = match cls {
                    Class::Text | Class::Temporal => "a string",
                    Class::Number => "a number",
                    Class::Bool => "a boolean",
                    Class::Other => "a value",
                };
                let hint = if cls == Class::Temporal {
                    Some(
                        "Write dates and timestamps as ISO strings, e.g. \"2026-11-28\"."
                            .to_string(),
                    )
                } else {
                    None
                };
                return Err(self.problem(
                    Problem::invalid(
                        path,
                        format!(
                            "expected {want} for \"{}\" ({}), got {}",
                            column.name,
                            column.type_name,
                            crate::json::type_name(v)
                        ),
                    )
                    .with_opt_hint(hint),
                ));
            }
        };
        Ok(self.typed_text(&text, column, path))
    }

    /// An array value for in/not_in, of the column's type.
    pub(super) fn list(
        &mut self,
        v: Option<&Operand>,
        column: &Column,
        cls: Class,
        path: &str,
    ) -> Result<(Vec<String>, String), Recorded> {
        let Some(Operand::Literal(Value::Array(items))) = v else {
            return Err(self.problem(Problem::invalid(path, "expected an array of values")));
        };
        let mut texts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let t = match (cls, item) {
                (Class::Text, Value::String(s)) => s.clone(),
                (Class::Number, Value::Number(n)) => number_text(n),
                (Class::Bool, Value::Bool(b)) => b.to_string(),
                (Class::Temporal | Class::Other, Value::String(s)) => s.clone(),
                (Class::Other, v) if !v.is_null() => v.to_string(),
                (_, other) => {
                    return Err(self.problem(Problem::invalid(
                        ip,
                        format!(
                            "expected a value of \"{}\" ({}), got {}",
                            column.name,
                            column.type_name,
                            crate::json::type_name(other)
                        ),
                    )));
                }
            };
            if cls != Class::Text {
                self.check(&ip, &t, column.value_type());
            }
            texts.push(t);
        }
        Ok((texts, column.value_type().to_string()))
    }
}
