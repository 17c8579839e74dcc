//! `linked_audiences.compute_audience`: one compute, in the caller's transaction.
//! The SQL wrappers (`la_compute_audience`, `la_compute_all`) add failure recording.

use super::{
    entity_diff_sql, entity_pairs_sql, membership_diff_sql, DIRTY_TABLE, MEMBERS_TABLE, PAIRS_TABLE,
};
use crate::audience::spi::{args, compile_checked, load_env, require};
use crate::compile::sql::{ParamValue, Params};
use crate::compile::Compiled;
use crate::error::Problem;
use crate::json::Doc;
use crate::sql::{internal, jsonb_row, jsonb_write};
use crate::{ok_or_raise, raise, raise_all};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// 0.2.0's one-argument compute (C symbol `compute_audience_wrapper`), for a database
/// still on that version's schema until it is updated: a full compute.
#[pg_extern(volatile, parallel_unsafe, strict, sql = false)]
fn compute_audience(key: &str) -> JsonB {
    compute(key, "full")
}

/// Computes one audience: membership and tracked entities are diffed against the last
/// run; changes, the run row (and, with activations, outbox rows) are written in the
/// caller's transaction. `mode`: `full` evaluates every profile; `incremental` only
/// those the captured changes since the last compute touched (refused when that would
/// not be exact); `auto` the latter when it is exact, else the former.
#[pg_extern(
    volatile,
    parallel_unsafe,
    strict,
    sql = "CREATE FUNCTION linked_audiences.compute_audience(key text, mode text) RETURNS jsonb \
           STRICT VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn compute_audience_mode(key: &str, mode: &str) -> JsonB {
    compute(key, mode)
}

