//! Segment's HTTP Tracking API, batch endpoint.
//!
//! `POST {endpoint}/v1/batch` with `{"batch": [event, ...]}`, the source's write key as
//! the basic-auth user with an empty password; at most 500 KB a request and 32 KB an
//! event, else the whole request is refused with a 400
//! (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/).
//! `mapped` is the plain Segment event, `messageId` included, which Segment deduplicates on.

use anyhow::Result;

use super::{basic_auth, json_headers, pack, Api, Body, Limits, Plan, Request, Settings};
use crate::consumer::Row;

/// Segment's documented limits, in decimal kilobytes to stay on the safe side.
const LIMITS: Limits = Limits {
    max_items: usize::MAX,
    max_bytes: 500_000,
    max_item_bytes: 32_000,
};

pub struct Segment {
    url: String,
    authorization: String,
}

impl Segment {
    pub fn new(settings: &Settings) -> Result<Segment> {
        let endpoint = settings.endpoint("endpoint", Some("https://api.segment.io"), "")?;
        let write_key = settings.secret("write_key_env", "Segment source write key")?;
        Ok(Segment {
            url: format!("{endpoint}/v1/batch"),
            authorization: basic_auth(&write_key, ""),
        })
    }
}

impl Api for Segment {
    fn plan(&self, rows: &[Row]) -> Plan {
        let items = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i, serde_json::to_vec(&r.mapped).expect("JSON value")))
            .collect();
        let (bodies, rejected) = pack(items, LIMITS, "{\"batch\":[", "]}");
        let requests = bodies
            .into_iter()
            .map(|Body { rows, bytes: body }| {
                let mut headers = json_headers();
                headers.push(("authorization", self.authorization.clone()));
                let n = rows.len();
                Request {
                    url: self.url.clone(),
                    headers,
                    body,
                    rows,
                    sections: vec![("batch", n)],
                }
            })
            .collect();
        Plan { requests, rejected }
    }
}
