//! `la_create_destination`, `la_activate`, `la_set_activation_enabled`.

use super::{is_entity_event, EVENTS, PRESETS};
use crate::audience::spi::{compile_checked, load_env, require};
use crate::error::{Kind, Problem, Result};
use crate::json::Doc;
use crate::json::{obj, type_name, Problems};
use crate::names::{hint_for, is_valid_slug};
use crate::sql::{internal, jsonb_row, jsonb_write};
use crate::{ok_or_raise, raise, raise_all};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// Creates a destination, or replaces the preset and settings of an existing key.
/// Settings: `max_attempts` (default 10) before the outbox dead-letters a row; any other
/// keys are kept for the connector (a webhook's `url`, an API endpoint...).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_create_destination(key: &str, preset: &str, settings: default!(Doc, "'{}'")) -> JsonB {
    let settings = settings.or_raise("settings");
    if !is_valid_slug(key) {
        raise(
            &Problem::invalid("key", format!("invalid destination key \"{key}\""))
                .with_hint("A key matches ^[a-z][a-z0-9_]{0,62}$."),
        );
    }
    if !PRESETS.contains(&preset) {
        raise(
            &Problem::invalid("preset", format!("unknown preset \"{preset}\""))
                .with_opt_hint(hint_for(preset, PRESETS.iter().copied(), "presets")),
        );
    }
    let mut out = Problems::default();
    if let Some(o) = obj(&settings, "settings", &mut out) {
        if let Some(v) = o.has("max_attempts").then(|| &settings["max_attempts"]) {
            if !v.as_i64().is_some_and(|n| (1..=1000).contains(&n)) {
                out.push(Problem::invalid(
                    "settings.max_attempts",
                    format!("expected a whole number from 1 to 1000, got {v}"),
                ));
            }
        }
    }
    if !out.is_empty() {
        raise_all(&out.0);
    }
    let row = ok_or_raise(jsonb_write(
        "INSERT INTO linked_audiences.destination AS d (key, preset, settings) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET preset = excluded.preset, settings = excluded.settings
         RETURNING pg_catalog.jsonb_build_object('key', d.key, 'id', d.id, 'preset', d.preset)",
        &[key.into(), preset.into(), JsonB(settings).into()],
    ));
    JsonB(row.unwrap_or(Value::Null))
}

/// Checks `properties`: `{"traits": [profile columns], "relationships": {slug: [columns]}}`
/// where each relationship is one the audience's definition names.
pub(crate) fn check_properties(
    props: &Value,
    env: &crate::audience::spi::Env,
    named: &[String],
) -> Vec<Problem> {
    let mut out = Problems::default();
    let Some(mut o) = obj(props, "properties", &mut out) else {
        return out.0;
    };
    let profile_table = env
        .graph()
        .profile
        .as_ref()
        .and_then(|p| env.cat().table(&p.table_ref));
    let names = |v: &Value, path: &str, out: &mut Problems| -> Vec<String> {
        match v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| match x {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        out.push(Problem::invalid(
                            format!("{path}[{i}]"),
                            format!("expected a column name, got {}", type_name(other)),
                        ));
                        None
                    }
                })
                .collect(),
            other => {
                out.push(Problem::invalid(
                    path,
                    format!(
                        "expected an array of column names, got {}",
                        type_name(other)
                    ),
                ));
                Vec::new()
            }
        }
    };
    if let Some(traits) = o.get("traits") {
        for (i, t) in names(traits, "properties.traits", &mut out)
            .iter()
            .enumerate()
        {
            if let Some(table) = profile_table {
                if table.column(t).is_none() {
                    out.push(
                        Problem::new(
                            Kind::UndefinedColumn,
                            format!("properties.traits[{i}]"),
                            format!("trait \"{t}\" does not exist"),
                        )
                        .with_opt_hint(hint_for(
                            t,
                            table.column_names(),
                            "traits",
                        )),
                    );
                }
            }
        }
    }
    if o.opt_obj("relationships", &mut out).is_some() {
        let keys: Vec<String> = match &props["relationships"] {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for slug in keys {
            let path = format!("properties.relationships.{slug}");
            if !named.contains(&slug) {
                out.push(
                    Problem::invalid(
                        &path,
                        format!("relationship \"{slug}\" is not in the audience's definition"),
                    )
                    .with_hint(format!(
                        "Relationships the definition names: {}.",
                        named.join(", ")
                    )),
                );
                continue;
            }
            let entity = env
                .graph()
                .relationship(&slug)
                .and_then(|p| env.graph().entity(&p.rel.related_entity));
            let table = entity.and_then(|e| env.cat().table(&e.table_ref));
            for (i, c) in names(&props["relationships"][&slug], &path, &mut out)
                .iter()
                .enumerate()
            {
                if let Some(t) = table {
                    if t.column(c).is_none() {
                        out.push(
                            Problem::new(
                                Kind::UndefinedColumn,
                                format!("{path}[{i}]"),
                                format!(
                                    "column \"{c}\" does not exist on entity \"{}\"",
                                    entity.map_or("", |e| e.slug.as_str())
                                ),
                            )
                            .with_opt_hint(hint_for(
                                c,
                                t.column_names(),
                                "columns",
                            )),
                        );
                    }
                }
            }
        }
    }
    o.finish(&mut out);
    out.0
}

