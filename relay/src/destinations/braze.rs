//! Braze's `/users/track` (https://www.braze.com/docs/api/endpoints/user_data/post_user_track/).
//!
//! `POST {endpoint}/users/track`, `Authorization: Bearer <REST API key>`, body
//! `{"events": [...], "attributes": [...]}` with at most 75 events and 75 attribute
//! objects a request. A `trackEvent` row is an event object as is; an
//! `updateUserProfile` row `{external_id, custom_attributes}` becomes the attributes
//! object `{"external_id": ..., <custom attributes flat>}`. A 2xx may carry non-fatal
//! `errors` naming the array and index of each skipped object
//! (https://www.braze.com/docs/api/errors/): only those are retried.

use anyhow::Result;
use serde_json::{Map, Value};

use super::{json_headers, unknown_action, Api, Plan, Request, Settings};
use crate::consumer::Row;

/// Braze's per-request cap, for events and for attribute objects alike.
const MAX_PER_ARRAY: usize = 75;

pub struct Braze {
    url: String,
    authorization: String,
}

impl Braze {
    pub fn new(settings: &Settings) -> Result<Braze> {
        // Each Braze workspace lives on its own REST instance: there is no default.
        let endpoint = settings.endpoint(
            "endpoint",
            None,
            "your Braze REST endpoint, e.g. https://rest.iad-01.braze.com",
        )?;
        let key = settings.secret("api_key_env", "Braze REST API key")?;
        Ok(Braze {
            url: format!("{endpoint}/users/track"),
            authorization: format!("Bearer {key}"),
        })
    }

    fn request(&self, events: Vec<(usize, Value)>, attributes: Vec<(usize, Value)>) -> Request {
        let sections = vec![("events", events.len()), ("attributes", attributes.len())];
        let rows = events.iter().chain(&attributes).map(|(i, _)| *i).collect();
        let mut body = Map::new();
        if !events.is_empty() {
            body.insert(
                "events".into(),
                Value::Array(events.into_iter().map(|(_, v)| v).collect()),
            );
        }
        if !attributes.is_empty() {
            body.insert(
                "attributes".into(),
                Value::Array(attributes.into_iter().map(|(_, v)| v).collect()),
            );
        }
        let mut headers = json_headers();
        headers.push(("authorization", self.authorization.clone()));
        Request {
            url: self.url.clone(),
            headers,
            body: serde_json::to_vec(&body).expect("JSON"),
            rows,
            sections,
        }
    }
}

/// `{external_id, custom_attributes}` as Braze's attributes object: the id, then the
/// attributes flat (a custom attribute cannot be called external_id).
pub fn attributes_object(mapped: &Value) -> Value {
    let mut object = Map::new();
    object.insert(
        "external_id".into(),
        mapped.get("external_id").cloned().unwrap_or(Value::Null),
    );
    if let Some(Value::Object(custom)) = mapped.get("custom_attributes") {
        for (k, v) in custom {
            if k != "external_id" {
                object.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(object)
}

impl Api for Braze {
    fn plan(&self, rows: &[Row]) -> Plan {
        let mut plan = Plan::default();
        let (mut events, mut attributes) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            let full = match row.action.as_str() {
                "trackEvent" => {
                    events.push((i, row.mapped.clone()));
                    events.len() == MAX_PER_ARRAY
                }
                "updateUserProfile" => {
                    attributes.push((i, attributes_object(&row.mapped)));
                    attributes.len() == MAX_PER_ARRAY
                }
                _ => {
                    plan.rejected.push((i, unknown_action("braze", row)));
                    false
                }
            };
            if full {
                plan.requests.push(
                    self.request(std::mem::take(&mut events), std::mem::take(&mut attributes)),
                );
            }
        }
        if !events.is_empty() || !attributes.is_empty() {
            plan.requests.push(self.request(events, attributes));
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
                let array = e.get("input_array")?.as_str()?;
                let index = e.get("index")?.as_u64()? as usize;
                let row = request.row_at(array, index)?;
                Some((
                    row,
                    format!(
                        "Braze skipped {array}[{index}]: {}",
                        e.get("type").unwrap_or(e)
                    ),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::test_row as row;
    use serde_json::json;

    fn braze() -> Braze {
        Braze {
            url: "http://braze/users/track".into(),
            authorization: "Bearer k".into(),
        }
    }

    #[test]
    fn attributes_are_flattened_after_the_external_id() {
        let a = attributes_object(
            &json!({"external_id": "u-1", "custom_attributes": {"cat_owners": true, "email": "a@x"}}),
        );
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"external_id":"u-1","cat_owners":true,"email":"a@x"}"#
        );
    }

    #[test]
    fn at_most_75_of_each_array_per_request() {
        let mut rows = Vec::new();
        for i in 0..100 {
            rows.push(row(
                "trackEvent",
                json!({"external_id": format!("u-{i}"), "name": "E"}),
            ));
        }
        for i in 0..80 {
            rows.push(row(
                "updateUserProfile",
                json!({"external_id": format!("v-{i}"), "custom_attributes": {}}),
            ));
        }
        let plan = braze().plan(&rows);
        let sizes: Vec<_> = plan.requests.iter().map(|r| r.sections.clone()).collect();
        assert_eq!(
            sizes,
            vec![
                vec![("events", 75), ("attributes", 0)],
                vec![("events", 25), ("attributes", 75)],
                vec![("events", 0), ("attributes", 5)]
            ]
        );
        assert_eq!(
            plan.requests.iter().map(|r| r.rows.len()).sum::<usize>(),
            180
        );
    }

    #[test]
    fn minor_errors_name_the_failed_rows() {
        let rows = vec![
            row("trackEvent", json!({"external_id": "a"})),
            row(
                "updateUserProfile",
                json!({"external_id": "b", "custom_attributes": {}}),
            ),
            row("trackEvent", json!({"external_id": "c"})),
        ];
        let b = braze();
        let plan = b.plan(&rows);
        let body = br#"{"message":"success","errors":[{"type":"'name' is required","input_array":"events","index":1},{"type":"x","input_array":"attributes","index":0}]}"#;
        let failed: Vec<usize> = b
            .failures(&plan.requests[0], &rows, body)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, vec![2, 1]);
    }
}
