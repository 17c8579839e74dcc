//! Iterable's bulk endpoints (https://api.iterable.com/api/docs#events_trackBulk,
//! https://api.iterable.com/api/docs#users_bulkUpdateUser).
//!
//! `trackEvent` rows `{userId, eventName, id, dataFields}` go to
//! `POST {endpoint}/api/events/trackBulk` as `{"events": [...]}` (`id` is the outbox
//! row id, so a resent event updates the one Iterable has), each with `createdAt`, the
//! event's time in Unix seconds, as Segment's preset sends it; `updateUser` rows
//! `{userId, dataFields}` go to `POST {endpoint}/api/users/bulkUpdate` as
//! `{"users": [...]}`; the key travels in the `Api-Key` header. Iterable answers 200
//! with `successCount`/`failCount` and names what failed (`invalidUserIds`,
//! `disallowedEventNames`, `failedUpdates.notFoundUserIds`, ...): only those rows are
//! retried.

use anyhow::Result;
use serde_json::Value;

use super::{json_headers, pack, unknown_action, Api, Body, Limits, Plan, Request, Settings};
use crate::consumer::Row;

/// A thousand users (and, to keep requests alike, events) and 4 MB a request.
const LIMITS: Limits = Limits {
    max_items: 1000,
    max_bytes: 4_000_000,
    max_item_bytes: 4_000_000,
};

/// Where Iterable's bulk responses list the user ids it could not take.
const FAILED_USER_ID_LISTS: [&str; 6] = [
    "/invalidUserIds",
    "/failedUpdates/invalidUserIds",
    "/failedUpdates/notFoundUserIds",
    "/failedUpdates/forgottenUserIds",
    "/failedUpdates/conflictUserIds",
    "/failedUpdates/invalidDataUserIds",
];

/// A `trackEvent` body with `createdAt`, when the event happened in Unix seconds (the
/// payload's `timestamp`): without it Iterable dates an event when it receives it, so a
/// retried or delayed event would be dated late. A body that has one keeps it.
fn with_created_at(row: &Row) -> Vec<u8> {
    let mut mapped = row.mapped.clone();
    let at = row
        .timestamp
        .as_ref()
        .and_then(|t| super::customerio::unix_seconds(&Value::String(t.clone())));
    if let (Some(body), Some(at)) = (mapped.as_object_mut(), at) {
        body.entry("createdAt").or_insert(at.into());
    }
    serde_json::to_vec(&mapped).expect("JSON value")
}

pub struct Iterable {
    endpoint: String,
    key: String,
}

impl Iterable {
    pub fn new(settings: &Settings) -> Result<Iterable> {
        let endpoint = settings.endpoint("endpoint", Some("https://api.iterable.com"), "")?;
        let key = settings.secret("api_key_env", "Iterable server-side API key")?;
        Ok(Iterable { endpoint, key })
    }

    fn requests(
        &self,
        path: &str,
        array: &'static str,
        items: Vec<(usize, Vec<u8>)>,
        plan: &mut Plan,
    ) {
        let (bodies, rejected) = pack(items, LIMITS, &format!("{{\"{array}\":["), "]}");
        plan.rejected.extend(rejected);
        for Body { rows, bytes: body } in bodies {
            let mut headers = json_headers();
            headers.push(("api-key", self.key.clone()));
            let n = rows.len();
            plan.requests.push(Request {
                url: format!("{}{path}", self.endpoint),
                headers,
                body,
                rows,
                sections: vec![(array, n)],
            });
        }
    }
}

impl Api for Iterable {
    fn plan(&self, rows: &[Row]) -> Plan {
        let mut plan = Plan::default();
        let (mut events, mut users) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            let item = (i, serde_json::to_vec(&row.mapped).expect("JSON value"));
            match row.action.as_str() {
                "trackEvent" => events.push((i, with_created_at(row))),
                "updateUser" => users.push(item),
                _ => plan.rejected.push((i, unknown_action("iterable", row))),
            }
        }
        // A batch holds one row per user, so sending the users before the events
        // reorders no user's rows.
        self.requests("/api/users/bulkUpdate", "users", users, &mut plan);
        self.requests("/api/events/trackBulk", "events", events, &mut plan);
        plan
    }

    fn failures(&self, request: &Request, rows: &[Row], body: &[u8]) -> Vec<(usize, String)> {
        let Ok(response) = serde_json::from_slice::<Value>(body) else {
            return Vec::new();
        };
        let fail_count = response
            .get("failCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let listed = |pointer: &str| -> Vec<&str> {
            response
                .pointer(pointer)
                .and_then(Value::as_array)
                .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect())
        };
        let disallowed = listed("/disallowedEventNames");
        let mut failed = Vec::new();
        for &i in &request.rows {
            let mapped = &rows[i].mapped;
            let user = mapped
                .get("userId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let event = mapped
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let reasons: Vec<String> = FAILED_USER_ID_LISTS
                .iter()
                .filter(|p| listed(p).contains(&user))
                .map(|p| format!("userId {user:?} in {}", &p[1..]))
                .chain(
                    disallowed
                        .contains(&event)
                        .then(|| format!("eventName {event:?} in disallowedEventNames")),
                )
                .collect();
            if !reasons.is_empty() {
                failed.push((
                    i,
                    format!("Iterable failed the event: {}", reasons.join(", ")),
                ));
            }
        }
        // A failure Iterable counts but does not attribute: retry the request's rows (their
        // ids make a resent event an update, not a duplicate).
        if failed.is_empty() && fail_count > 0 {
            let text = String::from_utf8_lossy(body);
            failed = request
                .rows
                .iter()
                .map(|&i| (i, format!("Iterable failCount {fail_count}: {text}")))
                .collect();
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_row as row;
    use serde_json::json;

    #[test]
    fn events_and_users_go_to_their_bulk_endpoints() {
        let it = Iterable {
            endpoint: "http://it".into(),
            key: "k".into(),
        };
        let rows = vec![
            row("trackEvent", json!({"userId": "a", "eventName": "E"})),
            row("updateUser", json!({"userId": "b", "dataFields": {}})),
        ];
        let plan = it.plan(&rows);
        assert_eq!(plan.requests.len(), 2);
        assert_eq!(plan.requests[0].url, "http://it/api/users/bulkUpdate");
        assert_eq!(plan.requests[0].rows, vec![1]);
        assert_eq!(
            String::from_utf8(plan.requests[1].body.clone()).unwrap(),
            // With the event's time (2026-11-28T12:00:00Z, the row's timestamp).
            r#"{"events":[{"userId":"a","eventName":"E","createdAt":1795867200}]}"#
        );
        assert!(plan.requests[1]
            .headers
            .contains(&("api-key", "k".to_string())));
    }

    #[test]
    fn only_reported_events_fail() {
        let it = Iterable {
            endpoint: "http://it".into(),
            key: "k".into(),
        };
        let rows = vec![
            row("trackEvent", json!({"userId": "a", "eventName": "E"})),
            row("trackEvent", json!({"userId": "b", "eventName": "E"})),
            row("trackEvent", json!({"userId": "c", "eventName": "Bad"})),
        ];
        let plan = it.plan(&rows);
        let body = br#"{"successCount":1,"failCount":2,"invalidUserIds":["b"],"disallowedEventNames":["Bad"]}"#;
        let failed: Vec<usize> = it
            .failures(&plan.requests[0], &rows, body)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, vec![1, 2]);
        let none = it.failures(
            &plan.requests[0],
            &rows,
            br#"{"successCount":3,"failCount":0}"#,
        );
        assert!(none.is_empty());
    }
}
