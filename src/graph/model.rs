//! The Data Graph model and its JSON form (Segment's Data Graph config keys).

use crate::error::Problem;
use crate::json::{obj, Obj, Problems};
use serde_json::{json, Map, Value};

/// Where profiles, entities and events live and how they join.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataGraph {
    pub entities: Vec<Entity>,
    pub profile: Option<Profile>,
    pub events: Option<EventSource>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub slug: String,
    pub name: Option<String>,
    pub table_ref: String,
    pub primary_key: String,
    pub enrichment_enabled: Option<bool>,
    /// A column holding the owning profile's primary key (co-located joins).
    pub profile_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub table_ref: String,
    pub primary_key: String,
    pub user_id: Option<String>,
    pub identifiers: Option<Identifiers>,
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identifiers {
    pub table_ref: String,
    pub profile_key: String,
    pub type_column: String,
    pub value_column: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    pub slug: String,
    pub name: Option<String>,
    pub related_entity: String,
    pub join: Join,
    pub relationships: Vec<Relationship>,
}

/// How a relationship joins its parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// A profile column equals an entity column (first level only).
    Trait { name: String, join_key: String },
    /// An identifier of this type equals an entity column (first level only).
    ExternalId { id_type: String, join_key: String },
    /// `<parent>.<column> = <child>.<column>`.
    JoinOn(String),
    /// Many to many through a junction table.
    Junction(Junction),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Junction {
    pub table_ref: String,
    pub primary_key: Option<String>,
    pub left_join_on: String,
    pub right_join_on: String,
    /// A junction column holding the owning profile's primary key (co-located joins).
    pub profile_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventSource {
    pub table_ref: String,
    pub profile_key: String,
    pub name_column: String,
    pub timestamp_column: String,
    pub properties_column: Option<String>,
}

impl Join {
    /// The JSON key this join is written under.
    pub fn key(&self) -> &'static str {
        match self {
            Join::Trait { .. } => "trait",
            Join::ExternalId { .. } => "external_id",
            Join::JoinOn(_) => "join_on",
            Join::Junction(_) => "junction_table",
        }
    }
}

/// A relationship with where it sits in the tree.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'g> {
    pub rel: &'g Relationship,
    /// The parent relationship; `None` for a first-level one (parent: the profile).
    pub parent: Option<&'g Relationship>,
    /// 1 for a relationship of the profile.
    pub depth: usize,
}

impl DataGraph {
    pub fn entity(&self, slug: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.slug == slug)
    }

    /// Every relationship, depth first, with its parent and depth.
    pub fn relationships(&self) -> Vec<Placed<'_>> {
        fn walk<'g>(
            rels: &'g [Relationship],
            parent: Option<&'g Relationship>,
            depth: usize,
            out: &mut Vec<Placed<'g>>,
        ) {
            for r in rels {
                out.push(Placed {
                    rel: r,
                    parent,
                    depth,
                });
                walk(&r.relationships, Some(r), depth + 1, out);
            }
        }
        let mut out = Vec::new();
        if let Some(p) = &self.profile {
            walk(&p.relationships, None, 1, &mut out);
        }
        out
    }

    pub fn relationship(&self, slug: &str) -> Option<Placed<'_>> {
        self.relationships()
            .into_iter()
            .find(|p| p.rel.slug == slug)
    }

    /// The slugs from the first level down to `slug`, inclusive.
    pub fn path_to(&self, slug: &str) -> Option<Vec<String>> {
        fn find(rels: &[Relationship], slug: &str, trail: &mut Vec<String>) -> bool {
            for r in rels {
                trail.push(r.slug.clone());
                if r.slug == slug || find(&r.relationships, slug, trail) {
                    return true;
                }
                trail.pop();
            }
            false
        }
        let mut trail = Vec::new();
        let p = self.profile.as_ref()?;
        find(&p.relationships, slug, &mut trail).then_some(trail)
    }

    pub fn max_depth(&self) -> usize {
        self.relationships()
            .iter()
            .map(|p| p.depth)
            .max()
            .unwrap_or(0)
    }

    /// Every table the graph names, in order of first mention.
    pub fn table_refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = Vec::new();
        let mut add = |t: &str| {
            if !refs.iter().any(|r| r == t) {
                refs.push(t.to_string());
            }
        };
        if let Some(p) = &self.profile {
            add(&p.table_ref);
            if let Some(i) = &p.identifiers {
                add(&i.table_ref);
            }
        }
        for e in &self.entities {
            add(&e.table_ref);
        }
        for placed in self.relationships() {
            if let Join::Junction(j) = &placed.rel.join {
                add(&j.table_ref);
            }
        }
        if let Some(ev) = &self.events {
            add(&ev.table_ref);
        }
        refs
    }
}

// ---------------------------------------------------------------------------------
// JSON -> model

