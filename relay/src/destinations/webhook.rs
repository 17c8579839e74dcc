//! A plain webhook: `POST {url}` with a JSON array of the batch's events (`mapped` is the
//! plain Segment event), signed with `X-Signature: sha256=<hex HMAC-SHA256 of the body>`
//! when settings.secret_env names a secret, so the receiver can check the sender and
//! that the body was not altered. Any 2xx acknowledges the whole request.

use anyhow::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{json_headers, pack, Api, Body, Limits, Plan, Request, Settings};
use crate::consumer::Row;

pub struct Webhook {
    url: String,
    secret: Option<String>,
    limits: Limits,
}

impl Webhook {
    pub fn new(settings: &Settings) -> Result<Webhook> {
        let url = settings.endpoint("url", None, "the URL to POST events to")?;
        let secret = settings.optional_secret("secret_env", "webhook signing secret")?;
        // A receiver may cap its request size: settings.max_events / max_bytes split batches.
        let limits = Limits {
            max_items: settings
                .number("max_events")?
                .map_or(usize::MAX, |n| (n as usize).max(1)),
            max_bytes: settings
                .number("max_bytes")?
                .map_or(usize::MAX, |n| n as usize),
            max_item_bytes: usize::MAX,
        };
        Ok(Webhook {
            url,
            secret,
            limits,
        })
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Api for Webhook {
    fn plan(&self, rows: &[Row]) -> Plan {
        let items = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i, serde_json::to_vec(&r.mapped).expect("JSON value")))
            .collect();
        let (bodies, rejected) = pack(items, self.limits, "[", "]");
        let requests = bodies
            .into_iter()
            .map(|Body { rows, bytes: body }| {
                let mut headers = json_headers();
                if let Some(secret) = &self.secret {
                    headers.push(("x-signature", signature(secret, &body)));
                }
                let n = rows.len();
                Request {
                    url: self.url.clone(),
                    headers,
                    body,
                    rows,
                    sections: vec![("", n)],
                }
            })
            .collect();
        Plan { requests, rejected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