fn compute(key: &str, mode: &str) -> JsonB {
    let started = std::time::Instant::now();
    if !matches!(mode, "full" | "incremental" | "auto") {
        raise(
            &Problem::invalid("mode", format!("unknown mode \"{mode}\""))
                .with_hint("Modes: full, incremental, auto."),
        );
    }
    let stored = ok_or_raise(require(key));
    // One compute of an audience at a time; the lock is what linked_audiences.running
    // shows to other sessions.
    ok_or_raise(
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock(1279345491, $1::pg_catalog.int4)",
            &[stored.id.into()],
        )
        .map_err(internal),
    );
    // Before anything is read: what the next incremental compute continues from.
    let snapshot = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.pg_current_snapshot()::pg_catalog.text)",
        &[],
    ))
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_default();
    let env = ok_or_raise(load_env());
    let compiled =
        compile_checked(&env, &stored.definition, Some(key)).unwrap_or_else(|ps| raise_all(&ps));
    let current = ok_or_raise(crate::sql::schema_0_3());
    let activations = ok_or_raise(crate::activation::api::load_activations(stored.id, None));
    // What an activation enriches from may have gone since it was created (a renamed
    // column, a graph change): its events go without it, and the compute says so.
    if !activations.is_empty() {
        let named = compiled.entity_relationships();
        for a in &activations {
            for p in crate::activation::api::check_properties(&a.properties, &env, &named) {
                pgrx::warning!(
                    "linked_audiences: {key}: activation {} ({} to {}): {}; its events are written without it",
                    a.id,
                    a.event,
                    a.destination,
                    p.full_message()
                );
            }
        }
    }
    // Entities of the relationships that enabled Entity Added/Removed activations name.
    let tracked: Vec<String> = activations
        .iter()
        .filter_map(|a| a.entity.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let fingerprint = fingerprint(&compiled, &tracked);
    // On Citus, once la_distribute() ran: the distributed statements, computes in full.
    let distributed = super::distributed::members_distributed();
    let (incremental, previous) = if !current || mode == "full" {
        (false, None)
    } else {
        match ok_or_raise(incremental_from(
            stored.id,
            &compiled,
            &fingerprint,
            &activations,
            distributed,
        )) {
            Ok(prev) => (true, Some(prev)),
            Err(reason) if mode == "incremental" => crate::capture::api::not_incremental(&reason),
            Err(_) => (false, None),
        }
    };
    // A few profiles are evaluated one by one: counts and aggregates per profile (the
    // same members, a plan that follows their rows, not the tables').
    let compiled = if incremental {
        crate::compile::compile_for(
            &env.ctx(),
            &stored.definition,
            Some(key),
            crate::compile::Strategy::PerProfile,
        )
        .unwrap_or_else(|ps| raise_all(&ps))
    } else {
        compiled
    };
    let run = ok_or_raise(jsonb_write(
        "INSERT INTO linked_audiences.runs (audience_id, audience_version, status)
         VALUES ($1, $2, 'running') RETURNING pg_catalog.to_jsonb(id)",
        &[stored.id.into(), stored.version.into()],
    ))
    .and_then(|v| v.as_i64())
    .unwrap_or_default();

    let mut params = compiled.params.clone();
    let audience = params.typed(stored.id.to_string(), "pg_catalog.int8");
    let run_param = params.typed(run.to_string(), "pg_catalog.int8");

    // Incremental: the profiles the captured changes since the previous compute touched.
    let among = incremental.then_some(DIRTY_TABLE);
    let evaluated = match &previous {
        // Nothing captured and no clock to follow: no profile can have changed.
        Some(prev) if !prev.pending && compiled.clock.is_empty() => 0,
        Some(Previous {
            snapshot: prev,
            at: then,
            ..
        }) => {
            let mut p = Params::default();
            let snapshot = p.typed(prev.clone(), "pg_catalog.pg_snapshot");
            let then = p.typed(then.clone(), "pg_catalog.timestamptz");
            let reads = p.array(compiled.tables.clone(), "pg_catalog.text");
            let dirty = crate::capture::dirty_profiles_sql(
                env.graph(),
                env.cat(),
                "lg",
                &mut p,
                &compiled.tables,
            )
            .unwrap_or_else(|| raise(&internal("no profile table to map changes to")));
            let clock = crate::capture::clock_rows_sql(
                env.graph(),
                env.cat(),
                &compiled.clock,
                &then,
                &mut p,
            );
            materialize(
                DIRTY_TABLE,
                &format!(
                    "WITH lg AS MATERIALIZED (
                         SELECT l.relation, l.col, l.value FROM linked_audiences.change_log l
                         WHERE l.tx >= pg_catalog.pg_snapshot_xmin({snapshot})
                           AND NOT pg_catalog.pg_visible_in_snapshot(l.tx, {snapshot})
                           AND l.relation = ANY ({reads}){clock})
                     SELECT DISTINCT d.profile_id FROM ({dirty}) d(profile_id) WHERE d.profile_id IS NOT NULL"
                ),
                &p,
            )
        }
        // Full: every profile the caller can see.
        None => ok_or_raise(jsonb_row(
            &format!(
                "SELECT pg_catalog.to_jsonb(pg_catalog.count(*)) FROM {}",
                compiled.profile.table
            ),
            &[],
        ))
        .and_then(|v| v.as_i64())
        .unwrap_or(0),
    };
    // Incremental with no profile touched: nothing can have changed.
    let nothing = incremental && evaluated == 0;
    let members_sql = match among {
        Some(d) => compiled.members_among_sql(d),
        None => compiled.members_sql(),
    };
    let (new_members, m) = if nothing {
        (0, json!({"entered": 0, "exited": 0}))
    } else if distributed {
        use super::distributed as d;
        let [apply_in, apply_out] = d::apply_members_sql(&audience, &run_param);
        let a = args(&params);
        let n = d::run(
            &[
                d::entered_sql(&compiled, &audience, &run_param),
                d::exited_sql(&compiled, &audience, &run_param),
            ],
            &a,
        );
        // The changes are applied from the history: the planner must know how many the
        // run logged (else, with both tables' statistics stale, it loops over one per
        // row of the other); exits are applied only when there are some.
        refresh_stats_if_big("linked_audiences.membership_changes", n[0] + n[1], 0);
        let mut apply = vec![apply_in];
        if n[1] > 0 {
            apply.push(apply_out);
        }
        d::run(&apply, &a);
        let members = stored_members(stored.id);
        (members, json!({"entered": n[0], "exited": n[1]}))
    } else {
        let n = materialize(MEMBERS_TABLE, &members_sql, &compiled.params);
        let m = ok_or_raise(jsonb_write(
            &membership_diff_sql(MEMBERS_TABLE, &audience, &run_param, among),
            &args(&params),
        ))
        .unwrap_or(Value::Null);
        (n, m)
    };
    let (entered, exited) = (
        m["entered"].as_i64().unwrap_or(0),
        m["exited"].as_i64().unwrap_or(0),
    );
    // An incremental compute found the members among the dirty profiles; the whole set
    // is the stored one.
    let members = match previous.as_ref().filter(|_| incremental) {
        Some(Previous {
            members: Some(before),
            ..
        }) => before + entered - exited,
        Some(_) => stored_members(stored.id),
        None => new_members,
    };
    pgrx::notice!("linked_audiences: {key}: {members} members, {entered} entered, {exited} exited");
    refresh_stats_if_big(
        "linked_audiences.audience_members",
        entered + exited,
        members,
    );

    // A relationship tracked before, or tracked since the audience's first compute, has
    // changes; one newly tracked for an audience that already has members starts silently.
    // (A schema before 0.3.0 keeps no list: every tracked relationship has changes.)
    let before = if current {
        ok_or_raise(jsonb_row(
            "SELECT pg_catalog.jsonb_build_object('tracked', pg_catalog.to_jsonb(a.tracked), 'computed', a.last_run_id IS NOT NULL)
             FROM linked_audiences.audience a WHERE a.id = $1",
            &[stored.id.into()],
        ))
        .unwrap_or(Value::Null)
    } else {
        json!({"tracked": tracked, "computed": true})
    };
    let was_tracked: Vec<String> =
        serde_json::from_value(before["tracked"].clone()).unwrap_or_default();
    let computed_before = before["computed"].as_bool().unwrap_or(false);
    let mut now_tracked: Vec<String> = Vec::new();
    let (mut added, mut removed) = (0, 0);
    if nothing {
        // Nothing to diff: the tracked relationships are those of the last compute.
        now_tracked = was_tracked.clone();
    }
    for rel in tracked.iter().filter(|_| !nothing) {
        let selects: Vec<_> = compiled
            .entity_selects
            .iter()
            .filter(|s| &s.relationship == rel)
            .collect();
        if selects.is_empty() {
            continue;
        }
        let mut p = params.clone();
        let rel_param = p.text(rel.clone());
        now_tracked.push(rel.clone());
        let record = !computed_before || was_tracked.contains(rel);
        if distributed {
            use super::distributed as d;
            let [added_sql, removed_sql] =
                d::entity_changes_sql(&compiled, &selects, &audience, &run_param, &rel_param);
            let [apply_in, apply_out] = d::apply_entities_sql(&audience, &run_param, &rel_param);
            let a = args(&p);
            let n = d::run(&[added_sql, removed_sql], &a);
            refresh_stats_if_big("linked_audiences.membership_changes", n[0] + n[1], 0);
            let mut statements = vec![apply_in];
            if n[1] > 0 {
                statements.push(apply_out);
            }
            if !record {
                statements.push(d::unrecord_entities_sql(&audience, &run_param, &rel_param));
            }
            d::run(&statements, &a);
            let (a, r) = if record { (n[0], n[1]) } else { (0, 0) };
            pgrx::notice!("linked_audiences: {key}: {rel}: {a} entities added, {r} removed");
            refresh_stats_if_big("linked_audiences.audience_entities", n[0] + n[1], n[0]);
            added += a;
            removed += r;
            continue;
        }
        materialize(
            PAIRS_TABLE,
            &entity_pairs_sql(&compiled, &selects, &audience, among),
            &params,
        );
        let e = ok_or_raise(jsonb_write(
            &entity_diff_sql(
                PAIRS_TABLE,
                &audience,
                &run_param,
                &rel_param,
                record,
                among,
            ),
            &args(&p),
        ))
        .unwrap_or(Value::Null);
        let (a, r) = (
            e["added"].as_i64().unwrap_or(0),
            e["removed"].as_i64().unwrap_or(0),
        );
        pgrx::notice!("linked_audiences: {key}: {rel}: {a} entities added, {r} removed");
        refresh_stats_if_big("linked_audiences.audience_entities", a + r, a);
        added += a;
        removed += r;
    }

    // Entities of relationships no longer tracked are let go: if tracked again, they
    // start from the state of that compute.
    if current && distributed {
        // Citus: a local UPDATE and a distributed DELETE, as statements of their own.
        super::distributed::run(
            &[
                "UPDATE linked_audiences.audience SET tracked = $2 WHERE id = $1 AND tracked IS DISTINCT FROM $2".into(),
                "DELETE FROM linked_audiences.audience_entities WHERE audience_id = $1 AND relationship <> ALL ($2)".into(),
            ],
            &[stored.id.into(), now_tracked.clone().into()],
        );
    } else if current {
        ok_or_raise(
            Spi::run_with_args(
                "WITH u AS (UPDATE linked_audiences.audience SET tracked = $2 WHERE id = $1 AND tracked IS DISTINCT FROM $2)
                 DELETE FROM linked_audiences.audience_entities WHERE audience_id = $1 AND relationship <> ALL ($2)",
                &[stored.id.into(), now_tracked.clone().into()],
            )
            .map_err(internal),
        );
    }

    // Every change becomes an event for each enabled activation, in this transaction.
    let mut events_written = 0i64;
    let mut truncated = 0i64;
    if !activations.is_empty() && !nothing {
        let ctx = crate::activation::events::EventCtx {
            graph: env.graph(),
            cat: env.cat(),
            compiled: &compiled,
            audience_key: key,
            audience_id: stored.id,
            run: &run_param,
            version: env!("CARGO_PKG_VERSION"),
            params: params.clone().into(),
        };
        let changes = format!(
            "SELECT c.profile_id, c.entity_id, c.change, c.relationship FROM linked_audiences.membership_changes c WHERE c.run_id = {run_param}"
        );
        let o = if distributed {
            outbox_distributed(ctx, &activations, &audience)
        } else {
            let sql = crate::activation::outbox::outbox_insert_sql(&ctx, &activations, &changes);
            ok_or_raise(jsonb_write(&sql, &args(&ctx.into_params()))).unwrap_or(Value::Null)
        };
        events_written = o["written"].as_i64().unwrap_or(0);
        truncated = o["truncated"].as_i64().unwrap_or(0);
        pgrx::notice!("linked_audiences: {key}: {events_written} events written to the outbox ({truncated} truncated)");
        // Against the rows the planner already knows of: a batch that is small next to
        // the outbox leaves its statistics good enough.
        let known = ok_or_raise(jsonb_row(
            "SELECT pg_catalog.to_jsonb(greatest(c.reltuples, 0)::pg_catalog.int8) FROM pg_catalog.pg_class c
             WHERE c.oid = 'linked_audiences.outbox_state'::pg_catalog.regclass",
            &[],
        ))
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
        refresh_stats_if_big("linked_audiences.outbox_state", events_written, known);
    }
    // Each enabled activation has had its first compute: from now on it sends changes.
    // (Only the activations this compute loaded: one created meanwhile starts with the
    // next compute.)
    if current && !activations.is_empty() {
        ok_or_raise(
            Spi::run_with_args(
                "UPDATE linked_audiences.activation SET first_run_id = $2
                 WHERE audience_id = $1 AND enabled AND first_run_id IS NULL AND id = ANY ($3)",
                &[
                    stored.id.into(),
                    run.into(),
                    activations
                        .iter()
                        .map(|a| a.id)
                        .collect::<Vec<i64>>()
                        .into(),
                ],
            )
            .map_err(internal),
        );
    }
    if current {
        record_position(stored.id, &snapshot, &fingerprint, compiled.uses_now);
    }
    let mode = if incremental { "incremental" } else { "full" };
    let duration_ms = started.elapsed().as_millis() as i64;
    // The run's outcome in one statement, with 0.3.0's mode and profiles evaluated when
    // the schema has them (an earlier schema's statement leaves $9 and $10 unused).
    let outcome = if current {
        ", mode = $9, profiles_evaluated = $10"
    } else {
        ""
    };
    ok_or_raise(jsonb_write(
        &format!(
            "WITH r AS (
                 UPDATE linked_audiences.runs SET status = 'succeeded', finished_at = pg_catalog.clock_timestamp(),
                     members = $2, entered = $3, exited = $4, entities_added = $5, entities_removed = $6,
                     events_written = $7, events_truncated = $8{outcome}
                 WHERE id = $1 RETURNING audience_id)
             UPDATE linked_audiences.audience a SET last_run_id = $1 FROM r WHERE a.id = r.audience_id
             RETURNING '{{}}'::pg_catalog.jsonb"
        ),
        &[run.into(), members.into(), entered.into(), exited.into(), added.into(), removed.into(), events_written.into(), truncated.into(), mode.into(), evaluated.into()],
    ));
    JsonB(json!({
        "run_id": run,
        "mode": mode,
        "profiles_evaluated": evaluated,
        "members": members,
        "entered": entered,
        "exited": exited,
        "entities_added": added,
        "entities_removed": removed,
        "events_written": events_written,
        "events_truncated": truncated,
        "duration_ms": duration_ms,
    }))
}