/// Parses a graph document. Shape problems (wrong types, missing or unknown keys) are
/// all collected; the model is returned only when there are none.
pub fn parse(doc: &Value) -> Result<DataGraph, Vec<Problem>> {
    let mut out = Problems::default();
    let graph = parse_graph(doc, &mut out);
    match graph {
        Some(g) if out.is_empty() => Ok(g),
        _ => Err(out.0),
    }
}

fn parse_graph(doc: &Value, out: &mut Problems) -> Option<DataGraph> {
    let mut o = obj(doc, "$", out)?;
    let entities = o
        .opt_arr("entities", out)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(path, v)| parse_entity(v, &path, out))
        .collect();
    let profile = o
        .opt_obj("profile", out)
        .and_then(|p| parse_profile(p, out));
    let events = o.opt_obj("events", out).and_then(|e| parse_events(e, out));
    o.finish(out);
    Some(DataGraph {
        entities,
        profile,
        events,
    })
}

/// Parses one part of a graph (an entity, a relationship) on its own.
pub fn parse_part<T>(
    f: fn(&Value, &str, &mut Problems) -> Option<T>,
    v: &Value,
    path: &str,
) -> Result<T, Vec<Problem>> {
    let mut out = Problems::default();
    let parsed = f(v, path, &mut out);
    match parsed {
        Some(t) if out.is_empty() => Ok(t),
        _ => Err(out.0),
    }
}

pub fn parse_entity(v: &Value, path: &str, out: &mut Problems) -> Option<Entity> {
    let mut o = obj(v, path, out)?;
    let slug = o.req_str("slug", out);
    let name = o.opt_str("name", out);
    let table_ref = o.req_str("table_ref", out);
    let primary_key = o.req_str("primary_key", out);
    let enrichment_enabled = o.opt_bool("enrichment_enabled", out);
    let profile_key = o.opt_str("profile_key", out);
    o.finish(out);
    Some(Entity {
        slug: slug?,
        name,
        table_ref: table_ref?,
        primary_key: primary_key?,
        enrichment_enabled,
        profile_key,
    })
}

fn parse_profile(mut o: Obj<'_>, out: &mut Problems) -> Option<Profile> {
    let table_ref = o.req_str("table_ref", out);
    let primary_key = o.req_str("primary_key", out);
    let user_id = o.opt_str("user_id", out);
    let identifiers = o.opt_obj("identifiers", out).and_then(|mut i| {
        let table_ref = i.req_str("table_ref", out);
        let profile_key = i.req_str("profile_key", out);
        let type_column = i.req_str("type_column", out);
        let value_column = i.req_str("value_column", out);
        i.finish(out);
        Some(Identifiers {
            table_ref: table_ref?,
            profile_key: profile_key?,
            type_column: type_column?,
            value_column: value_column?,
        })
    });
    let relationships = parse_relationships(&mut o, out);
    o.finish(out);
    Some(Profile {
        table_ref: table_ref?,
        primary_key: primary_key?,
        user_id,
        identifiers,
        relationships,
    })
}

fn parse_relationships(o: &mut Obj<'_>, out: &mut Problems) -> Vec<Relationship> {
    o.opt_arr("relationships", out)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(path, v)| parse_relationship(v, &path, out))
        .collect()
}

/// The keys that say how a relationship joins; exactly one must be present.
pub const JOIN_KEYS: [&str; 4] = ["trait", "external_id", "join_on", "junction_table"];

pub fn parse_relationship(v: &Value, path: &str, out: &mut Problems) -> Option<Relationship> {
    let mut o = obj(v, path, out)?;
    let slug = o.req_str("slug", out);
    let name = o.opt_str("name", out);
    let related_entity = o.req_str("related_entity", out);
    let present: Vec<&str> = JOIN_KEYS.iter().copied().filter(|k| o.has(k)).collect();
    let trait_join = o.opt_obj("trait", out).and_then(|mut t| {
        let name = t.req_str("name", out);
        let join_key = t.req_str("join_key", out);
        t.finish(out);
        Some(Join::Trait {
            name: name?,
            join_key: join_key?,
        })
    });
    let external_id = o.opt_obj("external_id", out).and_then(|mut t| {
        let id_type = t.req_str("type", out);
        let join_key = t.req_str("join_key", out);
        t.finish(out);
        Some(Join::ExternalId {
            id_type: id_type?,
            join_key: join_key?,
        })
    });
    let join_on = o.opt_str("join_on", out).map(Join::JoinOn);
    let junction = o.opt_obj("junction_table", out).and_then(|mut j| {
        let table_ref = j.req_str("table_ref", out);
        let primary_key = j.opt_str("primary_key", out);
        let left_join_on = j.req_str("left_join_on", out);
        let right_join_on = j.req_str("right_join_on", out);
        let profile_key = j.opt_str("profile_key", out);
        j.finish(out);
        Some(Join::Junction(Junction {
            table_ref: table_ref?,
            primary_key,
            left_join_on: left_join_on?,
            right_join_on: right_join_on?,
            profile_key,
        }))
    });
    let relationships = parse_relationships(&mut o, out);
    let join = match present.len() {
        1 => trait_join.or(external_id).or(join_on).or(junction),
        0 => {
            out.push(
                Problem::invalid(path, "a relationship needs one way to join its parent")
                    .with_hint(
                        "Add \"trait\" or \"external_id\" (first level), or \"join_on\" or \
                         \"junction_table\" (deeper levels).",
                    ),
            );
            None
        }
        _ => {
            out.push(
                Problem::invalid(
                    o.key_path(present[1]),
                    format!(
                        "a relationship joins its parent one way, but both \"{}\" and \"{}\" are given",
                        present[0], present[1]
                    ),
                )
                .with_hint("Keep exactly one of trait, external_id, join_on, junction_table."),
            );
            None
        }
    };
    o.finish(out);
    Some(Relationship {
        slug: slug?,
        name,
        related_entity: related_entity?,
        join: join?,
        relationships,
    })
}

