//! Filters and predicates: each value a parameter typed as its column, compared with
//! the column type's own operators; event properties by JSON type.

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

impl<'a> Compiler<'a> {
    pub(super) fn filter(&mut self, f: &Filter, row: &Row<'a>, ancestors: &[Row<'a>]) -> Sql {
        Ok(match f {
            Filter::All(items) | Filter::Any(items) => {
                let (joiner, empty) = if matches!(f, Filter::All(_)) {
                    (" AND ", "true")
                } else {
                    (" OR ", "false")
                };
                if items.is_empty() {
                    return Ok(empty.into());
                }
                let parts = items
                    .iter()
                    .map(|i| self.filter(i, row, ancestors))
                    .collect();
                format!("({})", all_of(parts)?.join(joiner))
            }
            Filter::Not(inner) => format!("({}) IS NOT TRUE", self.filter(inner, row, ancestors)?),
            Filter::Pred(p) => self.predicate(p, row, ancestors, "column")?,
        })
    }

    pub(super) fn predicate(
        &mut self,
        p: &Predicate,
        row: &Row<'a>,
        ancestors: &[Row<'a>],
        subject_key: &str,
    ) -> Sql {
        let name = match &p.subject {
            Subject::Property(path) => return self.property(p, path, row),
            Subject::Column(name) => name,
        };
        let sp = path_key(&p.path, subject_key);
        let Some(column) = row.table.column(name).cloned() else {
            let (msg, what) = if subject_key == "trait" {
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
            return Err(
                self.problem(Problem::new(Kind::UndefinedColumn, sp, msg).with_opt_hint(hint))
            );
        };
        let cls = class(&column);
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
        let e = format!("{}.{}", row.alias, column.quoted);
        let ci = p.case_insensitive;
        let low = |s: &str| {
            if ci {
                format!("pg_catalog.lower({s})")
            } else {
                s.to_string()
            }
        };
        let vp = path_key(&p.path, "value");
        // The column type's own operators (citext's `=` is case-insensitive); with
        // case_insensitive both sides are lower()ed text, compared as text.
        let sym = |name: &str| {
            if ci {
                name.to_string()
            } else {
                column.op(name)
            }
        };
        Ok(match p.op {
            Op::IsNull => format!("({e} IS NULL)"),
            Op::IsNotNull => format!("({e} IS NOT NULL)"),
            Op::In | Op::NotIn => {
                let list = self.list(p.value.as_ref(), &column, cls, &vp)?;
                let cond = if ci {
                    format!(
                        "{} = ANY (SELECT pg_catalog.lower(x) FROM pg_catalog.unnest({list}) x)",
                        low(&e)
                    )
                } else {
                    format!("{e} {} ANY ({list})", sym("="))
                };
                if p.op == Op::In {
                    format!("({cond})")
                } else {
                    format!("NOT coalesce({cond}, false)")
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
                let lo = self.literal(&pair[0], &column, cls, &format!("{vp}[0]"));
                let hi = self.literal(&pair[1], &column, cls, &format!("{vp}[1]"));
                let (lo, hi) = (lo?, hi?);
                if column.has_own_op(">=") || column.has_own_op("<=") {
                    format!("({e} {} {lo} AND {e} {} {hi})", sym(">="), sym("<="))
                } else {
                    format!("({e} BETWEEN {lo} AND {hi})")
                }
            }
            Op::WithinLast | Op::NotWithinLast => {
                let Some(Operand::Literal(Value::String(i))) = &p.value else {
                    return Err(self.problem(Problem::invalid(
                        vp,
                        "expected an interval such as \"30 days\"",
                    )));
                };
                let iv = self.interval(i, &vp);
                self.clock(row.table, &column.quoted, i);
                if p.op == Op::WithinLast {
                    format!("({e} >= pg_catalog.now() - {iv})")
                } else {
                    format!("({e} < pg_catalog.now() - {iv})")
                }
            }
            op => {
                // Pattern operators take the value as text, as written (a char(n)
                // value is not padded or trimmed).
                let text_value = match p.value.as_ref() {
                    Some(Operand::Literal(Value::String(t)))
                        if matches!(
                            op,
                            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith
                        ) =>
                    {
                        Some(self.typed_param(t, "pg_catalog.text"))
                    }
                    _ => None,
                };
                let v = match text_value {
                    Some(v) => v,
                    None => self.operand(p.value.as_ref(), &column, cls, &vp, row, ancestors)?,
                };
                let (l, r) = (low(&e), low(&v));
                let own_eq = !ci && column.has_own_op("=");
                match p.op {
                    Op::Equals => format!("({l} {} {r})", sym("=")),
                    // IS DISTINCT FROM would look `=` up by name, missing the type's own.
                    Op::NotEquals if own_eq => format!(
                        "(({l} {} {r}) IS NOT TRUE AND ({l} IS NOT NULL OR {r} IS NOT NULL))",
                        sym("=")
                    ),
                    Op::NotEquals => format!("({l} IS DISTINCT FROM {r})"),
                    Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                        self.pattern(p.op, &e, &v, &column, ci)
                    }
                    Op::Gt | Op::After => format!("({e} {} {v})", sym(">")),
                    Op::Gte => format!("({e} {} {v})", sym(">=")),
                    Op::Lt | Op::Before => format!("({e} {} {v})", sym("<")),
                    Op::Lte => format!("({e} {} {v})", sym("<=")),
                    _ => unreachable!("handled above"),
                }
            }
        })
    }

    /// `contains`, `not_contains`, `starts_with`, `ends_with` on a text column `e`
    /// against `v`. A type with its own LIKE (citext's is case-insensitive) matches
    /// with it, the value's `%`, `_` and `\` escaped; any other text type compares as
    /// text (`char(n)` without its padding).
    pub(super) fn pattern(
        &mut self,
        op: Op,
        e: &str,
        v: &str,
        column: &Column,
        ci: bool,
    ) -> String {
        if !ci && column.has_own_op("~~") {
            let escaped = format!(
                "pg_catalog.replace(pg_catalog.replace(pg_catalog.replace({v}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"
            );
            let pattern = match op {
                Op::StartsWith => format!("{escaped} || '%'"),
                Op::EndsWith => format!("'%' || {escaped}"),
                _ => format!("'%' || {escaped} || '%'"),
            };
            let like = format!(
                "{e} {} ({pattern})::{}",
                column.op("~~"),
                column.value_type()
            );
            return if op == Op::NotContains {
                format!("NOT coalesce({like}, false)")
            } else {
                format!("({like})")
            };
        }
        let low = |s: &str| {
            if ci {
                format!("pg_catalog.lower({s})")
            } else {
                s.to_string()
            }
        };
        let (l, r) = (low(e), low(v));
        match op {
            Op::Contains => format!("(pg_catalog.strpos({l}, {r}) > 0)"),
            Op::NotContains => format!("NOT coalesce(pg_catalog.strpos({l}, {r}) > 0, false)"),
            Op::StartsWith => format!("(pg_catalog.starts_with({l}, {r}))"),
            _ => format!("(pg_catalog.right({l}, pg_catalog.length({r})) = {r})"),
        }
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
    ) -> Result<String, Recorded> {
        let Some(v) = v else {
            return Err(self.problem(Problem::invalid(path, "expected a value")));
        };
        match v {
            Operand::Literal(v) => self.literal(v, column, cls, path),
            Operand::Ref {
                path,
                owner,
                column: rc,
            } => {
                // The profile is always in scope; a relationship only as an ancestor.
                let found = ancestors
                    .iter()
                    .rev()
                    .find(|r| r.slug == *owner && (r.entity.is_none() || r.alias != row.alias))
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
                // Rows referred to this way must stay in the SQL (see `path::Short`).
                self.referenced.push(target.alias.clone());
                Ok(format!("{}.{}", target.alias, c.quoted))
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
    ) -> Result<String, Recorded> {
        let text = match (cls, v) {
            (Class::Text, Value::String(s)) => return Ok(self.column_value(s, column)),
            (Class::Number, Value::Number(n)) => number_text(n),
            (Class::Bool, Value::Bool(b)) => b.to_string(),
            (Class::Temporal, Value::String(s)) => s.clone(),
            (Class::Other, Value::String(s)) => s.clone(),
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

    /// `$n::type` for a text that must convert to the column's type.
    pub(super) fn typed_text(&mut self, text: &str, column: &Column, path: &str) -> String {
        self.checks.push(LiteralCheck {
            path: path.to_string(),
            value: text.to_string(),
            sql_type: column.value_type().to_string(),
        });
        self.column_value(text, column)
    }

    pub(super) fn interval(&mut self, text: &str, path: &str) -> String {
        self.checks.push(LiteralCheck {
            path: path.to_string(),
            value: text.to_string(),
            sql_type: "interval".into(),
        });
        self.typed_param(text, "pg_catalog.interval")
    }

    /// An array value for in/not_in, as `$n::type[]`.
    pub(super) fn list(
        &mut self,
        v: Option<&Operand>,
        column: &Column,
        cls: Class,
        path: &str,
    ) -> Result<String, Recorded> {
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
                self.checks.push(LiteralCheck {
                    path: ip,
                    value: t.clone(),
                    sql_type: column.value_type().to_string(),
                });
            }
            texts.push(t);
        }
        Ok(self.params.array(texts, column.value_type()))
    }
}
