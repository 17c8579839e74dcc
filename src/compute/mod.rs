//! Computing an audience: the set-based diff of its membership (and of the entities
//! that activations track) against the last run, written with its history in one
//! statement per set.

pub mod api;
pub mod distributed;

use crate::compile::{Compiled, EntitySelect};

/// The statement that diffs the members of an audience: inserts who entered, deletes
/// who exited, logs both as changes of run `run`, and returns the counts. Rows are
/// written only for changes. `audience` and `run` are parameter placeholders.
///
/// The diff is a FULL JOIN of the new members with the stored ones, which Postgres runs
/// only as a hash or merge join: its cost stays linear even when the stored members'
/// statistics are stale (right after a first compute), where an anti-join could be
/// planned as a nested loop over a CTE. Exits are deleted by ctid, a plan no statistics
/// can turn into a nested loop over the table.
///
/// `among`, for an incremental compute, restricts the diff to the profiles whose ids are
/// in that relation (the dirty ones): the stored members of the others stay as they are.
pub fn membership_diff_sql(
    members: &str,
    audience: &str,
    run: &str,
    among: Option<&str>,
) -> String {
    let only = among
        .map(|d| format!(" AND profile_id IN (SELECT d.profile_id FROM {d} d)"))
        .unwrap_or_default();
    format!(
        "WITH diff AS MATERIALIZED (
    SELECT coalesce(c.profile_id, m.profile_id) AS profile_id, m.ctid AS old, c.profile_id IS NOT NULL AS member
    FROM {members} c
    FULL JOIN (SELECT ctid, profile_id FROM linked_audiences.audience_members WHERE audience_id = {audience}{only}) m
           ON m.profile_id = c.profile_id
    WHERE c.profile_id IS NULL OR m.profile_id IS NULL),
ins AS (
    INSERT INTO linked_audiences.audience_members (audience_id, profile_id, entered_at)
    SELECT {audience}, profile_id, pg_catalog.now() FROM diff WHERE member
    RETURNING profile_id),
del AS (
    DELETE FROM linked_audiences.audience_members
    WHERE ctid = ANY (ARRAY(SELECT old FROM diff WHERE NOT member))
    RETURNING profile_id),
log AS (
    INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_id, change, at)
    SELECT {run}, {audience}, profile_id, 'entered', pg_catalog.now() FROM ins
    UNION ALL
    SELECT {run}, {audience}, profile_id, 'exited', pg_catalog.now() FROM del
    RETURNING change)
SELECT pg_catalog.jsonb_build_object(
    'entered', (SELECT pg_catalog.count(*) FROM log WHERE change = 'entered'),
    'exited', (SELECT pg_catalog.count(*) FROM log WHERE change = 'exited'))"
    )
}

/// The new members and entity pairs are first materialized in temporary tables by
/// `CREATE TABLE AS`, which Postgres may run in parallel; a data-modifying statement
/// never is. The diff statements then read those tables.
pub const MEMBERS_TABLE: &str = "pg_temp.la_compute_members";
pub const PAIRS_TABLE: &str = "pg_temp.la_compute_pairs";
/// The profiles an incremental compute evaluates (their ids as text).
pub const DIRTY_TABLE: &str = "pg_temp.la_compute_dirty";

/// The (profile, entity) pairs of one relationship for the audience's current members
/// (among the profiles in `among`, for an incremental compute).
pub fn entity_pairs_sql(
    c: &Compiled,
    selects: &[&EntitySelect],
    audience: &str,
    among: Option<&str>,
) -> String {
    let only = among
        .map(|d| {
            format!(
                " AND p.{pk} IN (SELECT d.profile_id::{ty} FROM {d} d)",
                pk = c.profile.pk,
                ty = c.profile.pk_type
            )
        })
        .unwrap_or_default();
    let pk = &c.profile.pk;
    let parts: Vec<String> = selects
        .iter()
        .map(|s| {
            s.reached(
                &c.profile,
                // Distinct: a profile reaches one entity through several rows (a
                // product in two of its carts, a junction, several paths).
                &format!(
                    "DISTINCT p.{pk}::pg_catalog.text AS profile_id, {} AS entity_id",
                    s.key_text()
                ),
                // (A row without a key is no entity to track.)
                &format!(
                    "{}.{} IS NOT NULL AND EXISTS (SELECT 1 FROM linked_audiences.audience_members m \
                     WHERE m.audience_id = {audience} AND m.profile_id = p.{pk}::pg_catalog.text){only}",
                    s.target_alias, s.target_pk
                ),
            )
        })
        .collect();
    parts.join("\n    UNION\n    ")
}

