//! The Data Graph: which table holds profiles, which tables are entities, how they join.

pub mod cache;
pub mod catalog;
pub mod edit;
pub mod joins;
pub mod model;
pub mod spi;
pub mod validate;

#[cfg(test)]
pub(crate) mod tests;

use crate::error::Problem;
use model::{DataGraph, Join, Relationship};
use serde_json::{json, Value};

/// What `la_define_data_graph` and the `la_register_*` functions return.
pub fn summary(g: &DataGraph, warnings: &[Problem]) -> Value {
    json!({
        "entities": g.entities.len(),
        "relationships": g.relationships().len(),
        "max_depth": g.max_depth(),
        "events": g.events.is_some(),
        "warnings": warnings.iter().map(|w| {
            let mut v = w.to_json();
            v.as_object_mut().map(|o| o.remove("sqlstate"));
            v
        }).collect::<Vec<_>>(),
    })
}

fn dot_str(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// The graph in Graphviz DOT: the profile, one node per relationship (an entity can be
/// reached by several), edges labelled with how they join, and the event source.
pub fn to_dot(g: &DataGraph) -> String {
    let mut out = String::from(
        "digraph data_graph {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    let Some(p) = &g.profile else {
        out.push_str("}\n");
        return out;
    };
    out.push_str(&format!(
        "  profile [label={}, style=\"rounded,bold\"];\n",
        dot_str(&format!("profile\n{}", p.table_ref))
    ));
    fn walk(g: &DataGraph, parent: &str, rels: &[Relationship], out: &mut String) {
        for r in rels {
            let id = dot_str(&format!("rel:{}", r.slug));
            let table = g
                .entity(&r.related_entity)
                .map_or("?", |e| e.table_ref.as_str());
            let title = r.name.as_deref().unwrap_or(&r.slug);
            out.push_str(&format!(
                "  {id} [label={}];\n",
                dot_str(&format!("{title}\n{} ({table})", r.related_entity))
            ));
            let how = match &r.join {
                Join::Trait { name, join_key } => format!("{name} = {join_key}"),
                Join::ExternalId { id_type, join_key } => {
                    format!("{id_type} identifier = {join_key}")
                }
                Join::JoinOn(expr) => expr.clone(),
                Join::Junction(j) => format!("via {}", j.table_ref),
            };
            out.push_str(&format!("  {parent} -> {id} [label={}];\n", dot_str(&how)));
            walk(g, &id, &r.relationships, out);
        }
    }
    walk(g, "profile", &p.relationships, &mut out);
    if let Some(ev) = &g.events {
        out.push_str(&format!(
            "  events [label={}, shape=note];\n  profile -> events [label={}, style=dashed];\n",
            dot_str(&format!("events\n{}", ev.table_ref)),
            dot_str(&ev.profile_key)
        ));
    }
    out.push_str("}\n");
    out
}
