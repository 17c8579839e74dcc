//! Real time without cron: a background worker that runs incremental computes for the
//! enabled audiences with pending captured changes, seconds after the writers commit.
//!
//! Enabled with `shared_preload_libraries = 'linked_audiences'` and
//! `linked_audiences.realtime = on`; it serves `linked_audiences.realtime_database` and
//! wakes every `linked_audiences.realtime_interval`. Each compute is its own transaction,
//! run as the role that owns the audience (`SET LOCAL ROLE`), so grants and row-level
//! security give the members that role's own compute would; computes go through
//! `la_compute_audience`, which records a failure as a failed run and returns, so one
//! failing audience never stops the others (and is tried again with a backoff, see
//! `due_audiences`). The postmaster restarts the worker after a
//! crash; SIGTERM stops it between computes.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;
use std::time::Duration;

static REALTIME: GucSetting<bool> = GucSetting::<bool>::new(false);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Registers the settings, and the worker when the library is preloaded.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"linked_audiences.realtime",
        c"Run incremental computes in a background worker as changes are captured.",
        c"Needs linked_audiences in shared_preload_libraries and la_capture_changes() in the database.",
        &REALTIME,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"linked_audiences.realtime_database",
        c"The database whose audiences the real-time worker computes.",
        c"Read when the worker starts: restart the server to change it.",
        &DATABASE,
        // Not Postmaster: the library is also loaded by CREATE EXTENSION in a running
        // server, where a postmaster-only setting cannot be defined.
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"linked_audiences.realtime_interval",
        c"How often the real-time worker looks for captured changes.",
        c"",
        &INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        BackgroundWorkerBuilder::new("linked_audiences realtime")
            .set_type("linked_audiences realtime")
            .set_library("linked_audiences")
            .set_function("linked_audiences_realtime_main")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

/// The worker's loop.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn linked_audiences_realtime_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = DATABASE
        .get()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("linked_audiences realtime: serving database \"{db}\"");
    loop {
        let interval = Duration::from_millis(INTERVAL_MS.get().max(10) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break; // SIGTERM
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !REALTIME.get() {
            continue;
        }
        let due = BackgroundWorker::transaction(due_audiences);
        let computed = !due.is_empty();
        for (key, owner) in due {
            if BackgroundWorker::sigterm_received() {
                break;
            }
            // The audience's compute lock, held by this session across the compute's
            // transaction (a compute takes it again, re-entrantly): taken before that
            // transaction's snapshot, so the snapshot sees whatever an earlier compute of
            // the audience committed, and no other compute of it can start meanwhile.
            let Some(id) = BackgroundWorker::transaction(|| lock_audience(&key)) else {
                continue;
            };
            // One snapshot for the whole compute: members, tracked entities and payload
            // enrichment read one state of the warehouse.
            repeatable_read(move || compute_as(&key, &owner));
            BackgroundWorker::transaction(move || unlock_audience(id));
        }
        // A compute in REPEATABLE READ leaves the change log alone (a concurrent prune
        // would fail it); the worker prunes after its computes, in READ COMMITTED.
        if computed {
            BackgroundWorker::transaction(|| {
                if let Err(e) = crate::compute::prune_change_log() {
                    warning!(
                        "linked_audiences realtime: pruning the change log: {}",
                        e.full_message()
                    );
                }
            });
        }
    }
    log!("linked_audiences realtime: stopped");
}

