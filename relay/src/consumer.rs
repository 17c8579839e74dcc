//! The outbox consumer API, called over one Postgres connection.
//!
//! The relay reads and settles rows only through the extension's functions
//! (`la_outbox_read`, `la_outbox_ack`, `la_outbox_fail`, `la_outbox_release`) and reads
//! `linked_audiences.destination`, so a role with `la_grant(role, 'consumer')` is all it
//! needs: the claim, the per-user order and the backoff live in the database, not here.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Statement};
use tracing::{debug, warn};

/// The channel a compute notifies when it commits rows (payload: the destination key).
pub const CHANNEL: &str = "linked_audiences_outbox";

/// One claimed outbox row: what `la_outbox_read` hands out and the relay needs.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub seq: i64,
    /// The user (`aggregateid`): the unit of ordering.
    pub user: String,
    /// The destination's action (`track`, `trackEvent`, `updateUser`, `post`, ...).
    pub action: String,
    /// The body the destination's preset mapped the event to.
    pub mapped: Value,
    /// How many times the row has been handed out, this time included.
    pub attempts: i32,
    /// When the event happened: the payload's `timestamp` (ISO 8601), for destinations
    /// whose mapped body does not carry it.
    pub timestamp: Option<String>,
}

/// A destination as `linked_audiences.destination` keeps it.
#[derive(Debug, Clone)]
pub struct DestinationRow {
    pub key: String,
    pub preset: String,
    pub settings: Value,
}

/// What `la_outbox_fail` did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    Retrying,
    Dead,
    /// The row was no longer pending (another consumer settled it after our claim ran out).
    NotPending,
}

/// Parses the `--database-url` (URL or key=value form) and names the connection.
pub fn config(url: &str) -> Result<Config> {
    let mut config = Config::from_str(url).context("--database-url")?;
    if config.get_application_name().is_none() {
        config.application_name("la-relay");
    }
    // This build speaks plain TCP or a Unix socket: refuse a URL that demands TLS rather
    // than silently connecting without it (sslmode=prefer falls back to plain).
    if config.get_ssl_mode() == SslMode::Require {
        bail!("--database-url asks for sslmode=require, but la-relay connects without TLS: run it beside the database (Unix socket or loopback) with sslmode=disable or prefer");
    }
    Ok(config)
}

/// The statements one connection uses, prepared once so each call is one round trip.
struct Prepared {
    client: Client,
    read: Statement,
    ack: Statement,
    release: Statement,
    fail: Statement,
    dead: Option<Statement>,
}

/// One connection to the database, reconnected when it breaks.
pub struct Consumer {
    config: Config,
    conn: Option<Prepared>,
    /// Whether `la_outbox_fail` takes `dead => true` (dead-letter at once).
    pub dead_letter_at_once: bool,
}

impl Consumer {
    /// Connects and checks that the extension has the functions the relay calls.
    pub async fn connect(config: &Config) -> Result<Consumer> {
        let mut consumer = Consumer {
            config: config.clone(),
            conn: None,
            dead_letter_at_once: false,
        };
        consumer.ensure().await?;
        Ok(consumer)
    }

