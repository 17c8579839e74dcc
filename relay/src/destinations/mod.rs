//! Destinations: each preset turns a batch of `mapped` outbox rows into its API's own
//! batch request(s), and reads the per-event failures some APIs report in a successful
//! response. Nothing here does I/O: `deliver` sends what these build.

mod braze;
mod customerio;
mod iterable;
mod segment;
mod webhook;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::consumer::{DestinationRow, Row};

/// One HTTP request, ready to send, and the batch rows it carries.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Positions in the batch of the rows this request carries, in body order.
    pub rows: Vec<usize>,
    /// The body's arrays in order, with how many of `rows` each holds: per-event errors
    /// name an array and an index in it (Braze: `events`, `attributes`).
    pub sections: Vec<(&'static str, usize)>,
}

impl Request {
    /// The batch position of the `index`th item of the body's array `section`.
    pub fn row_at(&self, section: &str, index: usize) -> Option<usize> {
        let mut offset = 0;
        for (name, count) in &self.sections {
            if *name == section {
                return (index < *count).then(|| self.rows[offset + index]);
            }
            offset += count;
        }
        None
    }
}

/// What a destination makes of a batch: the requests, and rows no request can carry
/// (too big for the API, or an action the preset does not know), which are dead letters.
#[derive(Debug, Default)]
pub struct Plan {
    pub requests: Vec<Request>,
    pub rejected: Vec<(usize, String)>,
}

/// A destination's API.
pub trait Api: Send + Sync {
    /// The requests that deliver `rows` (a batch holds at most one row per user, so the
    /// requests may go in any order without reordering a user's events).
    fn plan(&self, rows: &[Row]) -> Plan;

    /// Rows a 2xx response reports as failed: (batch position, reason). Those are retried,
    /// the rest of the request is acknowledged.
    fn failures(&self, _request: &Request, _rows: &[Row], _body: &[u8]) -> Vec<(usize, String)> {
        Vec::new()
    }
}

/// Builds the API client of a destination from its preset and settings.
pub fn build(destination: &DestinationRow) -> Result<Box<dyn Api>> {
    let settings = Settings {
        key: &destination.key,
        values: &destination.settings,
    };
    Ok(match destination.preset.as_str() {
        "segment" => Box::new(segment::Segment::new(&settings)?),
        "braze" => Box::new(braze::Braze::new(&settings)?),
        "iterable" => Box::new(iterable::Iterable::new(&settings)?),
        "customerio" => Box::new(customerio::CustomerIo::new(&settings)?),
        "webhook" => Box::new(webhook::Webhook::new(&settings)?),
        other => bail!("destination {}: unknown preset {other:?}", destination.key),
    })
}

/// A destination's settings, read with errors that name the destination and the setting.
pub struct Settings<'a> {
    pub key: &'a str,
    pub values: &'a Value,
}

impl Settings<'_> {
    pub fn text(&self, name: &str) -> Result<Option<&str>> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => bail!(
                "destination {}: settings.{name} must be a string, got {other}",
                self.key
            ),
        }
    }

    pub fn number(&self, name: &str) -> Result<Option<f64>> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .ok_or_else(|| {
                    anyhow!(
                        "destination {}: settings.{name} must be a non-negative number, got {v}",
                        self.key
                    )
                }),
        }
    }

    /// The API's base URL: settings.`name`, or the API's documented default, without a
    /// trailing slash.
    pub fn endpoint(&self, name: &str, default: Option<&str>, hint: &str) -> Result<String> {
        let url = match (self.text(name)?, default) {
            (Some(url), _) | (None, Some(url)) => url,
            (None, None) => bail!(
                "destination {}: settings.{name} is required ({hint})",
                self.key
            ),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "destination {}: settings.{name} must be an http(s) URL, got {url:?}",
                self.key
            );
        }
        Ok(url.trim_end_matches('/').to_string())
    }

    /// A secret from the environment variable that settings.`name` names; never from the
    /// database, so a dump or a replica of it holds no credentials.
    pub fn secret(&self, name: &str, what: &str) -> Result<String> {
        self.optional_secret(name, what)?.ok_or_else(|| {
            anyhow!(
                "destination {}: settings.{name} is not set: name the environment variable that holds the {what}",
                self.key
            )
        })
    }

    /// As `secret`, but a destination without settings.`name` has none.
    pub fn optional_secret(&self, name: &str, what: &str) -> Result<Option<String>> {
        let Some(var) = self.text(name)? else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => bail!("destination {}: environment variable {var} (settings.{name}, the {what}) is not set", self.key),
        }
    }
}

