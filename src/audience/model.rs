//! The audience definition language (SPEC section 2) and its JSON form. Parsing checks
//! shape only (types, keys, operator names, counts, windows); the compiler checks the
//! definition against the graph and the catalog.

use crate::error::Problem;
use crate::json::{obj, type_name, Obj, Problems};
use serde_json::Value;

/// How deep a definition may nest, and how many nodes it may have: beyond these a
/// definition is refused rather than compiled into an unplannable query.
pub const MAX_NESTING: usize = 32;
pub const MAX_NODES: usize = 2000;

/// A condition over profiles. `path` is the node's JSON path.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub path: String,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Trait(Predicate),
    Audience { key: String, member: bool },
    Relationship(RelNode),
    Event(EventNode),
}

/// Profiles associated with related rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RelNode {
    pub path: String,
    pub slug: String,
    pub filter: Option<Filter>,
    pub count: Option<Count>,
    pub aggregate: Option<Aggregate>,
    pub relationships: Vec<RelNode>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventNode {
    pub path: String,
    pub name: String,
    pub filter: Option<Filter>,
    pub count: Option<Count>,
    pub within: Option<Window>,
}

/// Predicates over one row, combined with all/any/not.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Pred(Predicate),
}

/// What a predicate looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A column of the row (a trait, for trait nodes).
    Column(String),
    /// A key or dotted path into an event's properties.
    Property(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub path: String,
    pub subject: Subject,
    pub op: Op,
    pub value: Option<Operand>,
    pub case_insensitive: bool,
}

/// A literal, or a reference to another row's column.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    /// `profile.<trait>` or `<ancestor relationship slug>.<column>`.
    Ref {
        path: String,
        owner: String,
        column: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    IsNull,
    IsNotNull,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    WithinLast,
    NotWithinLast,
    Before,
    After,
}

pub const OPS: [(&str, Op); 19] = [
    ("equals", Op::Equals),
    ("not_equals", Op::NotEquals),
    ("in", Op::In),
    ("not_in", Op::NotIn),
    ("is_null", Op::IsNull),
    ("is_not_null", Op::IsNotNull),
    ("contains", Op::Contains),
    ("not_contains", Op::NotContains),
    ("starts_with", Op::StartsWith),
    ("ends_with", Op::EndsWith),
    ("gt", Op::Gt),
    ("gte", Op::Gte),
    ("lt", Op::Lt),
    ("lte", Op::Lte),
    ("between", Op::Between),
    ("within_last", Op::WithinLast),
    ("not_within_last", Op::NotWithinLast),
    ("before", Op::Before),
    ("after", Op::After),
];

impl Op {
    pub fn name(self) -> &'static str {
        OPS.iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
    /// Operators that take no value.
    pub fn is_unary(self) -> bool {
        matches!(self, Op::IsNull | Op::IsNotNull)
    }
}

/// A threshold on the number of related rows (or events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    AtLeast(i64),
    AtMost(i64),
    Exactly(i64),
    MoreThan(i64),
    LessThan(i64),
}

pub const COUNT_KEYS: [&str; 5] = ["at_least", "at_most", "exactly", "more_than", "less_than"];