/// The run's events into the outbox on Citus (`activation::outbox::outbox_insert_distributed`):
/// the events are collected in a temporary table (replacing the one a previous compute
/// of this transaction left), then written and notified on the coordinator.
fn outbox_distributed(
    ctx: crate::activation::events::EventCtx<'_>,
    activations: &[crate::activation::events::Activation],
    audience: &str,
) -> Value {
    use crate::activation::outbox::{outbox_insert_distributed, EVENTS_TABLE};
    let mut statements = outbox_insert_distributed(&ctx, activations, audience);
    let params = ctx.into_params();
    let left_over = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.to_regclass($1) IS NOT NULL)",
        &[EVENTS_TABLE.into()],
    ));
    if left_over == Some(Value::Bool(true)) {
        ok_or_raise(Spi::run(&format!("DROP TABLE {EVENTS_TABLE}")).map_err(internal));
    }
    let create = statements.remove(0);
    ok_or_raise(Spi::run(&create).map_err(internal));
    let notify = statements.pop().unwrap_or_default();
    let write = statements.pop().unwrap_or_default();
    super::distributed::run(&statements, &args(&params));
    let o = ok_or_raise(jsonb_write(&write, &args(&params))).unwrap_or(Value::Null);
    ok_or_raise(Spi::run(&notify).map_err(internal));
    o
}

