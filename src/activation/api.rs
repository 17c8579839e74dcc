//! `la_create_destination`, `la_activate`, `la_set_activation_enabled`.

use super::{is_entity_event, EVENTS, PRESETS};
use crate::audience::spi::{compile_checked, load_env, require};
use crate::error::{Kind, Problem, Result};
use crate::json::{obj, type_name, Problems};
use crate::names::{hint_for, is_valid_slug};
use crate::sql::{internal, jsonb_row, jsonb_write};
use crate::{raise, raise_all};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

fn ok_or_raise<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|p| raise(&p))
}

/// Creates a destination, or replaces the preset and settings of an existing key.
/// Settings: `max_attempts` (default 10) before the outbox dead-letters a row; any other
/// keys are kept for the connector (a webhook's `url`, an API endpoint...).
#[pg_extern(volatile, parallel_unsafe)]
fn la_create_destination(key: &str, preset: &str, settings: default!(JsonB, "'{}'")) -> JsonB {
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
    if let Some(o) = obj(&settings.0, "settings", &mut out) {
        if let Some(v) = o.has("max_attempts").then(|| &settings.0["max_attempts"]) {
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
        &[key.into(), preset.into(), settings.into()],
    ));
    JsonB(row.unwrap_or(Value::Null))
}

/// Checks `properties`: `{"traits": [profile columns], "relationships": {slug: [columns]}}`
/// where each relationship is one the audience's definition names.
fn check_properties(
    props: &Value,
    env: &crate::audience::spi::Env,
    named: &[String],
) -> Vec<Problem> {
    let mut out = Problems::default();
    let Some(mut o) = obj(props, "properties", &mut out) else {
        return out.0;
    };
    let profile_table = env
        .graph
        .profile
        .as_ref()
        .and_then(|p| env.cat.table(&p.table_ref));
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
                .graph
                .relationship(&slug)
                .and_then(|p| env.graph.entity(&p.rel.related_entity));
            let table = entity.and_then(|e| env.cat.table(&e.table_ref));
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

/// Activates an audience to a destination for one event choice; returns its id.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn la_activate(
    audience: &str,
    destination: &str,
    event: &str,
    entity: default!(Option<String>, "NULL"),
    properties: default!(JsonB, "'{}'"),
    event_name: default!(Option<String>, "NULL"),
    enabled: default!(bool, true),
) -> i64 {
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
    let env = ok_or_raise(load_env());
    let compiled = compile_checked(&env, &stored.definition, Some(audience))
        .unwrap_or_else(|ps| raise_all(&ps));
    let named = compiled
        .entity_selects
        .iter()
        .map(|s| s.relationship.clone())
        .fold(Vec::<String>::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s)
            }
            v
        });
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
    let problems = check_properties(&properties.0, &env, &named);
    if !problems.is_empty() {
        raise_all(&problems);
    }
    let id = ok_or_raise(jsonb_write(
        "INSERT INTO linked_audiences.activation
             (audience_id, destination_id, event, entity, properties, event_name, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING pg_catalog.to_jsonb(id)",
        &[
            stored.id.into(),
            dest_id.into(),
            event.into(),
            entity.into(),
            properties.into(),
            event_name.into(),
            enabled.into(),
        ],
    ));
    id.and_then(|v| v.as_i64())
        .unwrap_or_else(|| raise(&internal("activation insert returned nothing")))
}

/// Enables or disables an activation.
#[pg_extern(volatile, parallel_unsafe, strict)]
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
