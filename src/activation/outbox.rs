//! The statements writing a run's events into the outbox: one statement on a single
//! node, a sequence on Citus (events built on the workers, written on the coordinator).
//! The events themselves are `super::events`.

use super::events::{
    activation_events_sql, activation_events_sql_distributed, Activation, EventCtx,
};

/// The statement writing a run's events for every activation into the outbox (with
/// their delivery state), in send order per destination and user (identify first),
/// and notifying consumers. Returns `{written, truncated}`.
pub fn outbox_insert_sql(
    ctx: &EventCtx<'_>,
    activations: &[Activation],
    changes_sql: &str,
) -> String {
    let selects: Vec<String> = activations
        .iter()
        .map(|a| activation_events_sql(ctx, a, if a.sends_existing_now() { "ex" } else { "ch" }))
        .collect();
    // For an activation's first compute with send_existing: every current member as
    // entered, every tracked entity as added, and this run's exits.
    let existing = if !activations.iter().any(Activation::sends_existing_now) {
        String::new()
    } else {
        format!(
        "ex AS (
    SELECT m.profile_id, NULL::pg_catalog.text AS entity_id, 'entered'::pg_catalog.text AS change, NULL::pg_catalog.text AS relationship
    FROM linked_audiences.audience_members m WHERE m.audience_id = {aud}
    UNION ALL
    SELECT e.profile_id, e.entity_id, 'entity_added', e.relationship
    FROM linked_audiences.audience_entities e WHERE e.audience_id = {aud}
    UNION ALL
    SELECT c.profile_id, c.entity_id, c.change, c.relationship FROM ch c WHERE c.change = 'exited'),",
        aud = ctx.typed(&ctx.audience_id.to_string(), "pg_catalog.int8"),
    )
    };
    format!(
        "WITH ch AS MATERIALIZED ({changes_sql}),
{existing}
ev AS ({events}),
{write},
note AS (
    SELECT pg_catalog.pg_notify('linked_audiences_outbox', d.destination)
    FROM (SELECT DISTINCT destination FROM st) d)
SELECT pg_catalog.jsonb_build_object(
    'written', (SELECT pg_catalog.count(*) FROM st),
    'truncated', (SELECT pg_catalog.count(*) FROM fin WHERE (f->>'truncated')::pg_catalog.bool),
    'notified', (SELECT pg_catalog.count(*) FROM note))",
        events = selects.join("\n    UNION ALL\n    "),
        write = write_ctes(ctx, "ev"),
    )
}

/// `fin`, `ins`, `st`: the events of `events` (a relation with the events' columns)
/// fitted to the size limit and mapped for their preset, written into the outbox and its
/// delivery state in send order per destination and user (identify first).
fn write_ctes(ctx: &EventCtx<'_>, events: &str) -> String {
    // Events that may be over the size limit (their jsonb text is never shorter than
    // the compact JSON the limit is about) are fitted and mapped in Rust; the others are
    // mapped in SQL, to the same result.
    let (action, mapped) = super::payload::map_event_sql("ev.payload", "ev.preset");
    format!(
        "fin AS MATERIALIZED (
    SELECT ev.*,
           CASE WHEN pg_catalog.octet_length(ev.payload::pg_catalog.text) > {max}
                THEN linked_audiences.finish_event(ev.preset, ev.payload, {max})
                ELSE pg_catalog.jsonb_build_object('payload', ev.payload, 'action', {action},
                                                   'mapped', {mapped}, 'truncated', false) END AS f
    FROM {events} ev),
ins AS (
    INSERT INTO linked_audiences.outbox
        (id, aggregatetype, aggregateid, type, payload, destination, audience, activation_id, action, mapped, run_id)
    SELECT id, destination, user_id, event, f->'payload', destination, {key}, activation_id, f->>'action', f->'mapped', {run}
    FROM fin ORDER BY destination, user_id, kind, activation_id, entity_id
    RETURNING id, destination, aggregateid, seq),
st AS (
    INSERT INTO linked_audiences.outbox_state (id, destination, aggregateid, seq)
    SELECT id, destination, aggregateid, seq FROM ins
    RETURNING destination)",
        max = super::payload::MAX_EVENT_BYTES,
        key = ctx.value(ctx.audience_key),
        run = ctx.run,
    )
}

