//! Shaping events: the preset mappings (Segment's presets for Braze, Iterable and
//! Customer.io) and fitting an event under the size limit. Pure.

use serde_json::{json, Map, Value};

/// Events over this many bytes have their entity arrays cut to fit.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// The destination action and its body for a Segment event.
pub fn map_event(preset: &str, payload: &Value) -> (String, Value) {
    let identify = payload["type"] == "identify";
    let user = payload["userId"].clone();
    let body = |k: &str| payload.get(k).cloned().unwrap_or(json!({}));
    match (preset, identify) {
        ("braze", false) => (
            "trackEvent".into(),
            json!({"external_id": user, "name": payload["event"], "time": payload["timestamp"], "properties": body("properties")}),
        ),
        ("braze", true) => (
            "updateUserProfile".into(),
            json!({"external_id": user, "custom_attributes": body("traits")}),
        ),
        ("iterable", false) => (
            "trackEvent".into(),
            json!({"userId": user, "eventName": payload["event"], "id": payload["messageId"], "dataFields": body("properties")}),
        ),
        ("iterable", true) => (
            "updateUser".into(),
            json!({"userId": user, "dataFields": body("traits")}),
        ),
        ("customerio", false) => (
            "trackEvent".into(),
            json!({"id": user, "event_id": payload["messageId"], "name": payload["event"],
                   "timestamp": payload["timestamp"], "data": body("properties")}),
        ),
        ("customerio", true) => (
            "createUpdatePerson".into(),
            json!({"id": user, "custom_attributes": body("traits")}),
        ),
        ("webhook", _) => ("post".into(), payload.clone()),
        (_, true) => ("identify".into(), payload.clone()),
        (_, false) => ("track".into(), payload.clone()),
    }
}

/// `map_event` as SQL over a payload expression `p` and a preset expression: the
/// `(action, mapped)` expressions. A compute maps every event that needs no fitting this
/// way, in C, instead of a round trip through Rust per row; the `#[pg_test]`
/// `sql_mapping_is_map_event` holds the two to the same results.
pub fn map_event_sql(p: &str, preset: &str) -> (String, String) {
    let identify = format!("{p} ->> 'type' = 'identify'");
    let body = |k: &str| format!("coalesce({p} -> '{k}', '{{}}'::pg_catalog.jsonb)");
    let either =
        |when: &str, yes: String, no: String| format!("CASE WHEN {when} THEN {yes} ELSE {no} END");
    let obj = |pairs: &[(&str, String)]| {
        let args: Vec<String> = pairs.iter().map(|(k, v)| format!("'{k}', {v}")).collect();
        format!("pg_catalog.jsonb_build_object({})", args.join(", "))
    };
    let f = |k: &str| format!("{p} -> '{k}'");
    let action = format!(
        "CASE {preset} WHEN 'braze' THEN {} WHEN 'iterable' THEN {} WHEN 'customerio' THEN {} \
         WHEN 'webhook' THEN 'post' ELSE {} END",
        either(
            &identify,
            "'updateUserProfile'".into(),
            "'trackEvent'".into()
        ),
        either(&identify, "'updateUser'".into(), "'trackEvent'".into()),
        either(
            &identify,
            "'createUpdatePerson'".into(),
            "'trackEvent'".into()
        ),
        either(&identify, "'identify'".into(), "'track'".into()),
    );
    let mapped = format!(
        "CASE {preset} WHEN 'braze' THEN {} WHEN 'iterable' THEN {} WHEN 'customerio' THEN {} ELSE {p} END",
        either(
            &identify,
            obj(&[("external_id", f("userId")), ("custom_attributes", body("traits"))]),
            obj(&[("external_id", f("userId")), ("name", f("event")), ("time", f("timestamp")),
                  ("properties", body("properties"))]),
        ),
        either(
            &identify,
            obj(&[("userId", f("userId")), ("dataFields", body("traits"))]),
            obj(&[("userId", f("userId")), ("eventName", f("event")), ("id", f("messageId")),
                  ("dataFields", body("properties"))]),
        ),
        either(
            &identify,
            obj(&[("id", f("userId")), ("custom_attributes", body("traits"))]),
            obj(&[("id", f("userId")), ("event_id", f("messageId")), ("name", f("event")),
                  ("timestamp", f("timestamp")), ("data", body("properties"))]),
        ),
    );
    (action, mapped)
}

fn size(v: &Value) -> usize {
    serde_json::to_string(v)
        .map(|s| s.len())
        .unwrap_or(usize::MAX)
}

fn is_entity_array(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|e| e.get("__entity").is_some()))
}

