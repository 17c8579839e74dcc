//! SQL text with `$n` parameters, and its rendering with the values inlined.

/// A parameter value. Every parameter is passed as `text` or `text[]` and cast in the
/// SQL to the type it is compared with, so planning sees the real values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Text(String),
    TextArray(Vec<String>),
}

/// A statement's parameters, in order. The one place a placeholder `$n` is written:
/// the compiler numbers the values it compares with, and whoever runs a compiled query
/// with more values (an audience id, a run id, a profile id) adds them here, after the
/// compiled ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<ParamValue>);

impl Params {
    /// Adds a value; returns its placeholder, `$n`.
    pub fn push(&mut self, v: ParamValue) -> String {
        self.0.push(v);
        format!("${}", self.0.len())
    }

    /// Adds a text value; returns `$n`.
    pub fn text(&mut self, s: impl Into<String>) -> String {
        self.push(ParamValue::Text(s.into()))
    }

    /// Adds a value passed as text and cast to `sql_type` (a type name from the catalog
    /// or `pg_catalog`); returns `$n::sql_type`.
    pub fn typed(&mut self, s: impl Into<String>, sql_type: &str) -> String {
        format!("{}::{sql_type}", self.text(s))
    }

    /// Adds an array passed as `text[]` and cast to `elem_type[]`; returns
    /// `$n::elem_type[]`.
    pub fn array(&mut self, items: Vec<String>, elem_type: &str) -> String {
        format!("{}::{elem_type}[]", self.push(ParamValue::TextArray(items)))
    }
}

impl std::ops::Deref for Params {
    type Target = [ParamValue];
    fn deref(&self) -> &[ParamValue] {
        &self.0
    }
}

/// A literal whose conversion to a column's type Postgres must confirm when the
/// audience is defined (`'1.5'::bigint` fails there, never mid-compute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralCheck {
    pub path: String,
    pub value: String,
    /// The catalog's name for the type (`format_type`), safe to splice as a type.
    pub sql_type: String,
}

/// Postgres' `quote_literal`: doubles quotes, and uses E'' when there are backslashes.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    if s.contains('\\') {
        out.push_str(" E'");
    } else {
        out.push('\'');
    }
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out.trim_start().to_string()
}

/// The text of an array literal (`{"a","b"}`) for `text[]`.
pub fn array_literal(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Replaces `$n` placeholders outside quoted identifiers and literals with the quoted
/// values, giving SQL a user can run as is. Only for display: the compiler writes every
/// placeholder with its cast (`$1::public.citext`), so the literal is typed as the
/// parameter is (`'ann@example.com'::public.citext`) and the displayed SQL compares as
/// preview and compute do.
pub fn inline(sql: &str, params: &[ParamValue]) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // Copy a quoted span as is (a doubled quote stays inside it).
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == c {
                    if i + 1 < chars.len() && chars[i + 1] == c {
                        out.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '$' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let n: usize = chars[i + 1..j]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            match n.checked_sub(1).and_then(|k| params.get(k)) {
                Some(ParamValue::Text(s)) => out.push_str(&quote_literal(s)),
                // The SQL casts every parameter to its type: the literal takes it.
                Some(ParamValue::TextArray(a)) => out.push_str(&quote_literal(&array_literal(a))),
                None => out.extend(&chars[i..j]),
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(quote_literal("cat"), "'cat'");
        assert_eq!(quote_literal("O'Brien"), "'O''Brien'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(
            array_literal(&["a".into(), "b\"c".into()]),
            "{\"a\",\"b\\\"c\"}"
        );
    }

    #[test]
    fn inlines_outside_quotes() {
        let sql = "SELECT $1, '$1', \"$2\", $10::numeric, $2";
        let params: Vec<ParamValue> = (1..=10)
            .map(|i| {
                if i == 2 {
                    ParamValue::TextArray(vec!["x".into()])
                } else {
                    ParamValue::Text(format!("v{i}'"))
                }
            })
            .collect();
        assert_eq!(
            inline(sql, &params),
            "SELECT 'v1''', '$1', \"$2\", 'v10'''::numeric, '{\"x\"}'"
        );
    }
}