/// 0.2.0's `la_activate` (seven arguments, C symbol `la_activate_wrapper`): a database
/// still on that version's schema keeps working with this library until it is updated.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn la_activate(
    audience: Option<&str>,
    destination: Option<&str>,
    event: Option<&str>,
    entity: Option<String>,
    properties: Option<Doc>,
    event_name: Option<String>,
    enabled: Option<bool>,
) -> i64 {
    la_activate_with(
        audience,
        destination,
        event,
        entity,
        properties,
        event_name,
        enabled,
        Some(false),
    )
}

/// Activates an audience to a destination for one event choice; returns its id.
#[pg_extern(volatile, parallel_unsafe, name = "la_activate")]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)]
fn la_activate_with(
    audience: Option<&str>,
    destination: Option<&str>,
    event: Option<&str>,
    entity: default!(Option<String>, "NULL"),
    properties: default!(Option<Doc>, "'{}'"),
    event_name: default!(Option<String>, "NULL"),
    enabled: default!(Option<bool>, true),
    send_existing: default!(Option<bool>, false),
) -> i64 {
    use crate::given;
    let (audience, destination, event) = (
        given(audience, "audience"),
        given(destination, "destination"),
        given(event, "event"),
    );
    let properties = given(properties, "properties");
    let (enabled, send_existing) = (
        given(enabled, "enabled"),
        given(send_existing, "send_existing"),
    );
    if event_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        raise(
            &Problem::invalid("event_name", "an event name cannot be empty").with_hint(
                "Leave event_name out for the event's own name (Audience Entered, ...).",
            ),
        );
    }
    let event = super::canonical_event(event);
    let stored = ok_or_raise(require(audience));
    let dest = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.to_jsonb(d.id) FROM linked_audiences.destination d WHERE d.key = $1",
        &[destination.into()],
    ));
    let Some(dest_id) = dest.and_then(|v| v.as_i64()) else {
        let keys: Vec<String> = ok_or_raise(jsonb_row(
            "SELECT coalesce(pg_catalog.jsonb_agg(key ORDER BY key), '[]') FROM linked_audiences.destination",
            &[],
        ))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
        raise(
            &Problem::new(
                Kind::UndefinedObject,
                "destination",
                format!("destination \"{destination}\" does not exist"),
            )
            .with_opt_hint(hint_for(
                destination,
                keys.iter().map(String::as_str),
                "destinations",
            ))
            .with_hint_if_none("Create it with la_create_destination(key, preset)."),
        );
    };
    if !EVENTS.contains(&event) {
        raise(
            &Problem::invalid("event", format!("unknown event \"{event}\""))
                .with_hint(format!("Events: {}.", EVENTS.join(", "))),
        );
    }
    if send_existing && !super::may_send_existing(event) {
        raise(
            &Problem::invalid(
                "send_existing",
                format!("\"{event}\" cannot send events for current profiles and entities"),
            )
            .with_hint(
                "send_existing applies to Audience Entered, Audience Membership Changed and Entity Added; \
                 exits and removals are only ever sent as they happen.",
            ),
        );
    }
    let env = ok_or_raise(load_env());
    let compiled = compile_checked(&env, &stored.definition, Some(audience))
        .unwrap_or_else(|ps| raise_all(&ps));
    let named = compiled.entity_relationships();
    match (is_entity_event(event), &entity) {
        (true, None) => raise(
            &Problem::invalid(
                "entity",
                format!("\"{event}\" needs the relationship whose entities it tracks"),
            )
            .with_hint(format!(
                "Relationships the definition names: {}.",
                named.join(", ")
            )),
        ),
        (true, Some(e)) if !named.contains(e) => raise(
            &Problem::invalid(
                "entity",
                format!("relationship \"{e}\" is not in the audience's definition"),
            )
            .with_opt_hint(hint_for(
                e,
                named.iter().map(String::as_str),
                "relationships",
            ))
            .with_hint_if_none(format!(
                "Relationships the definition names: {}.",
                named.join(", ")
            )),
        ),
        (false, Some(_)) => raise(
            &Problem::invalid("entity", format!("\"{event}\" takes no entity"))
                .with_hint("Pass entity only with Entity Added or Entity Removed."),
        ),
        _ => {}
    }
    let properties = properties.or_raise("properties");
    let problems = check_properties(&properties, &env, &named);
    if !problems.is_empty() {
        raise_all(&problems);
    }
    // A schema before 0.3.0 knows the identify event by its old name only, and has no
    // send_existing.
    let current = ok_or_raise(crate::sql::schema_0_3());
    let event = if current || event != "Audience Membership Changed" {
        event
    } else {
        super::MEMBERSHIP_CHANGED_ALIAS
    };
    let insert = if current {
        "INSERT INTO linked_audiences.activation
             (audience_id, destination_id, event, entity, properties, event_name, enabled, send_existing)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING pg_catalog.to_jsonb(id)"
    } else {
        "INSERT INTO linked_audiences.activation
             (audience_id, destination_id, event, entity, properties, event_name, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING pg_catalog.to_jsonb(id)"
    };
    let id = ok_or_raise(jsonb_write(
        insert,
        &[
            stored.id.into(),
            dest_id.into(),
            event.into(),
            entity.into(),
            JsonB(properties).into(),
            event_name.into(),
            enabled.into(),
            send_existing.into(),
        ],
    ));
    id.and_then(|v| v.as_i64())
        .unwrap_or_else(|| raise(&internal("activation insert returned nothing")))
}

