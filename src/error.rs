//! One error type for the whole extension: a problem found at a JSON path, with the
//! SQLSTATE it is reported under and a hint with the nearest valid names.

use serde_json::{json, Value};

/// The SQLSTATEs this extension reports. One kind, one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 22023 invalid_parameter_value: a bad definition or graph.
    InvalidParameter,
    /// 42P01 undefined_table.
    UndefinedTable,
    /// 42703 undefined_column.
    UndefinedColumn,
    /// 42501 insufficient_privilege.
    InsufficientPrivilege,
    /// 55000 object_not_in_prerequisite_state: something must be set up first.
    NotInPrerequisiteState,
    /// 42704 undefined_object: an unknown audience, destination, ...
    UndefinedObject,
    /// 2BP01 dependent_objects_still_exist: refused while something depends on it.
    DependentObjectsStillExist,
    /// XX000 internal_error: a bug, never bad input.
    Internal,
}

impl Kind {
    pub fn sqlstate(self) -> &'static str {
        match self {
            Kind::InvalidParameter => "22023",
            Kind::UndefinedTable => "42P01",
            Kind::UndefinedColumn => "42703",
            Kind::InsufficientPrivilege => "42501",
            Kind::NotInPrerequisiteState => "55000",
            Kind::UndefinedObject => "42704",
            Kind::DependentObjectsStillExist => "2BP01",
            Kind::Internal => "XX000",
        }
    }
}

/// A problem with user input (or, for `Internal`, with us).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    /// JSON path of the offending node (`$.profile.relationships[1].join_on`), or the
    /// argument name for plain SQL arguments; empty when it concerns no one place.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// More context (a DETAIL line): how many more problems there are, or which
    /// audiences a graph change would break.
    pub detail: Option<String>,
}

impl Problem {
    pub fn new(kind: Kind, path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            kind,
            path: clip(path.into(), 300),
            message: clip(message.into(), 1000),
            hint: None,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The first of several problems, its DETAIL saying how many more there are: one
    /// error that functions returning `Result` hand up like any other.
    pub fn first_of(ps: &[Problem]) -> Problem {
        let first = ps
            .first()
            .cloned()
            .unwrap_or_else(|| Problem::new(Kind::Internal, "", "no problem to report"));
        if ps.len() > 1 {
            first.with_detail(format!(
                "{} more problem{} found; the la_validate_* function lists them all.",
                ps.len() - 1,
                if ps.len() > 2 { "s" } else { "" }
            ))
        } else {
            first
        }
    }

    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem::new(Kind::InvalidParameter, path, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        let hint = clip(hint.into(), 1000);
        self.hint = if hint.is_empty() { None } else { Some(hint) };
        self
    }

    pub fn with_opt_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint.filter(|h| !h.is_empty()).map(|h| clip(h, 1000));
        self
    }

    /// Sets the hint only when there is none yet.
    pub fn with_hint_if_none(mut self, hint: impl Into<String>) -> Self {
        if self.hint.is_none() {
            self.hint = Some(hint.into());
        }
        self
    }

    /// The message as reported: the path first.
    pub fn full_message(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }

    /// The problem as data, for the `la_validate_*` functions.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "path": self.path,
            "sqlstate": self.kind.sqlstate(),
            "message": self.message,
        });
        if let Some(h) = &self.hint {
            v["hint"] = Value::String(h.clone());
        }
        v
    }
}

pub type Result<T> = std::result::Result<T, Problem>;

/// Problems as a JSON array.
pub fn problems_json(problems: &[Problem]) -> Value {
    Value::Array(problems.iter().map(Problem::to_json).collect())
}

/// At most `max` characters: a user's 10 KB string or a 400-digit number stays readable
/// in a message, cut in the middle.
pub fn clip(s: String, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    let head_len = (max - 5) / 2;
    let tail_len = max - 5 - head_len;
    let head: String = s.chars().take(head_len).collect();
    let tail: String = s.chars().skip(n - tail_len).collect();
    format!("{head} ... {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_clipped_in_the_middle() {
        assert_eq!(clip("short".into(), 10), "short");
        let long = format!("a{}z", "é".repeat(5000));
        let c = clip(long, 25);
        assert_eq!(c.chars().count(), 25);
        assert!(c.starts_with("aéé") && c.ends_with("ééz") && c.contains(" ... "));
        let p = Problem::invalid("$.value", "x".repeat(5000));
        assert_eq!(p.message.chars().count(), 1000);
    }
}
