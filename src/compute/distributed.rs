//! The compute on Citus, once `la_distribute()` has distributed the members, entities
//! and history by `profile_key` (the profile key in its own type) co-located with the
//! profile table. Citus cannot run the single-node diff (a temporary table of every
//! member on the coordinator, a FULL JOIN with a distributed table, a DELETE by ctid), so
//! each set is written by statements that run on the workers, one task per shard group:
//!
//! 1. who entered and who exited are logged into `membership_changes` by co-located
//!    `INSERT ... SELECT`s (a NOT EXISTS against the stored members, and the stored
//!    members whose profile no longer meets the condition);
//! 2. the members are brought in line from the run's changes (`INSERT ... SELECT`, and
//!    `DELETE ... WHERE EXISTS` the change);
//! 3. tracked entities the same way, keyed by `(profile_key, entity_id)`.
//!
//! Nothing is pulled to the coordinator but the counts. The single-node statements
//! (`super::membership_diff_sql`, `super::entity_diff_sql`) are untouched.

use crate::compile::{Compiled, EntitySelect};
use crate::ok_or_raise;
use crate::sql::{internal, jsonb_row};

/// Whether `linked_audiences.audience_members` is a distributed table (Citus is
/// installed and `la_distribute()` ran): once per compute.
pub fn members_distributed() -> bool {
    let citus = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'))",
        &[],
    ));
    if citus != Some(serde_json::Value::Bool(true)) {
        return false;
    }
    ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                                            WHERE logicalrelid = 'linked_audiences.audience_members'::pg_catalog.regclass))",
        &[],
    )) == Some(serde_json::Value::Bool(true))
}

/// Logs the profiles that meet the condition and are not stored members as `entered`.
pub fn entered_sql(c: &Compiled, audience: &str, run: &str) -> String {
    format!(
        "INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT {run}, {audience}, p.{pk}, p.{pk}::pg_catalog.text, 'entered', pg_catalog.now()
FROM {t} p
WHERE ({cond})
  AND NOT EXISTS (SELECT 1 FROM linked_audiences.audience_members m
                  WHERE m.audience_id = {audience} AND m.profile_key = p.{pk})",
        pk = c.profile.pk,
        t = c.profile.table,
        cond = c.condition,
    )
}

/// Logs the stored members whose profile no longer meets the condition (or is gone) as
/// `exited`.
pub fn exited_sql(c: &Compiled, audience: &str, run: &str) -> String {
    format!(
        "INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_key, profile_id, change, at)
SELECT {run}, {audience}, m.profile_key, m.profile_id, 'exited', pg_catalog.now()
FROM linked_audiences.audience_members m
WHERE m.audience_id = {audience}
  AND NOT EXISTS (SELECT 1 FROM {t} p WHERE p.{pk} = m.profile_key AND ({cond}))",
        pk = c.profile.pk,
        t = c.profile.table,
        cond = c.condition,
    )
}

/// Applies the run's `entered` and `exited` changes to the stored members.
pub fn apply_members_sql(audience: &str, run: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO linked_audiences.audience_members (audience_id, profile_key, profile_id, entered_at)
SELECT c.audience_id, c.profile_key, c.profile_id, c.at FROM linked_audiences.membership_changes c
WHERE c.run_id = {run} AND c.audience_id = {audience} AND c.change = 'entered'"
        ),
        format!(
            "DELETE FROM linked_audiences.audience_members m
WHERE m.audience_id = {audience}
  AND EXISTS (SELECT 1 FROM linked_audiences.membership_changes c
              WHERE c.run_id = {run} AND c.audience_id = m.audience_id AND c.change = 'exited'
                AND c.profile_key = m.profile_key)"
        ),
    ]
}

/// The (profile, entity) pairs of one relationship for the current members:
/// `profile_key` (the distribution column, first), `profile_id`, `entity_id`.
fn pairs_sql(c: &Compiled, selects: &[&EntitySelect], audience: &str) -> String {
    let pk = &c.profile.pk;
    let parts: Vec<String> = selects
        .iter()
        .map(|s| {
            s.reached(
                &c.profile,
                &format!(
                    "DISTINCT p.{pk} AS profile_key, p.{pk}::pg_catalog.text AS profile_id, {} AS entity_id",
                    s.key_text()
                ),
                &format!(
                    "{}.{} IS NOT NULL AND EXISTS (SELECT 1 FROM linked_audiences.audience_members m \
                     WHERE m.audience_id = {audience} AND m.profile_key = p.{pk})",
                    s.target_alias, s.target_pk
                ),
            )
        })
        .collect();
    parts.join("\n    UNION\n    ")
}

