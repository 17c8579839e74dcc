//! Delivery: claim a batch, send it as the destination's requests, settle every row.
//!
//! How a response settles its rows:
//! - 2xx: acknowledged, except rows the API reports as failed, which are retried;
//! - 429: released (not a failed attempt), visible again after the server's
//!   `Retry-After`; the destination pauses that long;
//! - 408, 5xx, timeouts, connection errors: `la_outbox_fail` (the extension's backoff,
//!   dead after `max_attempts`);
//! - any other 4xx: dead-lettered at once (resending cannot help), with the status and
//!   the response body as the reason.
//!
//! Order: `la_outbox_read` hands out at most one row per user per batch and holds a
//! user's later rows back until the earlier one is settled, so the relay never has to
//! order anything itself and may split a batch into requests freely.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::consumer::{Consumer, DestinationRow, Failed, Row};
use crate::destinations::{self, Api, Request, Settings};

/// Runs a database call up to three times, then gives up with an error line: rows left
/// unsettled come back when their claim runs out, and are delivered again.
macro_rules! retried {
    ($key:expr, $what:expr, $call:expr) => {{
        let mut result = None;
        for attempt in 1..=3u64 {
            match $call.await {
                Ok(value) => {
                    result = Some(value);
                    break;
                }
                Err(e) if attempt < 3 => {
                    warn!(destination = %$key, "{} failed (attempt {attempt}): {e:#}", $what);
                    tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                }
                Err(e) => error!(destination = %$key, "{} failed: {e:#}; its rows come back when their claim runs out", $what),
            }
        }
        result
    }};
}

/// How long `--once` waits for rows it deferred (429s, retries) to come due again.
const ONCE_WAIT: Duration = Duration::from_secs(60);
/// The longest error text stored in the outbox (status and response body).
const MAX_ERROR_CHARS: usize = 2000;

/// Per-destination delivery settings (the destination's settings jsonb).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Workers, each with its own connection, claiming batches at once.
    pub concurrency: usize,
    /// Requests a second across the destination's workers (None: no limit).
    pub requests_per_second: Option<f64>,
    /// One HTTP request, connect to last byte.
    pub timeout: Duration,
    /// `la_outbox_fail`'s base delay (doubled per attempt by the extension).
    pub retry_after: Duration,
    /// How long a claim lasts: longer than one batch's requests take.
    pub visibility_timeout: Duration,
    /// The wait after a 429 without a usable `Retry-After`.
    pub rate_limited_wait: Duration,
}

impl Tuning {
    pub fn from_settings(settings: &Settings) -> Result<Tuning> {
        let secs = |name: &str, default: f64| -> Result<Duration> {
            Ok(Duration::from_secs_f64(
                settings.number(name)?.unwrap_or(default),
            ))
        };
        let timeout = secs("timeout_seconds", 30.0)?;
        let concurrency = settings.number("concurrency")?.unwrap_or(1.0);
        if !(1.0..=64.0).contains(&concurrency) || concurrency.fract() != 0.0 {
            bail!(
                "destination {}: settings.concurrency must be a whole number from 1 to 64",
                settings.key
            );
        }
        let requests_per_second = settings.number("requests_per_second")?.filter(|r| *r > 0.0);
        let visibility_timeout = secs(
            "visibility_timeout_seconds",
            (4.0 * timeout.as_secs_f64()).max(60.0),
        )?;
        if visibility_timeout <= timeout {
            bail!(
                "destination {}: settings.visibility_timeout_seconds must exceed timeout_seconds",
                settings.key
            );
        }
        Ok(Tuning {
            concurrency: concurrency as usize,
            requests_per_second,
            timeout,
            retry_after: secs("retry_after_seconds", 60.0)?,
            visibility_timeout,
            rate_limited_wait: secs("rate_limited_seconds", 5.0)?,
        })
    }
}

/// Counts for the whole run, printed on exit.
#[derive(Default)]
pub struct Totals {
    pub delivered: AtomicU64,
    pub retrying: AtomicU64,
    pub dead: AtomicU64,
    pub released: AtomicU64,
    pub requests: AtomicU64,
    pub batches: AtomicU64,
}

