//! A corpus of hostile audience definitions: seeds whose every leaf is replaced by each
//! hostile value, random pairs of such mutations with hostile keys added, deep nesting
//! and oversized definitions. The unit tests run it through the pure compiler; a
//! `#[pg_test]` runs it through the SQL functions of a live database.

use serde_json::{json, Value};

/// Marks every hostile string, so that tests can see whether one reached SQL text.
pub const MARK: &str = "Ω';--";

/// Values that would do harm if they ever reached SQL text, or that are out of range,
/// oversized, of the wrong type or not representable in Postgres.
pub fn hostile_values() -> Vec<Value> {
    vec![
        json!(format!("{MARK} DROP TABLE pets; --")),
        json!(format!("{MARK}'); SELECT public.la_fuzz_pwned(); --")),
        json!(format!("{MARK}$$; SELECT public.la_fuzz_pwned(); $$")),
        json!(format!("{MARK}\"; SELECT public.la_fuzz_pwned(); --")),
        json!(format!("\"{MARK}\\\\")),
        json!(format!("{MARK}\\'); SELECT public.la_fuzz_pwned(); --")),
        json!(format!("{MARK}/* comment */")),
        json!(format!("{MARK}\u{0}nul")),
        json!(format!("{MARK}{}", "x".repeat(10_000))),
        json!(format!("{MARK}é漢字🐈\u{202e}")),
        json!(1e308),
        json!(-9_223_372_036_854_775_808i64),
        json!(18_446_744_073_709_551_615u64),
        serde_json::from_str::<Value>("1e400").unwrap_or(json!(1e308)),
        serde_json::from_str::<Value>("-0.000000000000000000000000000001").unwrap_or(json!(0)),
        json!(null),
        json!(true),
        json!([MARK, 1, null]),
        json!({"ref": format!("profile.{MARK}")}),
        json!({"ref": MARK}),
        json!({}),
    ]
}

/// Valid definitions over the demo graph (demo/graph.json) with an audience
/// `cat_owners`: every node kind, operator family and join kind.
pub fn seeds() -> Vec<Value> {
    vec![
        json!({"trait": "plan", "op": "equals", "value": "premium"}),
        json!({"trait": "first_name", "op": "contains", "value": "an", "case_insensitive": true}),
        json!({"relationship": "pets", "where": {"column": "type", "op": "in", "value": ["cat"]}, "count": {"at_least": 2}}),
        json!({"relationship": "credit_cards", "where": {"column": "name", "op": "contains", "value": "Owly"},
               "relationships": [{"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 5}}]}),
        json!({"relationship": "cart_products", "where": {"column": "price", "op": "between", "value": [10, 100]}}),
        json!({"event": "Order Completed", "where": {"property": "items.count", "op": "gt", "value": 2}, "within": {"last": "30 days"}}),
        json!({"not": {"any": [{"audience": "cat_owners"}, {"trait": "created_at", "op": "before", "value": "2026-01-01"}]}}),
    ]
}

/// Every leaf position of a JSON value, as JSON pointers.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| leaves(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| leaves(c, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

/// Nested `not`s deeper than the nesting limit.
pub fn too_deep() -> Value {
    let mut deep = json!({"trait": "plan", "op": "is_null"});
    for _ in 0..200 {
        deep = json!({"not": deep});
    }
    deep
}

/// An `any` of `n` conditions.
pub fn wide(n: usize) -> Value {
    json!({"any": (0..n).map(|i| json!({"trait": "plan", "op": "equals", "value": format!("p{i}")})).collect::<Vec<_>>()})
}

/// The whole corpus, the same on every run: `random_per_seed` random mutations per seed
/// besides the systematic ones.
pub fn corpus(random_per_seed: usize) -> Vec<Value> {
    let hostile = hostile_values();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = Vec::new();
    for seed in seeds() {
        let mut points = Vec::new();
        leaves(&seed, String::new(), &mut points);
        for point in &points {
            for h in &hostile {
                let mut def = seed.clone();
                *def.pointer_mut(point).unwrap() = h.clone();
                out.push(def);
            }
        }
        // Random pairs of mutations, some with a hostile key added.
        for _ in 0..random_per_seed {
            let mut def = seed.clone();
            for _ in 0..2 {
                let p = &points[next(points.len())];
                if let Some(slot) = def.pointer_mut(p) {
                    *slot = hostile[next(hostile.len())].clone();
                }
            }
            if let Some(o) = def.as_object_mut() {
                if next(3) == 0 {
                    o.insert(format!("{MARK}key"), json!(1));
                }
            }
            out.push(def);
        }
    }
    out.push(too_deep());
    out.push(wide(5000));
    out
}
