//! Rendering the optimized plan as SQL: aliases for its rows, a typed `$n` for each of
//! its values (created by `Params`, in the order they are written), the column type's
//! own operators. Conditions and predicates are here; relationship and event nodes in
//! `related.rs`, their SQL shapes in `shape.rs`.

use super::plan::*;
use super::*;

/// Renders an optimized plan: the compiled query.
pub(super) fn render(plan: Plan<'_>) -> Compiled {
    let mut r = Renderer::new(plan.rows);
    let condition = r.cond(&plan.cond);
    Compiled {
        profile: ProfileSql {
            table: plan.profile.quoted.clone(),
            pk: plan.pk.quoted.clone(),
            pk_type: plan.pk.value_type().to_string(),
            user_id: plan.user_id.quoted.clone(),
            unique: plan.profile.unique_on(&[plan.pk.name.as_str()]),
        },
        condition,
        params: r.params,
        depends_on: plan.depends_on,
        relationships: plan.relationships,
        entity_selects: r.entity_selects,
        literal_checks: plan.checks,
        direct: r.direct,
        nodes: r.nodes,
        tables: plan.tables,
        uses_now: !plan.clock.is_empty(),
        clock: plan.clock,
    }
}

/// The renderer's state: the SQL's aliases and parameters so far, and what the
/// compiled query carries besides its condition.
pub(super) struct Renderer {
    pub(super) params: Params,
    /// The alias of each row rendered so far (by `RowId`).
    pub(super) aliases: Vec<String>,
    /// The last alias number given.
    pub(super) counter: usize,
    pub(super) nodes: Vec<NodeSql>,
    pub(super) entity_selects: Vec<EntitySelect>,
    /// Paths of the relationship nodes enclosing the node being rendered.
    pub(super) scopes: Vec<String>,
    /// The rows and candidates of the relationship or event node just rendered.
    pub(super) pending: Option<(EntitySelect, Option<EntitySelect>)>,
    /// False inside referenced audiences: their nodes and entities are not this
    /// audience's.
    pub(super) collect: bool,
    pub(super) direct: Option<String>,
}

impl Renderer {
    pub(super) fn new(rows: usize) -> Self {
        let mut aliases = vec![String::new(); rows];
        aliases[PROFILE] = "p".to_string();
        Renderer {
            params: Params::default(),
            aliases,
            counter: 0,
            nodes: Vec::new(),
            entity_selects: Vec::new(),
            scopes: Vec::new(),
            pending: None,
            collect: true,
            direct: None,
        }
    }