/// The run's options that apply to every destination.
#[derive(Debug, Clone)]
pub struct Options {
    pub batch: i32,
    pub poll_interval: Duration,
    pub once: bool,
}

/// One destination, shared by its workers.
pub struct Destination {
    pub key: String,
    api: Box<dyn Api>,
    http: reqwest::Client,
    pub tuning: Tuning,
    /// Woken by NOTIFY for this destination (and by workers settling a batch).
    pub wake: Notify,
    /// Workers reading or delivering right now.
    busy: AtomicUsize,
    /// Bumped whenever a batch is settled: a read that saw nothing before a settle may
    /// see rows after it (the settle unblocks users' later rows).
    settled: AtomicU64,
    /// When rows this process deferred come due again (for `--once`).
    deferred: Mutex<Vec<Instant>>,
    /// No request before this instant (a 429's Retry-After).
    paused_until: Mutex<Option<Instant>>,
    /// The rate limiter's next free slot.
    next_slot: Mutex<Instant>,
    totals: Arc<Totals>,
}

/// How one row ends this round.
#[derive(Debug, Clone)]
enum Outcome {
    Delivered,
    Retry(String),
    Dead(String),
    Release(Duration),
}

/// What one HTTP exchange said about its request's rows.
enum Answer {
    Accepted { failed: Vec<(usize, String)> },
    RateLimited(Duration),
    Transient(String),
    Permanent(String),
}

impl Destination {
    pub fn new(row: &DestinationRow, totals: Arc<Totals>) -> Result<Destination> {
        let settings = Settings {
            key: &row.key,
            values: &row.settings,
        };
        let tuning = Tuning::from_settings(&settings)?;
        let api = destinations::build(row)?;
        // Only 307/308 redirects keep the method and body; following a 301/302 would turn
        // the POST into a GET whose 200 would acknowledge events never delivered.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if matches!(attempt.status().as_u16(), 307 | 308) && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .redirect(redirects)
            .timeout(tuning.timeout)
            .connect_timeout(tuning.timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Destination {
            key: row.key.clone(),
            api,
            http,
            tuning,
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
            settled: AtomicU64::new(0),
            deferred: Mutex::new(Vec::new()),
            paused_until: Mutex::new(None),
            next_slot: Mutex::new(Instant::now()),
            totals,
        })
    }