/// Enables or disables an activation.
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn la_set_activation_enabled(id: i64, enabled: bool) -> bool {
    let found = ok_or_raise(jsonb_write(
        "UPDATE linked_audiences.activation SET enabled = $2 WHERE id = $1 RETURNING pg_catalog.to_jsonb(enabled)",
        &[id.into(), enabled.into()],
    ));
    if found.is_none() {
        raise(&Problem::new(
            Kind::UndefinedObject,
            "id",
            format!("activation {id} does not exist"),
        ));
    }
    enabled
}

/// Fits an event under `max_bytes` and maps it for the preset:
/// `{payload, action, mapped, truncated}`. Used by computes, row by row inside one
/// INSERT ... SELECT.
#[pg_extern(
    immutable,
    strict,
    parallel_safe,
    sql = "CREATE FUNCTION linked_audiences.finish_event(preset text, payload jsonb, max_bytes integer) \
           RETURNS jsonb IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';"
)]
fn finish_event(preset: &str, payload: Doc, max_bytes: i32) -> JsonB {
    JsonB(super::payload::finish(
        preset,
        payload.or_raise("payload"),
        max_bytes.max(1024) as usize,
    ))
}

/// The enabled activations of an audience, with their destinations.
pub fn load_activations(
    audience_id: i64,
    only: Option<i64>,
) -> Result<Vec<super::events::Activation>> {
    let existing = if crate::sql::schema_0_3()? {
        "a.send_existing, 'first_compute', a.first_run_id IS NULL"
    } else {
        "false, 'first_compute', false"
    };
    let v = jsonb_row(
        &format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'id', a.id, 'event', a.event, 'entity', a.entity, 'properties', a.properties,
                    'event_name', a.event_name, 'destination', d.key, 'preset', d.preset, 'settings', d.settings,
                    'send_existing', {existing}) ORDER BY a.id), '[]')
         FROM linked_audiences.activation a JOIN linked_audiences.destination d ON d.id = a.destination_id
         WHERE a.audience_id = $1 AND (a.enabled OR a.id = $2) AND ($2 IS NULL OR a.id = $2)"
        ),
        &[audience_id.into(), only.into()],
    )?
    .unwrap_or(Value::Array(vec![]));
    let mut activations: Vec<super::events::Activation> =
        serde_json::from_value(v).map_err(internal)?;
    for a in &mut activations {
        a.event = super::canonical_event(&a.event).to_string();
    }
    Ok(activations)
}