/// The number of members stored for an audience.
fn stored_members(audience_id: i64) -> i64 {
    ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.count(*)) FROM linked_audiences.audience_members WHERE audience_id = $1",
        &[audience_id.into()],
    ))
    .and_then(|v| v.as_i64())
    .unwrap_or(0)
}

/// What a compute computed, to know whether the next may continue from it: its query
/// and parameters, the relationships it tracks, the graph.
fn fingerprint(compiled: &Compiled, tracked: &[String]) -> String {
    let text = json!({
        "sql": compiled.members_sql(),
        "params": compiled.params.iter().map(|p| match p {
            ParamValue::Text(t) => json!(t),
            ParamValue::TextArray(a) => json!(a),
        }).collect::<Vec<_>>(),
        "tracked": tracked,
    })
    .to_string();
    // Also who computes (grants and row-level security decide the members) and the
    // session's time zone (a timestamp without time zone compares with now(), and a
    // date literal with a timestamptz, in it).
    ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.md5($1 || coalesce((SELECT g.graph::pg_catalog.text FROM linked_audiences.data_graph g), '')
             || pg_catalog.jsonb_build_array(CURRENT_USER, pg_catalog.current_setting('TimeZone'))::pg_catalog.text))",
        &[text.as_str().into()],
    ))
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_default()
}