impl Count {
    pub fn holds(self, n: i64) -> bool {
        match self {
            Count::AtLeast(k) => n >= k,
            Count::AtMost(k) => n <= k,
            Count::Exactly(k) => n == k,
            Count::MoreThan(k) => n > k,
            Count::LessThan(k) => n < k,
        }
    }
    pub fn threshold(self) -> i64 {
        match self {
            Count::AtLeast(k)
            | Count::AtMost(k)
            | Count::Exactly(k)
            | Count::MoreThan(k)
            | Count::LessThan(k) => k,
        }
    }
    /// The SQL comparison operator.
    pub fn sql_op(self) -> &'static str {
        match self {
            Count::AtLeast(_) => ">=",
            Count::AtMost(_) => "<=",
            Count::Exactly(_) => "=",
            Count::MoreThan(_) => ">",
            Count::LessThan(_) => "<",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

pub const AGG_FNS: [(&str, AggFn); 5] = [
    ("sum", AggFn::Sum),
    ("avg", AggFn::Avg),
    ("min", AggFn::Min),
    ("max", AggFn::Max),
    ("count_distinct", AggFn::CountDistinct),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub path: String,
    pub func: AggFn,
    pub column: String,
    pub op: Op,
    pub value: Value,
}

/// When events happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    Last(String),
    After(String),
    Before(String),
    Between(String, String),
}

// ---------------------------------------------------------------------------------

struct Reader {
    out: Problems,
    nodes: usize,
}

/// Parses a definition. All shape problems are collected; the tree is returned only
/// when there are none.
pub fn parse(doc: &Value) -> Result<Node, Vec<Problem>> {
    let mut r = Reader {
        out: Problems::default(),
        nodes: 0,
    };
    let node = r.node(doc, "$", 0);
    match node {
        Some(n) if r.out.is_empty() => Ok(n),
        _ => Err(r.out.0),
    }
}

fn nearest_key_hint(keys: &[&str]) -> String {
    format!("A node has one of the keys {}.", keys.join(", "))
}

const NODE_KEYS: [&str; 6] = ["all", "any", "not", "trait", "audience", "relationship"];

impl Reader {
    fn problem(&mut self, p: Problem) {
        self.out.push(p);
    }

    /// Counts a node against the limits; false when over them.
    fn enter(&mut self, path: &str, depth: usize) -> bool {
        self.nodes += 1;
        if depth > MAX_NESTING {
            self.problem(
                Problem::invalid(
                    path,
                    format!("the definition nests deeper than {MAX_NESTING} levels"),
                )
                .with_hint("Flatten nested all/any/not groups."),
            );
            return false;
        }
        if self.nodes == MAX_NODES + 1 {
            self.problem(
                Problem::invalid(
                    path,
                    format!("the definition has more than {MAX_NODES} nodes"),
                )
                .with_hint("Split it into audiences that reference each other."),
            );
        }
        self.nodes <= MAX_NODES
    }

    fn list(&mut self, o: &mut Obj<'_>, key: &'static str, depth: usize) -> Vec<Node> {
        o.opt_arr(key, &mut self.out)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(p, v)| self.node(v, &p, depth + 1))
            .collect()
    }

    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Option<Node> {
        if !self.enter(path, depth) {
            return None;
        }
        let mut o = obj(v, path, &mut self.out)?;
        let present: Vec<&str> = NODE_KEYS
            .iter()
            .copied()
            .chain(std::iter::once("event"))
            .filter(|k| o.has(k))
            .collect();
        if present.len() != 1 {
            let msg = if present.is_empty() {
                "a node must say what it is".to_string()
            } else {
                format!(
                    "a node is one thing, but it has both \"{}\" and \"{}\"",
                    present[0], present[1]
                )
            };
            let mut keys = NODE_KEYS.to_vec();
            keys.push("event");
            self.problem(Problem::invalid(path, msg).with_hint(nearest_key_hint(&keys)));
            return None;
        }
        let kind = match present[0] {
            "all" => {
                let items = self.list(&mut o, "all", depth);
                o.finish(&mut self.out);
                NodeKind::All(items)
            }
            "any" => {
                let items = self.list(&mut o, "any", depth);
                o.finish(&mut self.out);
                NodeKind::Any(items)
            }
            "not" => {
                let inner = o
                    .get("not")
                    .and_then(|v| self.node(v, &o.key_path("not"), depth + 1));
                o.finish(&mut self.out);
                NodeKind::Not(Box::new(inner?))
            }
            "trait" => {
                let p = self.predicate(o, Some("trait"))?;
                NodeKind::Trait(p)
            }
            "audience" => {
                let key = o.req_str("audience", &mut self.out);
                let member = o.opt_bool("member", &mut self.out).unwrap_or(true);
                o.finish(&mut self.out);
                NodeKind::Audience { key: key?, member }
            }
            "relationship" => NodeKind::Relationship(self.rel_node(o, depth)?),
            _ => NodeKind::Event(self.event_node(o)?),
        };
        Some(Node {
            path: path.to_string(),
            kind,
        })
    }