/// The statement that diffs the tracked entities of one relationship, the same way.
/// With `record` false (a relationship tracked for the first time after the audience
/// has members) the stored entities are brought in line silently: they are the state
/// the activation that asked for them starts from, not changes.
pub fn entity_diff_sql(
    pairs: &str,
    audience: &str,
    run: &str,
    relationship: &str,
    record: bool,
    among: Option<&str>,
) -> String {
    let only = if record { "" } else { " WHERE false" };
    let among = among
        .map(|d| format!(" AND profile_id IN (SELECT d.profile_id FROM {d} d)"))
        .unwrap_or_default();
    format!(
        "WITH diff AS MATERIALIZED (
    SELECT coalesce(c.profile_id, e.profile_id) AS profile_id, coalesce(c.entity_id, e.entity_id) AS entity_id,
           e.ctid AS old, c.profile_id IS NOT NULL AS tracked
    FROM {pairs} c
    FULL JOIN (SELECT ctid, profile_id, entity_id FROM linked_audiences.audience_entities
               WHERE audience_id = {audience} AND relationship = {relationship}{among}) e
           ON e.profile_id = c.profile_id AND e.entity_id = c.entity_id
    WHERE c.profile_id IS NULL OR e.profile_id IS NULL),
ins AS (
    INSERT INTO linked_audiences.audience_entities (audience_id, relationship, profile_id, entity_id, added_at)
    SELECT {audience}, {relationship}, profile_id, entity_id, pg_catalog.now() FROM diff WHERE tracked
    RETURNING profile_id, entity_id),
del AS (
    DELETE FROM linked_audiences.audience_entities
    WHERE ctid = ANY (ARRAY(SELECT old FROM diff WHERE NOT tracked))
    RETURNING profile_id, entity_id),
log AS (
    INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_id, relationship, entity_id, change, at)
    SELECT * FROM (
        SELECT {run}, {audience}, profile_id, {relationship}, entity_id, 'entity_added', pg_catalog.now() FROM ins
        UNION ALL
        SELECT {run}, {audience}, profile_id, {relationship}, entity_id, 'entity_removed', pg_catalog.now() FROM del) x{only}
    RETURNING change)
SELECT pg_catalog.jsonb_build_object(
    'added', (SELECT pg_catalog.count(*) FROM log WHERE change = 'entity_added'),
    'removed', (SELECT pg_catalog.count(*) FROM log WHERE change = 'entity_removed'))"
    )
}

/// Prunes the change log below the oldest position of the enabled audiences (every one
/// of them has seen those rows), recording how far it went. Only under READ COMMITTED (a
/// manual call, pg_cron, the worker after its computes): a compute in REPEATABLE READ
/// (the real-time worker's) would fail if another compute pruned the same rows since its
/// snapshot, so there it prunes nothing.
pub fn prune_change_log() -> crate::error::Result<()> {
    pgrx::Spi::run(
        "WITH m AS (SELECT min(pg_catalog.pg_snapshot_xmin(cp.snapshot)) AS x
                    FROM linked_audiences.compute_position cp
                    JOIN linked_audiences.audience a ON a.id = cp.audience_id AND a.enabled
                    WHERE pg_catalog.current_setting('transaction_isolation') = 'read committed'),
              d AS (DELETE FROM linked_audiences.change_log l USING m WHERE l.tx < m.x RETURNING 1)
         UPDATE linked_audiences.capture c SET pruned_before = m.x FROM m
         WHERE m.x IS NOT NULL AND (c.pruned_before IS NULL OR c.pruned_before < m.x)
           AND EXISTS (SELECT 1 FROM d)",
    )
    .map_err(crate::sql::internal)
}