/// Where the previous compute left off, for an incremental compute.
struct Previous {
    /// Its snapshot and now(), as text.
    snapshot: String,
    at: String,
    /// Some captured change is not in it.
    pending: bool,
    /// Its member count, when it succeeded.
    members: Option<i64>,
}

/// Where the previous compute left off, when an incremental compute from it is exact;
/// else why not.
fn incremental_from(
    audience_id: i64,
    compiled: &Compiled,
    fingerprint: &str,
    activations: &[crate::activation::events::Activation],
    distributed: bool,
) -> crate::error::Result<Result<Previous, String>> {
    if distributed {
        return Ok(Err("the members table is distributed (Citus, la_distribute()): computes there are full, change capture is not used".into()));
    }
    if activations.iter().any(|a| a.sends_existing_now()) {
        return Ok(Err(
            "an activation sends the current members at its first compute".into(),
        ));
    }
    let s = jsonb_row(
        &format!("SELECT pg_catalog.jsonb_build_object(
             'capture', c.enabled,
             'tables', c.tables,
             'snapshot', cp.snapshot::pg_catalog.text,
             'at', cp.at,
             'same', cp.fingerprint = $2,
             'capture_before', pg_catalog.pg_visible_in_snapshot(c.started_tx, cp.snapshot) OR c.started_tx = cp.tx,
             -- The log has lost no row since the position (no crash emptied it).
             'alive', {alive},
             'pruned', c.pruned_before IS NOT NULL AND pg_catalog.pg_snapshot_xmin(cp.snapshot) < c.pruned_before,
             'truncated', coalesce(log.truncated, false),
             'pending', coalesce(log.pending, false),
             'members', (SELECT r.members FROM linked_audiences.audience a
                         JOIN linked_audiences.runs r ON r.id = a.last_run_id WHERE a.id = $1))
         FROM linked_audiences.capture c
         LEFT JOIN linked_audiences.compute_position cp ON cp.audience_id = $1
         -- The log since the position, read once: anything, and a truncate among it.
         LEFT JOIN LATERAL (
             SELECT true AS pending, pg_catalog.bool_or(l.col = '') AS truncated
             FROM linked_audiences.change_log l
             WHERE l.tx >= pg_catalog.pg_snapshot_xmin(cp.snapshot)
               AND NOT pg_catalog.pg_visible_in_snapshot(l.tx, cp.snapshot)
               -- Only the tables this audience reads: a change elsewhere cannot move it.
               AND l.relation = ANY ($3::pg_catalog.text[])
             HAVING pg_catalog.count(*) > 0) log ON true",
            alive = crate::capture::LOG_COMPLETE_SINCE_CP
        ),
        &[
            audience_id.into(),
            fingerprint.into(),
            compiled.tables.clone().into(),
        ],
    )?
    .unwrap_or(Value::Null);
    if s["capture"] != json!(true) {
        return Ok(Err(
            "change capture is off (turn it on with la_capture_changes())".into(),
        ));
    }
    let Some(snapshot) = s["snapshot"].as_str() else {
        return Ok(Err("there is no earlier compute to continue from".into()));
    };
    if s["capture_before"] != json!(true) {
        return Ok(Err(
            "capture was not on for the whole interval since the last compute".into(),
        ));
    }
    if s["alive"] != json!(true) {
        return Ok(Err("the change log was emptied by a crash (or a failover, or a restore from a physical backup) since the last compute: it is not WAL-logged".into()));
    }
    if s["same"] != json!(true) {
        return Ok(Err("the audience, an audience it references, the relationships its activations track or the graph changed since the last compute, or it was computed by another role or in another time zone".into()));
    }
    if s["pruned"] == json!(true) {
        return Ok(Err(
            "the change log was pruned past the last compute (the audience was disabled meanwhile)"
                .into(),
        ));
    }
    if s["truncated"] == json!(true) {
        return Ok(Err(
            "a captured table was truncated since the last compute".into()
        ));
    }
    let captured: Vec<String> = serde_json::from_value(s["tables"].clone()).unwrap_or_default();
    if let Some(t) = compiled.tables.iter().find(|t| !captured.contains(t)) {
        return Ok(Err(format!("changes to {t} are not captured")));
    }
    // (The clock: the rows that changed sides since the previous compute's now() are
    // evaluated as changes; see dirty_profiles.)
    let at = s["at"].as_str().unwrap_or_default().to_string();
    Ok(Ok(Previous {
        snapshot: snapshot.to_string(),
        at,
        pending: s["pending"] == json!(true),
        members: s["members"].as_i64(),
    }))
}

