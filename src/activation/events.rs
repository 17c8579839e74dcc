//! The SQL that turns a run's membership changes into Segment events, one SELECT per
//! activation, all set-based. Pure: columns come from the catalog snapshot, already
//! quoted; names and user strings are parameters (`EventCtx::value`), after the
//! compiled query's own.

use super::is_entity_event;
use crate::compile::sql::Params;
use crate::compile::{Compiled, EntitySelect};
use crate::graph::catalog::{Catalog, Table};
use crate::graph::joins::{resolve, ResolvedJoin};
use crate::graph::model::{DataGraph, Entity};
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;

/// Entities per relationship array in an event, at most (the size limit cuts further).
pub const MAX_ENTITIES_PER_ARRAY: usize = 500;

/// An activation as stored, with its destination.
#[derive(Debug, Clone, Deserialize)]
pub struct Activation {
    pub id: i64,
    pub event: String,
    pub entity: Option<String>,
    pub properties: Value,
    pub event_name: Option<String>,
    pub destination: String,
    pub preset: String,
    /// The destination's settings (`space_id` and `namespace` go into
    /// `context.personas`).
    #[serde(default)]
    pub settings: Value,
    /// Also send the current members or entities at its first compute.
    #[serde(default)]
    pub send_existing: bool,
    /// No compute has sent its events yet (its first compute is the next one).
    #[serde(default)]
    pub first_compute: bool,
}