    async fn ensure(&mut self) -> Result<&Prepared> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.open().await?);
        }
        Ok(self.conn.as_ref().expect("connected above"))
    }

    async fn open(&mut self) -> Result<Prepared> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .context("connecting to the database")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("database connection ended: {e}");
            }
        });
        let row = client
            .query_one(
                "SELECT to_regproc('la_outbox_read') IS NOT NULL,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = 'la_outbox_release'),
                        EXISTS (SELECT 1 FROM pg_catalog.pg_proc
                                WHERE proname = 'la_outbox_fail' AND 'dead' = ANY (proargnames))",
                &[],
            )
            .await
            .context("looking up the outbox functions")?;
        let (read, release, dead): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if !read {
            bail!("la_outbox_read() is not found: CREATE EXTENSION linked_audiences in this database (and put its schema on the search_path)");
        }
        if !release {
            bail!("la_outbox_release(uuid[], interval) is not found: update the extension (ALTER EXTENSION linked_audiences UPDATE)");
        }
        self.dead_letter_at_once = dead;
        // `mapped` falls back to the payload so a preset without a mapping still sends the event.
        let read = client
            .prepare(
                "SELECT id::text, seq, aggregateid, action, coalesce(mapped, payload), attempts,
                        payload ->> 'timestamp'
                 FROM la_outbox_read($1::text, $2::integer, make_interval(secs => $3::float8))",
            )
            .await?;
        let ack = client
            .prepare("SELECT la_outbox_ack($1::text[]::uuid[])")
            .await?;
        let release = client
            .prepare(
                "SELECT la_outbox_release($1::text[]::uuid[], make_interval(secs => $2::float8))",
            )
            .await?;
        let fail = client
            .prepare("SELECT la_outbox_fail($1::text::uuid, $2::text, make_interval(secs => $3::float8))")
            .await?;
        let dead = if dead {
            Some(
                client
                    .prepare(
                        "SELECT la_outbox_fail($1::text::uuid, $2::text, make_interval(secs => $3::float8), dead => true)",
                    )
                    .await?,
            )
        } else {
            None
        };
        Ok(Prepared {
            client,
            read,
            ack,
            release,
            fail,
            dead,
        })
    }

    /// The destinations to deliver: all of them, or those named (each must exist).
    pub async fn destinations(&mut self, keys: &[String]) -> Result<Vec<DestinationRow>> {
        let conn = self.ensure().await?;
        let rows = conn
            .client
            .query(
                "SELECT key, preset, settings FROM linked_audiences.destination
                 WHERE cardinality($1::text[]) = 0 OR key = ANY ($1::text[]) ORDER BY key",
                &[&keys],
            )
            .await
            .context("reading linked_audiences.destination (grant the relay's role la_grant(role, 'consumer'))")?;
        let found: Vec<DestinationRow> = rows
            .iter()
            .map(|r| DestinationRow {
                key: r.get(0),
                preset: r.get(1),
                settings: r.get(2),
            })
            .collect();
        let missing: Vec<&str> = keys
            .iter()
            .filter(|k| !found.iter().any(|d| &d.key == *k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            bail!(
                "destination {} does not exist (see linked_audiences.destination)",
                missing.join(", ")
            );
        }
        Ok(found)
    }

    /// Claims up to `batch` rows of a destination for `visibility`.
    pub async fn read(
        &mut self,
        destination: &str,
        batch: i32,
        visibility: Duration,
    ) -> Result<Vec<Row>> {
        let conn = self.ensure().await?;
        let rows = conn
            .client
            .query(
                &conn.read,
                &[&destination, &batch, &visibility.as_secs_f64()],
            )
            .await;
        let rows = self.check(rows)?;
        Ok(rows
            .iter()
            .map(|r| Row {
                id: r.get(0),
                seq: r.get(1),
                user: r.get(2),
                action: r.get(3),
                mapped: r.get(4),
                attempts: r.get(5),
                timestamp: r.get(6),
            })
            .collect())
    }

    /// Acknowledges delivered rows; returns how many were still pending.
    pub async fn ack(&mut self, ids: &[String]) -> Result<i32> {
        let conn = self.ensure().await?;
        let row = conn.client.query_one(&conn.ack, &[&ids]).await;
        Ok(self.check(row)?.get(0))
    }

    /// Gives claimed rows back, visible again after `after`, without counting an attempt.
    pub async fn release(&mut self, ids: &[String], after: Duration) -> Result<i32> {
        let conn = self.ensure().await?;
        let row = conn
            .client
            .query_one(&conn.release, &[&ids, &after.as_secs_f64()])
            .await;
        Ok(self.check(row)?.get(0))
    }

    /// Reports a failed delivery: the extension retries it after its backoff or
    /// dead-letters it after `max_attempts`.
    pub async fn fail(&mut self, id: &str, error: &str, retry_after: Duration) -> Result<Failed> {
        let conn = self.ensure().await?;
        let row = conn
            .client
            .query_one(&conn.fail, &[&id, &error, &retry_after.as_secs_f64()])
            .await;
        self.failed(row)
    }

    /// Dead-letters a row at once (a permanent failure). Without `dead => true` in this
    /// version of the extension, the row is failed as usual and dies after `max_attempts`.
    pub async fn dead(&mut self, id: &str, error: &str, retry_after: Duration) -> Result<Failed> {
        let conn = self.ensure().await?;
        let Some(dead) = &conn.dead else {
            return self.fail(id, error, retry_after).await;
        };
        let row = conn
            .client
            .query_one(dead, &[&id, &error, &retry_after.as_secs_f64()])
            .await;
        self.failed(row)
    }

    fn failed(
        &mut self,
        row: Result<tokio_postgres::Row, tokio_postgres::Error>,
    ) -> Result<Failed> {
        match row {
            Ok(row) => Ok(if row.get::<_, String>(0) == "dead" {
                Failed::Dead
            } else {
                Failed::Retrying
            }),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => Ok(Failed::NotPending),
            Err(e) => self.check(Err(e)),
        }
    }

    /// Forgets a broken connection so the next call reconnects.
    fn check<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T> {
        if result.is_err() && self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        Ok(result?)
    }
}

/// Follows `LISTEN linked_audiences_outbox` on its own connection, reconnecting when it
/// breaks, and sends each notification's destination key to `wake` (an empty key after
/// every (re)connect: notifications may have been missed meanwhile). Polling covers the
/// gaps, so a lost listener delays delivery but never loses it.
pub async fn listen(
    config: Config,
    wake: mpsc::UnboundedSender<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        let _ = wake.send(String::new());
                        loop {
                            tokio::select! {
                                key = rx.recv() => match key {
                                    Some(key) => { let _ = wake.send(key); }
                                    None => break,
                                },
                                _ = shutdown.changed() => { driver.abort(); return; }
                            }
                        }
                        match driver.await {
                            Ok(Err(e)) => {
                                warn!("LISTEN connection lost: {e}; polling until it is back")
                            }
                            _ => warn!("LISTEN connection closed; polling until it is back"),
                        }
                    }
                    Err(e) => {
                        driver.abort();
                        warn!("LISTEN {CHANNEL} failed: {e}");
                    }
                }
            }
            Err(e) => warn!("LISTEN connection failed: {e}; polling until it is back"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