/// Packs serialized items into bodies `prefix item,item,... suffix` of at most
/// `max_items` items and `max_bytes` bytes, in order. An item over `max_item_bytes`, or too
/// big for any body, is rejected with a reason: it would fail every request it is in.
pub fn pack(
    items: Vec<(usize, Vec<u8>)>,
    limits: Limits,
    prefix: &str,
    suffix: &str,
) -> (Vec<Body>, Vec<(usize, String)>) {
    let mut bodies = Vec::new();
    let mut rejected = Vec::new();
    let mut rows: Vec<usize> = Vec::new();
    let mut body: Vec<u8> = prefix.as_bytes().to_vec();
    let frame = prefix.len() + suffix.len();
    for (row, item) in items {
        if item.len() > limits.max_item_bytes || item.len() + frame > limits.max_bytes {
            rejected.push((
                row,
                format!(
                    "event is {} bytes, over the API's limit of {} bytes per event",
                    item.len(),
                    limits.max_item_bytes.min(limits.max_bytes - frame)
                ),
            ));
            continue;
        }
        if !rows.is_empty()
            && (rows.len() == limits.max_items
                || body.len() + 1 + item.len() + suffix.len() > limits.max_bytes)
        {
            body.extend_from_slice(suffix.as_bytes());
            bodies.push(Body {
                rows: std::mem::take(&mut rows),
                bytes: std::mem::replace(&mut body, prefix.as_bytes().to_vec()),
            });
        }
        if !rows.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(&item);
        rows.push(row);
    }
    if !rows.is_empty() {
        body.extend_from_slice(suffix.as_bytes());
        bodies.push(Body { rows, bytes: body });
    }
    (bodies, rejected)
}

/// A packed request body and the batch rows it carries, in body order.
#[derive(Debug)]
pub struct Body {
    pub rows: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// An API's documented batch limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_items: usize,
    pub max_bytes: usize,
    pub max_item_bytes: usize,
}

/// JSON headers every request carries.
pub fn json_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        (
            "user-agent",
            concat!("la-relay/", env!("CARGO_PKG_VERSION")).into(),
        ),
    ]
}

/// HTTP basic authorization for `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The rows of a batch whose action is not one the preset knows: dead letters.
pub fn unknown_action(preset: &str, row: &Row) -> String {
    format!(
        "{preset}: unknown action {:?} (the preset's mapping and this relay disagree)",
        row.action
    )
}

/// A claimed row with the given action and body, for the destinations' tests.
#[cfg(test)]
pub(crate) fn test_row(action: &str, mapped: Value) -> Row {
    Row {
        id: "id".into(),
        seq: 1,
        user: "u".into(),
        action: action.into(),
        mapped,
        attempts: 1,
        timestamp: Some("2026-11-28T12:00:00.000Z".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_splits_by_count_and_size_in_order() {
        let items: Vec<(usize, Vec<u8>)> = (0..5)
            .map(|i| (i, format!("\"{i}\"").into_bytes()))
            .collect();
        let limits = Limits {
            max_items: 2,
            max_bytes: 1000,
            max_item_bytes: 100,
        };
        let (bodies, rejected) = pack(items.clone(), limits, "[", "]");
        assert!(rejected.is_empty());
        let got: Vec<(Vec<usize>, String)> = bodies
            .into_iter()
            .map(|b| (b.rows, String::from_utf8(b.bytes).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 1], "[\"0\",\"1\"]".to_string()),
                (vec![2, 3], "[\"2\",\"3\"]".to_string()),
                (vec![4], "[\"4\"]".to_string())
            ]
        );
        // 9 bytes fit "[a,b]" with 3-byte items: the third starts a new body.
        let limits = Limits {
            max_items: 10,
            max_bytes: 9,
            max_item_bytes: 100,
        };
        let (bodies, _) = pack(items, limits, "[", "]");
        assert_eq!(
            bodies.iter().map(|b| b.rows.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert!(bodies.iter().all(|b| b.bytes.len() <= 9));
    }

    #[test]
    fn pack_rejects_an_item_over_the_limit() {
        let items = vec![
            (0, b"\"small\"".to_vec()),
            (1, vec![b'x'; 50]),
            (2, b"\"ok\"".to_vec()),
        ];
        let limits = Limits {
            max_items: 10,
            max_bytes: 1000,
            max_item_bytes: 20,
        };
        let (bodies, rejected) = pack(items, limits, "[", "]");
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0].rows, vec![0, 2]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
        assert!(rejected[0].1.contains("50 bytes"), "{}", rejected[0].1);
    }

    #[test]
    fn row_at_maps_sections() {
        let r = Request {
            url: String::new(),
            headers: vec![],
            body: vec![],
            rows: vec![7, 8, 9],
            sections: vec![("events", 2), ("attributes", 1)],
        };
        assert_eq!(r.row_at("events", 1), Some(8));
        assert_eq!(r.row_at("attributes", 0), Some(9));
        assert_eq!(r.row_at("attributes", 1), None);
        assert_eq!(r.row_at("purchases", 0), None);
    }
}