/// The payload an activation would send for one current member (the first by profile
/// id, or `profile_id`), without writing anything.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn la_preview_event(
    activation_id: Option<i64>,
    profile_id: default!(Option<String>, "NULL"),
) -> JsonB {
    let activation_id = crate::given(activation_id, "activation_id");
    use crate::audience::spi::args;
    let meta = ok_or_raise(jsonb_row(
        "SELECT pg_catalog.jsonb_build_object('audience_id', a.audience_id, 'key', au.key)
         FROM linked_audiences.activation a JOIN linked_audiences.audience au ON au.id = a.audience_id WHERE a.id = $1",
        &[activation_id.into()],
    ))
    .unwrap_or_else(|| raise(&Problem::new(Kind::UndefinedObject, "activation_id", format!("activation {activation_id} does not exist"))));
    let key = meta["key"].as_str().unwrap_or_default().to_string();
    let audience_id = meta["audience_id"].as_i64().unwrap_or_default();
    let stored = ok_or_raise(require(&key));
    let env = ok_or_raise(load_env());
    let compiled =
        compile_checked(&env, &stored.definition, Some(&key)).unwrap_or_else(|ps| raise_all(&ps));
    let activation = ok_or_raise(load_activations(audience_id, Some(activation_id)))
        .into_iter()
        .next()
        .unwrap_or_else(|| raise(&internal("activation vanished")));
    // The member: the one asked for, if it is one; else the first.
    let mut params = compiled.params.clone();
    let pid = params.text(profile_id.clone().unwrap_or_default());
    let member = ok_or_raise(jsonb_row(
        &format!(
            "SELECT pg_catalog.to_jsonb(m.profile_id) FROM ({}) m WHERE {pid} = '' OR m.profile_id = {pid} ORDER BY m.profile_id LIMIT 1",
            compiled.members_sql()
        ),
        &args(&params),
    ))
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_else(|| {
        raise(&match &profile_id {
            Some(p) => Problem::invalid("profile_id", format!("profile \"{p}\" is not a member of audience \"{key}\"")),
            None => Problem::new(Kind::NotInPrerequisiteState, "activation_id", format!("audience \"{key}\" has no members to preview")),
        })
    });
    let change = activation.changes()[0];
    let mut entity_id = String::new();
    if let Some(rel) = activation
        .entity
        .as_ref()
        .filter(|_| is_entity_event(&activation.event))
    {
        let selects: Vec<&crate::compile::EntitySelect> = compiled
            .entity_selects
            .iter()
            .filter(|s| &s.relationship == rel)
            .collect();
        let mut p = compiled.params.clone();
        let pid = p.text(member.clone());
        let this = format!("p.{}::pg_catalog.text = {pid}", compiled.profile.pk);
        let pairs: Vec<String> = selects
            .iter()
            .map(|s| {
                s.reached(
                    &compiled.profile,
                    &format!("{} AS entity_id", s.key_text()),
                    &this,
                )
            })
            .collect();
        entity_id = ok_or_raise(jsonb_row(
            &format!(
                "SELECT pg_catalog.to_jsonb(u.entity_id) FROM ({}) u ORDER BY 1 LIMIT 1",
                pairs.join(" UNION ")
            ),
            &args(&p),
        ))
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            raise(&Problem::new(
                Kind::NotInPrerequisiteState,
                "profile_id",
                format!("profile \"{member}\" has no \"{rel}\" entities"),
            ))
        });
    }
    let mut params = compiled.params.clone();
    let pid = params.text(member);
    let eid = params.text(entity_id);
    let rel = params.text(activation.entity.clone().unwrap_or_default());
    let change = params.text(change);
    let ctx = super::events::EventCtx {
        graph: env.graph(),
        cat: env.cat(),
        compiled: &compiled,
        audience_key: &key,
        audience_id,
        run: "NULL",
        version: env!("CARGO_PKG_VERSION"),
        params: params.into(),
    };
    let sql = format!(
        "WITH ch AS (SELECT {pid}::pg_catalog.text AS profile_id, {eid}::pg_catalog.text AS entity_id, {change}::pg_catalog.text AS change, {rel}::pg_catalog.text AS relationship),
         ev AS ({events})
         SELECT pg_catalog.jsonb_build_object('payload', f->'payload', 'action', f->'action', 'mapped', f->'mapped')
         FROM (SELECT linked_audiences.finish_event(ev.preset, ev.payload, {max}) AS f FROM ev) x",
        events = super::events::activation_events_sql(&ctx, &activation, "ch"),
        max = super::payload::MAX_EVENT_BYTES,
    );
    JsonB(ok_or_raise(jsonb_row(&sql, &args(&ctx.into_params()))).unwrap_or(Value::Null))
}