/// Logs the entities of one relationship that members now have and were not stored
/// (`entity_added`), then those stored that members no longer have, or whose profile
/// left (`entity_removed`).
pub fn entity_changes_sql(
    c: &Compiled,
    selects: &[&EntitySelect],
    audience: &str,
    run: &str,
    relationship: &str,
) -> [String; 2] {
    let pairs = pairs_sql(c, selects, audience);
    // Still a member, with the entity matched by one of the paths.
    let matched: Vec<String> = selects
        .iter()
        .map(|s| {
            let on = format!(
                "p.{} = e.profile_key AND {} = e.entity_id",
                c.profile.pk,
                s.key_text()
            );
            format!("EXISTS ({})", s.reached(&c.profile, "1", &on))
        })
        .collect();
    [
        format!(
            "INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_key, profile_id, relationship, entity_id, change, at)
SELECT {run}, {audience}, n.profile_key, n.profile_id, {relationship}, n.entity_id, 'entity_added', pg_catalog.now()
FROM ({pairs}) n
WHERE NOT EXISTS (SELECT 1 FROM linked_audiences.audience_entities e
                  WHERE e.audience_id = {audience} AND e.relationship = {relationship}
                    AND e.profile_key = n.profile_key AND e.entity_id = n.entity_id)"
        ),
        format!(
            "INSERT INTO linked_audiences.membership_changes (run_id, audience_id, profile_key, profile_id, relationship, entity_id, change, at)
SELECT {run}, {audience}, e.profile_key, e.profile_id, {relationship}, e.entity_id, 'entity_removed', pg_catalog.now()
FROM linked_audiences.audience_entities e
WHERE e.audience_id = {audience} AND e.relationship = {relationship}
  AND NOT (EXISTS (SELECT 1 FROM linked_audiences.audience_members m
                   WHERE m.audience_id = {audience} AND m.profile_key = e.profile_key)
           AND ({matched}))",
            matched = matched.join(" OR "),
        ),
    ]
}

/// Applies the run's entity changes of one relationship to the stored entities.
pub fn apply_entities_sql(audience: &str, run: &str, relationship: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO linked_audiences.audience_entities (audience_id, relationship, profile_key, profile_id, entity_id, added_at)
SELECT c.audience_id, c.relationship, c.profile_key, c.profile_id, c.entity_id, c.at FROM linked_audiences.membership_changes c
WHERE c.run_id = {run} AND c.audience_id = {audience} AND c.change = 'entity_added' AND c.relationship = {relationship}"
        ),
        format!(
            "DELETE FROM linked_audiences.audience_entities e
WHERE e.audience_id = {audience} AND e.relationship = {relationship}
  AND EXISTS (SELECT 1 FROM linked_audiences.membership_changes c
              WHERE c.run_id = {run} AND c.audience_id = e.audience_id AND c.change = 'entity_removed'
                AND c.relationship = e.relationship AND c.profile_key = e.profile_key AND c.entity_id = e.entity_id)"
        ),
    ]
}

/// A relationship tracked for the first time after the audience has members starts
/// silently (as `super::entity_diff_sql` with `record` false): its changes, applied,
/// are taken out of the history.
pub fn unrecord_entities_sql(audience: &str, run: &str, relationship: &str) -> String {
    format!(
        "DELETE FROM linked_audiences.membership_changes c
WHERE c.run_id = {run} AND c.audience_id = {audience} AND c.relationship = {relationship}
  AND c.change IN ('entity_added', 'entity_removed')"
    )
}

/// Runs statements in order with the same parameters; returns the rows each processed.
pub fn run(statements: &[String], params: &[pgrx::datum::DatumWithOid<'static>]) -> Vec<i64> {
    ok_or_raise(
        pgrx::Spi::connect_mut(|client| {
            let mut n = Vec::with_capacity(statements.len());
            for s in statements {
                n.push(client.update(s.as_str(), None, params)?.len() as i64);
            }
            Ok::<_, pgrx::spi::Error>(n)
        })
        .map_err(internal),
    )
}
