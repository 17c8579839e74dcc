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

/// A `jsonb` argument, read without panicking: pgrx's `JsonB` panics (an internal error
/// for the user) on JSON that serde_json cannot hold, such as nesting deeper than 128
/// levels. `Doc` keeps the failure and reports it as a problem at the argument.
pub struct Doc(std::result::Result<Value, String>);

impl Doc {
    /// The JSON, or a 22023 problem named after the argument.
    pub fn json(self, arg: &str) -> std::result::Result<Value, Problem> {
        self.0.map_err(|why| {
            let why = why
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .replace("recursion limit exceeded", "nests deeper than 128 levels");
            Problem::invalid("$", format!("{arg} cannot be read: {why}"))
                .with_hint("Nest JSON documents at most 128 levels deep.")
        })
    }

    /// The JSON, or the problem raised as a Postgres ERROR.
    pub fn or_raise(self, arg: &str) -> Value {
        crate::ok_or_raise(self.json(arg))
    }
}

impl pgrx::FromDatum for Doc {
    unsafe fn from_polymorphic_datum(
        datum: pgrx::pg_sys::Datum,
        is_null: bool,
        _: pgrx::pg_sys::Oid,
    ) -> Option<Doc> {
        if is_null {
            return None;
        }
        use pgrx::pg_sys;
        let varlena = datum.cast_mut_ptr();
        // SAFETY: a non-null jsonb argument is a valid jsonb varlena.
        unsafe {
            let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
            let text = pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::jsonb_out,
                &[Some(pg_sys::Datum::from(detoasted))],
            );
            let parsed = match text {
                Some(c) => {
                    let r = c
                        .to_str()
                        .map_err(|e| e.to_string())
                        .and_then(|s| serde_json::from_str(s).map_err(|e| e.to_string()));
                    pg_sys::pfree(c.as_ptr() as *mut core::ffi::c_void);
                    r
                }
                None => Err("jsonb_out returned NULL".to_string()),
            };
            if detoasted != varlena {
                pg_sys::pfree(detoasted as *mut core::ffi::c_void);
            }
            Some(Doc(parsed))
        }
    }
}

unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for Doc {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: as for pgrx's own types, the caller passes an argument of our SQL type.
        unsafe {
            arg.unbox_arg_using_from_datum()
                .unwrap_or_else(|| panic!("argument {index} must not be null"))
        }
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: as above.
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}

impl pgrx::IntoDatum for Doc {
    fn into_datum(self) -> Option<pgrx::pg_sys::Datum> {
        self.0.ok().and_then(|v| pgrx::JsonB(v).into_datum())
    }

    fn type_oid() -> pgrx::pg_sys::Oid {
        pgrx::pg_sys::JSONBOID
    }
}

pgrx::impl_sql_translatable!(Doc, arg_only = "jsonb");