    /// One worker: claim, deliver, settle, until shutdown (or, with `--once`, until the
    /// destination has nothing left to deliver).
    pub async fn work(
        self: Arc<Self>,
        mut db: Consumer,
        options: Options,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut errors = 0u32;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if let Some(wait) = self.paused_for() {
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = shutdown.changed() => {} }
                continue;
            }
            // Armed before reading, so a NOTIFY that lands while we read is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let settled_before = self.settled.load(Ordering::SeqCst);
            self.busy.fetch_add(1, Ordering::SeqCst);
            let rows = db
                .read(&self.key, options.batch, self.tuning.visibility_timeout)
                .await;
            let rows = match rows {
                Ok(rows) => {
                    errors = 0;
                    rows
                }
                Err(e) => {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                    errors += 1;
                    if options.once && errors >= 5 {
                        bail!(
                            "destination {}: la_outbox_read keeps failing: {e:#}",
                            self.key
                        );
                    }
                    warn!(destination = %self.key, "la_outbox_read failed: {e:#}");
                    let wait = Duration::from_millis(200 * 2u64.pow(errors.min(7)))
                        .min(Duration::from_secs(30));
                    tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = shutdown.changed() => {} }
                    continue;
                }
            };
            if !rows.is_empty() {
                let outcomes = self.deliver(&rows, &shutdown).await;
                self.settle(&mut db, &rows, outcomes).await;
                self.settled.fetch_add(1, Ordering::SeqCst);
                self.busy.fetch_sub(1, Ordering::SeqCst);
                self.wake.notify_waiters();
                continue;
            }
            let others_busy = self.busy.fetch_sub(1, Ordering::SeqCst) > 1;
            if options.once {
                if others_busy || self.settled.load(Ordering::SeqCst) != settled_before {
                    // Another worker may unblock rows: look again when it settles.
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                match self.next_deferred() {
                    Some(due) => {
                        tokio::select! { _ = tokio::time::sleep_until(due.into()) => {}, _ = shutdown.changed() => {} }
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(options.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sends a batch as its requests; every row gets an outcome.
    async fn deliver(&self, rows: &[Row], shutdown: &watch::Receiver<bool>) -> Vec<Outcome> {
        let started = Instant::now();
        let plan = self.api.plan(rows);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; rows.len()];
        for (i, reason) in plan.rejected {
            outcomes[i] = Some(Outcome::Dead(reason));
        }
        let mut statuses = Vec::new();
        for request in &plan.requests {
            // On shutdown, or while the API asked us to wait, the unsent rest goes back.
            let hold = if *shutdown.borrow() {
                Some(Duration::ZERO)
            } else {
                self.paused_for()
            };
            let hold = match hold {
                Some(hold) => Some(hold),
                None => self.take_rate_slot(shutdown).await,
            };
            if let Some(after) = hold {
                for &i in &request.rows {
                    outcomes[i] = Some(Outcome::Release(after));
                }
                continue;
            }
            self.totals.requests.fetch_add(1, Ordering::Relaxed);
            let (answer, status) = self.send(request, rows).await;
            statuses.push(status);
            match answer {
                Answer::Accepted { failed } => {
                    for &i in &request.rows {
                        outcomes[i] = Some(Outcome::Delivered);
                    }
                    for (i, reason) in failed {
                        outcomes[i] = Some(Outcome::Retry(reason));
                    }
                }
                Answer::RateLimited(after) => {
                    self.pause(after);
                    for &i in &request.rows {
                        outcomes[i] = Some(Outcome::Release(after));
                    }
                }
                Answer::Transient(reason) => {
                    for &i in &request.rows {
                        outcomes[i] = Some(Outcome::Retry(reason.clone()));
                    }
                }
                Answer::Permanent(reason) => {
                    for &i in &request.rows {
                        outcomes[i] = Some(Outcome::Dead(reason.clone()));
                    }
                }
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.expect("every row planned"))
            .collect();
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        info!(
            destination = %self.key,
            events = rows.len(),
            delivered = count(|o| matches!(o, Outcome::Delivered)),
            retrying = count(|o| matches!(o, Outcome::Retry(_))),
            dead = count(|o| matches!(o, Outcome::Dead(_))),
            released = count(|o| matches!(o, Outcome::Release(_))),
            status = %if statuses.is_empty() { "-".to_string() } else { statuses.join(",") },
            latency_ms = started.elapsed().as_millis() as u64,
            "batch"
        );
        outcomes
    }

    /// One HTTP exchange, classified.
    async fn send(&self, request: &Request, rows: &[Row]) -> (Answer, String) {
        let mut builder = self.http.post(&request.url).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                let label = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect-error"
                } else {
                    "error"
                };
                return (Answer::Transient(error_text(&e)), label.to_string());
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return (
                    Answer::Transient(format!(
                        "HTTP {status}, then reading the body: {}",
                        error_text(&e)
                    )),
                    "error".into(),
                )
            }
        };
        let label = status.as_str().to_string();
        let reason = || {
            truncate(&format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ))
        };
        let answer = if status.is_success() {
            Answer::Accepted {
                failed: self.api.failures(request, rows, &body),
            }
        } else if status.as_u16() == 429 {
            Answer::RateLimited(retry_after.unwrap_or(self.tuning.rate_limited_wait))
        } else if status.is_server_error() || status.as_u16() == 408 {
            Answer::Transient(reason())
        } else {
            Answer::Permanent(reason())
        };
        (answer, label)
    }

    /// Settles every row of a batch: acks first (the common case, one call), then the rest.
    /// A database error is retried; rows still unsettled come back after their claim runs
    /// out and are delivered again (at least once, never lost).
    async fn settle(&self, db: &mut Consumer, rows: &[Row], outcomes: Vec<Outcome>) {
        let mut delivered = Vec::new();
        let mut released: BTreeMap<u128, Vec<String>> = BTreeMap::new();
        let mut others = Vec::new();
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Outcome::Delivered => delivered.push(row.id.clone()),
                Outcome::Release(after) => released
                    .entry(after.as_millis())
                    .or_default()
                    .push(row.id.clone()),
                other => others.push((row, other)),
            }
        }
        let t = &self.totals;
        if !delivered.is_empty()
            && retried!(self.key, "la_outbox_ack", db.ack(&delivered)).is_some()
        {
            t.delivered
                .fetch_add(delivered.len() as u64, Ordering::Relaxed);
        }
        for (millis, ids) in released {
            let after = Duration::from_millis(millis as u64);
            if retried!(self.key, "la_outbox_release", db.release(&ids, after)).is_some() {
                t.released.fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.defer(after, ids.len());
            }
        }
        let retry = self.tuning.retry_after;
        for (row, outcome) in others {
            let result = match &outcome {
                Outcome::Retry(reason) => {
                    retried!(self.key, "la_outbox_fail", db.fail(&row.id, reason, retry))
                }
                Outcome::Dead(reason) => {
                    retried!(self.key, "la_outbox_fail", db.dead(&row.id, reason, retry))
                }
                _ => unreachable!("delivered and released rows are settled above"),
            };
            match result {
                Some(Failed::Dead) => {
                    t.dead.fetch_add(1, Ordering::Relaxed);
                    if let Outcome::Retry(reason) | Outcome::Dead(reason) = &outcome {
                        warn!(destination = %self.key, id = %row.id, seq = row.seq, user = %row.user, "dead letter: {reason}");
                    }
                }
                Some(Failed::Retrying) => {
                    t.retrying.fetch_add(1, Ordering::Relaxed);
                    // The extension's backoff: retry_after × 2^(attempts-1), capped at 2^10.
                    let factor = 2u32.pow((row.attempts - 1).clamp(0, 10) as u32);
                    self.defer(retry * factor, 1);
                }
                Some(Failed::NotPending) | None => {}
            }
        }
        t.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().unwrap())?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    fn pause(&self, after: Duration) {
        let until = Instant::now() + after;
        let mut paused = self.paused_until.lock().unwrap();
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }

    /// Waits for the rate limiter's next slot; Some(0) if shutdown came first.
    async fn take_rate_slot(&self, shutdown: &watch::Receiver<bool>) -> Option<Duration> {
        let rate = self.tuning.requests_per_second?;
        let slot = {
            let mut next = self.next_slot.lock().unwrap();
            let slot = (*next).max(Instant::now());
            *next = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        let mut shutdown = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep_until(slot.into()) => None,
            _ = shutdown.wait_for(|stop| *stop) => Some(Duration::ZERO),
        }
    }

    /// Notes when deferred rows come due (`--once` waits for them); dues long past are
    /// dropped here too, so a relay that runs for months keeps only the current ones.
    fn defer(&self, after: Duration, rows: usize) {
        let now = Instant::now();
        let mut deferred = self.deferred.lock().unwrap();
        deferred.retain(|due| *due + Duration::from_secs(2) > now);
        deferred.extend(std::iter::repeat_n(now + after, rows));
    }

    /// The next time rows this process deferred come due within `ONCE_WAIT`; those long
    /// past (delivered by someone else, or dead) are forgotten.
    fn next_deferred(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut deferred = self.deferred.lock().unwrap();
        deferred.retain(|due| *due + Duration::from_secs(2) > now);
        let next = deferred.iter().min().copied()?;
        if next > now + ONCE_WAIT {
            info!(destination = %self.key, rows = deferred.len(), "rows scheduled for a later retry stay in the outbox");
            deferred.clear();
            return None;
        }
        Some(next.max(now + Duration::from_millis(100)))
    }
}

/// `Retry-After` as a delay: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

/// An HTTP client error with its causes ("error sending request" alone says little).
fn error_text(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timeout: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    truncate(&text)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(&headers("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers("0.5"), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:47 GMT"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn truncate_keeps_short_text_and_cuts_long() {
        assert_eq!(truncate("abc"), "abc");
        assert_eq!(
            truncate(&"é".repeat(3000)).chars().count(),
            MAX_ERROR_CHARS + 1
        );
    }
}