impl Activation {
    pub fn is_identify(&self) -> bool {
        self.event == "Audience Membership Changed"
    }
    /// Whether this compute sends the current state (members, entities) rather than
    /// only this run's changes.
    pub fn sends_existing_now(&self) -> bool {
        self.send_existing && self.first_compute
    }
    /// The event name sent: the custom name, or the event choice.
    pub fn name(&self) -> &str {
        self.event_name.as_deref().unwrap_or(&self.event)
    }
    /// The membership changes this activation sends.
    pub fn changes(&self) -> &'static [&'static str] {
        match self.event.as_str() {
            "Audience Entered" => &["entered"],
            "Audience Exited" => &["exited"],
            "Audience Membership Changed" => &["entered", "exited"],
            "Entity Added" => &["entity_added"],
            _ => &["entity_removed"],
        }
    }
    fn traits(&self) -> Vec<String> {
        self.properties["traits"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn relationships(&self) -> Vec<(String, Vec<String>)> {
        self.properties["relationships"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let cols = v
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|c| c.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (k.clone(), cols)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the event builder needs besides the activation.
pub struct EventCtx<'a> {
    pub graph: &'a DataGraph,
    pub cat: &'a Catalog,
    pub compiled: &'a Compiled,
    pub audience_key: &'a str,
    pub audience_id: i64,
    /// SQL for the run id (a placeholder, or NULL for previews).
    pub run: &'a str,
    pub version: &'a str,
    /// The statement's parameters: the compiled query's (its entity selects refer to
    /// them), the caller's (the run), and the values the event SQL adds.
    pub params: RefCell<Params>,
}

impl EventCtx<'_> {
    /// A text value as a parameter: `$n::pg_catalog.text`.
    pub(super) fn value(&self, s: &str) -> String {
        self.params.borrow_mut().typed(s, "pg_catalog.text")
    }

    /// A value as a parameter cast to `sql_type`.
    pub(super) fn typed(&self, s: &str, sql_type: &str) -> String {
        self.params.borrow_mut().typed(s, sql_type)
    }

    /// The parameters to bind when running the SQL built with this context.
    pub fn into_params(self) -> Params {
        self.params.into_inner()
    }
}

/// `jsonb_build_object` over (key, value SQL) pairs, chunked under the 100-argument limit.
fn object(ctx: &EventCtx<'_>, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "'{}'::pg_catalog.jsonb".into();
    }
    pairs
        .chunks(40)
        .map(|c| {
            let args: Vec<String> = c
                .iter()
                .map(|(k, v)| format!("{}, {v}", ctx.value(k)))
                .collect();
            format!("pg_catalog.jsonb_build_object({})", args.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// A relationship's entity and its table.
fn entity_table<'a>(ctx: &EventCtx<'a>, relationship: &str) -> Option<(&'a Table, &'a Entity)> {
    let placed = ctx.graph.relationship(relationship)?;
    let entity = ctx.graph.entity(&placed.rel.related_entity)?;
    let table = ctx.cat.table(&entity.table_ref)?;
    Some((table, entity))
}

/// The member's matched entities of a relationship, as a jsonb array of objects with
/// the primary key and the selected columns, each tagged `__entity`.
fn relationship_array(
    ctx: &EventCtx<'_>,
    relationship: &str,
    columns: &[String],
) -> Option<String> {
    let (table, entity) = entity_table(ctx, relationship)?;
    let (entity_slug, pk) = (entity.slug.clone(), entity.primary_key.clone());
    let selects: Vec<&EntitySelect> = ctx
        .compiled
        .entity_selects
        .iter()
        .filter(|s| s.relationship == relationship)
        .collect();
    if selects.is_empty() {
        return None;
    }
    let mut names = vec![pk.clone()];
    names.extend(columns.iter().filter(|c| **c != pk).cloned());
    let parts: Vec<String> = selects
        .iter()
        .map(|s| {
            let mut pairs: Vec<(String, String)> = names
                .iter()
                .filter_map(|c| {
                    table
                        .column(c)
                        .map(|col| (c.clone(), format!("{}.{}", s.target_alias, col.quoted)))
                })
                .collect();
            pairs.push(("__entity".into(), ctx.value(&entity_slug)));
            s.select(&format!(
                "{} AS k, {} AS o",
                s.key_text(),
                object(ctx, &pairs)
            ))
        })
        .collect();
    Some(format!(
        "(SELECT coalesce(pg_catalog.jsonb_agg(x.o ORDER BY x.k), '[]') FROM (SELECT DISTINCT ON (u.k) u.k, u.o FROM ({}) u ORDER BY u.k LIMIT {MAX_ENTITIES_PER_ARRAY}) x)",
        parts.join(" UNION ALL ")
    ))
}

/// For a selected relationship `r` below the triggering relationship `root`: the
/// selected relationship it nests under (its nearest selected ancestor, or `root`);
/// `None` when `r` is not below `root`.
fn nesting_parent(
    ctx: &EventCtx<'_>,
    root: &str,
    r: &str,
    selected: &[(String, Vec<String>)],
) -> Option<String> {
    let path = ctx.graph.path_to(r)?;
    let at = path.iter().position(|s| s == root)?;
    if at + 1 >= path.len() {
        return None;
    }
    path[at + 1..path.len() - 1]
        .iter()
        .rev()
        .find(|s| selected.iter().any(|(x, _)| x == *s))
        .cloned()
        .or_else(|| Some(root.to_string()))
}

/// `alias.<profile key> = p.<primary key>` for a row of a table that carries the profile
/// key (an entity's `profile_key`, a junction's): the member's own rows, as they are
/// anyway, said so that Citus joins them on the workers (co-located).
fn member_owns(
    ctx: &EventCtx<'_>,
    table: &Table,
    key: Option<&str>,
    alias: &str,
) -> Option<String> {
    let column = table.column(key?)?;
    Some(format!(
        "{alias}.{} = p.{}",
        column.quoted, ctx.compiled.profile.pk
    ))
}

/// `b` joined to its parent row `a` by the graph's join, as a condition.
fn link(ctx: &EventCtx<'_>, parent: &str, a: &str, child: &str, b: &str) -> Option<String> {
    let placed = ctx.graph.relationship(child)?;
    let parent_table = entity_table(ctx, parent)?.0;
    let child_table = entity_table(ctx, child)?.0;
    use crate::compile::{equality, equate};
    let col = |t: &'_ Table, c: &str| t.column(c).cloned();
    // Compared as the compiled query compares the same join (citext's equality).
    Some(match resolve(&placed).ok()? {
        ResolvedJoin::Direct {
            parent_column,
            child_column,
        } => equality(equate(
            b,
            &col(child_table, &child_column)?,
            a,
            &col(parent_table, &parent_column)?,
        )),
        ResolvedJoin::Junction {
            table_ref,
            parent_column,
            left_column,
            right_column,
            child_column,
            profile_key,
        } => {
            let jt = ctx.cat.table(&table_ref)?;
            let owned = member_owns(ctx, jt, profile_key.as_deref(), &format!("{b}j"))
                .map(|c| format!(" AND {c}"))
                .unwrap_or_default();
            let bj = format!("{b}j");
            let left = equate(
                &bj,
                &col(jt, &left_column)?,
                a,
                &col(parent_table, &parent_column)?,
            );
            let right = equate(
                &bj,
                &col(jt, &right_column)?,
                b,
                &col(child_table, &child_column)?,
            );
            format!(
                "EXISTS (SELECT 1 FROM {} {bj} WHERE {} AND {}{owned})",
                jt.quoted,
                equality(left),
                equality(right)
            )
        }
        ResolvedJoin::ExternalId { .. } => return None,
    })
}

/// The rows of selected relationship `r` linked to the row `alias` of relationship
/// `parent` (through unselected relationships between them), among the member's
/// matched rows of `r`: a jsonb array of objects with the primary key, the selected
/// columns and `__entity`, each holding its own selected descendants' arrays under
/// their slugs. As Segment nests an entity event's related rows, so that a message
/// about one cart lists that cart's products only.
fn linked_array(
    ctx: &EventCtx<'_>,
    parent: &str,
    alias: &str,
    r: &str,
    selected: &[(String, Vec<String>)],
    depth: usize,
) -> Option<String> {
    let (table, entity) = entity_table(ctx, r)?;
    let (slug, pk) = (entity.slug.clone(), entity.primary_key.clone());
    let pkc = table.column(&pk)?;
    let path = ctx.graph.path_to(r)?;
    let from = path.iter().position(|s| s == parent)?;
    let hops = &path[from..];
    // Aliases along the way: the parent row, the rows between, the row itself.
    let x = format!("x{depth}");
    let mids: Vec<String> = (1..hops.len() - 1)
        .map(|i| format!("x{depth}m{i}"))
        .collect();
    let mut names = vec![alias.to_string()];
    names.extend(mids.iter().cloned());
    names.push(x.clone());
    let mut conds = Vec::new();
    for i in 1..hops.len() {
        conds.push(link(ctx, &hops[i - 1], &names[i - 1], &hops[i], &names[i])?);
        let (t, e) = entity_table(ctx, &hops[i])?;
        conds.extend(member_owns(ctx, t, e.profile_key.as_deref(), &names[i]));
    }
    // The rows between are joined (not an EXISTS over them): on Citus a subquery whose
    // FROM holds only a reference table (products below keyed line items) cannot be
    // correlated; joined to the keyed rows, it is co-located. A row reached through
    // several is kept once.
    let mut from = Vec::new();
    for (i, m) in mids.iter().enumerate() {
        from.push(format!("{} {m}", entity_table(ctx, &hops[i + 1])?.0.quoted));
    }
    from.push(format!("{} {x}", table.quoted));
    let distinct = if mids.is_empty() {
        String::new()
    } else {
        format!("DISTINCT ON ({x}.{}) ", pkc.quoted)
    };
    let matched = matched_keys(ctx, r)?;
    let cols = selected
        .iter()
        .find(|(s, _)| s == r)
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let mut keys = vec![pk.clone()];
    keys.extend(cols.into_iter().filter(|c| *c != pk));
    let mut pairs: Vec<(String, String)> = keys
        .iter()
        .filter_map(|c| {
            table
                .column(c)
                .map(|col| (c.clone(), format!("{x}.{}", col.quoted)))
        })
        .collect();
    pairs.push(("__entity".into(), ctx.value(&slug)));
    for (d, _) in selected {
        if nesting_parent(ctx, r, d, selected).as_deref() == Some(r) {
            if let Some(sql) = linked_array(ctx, r, &x, d, selected, depth + 1) {
                pairs.push((d.clone(), sql));
            }
        }
    }
    Some(format!(
        "(SELECT coalesce(pg_catalog.jsonb_agg(y.o ORDER BY y.k), '[]') FROM (SELECT {distinct}{x}.{pkq} AS k, {obj} AS o \
         FROM {from} WHERE {linked} AND {x}.{pkq}::pg_catalog.text IN ({matched}) \
         ORDER BY 1 LIMIT {MAX_ENTITIES_PER_ARRAY}) y)",
        from = from.join(", "),
        linked = conds.join(" AND "),
        pkq = pkc.quoted,
        obj = object(ctx, &pairs),
    ))
}

/// The primary keys (as text) of the member's matched rows of a relationship: rows
/// that satisfy its node in the definition, reached from the profile row `p`.
fn matched_keys(ctx: &EventCtx<'_>, relationship: &str) -> Option<String> {
    let parts: Vec<String> = ctx
        .compiled
        .entity_selects
        .iter()
        .filter(|s| s.relationship == relationship)
        .map(|s| s.select(&s.key_text()))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" UNION ALL "))
}

/// The SELECT producing this activation's events from the changes in `source`
/// (profile_id, entity_id, change, relationship): columns id, destination, preset,
/// user_id, event, kind (0 identify, 1 track), activation_id, entity_id, payload.
pub fn activation_events_sql(ctx: &EventCtx<'_>, a: &Activation, source: &str) -> String {
    events_sql(ctx, a, source, None)
}

/// The same SELECT for a compute on Citus (`compute::distributed`), whose `source`
/// carries `profile_key` (the profile key in its own type, the distribution column):
/// the profile is joined on it, an entity table with a profile key on both its key and
/// the profile key (co-located joins only), and `filter` is added to the WHERE clause
/// (the run's changes, when `source` is the history table itself).
pub fn activation_events_sql_distributed(
    ctx: &EventCtx<'_>,
    a: &Activation,
    source: &str,
    filter: &str,
) -> String {
    events_sql(ctx, a, source, Some(filter))
}

fn events_sql(
    ctx: &EventCtx<'_>,
    a: &Activation,
    source: &str,
    distributed: Option<&str>,
) -> String {
    let c = ctx.compiled;
    let key = ctx.value(ctx.audience_key);
    let profile_table = ctx
        .graph
        .profile
        .as_ref()
        .and_then(|p| ctx.cat.table(&p.table_ref));
    let traits: Vec<(String, String)> = a
        .traits()
        .into_iter()
        .filter_map(|t| {
            profile_table
                .and_then(|pt| pt.column(&t))
                .map(|col| (t.clone(), format!("p.{}", col.quoted)))
        })
        .collect();
    let entity_rel = a.entity.clone().filter(|_| is_entity_event(&a.event));
    let selected = a.relationships();
    // Selected relationships below the triggering one travel with its entity; the others
    // are the member's arrays.
    let rels: Vec<(String, String)> = selected
        .iter()
        .filter(|(r, _)| Some(r) != entity_rel.as_ref())
        .filter(|(r, _)| {
            entity_rel
                .as_ref()
                .is_none_or(|e| nesting_parent(ctx, e, r, &selected).is_none())
        })
        .filter_map(|(r, cols)| relationship_array(ctx, r, cols).map(|sql| (r.clone(), sql)))
        .collect();
    let mut joins = String::new();
    let mut ent = "'{}'::pg_catalog.jsonb".to_string();
    if let Some(rel) = &entity_rel {
        if let Some((table, entity)) = entity_table(ctx, rel) {
            let (slug, pk) = (entity.slug.clone(), entity.primary_key.clone());
            if let Some(pkc) = table.column(&pk) {
                // An entity carrying the profile key may be unique only together with
                // it (as on Citus, where it is also co-located with its profile): the
                // row is this profile's.
                let key = entity.profile_key.as_deref().and_then(|k| table.column(k));
                let mut on = format!("t.{} = ch.entity_id::{}", pkc.quoted, pkc.value_type());
                if let Some(k) = key {
                    if distributed.is_some() {
                        on.push_str(&format!(" AND t.{} = ch.profile_key", k.quoted));
                    } else {
                        on.push_str(&format!(
                            " AND t.{} = ch.profile_id::{}",
                            k.quoted,
                            k.value_type()
                        ));
                    }
                }
                // A table whose key is not unique (no primary key or unique index on it)
                // gives one of its rows, not one event per duplicate.
                let unique = table.unique_key(&pk, entity.profile_key.as_deref());
                joins = format!(" {}", one_row_join(&table.quoted, "t", &on, unique));
                let own = selected
                    .iter()
                    .find(|(r, _)| r == rel)
                    .map(|(_, c)| c.clone());
                let mut row = match own {
                    Some(cols) => {
                        let mut names = vec![pk.clone()];
                        names.extend(cols.into_iter().filter(|c| *c != pk));
                        let pairs: Vec<(String, String)> = names
                            .iter()
                            .filter_map(|n| table.column(n).map(|col| (format!("{rel}__{n}"), format!("t.{}", col.quoted))))
                            .collect();
                        object(ctx, &pairs)
                    }
                    // On Citus a function in FROM must be immutable (to_jsonb of a row
                    // is not): the row's columns, named.
                    None if distributed.is_some() => {
                        let pairs: Vec<(String, String)> = table
                            .columns
                            .iter()
                            .map(|col| (format!("{rel}__{}", col.name), format!("t.{}", col.quoted)))
                            .collect();
                        object(ctx, &pairs)
                    }
                    None => format!(
                        "(SELECT pg_catalog.jsonb_object_agg({} || j.key, j.value) FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(t)) j)",
                        ctx.value(&format!("{rel}__"))
                    ),
                };
                let children: Vec<(String, String)> = selected
                    .iter()
                    .filter(|(r, _)| {
                        nesting_parent(ctx, rel, r, &selected).as_deref() == Some(rel.as_str())
                    })
                    .filter_map(|(r, _)| {
                        linked_array(ctx, rel, "t", r, &selected, 0)
                            .map(|sql| (format!("{rel}__{r}"), sql))
                    })
                    .collect();
                if !children.is_empty() {
                    row = format!("{row} || {}", object(ctx, &children));
                }
                ent = format!(
                    "(CASE WHEN t.{pkq} IS NULL THEN pg_catalog.jsonb_build_object({idkey}, ch.entity_id) ELSE {row} END \
                     || pg_catalog.jsonb_build_object('__entity', {slug}))",
                    pkq = pkc.quoted,
                    idkey = ctx.value(&format!("{rel}__{pk}")),
                    slug = ctx.value(&slug),
                );
            }
        }
    }
    let changes = ctx.params.borrow_mut().array(
        a.changes().iter().map(|s| s.to_string()).collect(),
        "pg_catalog.text",
    );
    let rel_filter = entity_rel
        .as_ref()
        .map(|r| format!(" AND ch.relationship = {}", ctx.value(r)))
        .unwrap_or_default();
    let name = ctx.value(a.name());
    let ts = "pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
    // Segment's personas context carries the space and namespace when the destination's
    // settings name them.
    let mut space = serde_json::Map::new();
    for k in ["space_id", "namespace"] {
        if let Some(v) = a.settings.get(k).filter(|v| v.is_string()) {
            space.insert(k.to_string(), v.clone());
        }
    }
    let space = if space.is_empty() {
        String::new()
    } else {
        format!(
            " || {}",
            ctx.typed(&Value::Object(space).to_string(), "pg_catalog.jsonb")
        )
    };
    let context = format!(
        "pg_catalog.jsonb_build_object('personas', pg_catalog.jsonb_build_object('computation_class', 'audience', \
         'computation_key', {key}, 'computation_id', {id}, 'computation_run_id', ({run})::pg_catalog.text){space}, \
         'library', pg_catalog.jsonb_build_object('name', 'linked_audiences', 'version', {ver}))",
        id = ctx.value(&ctx.audience_id.to_string()),
        run = ctx.run,
        ver = ctx.value(ctx.version),
    );
    let (kind, body) = if a.is_identify() {
        (0, format!("'traits', pg_catalog.jsonb_build_object({key}, e.change = 'entered') || e.traits || e.rels"))
    } else if entity_rel.is_some() {
        (1, format!("'properties', pg_catalog.jsonb_build_object('audience_key', {key}) || e.ent || e.traits || e.rels"))
    } else {
        let member = if a.event == "Audience Exited" {
            "false"
        } else {
            "true"
        };
        (1, format!("'properties', pg_catalog.jsonb_build_object('audience_key', {key}, {key}, {member}) || e.traits || e.rels"))
    };
    let (ty, event_field) = if a.is_identify() {
        ("identify", String::new())
    } else {
        ("track", format!("'event', {name}, "))
    };
    format!(
        "SELECT e.id, {dest} AS destination, {preset} AS preset, e.user_id, {name} AS event, {kind} AS kind, \
         {act} AS activation_id, e.entity_id, \
         pg_catalog.jsonb_build_object('type', '{ty}', {event_field}'userId', e.user_id, 'messageId', e.id::pg_catalog.text, \
         'timestamp', {ts}, {body}, 'context', {context}) AS payload \
         FROM (SELECT pg_catalog.gen_random_uuid() AS id, coalesce(p.{uid}::pg_catalog.text, ch.profile_id) AS user_id, \
               ch.profile_id, ch.entity_id, ch.change, {traits} AS traits, {rels} AS rels, {ent} AS ent \
               FROM {source} ch {profile_join}{joins} \
               WHERE ch.change = ANY ({changes}){rel_filter}{filter}) e",
        dest = ctx.value(&a.destination),
        preset = ctx.value(&a.preset),
        act = ctx.typed(&a.id.to_string(), "pg_catalog.int8"),
        uid = c.profile.user_id,
        traits = object(ctx, &traits),
        rels = object(ctx, &rels),
        profile_join = profile_join(c, distributed.is_some()),
        filter = distributed.unwrap_or_default(),
    )
}

/// The changed profile's row, joined to its change: one row, even when the profile
/// table's key is not unique (a view, a table without constraints).
fn profile_join(c: &Compiled, distributed: bool) -> String {
    let key = if distributed {
        "ch.profile_key".to_string()
    } else {
        format!("ch.profile_id::{}", c.profile.pk_type)
    };
    let on = format!("p.{} = {key}", c.profile.pk);
    one_row_join(&c.profile.table, "p", &on, c.profile.unique)
}

/// `table` as `alias` joined to a change by `on`: when the key `on` matches is not
/// unique, one of the matching rows (not one row per duplicate).
fn one_row_join(table: &str, alias: &str, on: &str, unique: bool) -> String {
    if unique {
        format!("LEFT JOIN {table} {alias} ON {on}")
    } else {
        format!(
            "LEFT JOIN LATERAL (SELECT * FROM {table} {alias} WHERE {on} LIMIT 1) {alias} ON true"
        )
    }
}
