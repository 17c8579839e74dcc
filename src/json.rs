//! Reading JSON documents with their paths: every shape problem is reported with the
//! path of the node, and unknown keys get a hint with the nearest known ones.

use crate::error::Problem;
use crate::names::{hint_for, path_index, path_key};
use serde_json::{Map, Value};

/// The JSON type name of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects the problems of one read.
#[derive(Default, Debug)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An object being read. Every key asked for is known; `finish` reports the rest as
/// unknown keys.
pub struct Obj<'a> {
    pub path: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

/// Reads `v` as an object, or reports what it is instead.
pub fn obj<'a>(v: &'a Value, path: &str, out: &mut Problems) -> Option<Obj<'a>> {
    match v {
        Value::Object(map) => Some(Obj {
            path: path.to_string(),
            map,
            known: Vec::new(),
        }),
        other => {
            out.push(Problem::invalid(
                path,
                format!("expected an object, got {}", type_name(other)),
            ));
            None
        }
    }
}

impl<'a> Obj<'a> {
    pub fn key_path(&self, key: &str) -> String {
        path_key(&self.path, key)
    }

    /// The raw value of an optional key; JSON null counts as absent.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// A required key.
    pub fn req(&mut self, key: &'static str, out: &mut Problems) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() {
            out.push(Problem::invalid(
                self.key_path(key),
                format!("required key \"{key}\" is missing"),
            ));
        }
        v
    }

    fn as_str(&self, key: &str, v: &'a Value, out: &mut Problems) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                out.push(Problem::invalid(
                    self.key_path(key),
                    format!("expected a string, got {}", type_name(other)),
                ));
                None
            }
        }
    }

    pub fn req_str(&mut self, key: &'static str, out: &mut Problems) -> Option<String> {
        let v = self.req(key, out)?;
        self.as_str(key, v, out)
    }

    pub fn opt_str(&mut self, key: &'static str, out: &mut Problems) -> Option<String> {
        let v = self.get(key)?;
        self.as_str(key, v, out)
    }

    pub fn opt_bool(&mut self, key: &'static str, out: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                out.push(Problem::invalid(
                    self.key_path(key),
                    format!("expected a boolean, got {}", type_name(other)),
                ));
                None
            }
        }
    }

    /// An optional object-valued key.
    pub fn opt_obj(&mut self, key: &'static str, out: &mut Problems) -> Option<Obj<'a>> {
        let path = self.key_path(key);
        let v = self.get(key)?;
        obj(v, &path, out)
    }

    /// An optional array-valued key, as (path, element) pairs.
    pub fn opt_arr(
        &mut self,
        key: &'static str,
        out: &mut Problems,
    ) -> Option<Vec<(String, &'a Value)>> {
        let path = self.key_path(key);
        match self.get(key)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (path_index(&path, i), v))
                    .collect(),
            ),
            other => {
                out.push(Problem::invalid(
                    path,
                    format!("expected an array, got {}", type_name(other)),
                ));
                None
            }
        }
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, out: &mut Problems) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let hint = hint_for(key, self.known.iter().copied(), "keys here");
                out.push(
                    Problem::invalid(self.key_path(key), format!("unknown key \"{key}\""))
                        .with_opt_hint(hint),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_reports() {
        let v = json!({"slug": 3, "tabel_ref": "x", "name": "N"});
        let mut out = Problems::default();
        let mut o = obj(&v, "$.entities[0]", &mut out).unwrap();
        assert_eq!(o.req_str("slug", &mut out), None);
        assert_eq!(o.req_str("table_ref", &mut out), None);
        assert_eq!(o.opt_str("name", &mut out).as_deref(), Some("N"));
        o.finish(&mut out);
        let msgs: Vec<String> = out.0.iter().map(|p| p.full_message()).collect();
        assert_eq!(
            msgs,
            vec![
                "$.entities[0].slug: expected a string, got a number",
                "$.entities[0].table_ref: required key \"table_ref\" is missing",
                "$.entities[0].tabel_ref: unknown key \"tabel_ref\"",
            ]
        );
        assert_eq!(
            out.0[2].hint.as_deref(),
            Some("Did you mean \"table_ref\"?")
        );
    }

    #[test]
    fn not_an_object() {
        let mut out = Problems::default();
        assert!(obj(&json!([1]), "$", &mut out).is_none());
        assert_eq!(
            out.0[0].full_message(),
            "$: expected an object, got an array"
        );
    }
}