/// Where this compute left the warehouse; and the change log no audience needs any
/// more (every enabled audience's position sees it) is pruned. When a crash emptied
/// the log, this compute (a full one) says it is complete again from here on: the
/// position's snapshot was taken after the crash, so every change it does not see is
/// in the log.
fn record_position(audience_id: i64, snapshot: &str, fingerprint: &str, clock: bool) {
    ok_or_raise(
        Spi::run_with_args(
            "WITH alive AS (
                 INSERT INTO linked_audiences.capture_alive (since)
                 SELECT pg_catalog.pg_current_xact_id() FROM linked_audiences.capture c
                 WHERE c.enabled AND NOT EXISTS (SELECT FROM linked_audiences.capture_alive))
             INSERT INTO linked_audiences.compute_position (audience_id, snapshot, tx, at, clock, fingerprint)
             VALUES ($1, $2::pg_catalog.pg_snapshot, pg_catalog.pg_current_xact_id(), pg_catalog.now(), $4, $3)
             ON CONFLICT (audience_id) DO UPDATE
             SET snapshot = excluded.snapshot, tx = excluded.tx, at = excluded.at, clock = excluded.clock,
                 fingerprint = excluded.fingerprint",
            &[audience_id.into(), snapshot.into(), fingerprint.into(), clock.into()],
        )
        .map_err(internal),
    );
    ok_or_raise(super::prune_change_log());
}