    fn rel_node(&mut self, mut o: Obj<'_>, depth: usize) -> Option<RelNode> {
        let path = o.path.clone();
        let slug = o.req_str("relationship", &mut self.out);
        let filter = o
            .get("where")
            .and_then(|v| self.filter(v, &o.key_path("where"), depth + 1, false));
        let count = o
            .get("count")
            .and_then(|v| self.count(v, &o.key_path("count")));
        let aggregate = o
            .opt_obj("aggregate", &mut self.out)
            .and_then(|a| self.aggregate(a));
        let relationships = o
            .opt_arr("relationships", &mut self.out)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(p, v)| {
                if !self.enter(&p, depth + 1) {
                    return None;
                }
                let child = obj(v, &p, &mut self.out)?;
                if !child.has("relationship") {
                    self.problem(
                        Problem::invalid(&p, "only relationship nodes can be nested under \"relationships\"")
                            .with_hint("Write {\"relationship\": \"<slug>\", ...}; put other conditions at the top level."),
                    );
                    return None;
                }
                self.rel_node(child, depth + 1)
            })
            .collect();
        o.finish(&mut self.out);
        Some(RelNode {
            path,
            slug: slug?,
            filter,
            count,
            aggregate,
            relationships,
        })
    }

    fn event_node(&mut self, mut o: Obj<'_>) -> Option<EventNode> {
        let path = o.path.clone();
        let name = o.req_str("event", &mut self.out);
        let filter = o
            .get("where")
            .and_then(|v| self.filter(v, &o.key_path("where"), 1, true));
        let count = o
            .get("count")
            .and_then(|v| self.count(v, &o.key_path("count")));
        let within = o
            .get("within")
            .and_then(|v| self.window(v, &o.key_path("within")));
        o.finish(&mut self.out);
        Some(EventNode {
            path,
            name: name?,
            filter,
            count,
            within,
        })
    }

    fn filter(&mut self, v: &Value, path: &str, depth: usize, events: bool) -> Option<Filter> {
        if !self.enter(path, depth) {
            return None;
        }
        let mut o = obj(v, path, &mut self.out)?;
        let groups = |o: &Obj<'_>| ["all", "any", "not"].into_iter().find(|k| o.has(k));
        if let Some(g) = groups(&o) {
            let f = match g {
                "not" => {
                    let inner = o
                        .get("not")
                        .and_then(|v| self.filter(v, &o.key_path("not"), depth + 1, events));
                    Filter::Not(Box::new(inner?))
                }
                key => {
                    let key: &'static str = if key == "all" { "all" } else { "any" };
                    let items = o
                        .opt_arr(key, &mut self.out)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(p, v)| self.filter(v, &p, depth + 1, events))
                        .collect();
                    if key == "all" {
                        Filter::All(items)
                    } else {
                        Filter::Any(items)
                    }
                }
            };
            o.finish(&mut self.out);
            return Some(f);
        }
        let subject_key = if events && o.has("property") {
            "property"
        } else {
            "column"
        };
        self.predicate(o, Some(subject_key)).map(Filter::Pred)
    }

    /// A predicate whose subject is under `subject_key` ("trait", "column", "property").
    fn predicate(
        &mut self,
        mut o: Obj<'_>,
        subject_key: Option<&'static str>,
    ) -> Option<Predicate> {
        let path = o.path.clone();
        let key = subject_key.unwrap_or("column");
        let subject_name = o.req_str(key, &mut self.out);
        let op_name = o.req_str("op", &mut self.out);
        let op = op_name.as_ref().and_then(|n| {
            let found = OPS.iter().find(|(k, _)| k == n).map(|(_, op)| *op);
            if found.is_none() {
                let hint = crate::names::hint_for(n, OPS.iter().map(|(k, _)| *k), "operators");
                self.problem(
                    Problem::invalid(o.key_path("op"), format!("unknown operator \"{n}\""))
                        .with_opt_hint(hint),
                );
            }
            found
        });
        let value_path = o.key_path("value");
        let value = o.get("value").map(|v| self.operand(v, &value_path));
        let case_insensitive = o
            .opt_bool("case_insensitive", &mut self.out)
            .unwrap_or(false);
        o.finish(&mut self.out);
        let op = op?;
        if op.is_unary() && value.is_some() {
            self.problem(Problem::invalid(
                value_path,
                format!("\"{}\" takes no value", op.name()),
            ));
            return None;
        }
        if !op.is_unary() && value.is_none() {
            self.problem(Problem::invalid(
                value_path,
                format!("\"{}\" needs a value", op.name()),
            ));
            return None;
        }
        let name = subject_name?;
        let subject = if key == "property" {
            let parts: Vec<String> = name.split('.').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                self.problem(Problem::invalid(
                    format!("{path}.property"),
                    format!("invalid property path \"{name}\""),
                ));
                return None;
            }
            Subject::Property(parts)
        } else {
            Subject::Column(name)
        };
        Some(Predicate {
            path,
            subject,
            op,
            value: value.flatten(),
            case_insensitive,
        })
    }

    fn operand(&mut self, v: &Value, path: &str) -> Option<Operand> {
        // An object is a reference when it names one; any other object is a value (a
        // jsonb column's).
        if v.get("ref").is_some() {
            let mut o = obj(v, path, &mut self.out)?;
            let r = o.req_str("ref", &mut self.out);
            o.finish(&mut self.out);
            let r = r?;
            return match r.split_once('.') {
                Some((owner, column)) if !owner.is_empty() && !column.is_empty() => {
                    Some(Operand::Ref {
                        path: format!("{path}.ref"),
                        owner: owner.to_string(),
                        column: column.to_string(),
                    })
                }
                _ => {
                    self.problem(
                        Problem::invalid(
                            format!("{path}.ref"),
                            format!("invalid reference \"{r}\""),
                        )
                        .with_hint(
                            "Write \"profile.<trait>\" or \"<ancestor relationship>.<column>\".",
                        ),
                    );
                    None
                }
            };
        }
        Some(Operand::Literal(v.clone()))
    }

    fn count(&mut self, v: &Value, path: &str) -> Option<Count> {
        let mut o = obj(v, path, &mut self.out)?;
        let present: Vec<&str> = COUNT_KEYS.iter().copied().filter(|k| o.has(k)).collect();
        let mut result = None;
        if present.len() != 1 {
            self.problem(
                Problem::invalid(path, "a count has exactly one threshold").with_hint(format!(
                    "Use one of {}, e.g. {{\"at_least\": 1}}.",
                    COUNT_KEYS.join(", ")
                )),
            );
        } else {
            let key: &'static str = COUNT_KEYS
                .iter()
                .copied()
                .find(|k| *k == present[0])
                .unwrap_or("at_least");
            let kp = o.key_path(key);
            let n = match o.get(key) {
                Some(Value::Number(n)) => n.as_i64().filter(|n| *n >= 0),
                _ => None,
            };
            match n {
                Some(n) if n <= i32::MAX as i64 => {
                    result = Some(match key {
                        "at_least" => Count::AtLeast(n),
                        "at_most" => Count::AtMost(n),
                        "exactly" => Count::Exactly(n),
                        "more_than" => Count::MoreThan(n),
                        _ => Count::LessThan(n),
                    })
                }
                _ => {
                    let got = o.get(key).map_or("nothing", type_name);
                    // (A number: itself, whether negative, fractional or too large.)
                    let what = match o.get(key) {
                        Some(Value::Number(n)) => n.to_string(),
                        _ => got.to_string(),
                    };
                    self.problem(Problem::invalid(
                        kp,
                        format!("expected a whole number from 0 to {}, got {what}", i32::MAX),
                    ));
                }
            }
        }
        for k in COUNT_KEYS {
            o.get(k);
        }
        o.finish(&mut self.out);
        result
    }

    fn aggregate(&mut self, mut o: Obj<'_>) -> Option<Aggregate> {
        let path = o.path.clone();
        let func = o.req_str("fn", &mut self.out).and_then(|f| {
            let found = AGG_FNS.iter().find(|(k, _)| *k == f).map(|(_, a)| *a);
            if found.is_none() {
                let hint = crate::names::hint_for(
                    &f,
                    AGG_FNS.iter().map(|(k, _)| *k),
                    "aggregate functions",
                );
                self.problem(
                    Problem::invalid(
                        o.key_path("fn"),
                        format!("unknown aggregate function \"{f}\""),
                    )
                    .with_opt_hint(hint),
                );
            }
            found
        });
        let column = o.req_str("column", &mut self.out);
        let op = o.req_str("op", &mut self.out).and_then(|n| {
            let allowed = ["equals", "not_equals", "gt", "gte", "lt", "lte", "between"];
            let found = OPS
                .iter()
                .find(|(k, _)| *k == n && allowed.contains(k))
                .map(|(_, op)| *op);
            if found.is_none() {
                let hint =
                    crate::names::hint_for(&n, allowed.iter().copied(), "aggregate operators");
                self.problem(
                    Problem::invalid(
                        o.key_path("op"),
                        format!("operator \"{n}\" does not apply to an aggregate"),
                    )
                    .with_opt_hint(hint),
                );
            }
            found
        });
        let value = o.req("value", &mut self.out).cloned();
        o.finish(&mut self.out);
        Some(Aggregate {
            path,
            func: func?,
            column: column?,
            op: op?,
            value: value?,
        })
    }

    fn window(&mut self, v: &Value, path: &str) -> Option<Window> {
        let mut o = obj(v, path, &mut self.out)?;
        const KEYS: [&str; 4] = ["last", "after", "before", "between"];
        let present: Vec<&str> = KEYS.iter().copied().filter(|k| o.has(k)).collect();
        let last = o.opt_str("last", &mut self.out);
        let after = o.opt_str("after", &mut self.out);
        let before = o.opt_str("before", &mut self.out);
        let between = o.get("between");
        let between_path = o.key_path("between");
        o.finish(&mut self.out);
        if present.len() != 1 {
            self.problem(
                Problem::invalid(path, "a window has exactly one of last, after, before, between")
                    .with_hint("For example {\"last\": \"30 days\"} or {\"between\": [\"2026-01-01\", \"2026-02-01\"]}."),
            );
            return None;
        }
        match present[0] {
            "last" => last.map(Window::Last),
            "after" => after.map(Window::After),
            "before" => before.map(Window::Before),
            _ => match between {
                Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_string) => {
                    Some(Window::Between(
                        a[0].as_str().unwrap_or_default().to_string(),
                        a[1].as_str().unwrap_or_default().to_string(),
                    ))
                }
                _ => {
                    self.problem(Problem::invalid(
                        between_path,
                        "expected an array of two timestamps [from, to]",
                    ));
                    None
                }
            },
        }
    }
}

/// The audience keys a definition references directly.
pub fn referenced_audiences(n: &Node, out: &mut Vec<String>) {
    match &n.kind {
        NodeKind::All(v) | NodeKind::Any(v) => v.iter().for_each(|c| referenced_audiences(c, out)),
        NodeKind::Not(c) => referenced_audiences(c, out),
        NodeKind::Audience { key, .. } if !out.contains(key) => out.push(key.clone()),
        _ => {}
    }
}