/// The temporary table a compute on Citus collects a run's events in.
pub const EVENTS_TABLE: &str = "pg_temp.la_compute_events";

/// The outbox insert for a compute on Citus (`compute::distributed`), as statements run
/// in order: the history is distributed by profile there and the outbox is not, and
/// Citus cannot run the single-node statement (its CTEs would be planned as
/// intermediate results, pulling the profile table, and a `void` column such as
/// `pg_notify`'s cannot be one). So:
///
/// 1. `CREATE TEMPORARY TABLE` of the events' columns (no rows);
/// 2. one `INSERT INTO` it `SELECT` per activation, each from the run's changes joined
///    to the profile on `profile_key` with its enrichment as correlated subqueries over
///    co-located tables: the events are built on the workers and only they (one per
///    change) come back to the coordinator;
/// 3. on the coordinator, over local tables only: the outbox and its delivery state, in
///    the same send order as on a single node, returning `{written, truncated}`;
/// 4. `pg_notify` for each destination written to.
///
/// `aud` is the audience id's SQL (a placeholder), as in `ctx.run` the run's.
pub fn outbox_insert_distributed(
    ctx: &EventCtx<'_>,
    activations: &[Activation],
    aud: &str,
) -> Vec<String> {
    let run = ctx.run;
    let existing = format!(
        "(SELECT m.profile_key, m.profile_id, NULL::pg_catalog.text AS entity_id, 'entered'::pg_catalog.text AS change, \
         NULL::pg_catalog.text AS relationship FROM linked_audiences.audience_members m WHERE m.audience_id = {aud} \
         UNION ALL SELECT e.profile_key, e.profile_id, e.entity_id, 'entity_added'::pg_catalog.text, e.relationship \
         FROM linked_audiences.audience_entities e WHERE e.audience_id = {aud} \
         UNION ALL SELECT c.profile_key, c.profile_id, c.entity_id, c.change, c.relationship \
         FROM linked_audiences.membership_changes c WHERE c.run_id = {run} AND c.change = 'exited')"
    );
    let mut out = vec![format!(
        "CREATE TEMPORARY TABLE {EVENTS_TABLE} (id pg_catalog.uuid, destination pg_catalog.text, preset pg_catalog.text, \
         user_id pg_catalog.text, event pg_catalog.text, kind pg_catalog.int4, activation_id pg_catalog.int8, \
         entity_id pg_catalog.text, payload pg_catalog.jsonb) ON COMMIT DROP"
    )];
    for a in activations {
        let select = if a.sends_existing_now() {
            activation_events_sql_distributed(ctx, a, &existing, "")
        } else {
            activation_events_sql_distributed(
                ctx,
                a,
                "linked_audiences.membership_changes",
                &format!(" AND ch.run_id = {run} AND ch.audience_id = {aud}"),
            )
        };
        out.push(format!("INSERT INTO {EVENTS_TABLE} {select}"));
    }
    out.push(format!(
        "WITH {write}
SELECT pg_catalog.jsonb_build_object(
    'written', (SELECT pg_catalog.count(*) FROM st),
    'truncated', (SELECT pg_catalog.count(*) FROM fin WHERE (f->>'truncated')::pg_catalog.bool))",
        write = write_ctes(ctx, EVENTS_TABLE),
    ));
    out.push(format!(
        "SELECT pg_catalog.pg_notify('linked_audiences_outbox', d.destination) FROM (SELECT DISTINCT destination FROM {EVENTS_TABLE}) d"
    ));
    out
}