/// The enabled audiences whose position is behind the change log, or whose conditions
/// follow the clock, referenced audiences first, with their owners; none when the
/// extension (at 0.3.0 or later) or capture is not there. (An error here, as when the extension is dropped between the check and
/// the query, ends the worker; the postmaster starts it again 5 s later.)
fn due_audiences() -> Vec<(String, String)> {
    let ready = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'linked_audiences'
                        AND extversion NOT IN ('0.1.0', '0.2.0'))
                AND pg_catalog.to_regclass('linked_audiences.compute_position') IS NOT NULL
                AND pg_catalog.to_regclass('linked_audiences.change_log') IS NOT NULL
                AND pg_catalog.to_regclass('linked_audiences.capture_alive') IS NOT NULL
                AND pg_catalog.to_regclass('linked_audiences.capture') IS NOT NULL",
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !ready {
        return vec![];
    }
    let due = Spi::get_one::<pgrx::JsonB>(&format!(
        "WITH RECURSIVE d(key, depth) AS (
             SELECT a.key, 0 FROM linked_audiences.audience a
             UNION ALL
             SELECT a.key, d.depth + 1 FROM linked_audiences.audience a JOIN d ON d.key = ANY (a.depends_on)
             WHERE d.depth < 64)
         SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(x.key, x.owner) ORDER BY x.depth, x.id), '[]')
         FROM (SELECT a.key, a.owner, a.id, max(d.depth) AS depth
               FROM d JOIN linked_audiences.audience a ON a.key = d.key
               JOIN linked_audiences.compute_position cp ON cp.audience_id = a.id
               JOIN linked_audiences.capture c ON c.enabled
               -- Audiences following the clock: once a minute even without writes (each
               -- compute is a run row; a minute bounds how late a crossing is seen).
               WHERE a.enabled AND ((cp.clock AND cp.at < pg_catalog.now() - interval '1 minute') OR EXISTS (
                   SELECT 1 FROM linked_audiences.change_log l
                   WHERE l.tx >= pg_catalog.pg_snapshot_xmin(cp.snapshot)
                     AND NOT pg_catalog.pg_visible_in_snapshot(l.tx, cp.snapshot))
                   -- A crash emptied the log since the position: what it lost is
                   -- computed in full at once, not at the next write.
                   OR NOT {alive})
               -- An audience whose last computes failed waits before the next try: 1 s
               -- after one failure, twice as long after each further one, 5 minutes at
               -- most (else a failing audience fails, and writes a failed run, at every
               -- interval while its changes stay pending).
               AND NOT EXISTS (
                   SELECT FROM (
                       SELECT coalesce(pg_catalog.min(x.n) FILTER (WHERE x.status <> 'failed'),
                                                  pg_catalog.count(*) + 1) - 1 AS failures,
                              pg_catalog.max(x.started_at) AS last
                       FROM (SELECT r.status, r.started_at, pg_catalog.row_number() OVER (ORDER BY r.id DESC) AS n
                             FROM linked_audiences.runs r WHERE r.audience_id = a.id
                             ORDER BY r.id DESC LIMIT 10) x) f
                   WHERE f.failures > 0
                     AND f.last > pg_catalog.clock_timestamp()
                         - LEAST(interval '5 minutes', interval '1 second' * pg_catalog.power(2, f.failures - 1)))
               GROUP BY a.key, a.owner, a.id) x",
        alive = crate::capture::LOG_COMPLETE_SINCE_CP
    ))
    .ok()
    .flatten()
    .map(|j| j.0)
    .unwrap_or_default();
    serde_json::from_value::<Vec<(String, String)>>(due).unwrap_or_default()
}

/// Takes the compute lock of an audience for this session; its id, or `None` when the
/// audience no longer exists.
fn lock_audience(key: &str) -> Option<i64> {
    let id = Spi::get_one_with_args::<i64>(
        "SELECT a.id FROM linked_audiences.audience a WHERE a.key = $1",
        &[key.into()],
    )
    .ok()
    .flatten()?;
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_lock(1279345491, $1::pg_catalog.int4)",
        &[id.into()],
    )
    .ok()?;
    Some(id)
}

fn unlock_audience(id: i64) {
    let _ = Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_unlock(1279345491, $1::pg_catalog.int4)",
        &[id.into()],
    );
}

/// Runs `body` in a transaction at REPEATABLE READ (the transaction's isolation comes
/// from the default when it starts), then puts READ COMMITTED back as the default.
fn repeatable_read<F: FnOnce() + std::panic::UnwindSafe + std::panic::RefUnwindSafe>(body: F) {
    // SAFETY: the worker is single-threaded, and no transaction is open here.
    unsafe { pg_sys::DefaultXactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32 };
    BackgroundWorker::transaction(body);
    unsafe { pg_sys::DefaultXactIsoLevel = pg_sys::XACT_READ_COMMITTED as i32 };
}

/// One compute, as the audience's owner (when that role still exists).
fn compute_as(key: &str, owner: &str) {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[owner.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !exists {
        warning!("linked_audiences realtime: audience \"{key}\" skipped: its owner \"{owner}\" no longer exists");
        return;
    }
    let _ = Spi::run_with_args(
        "SELECT pg_catalog.set_config('role', $1, true)",
        &[owner.into()],
    );
    let schema = Spi::get_one::<String>(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'linked_audiences'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| "public".into());
    let sql = format!(
        "SELECT {}.la_compute_audience($1, 'auto')::text",
        pgrx::spi::quote_identifier(&schema)
    );
    match Spi::get_one_with_args::<String>(&sql, &[key.into()]) {
        Ok(Some(result)) => debug1!("linked_audiences realtime: {key}: {result}"),
        Ok(None) => {}
        Err(e) => warning!("linked_audiences realtime: {key}: {e}"),
    }
}
