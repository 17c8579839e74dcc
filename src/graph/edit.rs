//! Changes to a Data Graph, one part at a time (the `la_register_*` functions). Pure:
//! each takes the graph and returns it changed, or the problem.

use super::model::{DataGraph, EventSource, Identifiers, Profile, Relationship};
use crate::error::{Kind, Problem, Result};
use crate::names::hint_for;

fn no_profile(what: &str) -> Problem {
    Problem::new(
        Kind::NotInPrerequisiteState,
        "",
        format!("no profile table is registered, so {what} has nothing to attach to"),
    )
    .with_hint("Call la_register_profile (or la_define_data_graph) first.")
}

pub fn set_profile(
    g: &mut DataGraph,
    table_ref: String,
    primary_key: String,
    user_id: Option<String>,
) {
    match &mut g.profile {
        Some(p) => {
            p.table_ref = table_ref;
            p.primary_key = primary_key;
            p.user_id = user_id;
        }
        None => {
            g.profile = Some(Profile {
                table_ref,
                primary_key,
                user_id,
                identifiers: None,
                relationships: Vec::new(),
            })
        }
    }
}

pub fn set_identifiers(g: &mut DataGraph, ids: Identifiers) -> Result<()> {
    let p = g
        .profile
        .as_mut()
        .ok_or_else(|| no_profile("an identifiers table"))?;
    p.identifiers = Some(ids);
    Ok(())
}

pub fn set_events(g: &mut DataGraph, ev: EventSource) {
    g.events = Some(ev);
}

/// Adds an entity, or replaces the one with the same slug in place.
pub fn upsert_entity(g: &mut DataGraph, e: super::model::Entity) {
    match g.entities.iter_mut().find(|x| x.slug == e.slug) {
        Some(x) => *x = e,
        None => g.entities.push(e),
    }
}

fn relationship_slugs(g: &DataGraph) -> Vec<String> {
    g.relationships()
        .iter()
        .map(|p| p.rel.slug.clone())
        .collect()
}

fn unknown_relationship(g: &DataGraph, path: &str, slug: &str) -> Problem {
    let slugs = relationship_slugs(g);
    Problem::new(
        Kind::UndefinedObject,
        path,
        format!("relationship \"{slug}\" does not exist"),
    )
    .with_opt_hint(hint_for(
        slug,
        slugs.iter().map(String::as_str),
        "relationships",
    ))
}

/// Removes a relationship (with its subtree) and returns it.
fn take(rels: &mut Vec<Relationship>, slug: &str) -> Option<Relationship> {
    if let Some(i) = rels.iter().position(|r| r.slug == slug) {
        return Some(rels.remove(i));
    }
    rels.iter_mut()
        .find_map(|r| take(&mut r.relationships, slug))
}

fn find_mut<'g>(rels: &'g mut [Relationship], slug: &str) -> Option<&'g mut Relationship> {
    for r in rels.iter_mut() {
        if r.slug == slug {
            return Some(r);
        }
        if let Some(found) = find_mut(&mut r.relationships, slug) {
            return Some(found);
        }
    }
    None
}

/// Adds a relationship under `parent` (a relationship slug; `None`: the profile), or
/// replaces the one with the same slug, keeping its nested relationships. Moving a
/// relationship under itself or one of its descendants is refused as a cycle.
pub fn upsert_relationship(
    g: &mut DataGraph,
    parent: Option<&str>,
    mut rel: Relationship,
) -> Result<()> {
    if g.profile.is_none() {
        return Err(no_profile("a relationship"));
    }
    if let Some(parent) = parent {
        if g.relationship(parent).is_none() {
            return Err(unknown_relationship(g, "parent", parent));
        }
        let under_itself = g
            .path_to(parent)
            .is_some_and(|trail| trail.contains(&rel.slug));
        if under_itself {
            return Err(Problem::invalid(
                "parent",
                format!("cycle: relationship \"{}\" cannot be nested under \"{parent}\", which is itself or lies below it", rel.slug),
            )
            .with_hint("Choose a parent that is not inside this relationship's subtree."));
        }
    }
    let profile = g.profile.as_mut().expect("checked above");
    if let Some(old) = take(&mut profile.relationships, &rel.slug) {
        rel.relationships = old.relationships;
    }
    match parent {
        None => profile.relationships.push(rel),
        Some(p) => find_mut(&mut profile.relationships, p)
            .expect("parent checked above")
            .relationships
            .push(rel),
    }
    Ok(())
}

/// Removes an entity no relationship uses.
pub fn remove_entity(g: &mut DataGraph, slug: &str) -> Result<()> {
    let Some(i) = g.entities.iter().position(|e| e.slug == slug) else {
        return Err(Problem::new(
            Kind::UndefinedObject,
            "slug",
            format!("entity \"{slug}\" does not exist"),
        )
        .with_opt_hint(hint_for(
            slug,
            g.entities.iter().map(|e| e.slug.as_str()),
            "entities",
        )));
    };
    let users: Vec<String> = g
        .relationships()
        .iter()
        .filter(|p| p.rel.related_entity == slug)
        .map(|p| p.rel.slug.clone())
        .collect();
    if !users.is_empty() {
        return Err(Problem::new(
            Kind::DependentObjectsStillExist,
            "slug",
            format!(
                "entity \"{slug}\" is used by relationships: {}",
                users.join(", ")
            ),
        )
        .with_hint("Unregister those relationships first."));
    }
    g.entities.remove(i);
    Ok(())
}

/// Removes a relationship that has no nested relationships.
pub fn remove_relationship(g: &mut DataGraph, slug: &str) -> Result<()> {
    let Some(placed) = g.relationship(slug) else {
        return Err(unknown_relationship(g, "slug", slug));
    };
    if !placed.rel.relationships.is_empty() {
        let nested: Vec<&str> = placed
            .rel
            .relationships
            .iter()
            .map(|r| r.slug.as_str())
            .collect();
        return Err(Problem::new(
            Kind::DependentObjectsStillExist,
            "slug",
            format!(
                "relationship \"{slug}\" has nested relationships: {}",
                nested.join(", ")
            ),
        )
        .with_hint("Unregister the nested relationships first."));
    }
    let profile = g
        .profile
        .as_mut()
        .expect("a relationship implies a profile");
    take(&mut profile.relationships, slug);
    Ok(())
}