/// Cuts the entity arrays of an event (the longest first, halving) until it fits in
/// `max_bytes`, and marks it `"__truncated": true` in its properties (track) or traits
/// (identify). Returns whether it was cut. An event that cannot be made to fit is kept
/// whole, marked, never dropped.
pub fn fit(payload: &mut Value, max_bytes: usize) -> bool {
    if size(payload) <= max_bytes {
        return false;
    }
    let key = if payload["type"] == "identify" {
        "traits"
    } else {
        "properties"
    };
    while let Some(body) = payload.get_mut(key).and_then(Value::as_object_mut) {
        let longest = body
            .iter()
            .filter(|(_, v)| is_entity_array(v))
            .max_by_key(|(_, v)| v.as_array().map_or(0, Vec::len))
            .map(|(k, v)| (k.clone(), v.as_array().map_or(0, Vec::len)));
        match longest {
            Some((k, len)) if len > 0 => {
                if let Some(a) = body.get_mut(&k).and_then(Value::as_array_mut) {
                    a.truncate(len / 2);
                }
                body.insert("__truncated".into(), Value::Bool(true));
            }
            _ => {
                body.insert("__truncated".into(), Value::Bool(true));
                break;
            }
        }
        if size(payload) <= max_bytes {
            break;
        }
    }
    true
}

/// Fits an event and maps it for a preset: `{payload, action, mapped, truncated}`.
pub fn finish(preset: &str, mut payload: Value, max_bytes: usize) -> Value {
    let truncated = fit(&mut payload, max_bytes);
    let (action, mapped) = map_event(preset, &payload);
    let mut out = Map::new();
    out.insert("payload".into(), payload);
    out.insert("action".into(), Value::String(action));
    out.insert("mapped".into(), mapped);
    out.insert("truncated".into(), Value::Bool(truncated));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Value {
        json!({"type": "track", "event": "Audience Entered", "userId": "u-42", "messageId": "m-1",
               "timestamp": "2026-11-28T12:00:00.000Z",
               "properties": {"audience_key": "cat_owners", "cat_owners": true, "email": "ann@example.com",
                              "pets": [{"id": 7, "type": "cat", "__entity": "pets"}]},
               "context": {"personas": {"computation_class": "audience"}}})
    }

    fn identify() -> Value {
        json!({"type": "identify", "userId": "u-42", "messageId": "m-2", "timestamp": "t",
               "traits": {"cat_owners": true, "email": "ann@example.com"}})
    }

    #[test]
    fn presets_map_track_and_identify() {
        let (a, m) = map_event("braze", &track());
        assert_eq!(a, "trackEvent");
        assert_eq!(
            m,
            json!({"external_id": "u-42", "name": "Audience Entered", "time": "2026-11-28T12:00:00.000Z",
                             "properties": track()["properties"]})
        );
        let (a, m) = map_event("braze", &identify());
        assert_eq!(
            (a.as_str(), m),
            (
                "updateUserProfile",
                json!({"external_id": "u-42", "custom_attributes": identify()["traits"]})
            )
        );
        let (a, m) = map_event("iterable", &track());
        assert_eq!(
            (a.as_str(), m),
            (
                "trackEvent",
                json!({"userId": "u-42", "eventName": "Audience Entered", "id": "m-1", "dataFields": track()["properties"]})
            )
        );
        let (a, m) = map_event("iterable", &identify());
        assert_eq!(
            (a.as_str(), m),
            (
                "updateUser",
                json!({"userId": "u-42", "dataFields": identify()["traits"]})
            )
        );
        let (a, m) = map_event("customerio", &track());
        assert_eq!(
            (a.as_str(), m),
            (
                "trackEvent",
                json!({"id": "u-42", "event_id": "m-1", "name": "Audience Entered",
                                  "timestamp": "2026-11-28T12:00:00.000Z", "data": track()["properties"]})
            )
        );
        let (a, m) = map_event("customerio", &identify());
        assert_eq!(
            (a.as_str(), m),
            (
                "createUpdatePerson",
                json!({"id": "u-42", "custom_attributes": identify()["traits"]})
            )
        );
        assert_eq!(map_event("segment", &track()), ("track".into(), track()));
        assert_eq!(
            map_event("segment", &identify()),
            ("identify".into(), identify())
        );
        assert_eq!(map_event("webhook", &track()), ("post".into(), track()));
    }

    #[test]
    fn oversized_events_are_cut_and_marked() {
        let mut p = track();
        assert!(!fit(&mut p, MAX_EVENT_BYTES));
        assert_eq!(p, track());

        let pets: Vec<Value> = (0..2000)
            .map(|i| json!({"id": i, "name": "x".repeat(20), "__entity": "pets"}))
            .collect();
        p["properties"]["pets"] = Value::Array(pets);
        assert!(size(&p) > MAX_EVENT_BYTES);
        assert!(fit(&mut p, MAX_EVENT_BYTES));
        assert!(size(&p) <= MAX_EVENT_BYTES);
        assert_eq!(p["properties"]["__truncated"], json!(true));
        let kept = p["properties"]["pets"].as_array().unwrap();
        assert!(!kept.is_empty() && kept.len() < 2000);
        assert_eq!(kept[0]["id"], json!(0), "keeps the first entities");
        assert_eq!(
            p["properties"]["email"],
            json!("ann@example.com"),
            "other properties stay"
        );

        // Too big even without entities: kept whole, marked.
        let mut big = identify();
        big["traits"]["bio"] = json!("y".repeat(40_000));
        assert!(fit(&mut big, MAX_EVENT_BYTES));
        assert_eq!(big["traits"]["__truncated"], json!(true));
        assert_eq!(big["traits"]["bio"].as_str().unwrap().len(), 40_000);
    }
}