    /// A new alias, `prefix` and the next number.
    pub(super) fn alias(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// A new alias for row `row`.
    pub(super) fn alias_row(&mut self, row: RowId, prefix: &str) -> String {
        let alias = self.alias(prefix);
        self.aliases[row] = alias.clone();
        alias
    }

    /// `$n::type`.
    pub(super) fn value(&mut self, v: &Val) -> String {
        self.params.typed(v.text.clone(), &v.ty)
    }

    /// `row.column`.
    pub(super) fn column(&self, row: RowId, column: &Column) -> String {
        format!("{}.{}", self.aliases[row], column.quoted)
    }

    /// Notes a node's condition (and the rows of a relationship or event node just
    /// rendered), unless inside a referenced audience.
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

    /// A condition: true or false for the rows in scope, never unknown where it is
    /// negated (`IS NOT TRUE`).
    pub(super) fn cond(&mut self, c: &Cond<'_>) -> String {
        match c {
            Cond::Const(b) => b.to_string(),
            Cond::All(items) => self.join(items, " AND "),
            Cond::Any(items) => self.join(items, " OR "),
            Cond::Not(inner) => format!("({}) IS NOT TRUE", self.cond(inner)),
            Cond::Node(path, inner) => {
                let sql = self.cond(inner);
                self.record(path, &sql);
                sql
            }
            Cond::Pred(p) => self.pred(p),
            Cond::Property(p) => self.property(p),
            Cond::Audience(inner) => {
                let collect = std::mem::replace(&mut self.collect, false);
                let sql = self.cond(inner);
                self.collect = collect;
                format!("({sql})")
            }
            Cond::Rel(r) => self.rel(r, None),
            Cond::Event(e) => self.event(e),
        }
    }

    fn join(&mut self, items: &[Cond<'_>], joiner: &str) -> String {
        let parts: Vec<String> = items.iter().map(|c| self.cond(c)).collect();
        format!("({})", parts.join(joiner))
    }

    /// A column predicate, with the column type's own operators (citext's `=` is
    /// case-insensitive); with `case_insensitive` both sides are `lower()`ed text,
    /// compared as text.
    fn pred(&mut self, p: &Pred<'_>) -> String {
        let e = self.column(p.row, p.column);
        let ci = p.case_insensitive;
        let column = p.column;
        let sym = |name: &str| {
            if ci {
                name.to_string()
            } else {
                column.op(name)
            }
        };
        match &p.test {
            Test::Null(true) => format!("({e} IS NULL)"),
            Test::Null(false) => format!("({e} IS NOT NULL)"),
            Test::In { negated, items, ty } => {
                let list = self.params.array(items.clone(), ty);
                let cond = if ci {
                    format!(
                        "{} = ANY (SELECT pg_catalog.lower(x) FROM pg_catalog.unnest({list}) x)",
                        lower(&e, ci)
                    )
                } else {
                    format!("{e} {} ANY ({list})", sym("="))
                };
                if *negated {
                    format!("NOT coalesce({cond}, false)")
                } else {
                    format!("({cond})")
                }
            }
            Test::Between(lo, hi) => {
                let (lo, hi) = (self.value(lo), self.value(hi));
                if column.has_own_op(">=") || column.has_own_op("<=") {
                    format!("({e} {} {lo} AND {e} {} {hi})", sym(">="), sym("<="))
                } else {
                    format!("({e} BETWEEN {lo} AND {hi})")
                }
            }
            Test::Clock { within, interval } => {
                let cmp = if *within { ">=" } else { "<" };
                format!("({e} {cmp} pg_catalog.now() - {})", self.value(interval))
            }
            Test::Compare(op, rhs) => {
                let (e, v, column) = match rhs {
                    Rhs::Ref(row, c) => column.compared_with(e, c, self.column(*row, c)),
                    Rhs::Value(v) => (e, self.value(v), column),
                };
                let sym = |name: &str| {
                    if ci {
                        name.to_string()
                    } else {
                        column.op(name)
                    }
                };
                let (l, r) = (lower(&e, ci), lower(&v, ci));
                let own_eq = !ci && column.has_own_op("=");
                match op {
                    Op::Equals => format!("({l} {} {r})", sym("=")),
                    // IS DISTINCT FROM would look `=` up by name, missing the type's own.
                    Op::NotEquals if own_eq => format!(
                        "(({l} {} {r}) IS NOT TRUE AND ({l} IS NOT NULL OR {r} IS NOT NULL))",
                        sym("=")
                    ),
                    Op::NotEquals => format!("({l} IS DISTINCT FROM {r})"),
                    Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                        pattern(*op, &e, &v, column, ci)
                    }
                    Op::Gt | Op::After => format!("({e} {} {v})", sym(">")),
                    Op::Gte => format!("({e} {} {v})", sym(">=")),
                    Op::Lt | Op::Before => format!("({e} {} {v})", sym("<")),
                    _ => format!("({e} {} {v})", sym("<=")),
                }
            }
        }
    }

    /// A predicate on an event property: true only for a property of the value's JSON
    /// type that compares as asked.
    fn property(&mut self, p: &Property<'_>) -> String {
        let path = self.params.array(p.keys.clone(), "pg_catalog.text");
        let x = format!(
            "({}::pg_catalog.jsonb #> {path})",
            self.column(p.row, p.column)
        );
        let ci = p.case_insensitive;
        let typed = |json_type: &str, body: String| {
            format!("CASE WHEN pg_catalog.jsonb_typeof({x}) = '{json_type}' THEN coalesce({body}, false) ELSE false END")
        };
        let s = format!("({x} #>> '{{}}')");
        let compare = |json_type: &str, v: &str, sym: &str| -> String {
            match json_type {
                "number" => typed("number", format!("({x})::pg_catalog.numeric {sym} {v}")),
                "boolean" => typed("boolean", format!("({x})::pg_catalog.bool {sym} {v}")),
                _ => typed(
                    "string",
                    format!("{} {sym} {}", lower(&s, ci), lower(v, ci)),
                ),
            }
        };
        let positive = match p.op {
            Op::IsNull => return format!("({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')"),
            Op::IsNotNull => {
                return format!("NOT ({x} IS NULL OR pg_catalog.jsonb_typeof({x}) = 'null')")
            }
            Op::In | Op::NotIn => {
                let parts: Vec<String> = p
                    .values
                    .iter()
                    .map(|(t, v)| {
                        let v = self.value(v);
                        compare(t, &v, "=")
                    })
                    .collect();
                if parts.is_empty() {
                    "false".to_string()
                } else {
                    format!("({})", parts.join(" OR "))
                }
            }
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith => {
                let v = self.value(&p.values[0].1);
                let (l, r) = (lower(&s, ci), lower(&v, ci));
                let body = match p.op {
                    Op::Contains | Op::NotContains => format!("pg_catalog.strpos({l}, {r}) > 0"),
                    Op::StartsWith => format!("pg_catalog.starts_with({l}, {r})"),
                    _ => format!("pg_catalog.right({l}, pg_catalog.length({r})) = {r}"),
                };
                typed("string", body)
            }
            Op::Between => {
                let lo = self.value(&p.values[0].1);
                let hi = self.value(&p.values[1].1);
                typed(
                    "number",
                    format!("({x})::pg_catalog.numeric BETWEEN {lo} AND {hi}"),
                )
            }
            op => {
                let (t, v) = &p.values[0];
                let v = self.value(v);
                let sym = match op {
                    Op::Gt => ">",
                    Op::Gte => ">=",
                    Op::Lt => "<",
                    Op::Lte => "<=",
                    _ => "=",
                };
                compare(t, &v, sym)
            }
        };
        match p.op {
            Op::NotEquals | Op::NotIn | Op::NotContains => format!("NOT ({positive})"),
            _ => positive,
        }
    }
}

/// `pg_catalog.lower(s)` when comparing case-insensitively.
fn lower(s: &str, ci: bool) -> String {
    if ci {
        format!("pg_catalog.lower({s})")
    } else {
        s.to_string()
    }
}

/// `contains`, `not_contains`, `starts_with`, `ends_with` on a text column `e` against
/// `v`. A type with its own LIKE (citext's is case-insensitive) matches with it, the
/// value's `%`, `_` and `\` escaped; any other text type compares as text (`char(n)`
/// without its padding).
fn pattern(op: Op, e: &str, v: &str, column: &Column, ci: bool) -> String {
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
    // Substring searches under the database's default collation: Postgres refuses them
    // under a nondeterministic one (a column's `COLLATE` with `deterministic = false`),
    // and under any deterministic one they match the same characters.
    let l = format!("({}) COLLATE pg_catalog.\"default\"", lower(e, ci));
    let r = lower(v, ci);
    match op {
        Op::Contains => format!("(pg_catalog.strpos({l}, {r}) > 0)"),
        Op::NotContains => format!("NOT coalesce(pg_catalog.strpos({l}, {r}) > 0, false)"),
        Op::StartsWith => format!("(pg_catalog.starts_with({l}, {r}))"),
        _ => format!("(pg_catalog.right({l}, pg_catalog.length({r})) = {r})"),
    }
}
