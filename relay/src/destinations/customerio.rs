//! Customer.io's Track API v2 batch (https://docs.customer.io/integrations/api/track/tag/track_v2/).
//!
//! `POST {endpoint}/api/v2/batch` with `{"batch": [entry, ...]}`, basic auth
//! `site_id:api_key`, a request under 500 KB and an entry under 32 KB. A `trackEvent`
//! row `{id, event_id, name, timestamp, data}` becomes
//! `{"type":"person","identifiers":{"id":...},"action":"event","name":...,"id":...,"timestamp":...,"attributes":data}`;
//! a `createUpdatePerson` row `{id, custom_attributes}` becomes
//! `{"type":"person","identifiers":{"id":...},"action":"identify","attributes":...}`.
//! v2 wants the event `id` as a ULID (it deduplicates on it) and `timestamp` in Unix
//! seconds: the outbox id (a UUID: the same 128 bits) is written as a ULID and the ISO
//! 8601 time converted. A partly accepted batch lists its failed entries by
//! `batch_index`: only those are retried.

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::{
    basic_auth, json_headers, pack, unknown_action, Api, Body, Limits, Plan, Request, Settings,
};
use crate::consumer::Row;

const LIMITS: Limits = Limits {
    max_items: usize::MAX,
    max_bytes: 500_000,
    max_item_bytes: 32_000,
};

pub struct CustomerIo {
    url: String,
    authorization: String,
}

impl CustomerIo {
    pub fn new(settings: &Settings) -> Result<CustomerIo> {
        // The US region; EU workspaces set settings.endpoint to https://track-eu.customer.io.
        let endpoint = settings.endpoint("endpoint", Some("https://track.customer.io"), "")?;
        let site_id = settings.secret("site_id_env", "Customer.io site id")?;
        let api_key = settings.secret("api_key_env", "Customer.io Track API key")?;
        Ok(CustomerIo {
            url: format!("{endpoint}/api/v2/batch"),
            authorization: basic_auth(&site_id, &api_key),
        })
    }
}

/// A `mapped` row as a v2 batch entry, or None for an action the preset does not have.
pub fn entry(row: &Row) -> Option<Value> {
    let m = &row.mapped;
    let identifiers = json!({"id": m.get("id").cloned().unwrap_or(Value::Null)});
    match row.action.as_str() {
        "trackEvent" => {
            let mut e = Map::new();
            e.insert("type".into(), "person".into());
            e.insert("identifiers".into(), identifiers);
            e.insert("action".into(), "event".into());
            e.insert("name".into(), m.get("name").cloned().unwrap_or(Value::Null));
            if let Some(id) = m.get("event_id").and_then(Value::as_str) {
                e.insert(
                    "id".into(),
                    uuid_as_ulid(id).map_or_else(|| id.into(), Value::String),
                );
            }
            if let Some(ts) = m.get("timestamp") {
                e.insert(
                    "timestamp".into(),
                    unix_seconds(ts).map_or_else(|| ts.clone(), Value::from),
                );
            }
            e.insert(
                "attributes".into(),
                m.get("data").cloned().unwrap_or_else(|| json!({})),
            );
            Some(Value::Object(e))
        }
        "createUpdatePerson" => Some(json!({
            "type": "person",
            "identifiers": identifiers,
            "action": "identify",
            "attributes": m.get("custom_attributes").cloned().unwrap_or_else(|| json!({})),
        })),
        _ => None,
    }
}

/// A UUID's 128 bits in ULID form (26 characters of Crockford base32).
pub fn uuid_as_ulid(uuid: &str) -> Option<String> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let n = u128::from_str_radix(&hex, 16).ok()?;
    Some(
        (0..26)
            .map(|i| ALPHABET[((n >> (125 - 5 * i)) & 31) as usize] as char)
            .collect(),
    )
}

/// An ISO 8601 timestamp (or a number) as Unix seconds.
pub(super) fn unix_seconds(ts: &Value) -> Option<i64> {
    match ts {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp()),
        _ => None,
    }
}

impl Api for CustomerIo {
    fn plan(&self, rows: &[Row]) -> Plan {
        let mut plan = Plan::default();
        let mut items = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match entry(row) {
                Some(e) => items.push((i, serde_json::to_vec(&e).expect("JSON value"))),
                None => plan.rejected.push((i, unknown_action("customerio", row))),
            }
        }
        let (bodies, rejected) = pack(items, LIMITS, "{\"batch\":[", "]}");
        plan.rejected.extend(rejected);
        for Body { rows, bytes: body } in bodies {
            let mut headers = json_headers();
            headers.push(("authorization", self.authorization.clone()));
            let n = rows.len();
            plan.requests.push(Request {
                url: self.url.clone(),
                headers,
                body,
                rows,
                sections: vec![("batch", n)],
            });
        }
        plan
    }

    fn failures(&self, request: &Request, _rows: &[Row], body: &[u8]) -> Vec<(usize, String)> {
        let Ok(response) = serde_json::from_slice::<Value>(body) else {
            return Vec::new();
        };
        let Some(errors) = response.get("errors").and_then(Value::as_array) else {
            return Vec::new();
        };
        errors
            .iter()
            .filter_map(|e| {
                let index = e.get("batch_index")?.as_u64()? as usize;
                Some((
                    request.row_at("batch", index)?,
                    format!("Customer.io refused batch[{index}]: {e}"),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_row as row;

    #[test]
    fn ulid_keeps_the_uuid_bits() {
        assert_eq!(
            uuid_as_ulid("00000000-0000-0000-0000-000000000000").unwrap(),
            "0".repeat(26)
        );
        assert_eq!(
            uuid_as_ulid("ffffffff-ffff-ffff-ffff-ffffffffffff").unwrap(),
            format!("7{}", "Z".repeat(25))
        );
        assert_eq!(
            uuid_as_ulid("01890a5d-ac96-774b-bcce-b302099a8057")
                .unwrap()
                .len(),
            26
        );
        assert!(uuid_as_ulid("not a uuid").is_none());
    }

    #[test]
    fn track_and_identify_become_v2_entries() {
        let t = entry(&row(
            "trackEvent",
            json!({"id": "u-1", "event_id": "00000000-0000-0000-0000-000000000001", "name": "Audience Entered",
                   "timestamp": "2026-11-28T12:00:00.000Z", "data": {"a": 1}}),
        ))
        .unwrap();
        assert_eq!(
            t.to_string(),
            r#"{"type":"person","identifiers":{"id":"u-1"},"action":"event","name":"Audience Entered","id":"00000000000000000000000001","timestamp":1795867200,"attributes":{"a":1}}"#
        );
        let i = entry(&row(
            "createUpdatePerson",
            json!({"id": "u-1", "custom_attributes": {"x": true}}),
        ))
        .unwrap();
        assert_eq!(
            i.to_string(),
            r#"{"type":"person","identifiers":{"id":"u-1"},"action":"identify","attributes":{"x":true}}"#
        );
        assert!(entry(&row("other", json!({}))).is_none());
    }
}
