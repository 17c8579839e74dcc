//! la-relay: delivers linked_audiences outbox rows to each destination's API.
//!
//! It claims rows with `la_outbox_read`, sends them in the API's own batch requests and
//! settles each with `la_outbox_ack`, `la_outbox_fail` or `la_outbox_release`; the
//! extension keeps the claims, the per-user order, the backoff and the dead letters, so
//! any number of relays can run side by side and a crash loses nothing (a claim runs out
//! and the row is handed out again: at least once, `messageId` the idempotency key).

mod consumer;
mod deliver;
mod destinations;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::consumer::Consumer;
use crate::deliver::{Destination, Options, Totals};

/// Delivers linked_audiences outbox rows to Segment, Braze, Iterable, Customer.io and
/// webhooks. Secrets come from the environment variables each destination's settings
/// name (api_key_env, write_key_env, site_id_env, secret_env).
#[derive(Parser, Debug)]
#[command(name = "la-relay", version)]
struct Cli {
    /// Postgres connection: a URL (postgresql://user@host/db?host=/run/postgresql) or key=value pairs.
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    database_url: String,

    /// A destination key to deliver (repeatable); default: every destination.
    #[arg(long = "destination", value_name = "KEY")]
    destinations: Vec<String>,

    /// Deliver what is pending, then exit 0 (rows scheduled for a retry more than a
    /// minute away stay for the next run).
    #[arg(long)]
    once: bool,

    /// Rows claimed per la_outbox_read call.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=10000))]
    batch: i32,

    /// Seconds between polls when no NOTIFY arrives (LISTEN wakes the relay at once).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    poll_interval: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs in files and journald stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if !(cli.poll_interval > 0.0 && cli.poll_interval.is_finite()) {
        bail!("--poll-interval must be a positive number of seconds");
    }
    let config = consumer::config(&cli.database_url)?;
    let mut setup = Consumer::connect(&config).await?;
    if !setup.dead_letter_at_once {
        warn!("this extension's la_outbox_fail has no `dead` argument: a permanent failure (4xx) is retried until max_attempts instead of dead-lettered at once");
    }
    let rows = setup.destinations(&cli.destinations).await?;
    drop(setup);
    if rows.is_empty() {
        if cli.once {
            info!("no destinations: nothing to deliver");
            return Ok(());
        }
        bail!("no destinations: create one with la_create_destination(key, preset, settings)");
    }

    // Every destination's settings and secrets are checked before anything is claimed.
    let totals = Arc::new(Totals::default());
    let mut problems = Vec::new();
    let mut destinations = Vec::new();
    for row in &rows {
        match Destination::new(row, totals.clone()) {
            Ok(d) => destinations.push(Arc::new(d)),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(signals(stop));

    let options = Options {
        batch: cli.batch,
        poll_interval: Duration::from_secs_f64(cli.poll_interval),
        once: cli.once,
    };
    if !cli.once {
        let by_key: HashMap<String, Arc<Destination>> = destinations
            .iter()
            .map(|d| (d.key.clone(), d.clone()))
            .collect();
        let (wake, mut woken) = mpsc::unbounded_channel::<String>();
        tokio::spawn(consumer::listen(config.clone(), wake, shutdown.clone()));
        tokio::spawn(async move {
            while let Some(key) = woken.recv().await {
                match by_key.get(&key) {
                    Some(d) => d.wake.notify_waiters(),
                    None if key.is_empty() => by_key.values().for_each(|d| d.wake.notify_waiters()),
                    None => {}
                }
            }
        });
    }

    let started = Instant::now();
    let mut workers = Vec::new();
    for d in &destinations {
        info!(destination = %d.key, concurrency = d.tuning.concurrency, "delivering");
        for _ in 0..d.tuning.concurrency {
            let db = Consumer::connect(&config)
                .await
                .with_context(|| format!("destination {}", d.key))?;
            workers.push(tokio::spawn(d.clone().work(
                db,
                options.clone(),
                shutdown.clone(),
            )));
        }
    }
    let mut failed = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(anyhow::anyhow!("a worker panicked: {e}")),
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    let delivered = totals.delivered.load(Ordering::Relaxed);
    info!(
        delivered,
        retrying = totals.retrying.load(Ordering::Relaxed),
        dead = totals.dead.load(Ordering::Relaxed),
        released = totals.released.load(Ordering::Relaxed),
        requests = totals.requests.load(Ordering::Relaxed),
        batches = totals.batches.load(Ordering::Relaxed),
        seconds = format!("{elapsed:.1}"),
        events_per_second = format!("{:.0}", delivered as f64 / elapsed.max(1e-9)),
        "totals"
    );
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// SIGTERM or SIGINT: stop claiming, finish or release what is held, exit 0. A second
/// signal exits at once (claimed rows come back when their claim runs out).
async fn signals(stop: watch::Sender<bool>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot listen for SIGTERM/SIGINT: stop the relay with SIGKILL (held rows come back when their claim runs out)");
        // Keep the sender: workers read a dropped one as "changed" and would spin.
        return std::future::pending::<()>().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    info!("shutting down: no new claims; finishing or releasing what is held");
    let _ = stop.send(true);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    warn!("second signal: exiting now; held rows come back when their claim runs out");
    std::process::exit(1);
}