pub fn parse_event_source(v: &Value, path: &str, out: &mut Problems) -> Option<EventSource> {
    parse_events(obj(v, path, out)?, out)
}

fn parse_events(mut o: Obj<'_>, out: &mut Problems) -> Option<EventSource> {
    let table_ref = o.req_str("table_ref", out);
    let profile_key = o.req_str("profile_key", out);
    let name_column = o.req_str("name_column", out);
    let timestamp_column = o.req_str("timestamp_column", out);
    let properties_column = o.opt_str("properties_column", out);
    o.finish(out);
    Some(EventSource {
        table_ref: table_ref?,
        profile_key: profile_key?,
        name_column: name_column?,
        timestamp_column: timestamp_column?,
        properties_column,
    })
}

// ---------------------------------------------------------------------------------
// model -> JSON

fn put(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(key.to_string(), Value::String(v.clone()));
    }
}

impl DataGraph {
    /// The graph in its JSON form; `parse(&g.to_json()) == Ok(g)`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "entities".into(),
            Value::Array(self.entities.iter().map(Entity::to_json).collect()),
        );
        if let Some(p) = &self.profile {
            m.insert("profile".into(), p.to_json());
        }
        if let Some(e) = &self.events {
            let mut em = Map::new();
            em.insert("table_ref".into(), json!(e.table_ref));
            em.insert("profile_key".into(), json!(e.profile_key));
            em.insert("name_column".into(), json!(e.name_column));
            em.insert("timestamp_column".into(), json!(e.timestamp_column));
            put(&mut em, "properties_column", &e.properties_column);
            m.insert("events".into(), Value::Object(em));
        }
        Value::Object(m)
    }
}

impl Entity {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("slug".into(), json!(self.slug));
        put(&mut m, "name", &self.name);
        m.insert("table_ref".into(), json!(self.table_ref));
        m.insert("primary_key".into(), json!(self.primary_key));
        if let Some(b) = self.enrichment_enabled {
            m.insert("enrichment_enabled".into(), json!(b));
        }
        put(&mut m, "profile_key", &self.profile_key);
        Value::Object(m)
    }
}

impl Profile {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("table_ref".into(), json!(self.table_ref));
        m.insert("primary_key".into(), json!(self.primary_key));
        put(&mut m, "user_id", &self.user_id);
        if let Some(i) = &self.identifiers {
            m.insert(
                "identifiers".into(),
                json!({"table_ref": i.table_ref, "profile_key": i.profile_key,
                       "type_column": i.type_column, "value_column": i.value_column}),
            );
        }
        if !self.relationships.is_empty() {
            m.insert(
                "relationships".into(),
                relationships_json(&self.relationships),
            );
        }
        Value::Object(m)
    }
}

fn relationships_json(rels: &[Relationship]) -> Value {
    Value::Array(rels.iter().map(Relationship::to_json).collect())
}

impl Relationship {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("slug".into(), json!(self.slug));
        put(&mut m, "name", &self.name);
        m.insert("related_entity".into(), json!(self.related_entity));
        let join = match &self.join {
            Join::Trait { name, join_key } => json!({"name": name, "join_key": join_key}),
            Join::ExternalId { id_type, join_key } => {
                json!({"type": id_type, "join_key": join_key})
            }
            Join::JoinOn(s) => json!(s),
            Join::Junction(j) => {
                let mut jm = Map::new();
                jm.insert("table_ref".into(), json!(j.table_ref));
                put(&mut jm, "primary_key", &j.primary_key);
                jm.insert("left_join_on".into(), json!(j.left_join_on));
                jm.insert("right_join_on".into(), json!(j.right_join_on));
                put(&mut jm, "profile_key", &j.profile_key);
                Value::Object(jm)
            }
        };
        m.insert(self.join.key().into(), join);
        if !self.relationships.is_empty() {
            m.insert(
                "relationships".into(),
                relationships_json(&self.relationships),
            );
        }
        Value::Object(m)
    }
}