/// Materializes a SELECT, its parameters bound (never spliced into the SQL), in a
/// temporary table dropped at commit, replacing the one a previous compute of this
/// transaction left; returns its row count.
///
/// Postgres prices each row a parallel worker hands to the leader
/// (`parallel_tuple_cost`, 0.1) so high that a `CREATE TABLE AS` returning many rows
/// is planned serially, though it runs about twice as fast in parallel (cat_owners at
/// scale 10: 574 ms serially, 318 ms with two workers). For this one statement the
/// price is lowered, then the caller's setting is put back.
fn materialize(table: &str, select: &str, params: &[ParamValue]) -> i64 {
    let setting = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.current_setting('parallel_tuple_cost'))",
        &[],
    ))
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_else(|| "0.1".into());
    let left_over = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(pg_catalog.to_regclass($1) IS NOT NULL)",
        &[table.into()],
    ));
    let rows = ok_or_raise(
        Spi::connect_mut(|client| {
            if left_over == Some(Value::Bool(true)) {
                client.update(format!("DROP TABLE {table}").as_str(), None, &[])?;
            }
            client.update("SET LOCAL parallel_tuple_cost = 0.01", None, &[])?;
            client
                .update(
                    format!("CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS {select}").as_str(),
                    None,
                    &args(params),
                )
                .map(|t| t.len() as i64)
        })
        .map_err(internal),
    );
    ok_or_raise(
        Spi::run_with_args(
            "SELECT pg_catalog.set_config('parallel_tuple_cost', $1, true)",
            &[setting.as_str().into()],
        )
        .map_err(internal),
    );
    rows
}

/// After a compute changed many rows of an extension table (a first compute, a big
/// swing), refreshes its statistics in this transaction: plans of the following
/// statements and of consumers then see real sizes.
fn refresh_stats_if_big(table: &str, changed: i64, base: i64) {
    if changed >= 1000 && changed * 10 >= base {
        ok_or_raise(
            Spi::run_with_args(
                "SELECT linked_audiences.refresh_stats($1::pg_catalog.regclass)",
                &[table.into()],
            )
            .map_err(internal),
        );
    }
}

/// Benchmark helper: mean microseconds to compile a definition (parse, check against
/// the graph and catalog, generate SQL), the catalog being loaded once.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "CREATE FUNCTION linked_audiences.bench_compile(definition jsonb, iterations integer) RETURNS double precision \
           STRICT VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn bench_compile(definition: Doc, iterations: i32) -> f64 {
    let definition = definition.or_raise("definition");
    let env = ok_or_raise(load_env());
    let n = iterations.clamp(1, 1_000_000);
    let started = std::time::Instant::now();
    for _ in 0..n {
        let compiled = crate::compile::compile(&env.ctx(), &definition, None)
            .unwrap_or_else(|ps| raise_all(&ps));
        std::hint::black_box(compiled);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
