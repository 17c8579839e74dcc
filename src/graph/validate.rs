//! Validation of a Data Graph against a catalog snapshot. Pure: no SPI.

use super::catalog::{comparable, Catalog, Column, Lookup, Table};
use super::joins::{resolve, ResolvedJoin};
use super::model::{DataGraph, Join, Junction, Placed};
use crate::error::{Kind, Problem};
use crate::names::{hint_for, is_valid_slug, path_index, path_key};
use std::collections::HashMap;

/// Segment's limit on relationship depth; the default of
/// `linked_audiences.max_relationship_depth`.
pub const DEFAULT_MAX_DEPTH: usize = 6;

/// What validation found: problems make the graph invalid; warnings do not.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// A graph that validation found sound against its catalog snapshot: the tables,
/// columns, types and joins it names are there (what the caller may read aside: each
/// audience checks the tables it reads). Only `check` makes one, and the compiler takes
/// nothing else, so its lookups cannot miss.
#[derive(Debug, Clone)]
pub struct ValidatedGraph {
    graph: DataGraph,
    cat: Catalog,
}

impl ValidatedGraph {
    /// Validates the graph's structure against `cat`; the problems when it is not sound.
    pub fn check(
        graph: DataGraph,
        cat: Catalog,
        max_depth: usize,
    ) -> Result<ValidatedGraph, Vec<Problem>> {
        let mut structure = cat.clone();
        for t in structure.tables.values_mut() {
            if let Lookup::Found(t) = t {
                t.readable = true;
            }
        }
        let report = validate(&graph, &structure, max_depth);
        if !report.problems.is_empty() {
            return Err(report.problems);
        }
        Ok(ValidatedGraph { graph, cat })
    }

    pub fn graph(&self) -> &DataGraph {
        &self.graph
    }

    pub fn cat(&self) -> &Catalog {
        &self.cat
    }
}

struct Checker<'a> {
    graph: &'a DataGraph,
    cat: &'a Catalog,
    report: Report,
}

/// Checks everything SPEC section 1 lists: tables and columns exist and are readable,
/// join column types are comparable, slugs are well formed and unique, no entity
/// repeats on a path, depth is within `max_depth`. Missing indexes on join columns and
/// entities no relationship reaches are warnings.
pub fn validate(graph: &DataGraph, cat: &Catalog, max_depth: usize) -> Report {
    let mut c = Checker {
        graph,
        cat,
        report: Report::default(),
    };
    c.entities();
    let profile_table = c.profile();
    c.relationships(profile_table, max_depth);
    c.events(profile_table);
    c.report
}

impl<'a> Checker<'a> {
    fn problem(&mut self, p: Problem) {
        self.report.problems.push(p);
    }

    /// The table a reference names, or a reported problem.
    fn table(&mut self, table_ref: &str, path: &str) -> Option<&'a Table> {
        match self.cat.tables.get(table_ref) {
            Some(Lookup::Found(t)) if t.readable => Some(t),
            Some(Lookup::Found(t)) => {
                self.problem(
                    Problem::new(
                        Kind::InsufficientPrivilege,
                        path,
                        format!("permission denied for table {}", t.display()),
                    )
                    .with_hint(format!(
                        "The current role needs SELECT on it: GRANT SELECT ON {} TO current_user;",
                        t.quoted
                    )),
                );
                None
            }
            Some(Lookup::Missing { candidates }) => {
                let hint = hint_for(table_ref, candidates.iter().map(String::as_str), "tables");
                self.problem(
                    Problem::new(
                        Kind::UndefinedTable,
                        path,
                        format!("table \"{table_ref}\" does not exist"),
                    )
                    .with_opt_hint(hint),
                );
                None
            }
            Some(Lookup::Ambiguous(schemas)) => {
                self.problem(
                    Problem::invalid(
                        path,
                        format!(
                            "table \"{table_ref}\" is in several schemas ({}) and none is public",
                            schemas.join(", ")
                        ),
                    )
                    .with_hint(format!(
                        "Qualify it, for example {}.{table_ref}.",
                        schemas[0]
                    )),
                );
                None
            }
            Some(Lookup::Malformed(why)) => {
                self.problem(
                    Problem::invalid(path, format!("invalid table name \"{table_ref}\": {why}"))
                        .with_hint("Name a table as schema.table, for example public.profiles."),
                );
                None
            }
            None => {
                self.problem(Problem::new(
                    Kind::Internal,
                    path,
                    format!("table \"{table_ref}\" missing from the catalog snapshot"),
                ));
                None
            }
        }
    }

    fn column(&mut self, table: &'a Table, name: &str, path: &str) -> Option<&'a Column> {
        let found = table.column(name);
        if found.is_none() {
            let hint = hint_for(
                name,
                table.column_names(),
                &format!("columns of {}", table.display()),
            );
            self.problem(
                Problem::new(
                    Kind::UndefinedColumn,
                    path,
                    format!(
                        "column \"{name}\" does not exist on table {}",
                        table.display()
                    ),
                )
                .with_opt_hint(hint),
            );
        }
        found
    }

    fn check_comparable(&mut self, a: (&Table, &Column), b: (&Table, &Column), path: &str) {
        if !comparable(a.1, b.1) {
            self.problem(
                Problem::invalid(
                    path,
                    format!(
                        "cannot join {}.{} ({}) with {}.{} ({}): the types are not comparable",
                        a.0.display(),
                        a.1.name,
                        a.1.type_name,
                        b.0.display(),
                        b.1.name,
                        b.1.type_name
                    ),
                )
                .with_hint("Join columns of the same type, or of two numeric, two text or two date/time types."),
            );
        }
    }

    fn warn_unindexed(&mut self, table: &Table, column: &str, path: &str, reached_from: &str) {
        if !table.indexed.iter().any(|c| c == column) {
            self.report.warnings.push(
                Problem::invalid(
                    path,
                    format!(
                        "no index leads with {}({column}); joins from {reached_from} will scan {}",
                        table.display(),
                        table.display()
                    ),
                )
                .with_hint(format!(
                    "CREATE INDEX ON {} ({});",
                    table.quoted,
                    table.column(column).map_or(column, |c| c.quoted.as_str())
                )),
            );
        }
    }

    /// A key without a primary key or unique index on it (alone, or with `with`): rows
    /// that share one are one profile or entity, and rows without one are left out.
    fn warn_not_unique(&mut self, table: &Table, key: &str, with: Option<&str>, path: &str) {
        if table.unique_key(key, with) || table.column(key).is_none() {
            return;
        }
        self.report.warnings.push(
            Problem::invalid(
                path,
                format!(
                    "no primary key or unique index on {}({key}): rows with the same {key} count as one, and rows without one are left out",
                    table.display()
                ),
            )
            .with_hint(format!(
                "ALTER TABLE {} ADD PRIMARY KEY ({});",
                table.quoted,
                table.column(key).map_or(key, |c| c.quoted.as_str())
            )),
        );
    }

    fn slug(&mut self, slug: &str, path: &str, seen: &mut HashMap<String, String>, what: &str) {
        if !is_valid_slug(slug) {
            self.problem(
                Problem::invalid(path, format!("invalid {what} slug \"{slug}\""))
                    .with_hint("A slug matches ^[a-z][a-z0-9_]{0,62}$: lower case letters, digits and _, starting with a letter."),
            );
        } else if let Some(first) = seen.get(slug) {
            self.problem(
                Problem::invalid(path, format!("duplicate {what} slug \"{slug}\"")).with_hint(
                    format!("It is already used at {first}; {what} slugs are unique."),
                ),
            );
        } else {
            seen.insert(slug.to_string(), path.to_string());
        }
    }

    fn entities(&mut self) {
        let mut seen = HashMap::new();
        let used: Vec<&str> = self
            .graph
            .relationships()
            .iter()
            .map(|p| p.rel.related_entity.as_str())
            .collect();
        for (i, e) in self.graph.entities.iter().enumerate() {
            let path = path_index("$.entities", i);
            self.slug(&e.slug, &path_key(&path, "slug"), &mut seen, "entity");
            if let Some(t) = self.table(&e.table_ref, &path_key(&path, "table_ref")) {
                let key_path = path_key(&path, "primary_key");
                if self.column(t, &e.primary_key, &key_path).is_some() {
                    self.warn_not_unique(t, &e.primary_key, e.profile_key.as_deref(), &key_path);
                }
                if let Some(pk) = &e.profile_key {
                    let at = path_key(&path, "profile_key");
                    if let Some(c) = self.column(t, pk, &at) {
                        if let Some((pt, pc)) = self.profile_key_column() {
                            self.check_comparable((t, c), (pt, pc), &at);
                        }
                    }
                }
            }
            if !used.contains(&e.slug.as_str()) {
                self.report.warnings.push(
                    Problem::invalid(
                        &path,
                        format!("entity \"{}\" is not related to the profile; audiences cannot reach it", e.slug),
                    )
                    .with_hint("Add a relationship whose related_entity is this entity."),
                );
            }
        }
    }

    /// The profile's table and primary key column, when both resolve (no reporting).
    fn profile_key_column(&self) -> Option<(&'a Table, &'a Column)> {
        let p = self.graph.profile.as_ref()?;
        let t = self.cat.table(&p.table_ref).filter(|t| t.readable)?;
        Some((t, t.column(&p.primary_key)?))
    }

    fn profile(&mut self) -> Option<&'a Table> {
        let p = self.graph.profile.as_ref()?;
        let t = self.table(&p.table_ref, "$.profile.table_ref")?;
        if self
            .column(t, &p.primary_key, "$.profile.primary_key")
            .is_some()
        {
            self.warn_not_unique(t, &p.primary_key, None, "$.profile.primary_key");
        }
        if let Some(u) = &p.user_id {
            self.column(t, u, "$.profile.user_id");
        }
        if let Some(ids) = &p.identifiers {
            if let Some(it) = self.table(&ids.table_ref, "$.profile.identifiers.table_ref") {
                let key = self.column(it, &ids.profile_key, "$.profile.identifiers.profile_key");
                self.column(it, &ids.type_column, "$.profile.identifiers.type_column");
                self.column(it, &ids.value_column, "$.profile.identifiers.value_column");
                if let (Some(k), Some(pk)) = (key, t.column(&p.primary_key)) {
                    self.check_comparable((it, k), (t, pk), "$.profile.identifiers.profile_key");
                    self.warn_unindexed(
                        it,
                        &ids.profile_key,
                        "$.profile.identifiers.profile_key",
                        "profiles",
                    );
                }
            }
        }
        Some(t)
    }

    fn relationships(&mut self, profile_table: Option<&'a Table>, max_depth: usize) {
        let graph = self.graph;
        let mut seen = HashMap::new();
        // JSON paths of the relationships, in the same depth-first order.
        let mut paths = Vec::new();
        fn collect(rels: &[super::model::Relationship], base: &str, out: &mut Vec<String>) {
            for (i, r) in rels.iter().enumerate() {
                let p = path_index(&path_key(base, "relationships"), i);
                out.push(p.clone());
                collect(&r.relationships, &p, out);
            }
        }
        if let Some(p) = &graph.profile {
            collect(&p.relationships, "$.profile", &mut paths);
        }
        for (placed, path) in graph.relationships().into_iter().zip(paths) {
            self.relationship(&placed, &path, profile_table, max_depth, &mut seen);
            self.colocation(&placed, &path);
        }
    }

    /// On Citus a join between two tables distributed by the profile must equate the
    /// profile key: an entity that carries `profile_key` below a parent entity that does
    /// not (a reference table) cannot be joined co-located, and Citus refuses the
    /// audiences that reach it. Said before a compute fails, as a warning (on one node
    /// it is harmless).
    fn colocation(&mut self, placed: &Placed<'a>, path: &str) {
        let graph = self.graph;
        let (Some(parent), Some(child)) = (
            placed.parent.and_then(|p| graph.entity(&p.related_entity)),
            graph.entity(&placed.rel.related_entity),
        ) else {
            return;
        };
        if child.profile_key.is_some() && parent.profile_key.is_none() {
            self.report.warnings.push(
                Problem::invalid(
                    path,
                    format!(
                        "\"{}\" carries profile_key but its parent \"{}\" does not: on Citus, the join {} -> {} cannot be co-located, and audiences reaching \"{}\" are refused",
                        child.slug, parent.slug, parent.slug, child.slug, placed.rel.slug
                    ),
                )
                .with_hint(format!(
                    "Give \"{}\" the profile key too, make \"{}\" a reference table without profile_key, or keep those audiences on a single node.",
                    parent.slug, child.slug
                )),
            );
        }
    }

    fn relationship(
        &mut self,
        placed: &Placed<'a>,
        path: &str,
        profile_table: Option<&'a Table>,
        max_depth: usize,
        seen: &mut HashMap<String, String>,
    ) {
        let graph = self.graph;
        let rel = placed.rel;
        self.slug(&rel.slug, &path_key(path, "slug"), seen, "relationship");
        if placed.depth > max_depth {
            self.problem(
                Problem::invalid(
                    path,
                    format!(
                        "relationship \"{}\" is at depth {}, deeper than the limit of {max_depth}",
                        rel.slug, placed.depth
                    ),
                )
                .with_hint("Shorten the path, or raise linked_audiences.max_relationship_depth."),
            );
        }
        let entity_path = path_key(path, "related_entity");
        let Some(entity) = graph.entity(&rel.related_entity) else {
            let hint = hint_for(
                &rel.related_entity,
                graph.entities.iter().map(|e| e.slug.as_str()),
                "entities",
            );
            self.problem(
                Problem::invalid(
                    entity_path,
                    format!("entity \"{}\" is not defined", rel.related_entity),
                )
                .with_opt_hint(hint),
            );
            return;
        };
        // An entity that already appears above this relationship would close a cycle.
        let trail = graph.path_to(&rel.slug).unwrap_or_default();
        let above: Vec<&str> = trail[..trail.len().saturating_sub(1)]
            .iter()
            .filter_map(|s| graph.relationship(s).map(|p| p.rel.related_entity.as_str()))
            .collect();
        if above.contains(&rel.related_entity.as_str()) {
            let mut names = vec!["profile".to_string()];
            names.extend(above.iter().map(|s| s.to_string()));
            names.push(rel.related_entity.clone());
            self.problem(
                Problem::invalid(
                    entity_path,
                    format!(
                        "cycle: entity \"{}\" already appears on this path ({})",
                        rel.related_entity,
                        names.join(" -> ")
                    ),
                )
                .with_hint(
                    "A path visits each entity once; relate the entity from a different branch.",
                ),
            );
        }
        let first_level = placed.parent.is_none();
        match (&rel.join, first_level) {
            (Join::Trait { .. } | Join::ExternalId { .. }, true)
            | (Join::JoinOn(_) | Join::Junction(_), false) => {}
            (join, true) => {
                self.problem(
                    Problem::invalid(
                        path_key(path, join.key()),
                        "a first-level relationship joins the profile by \"trait\" or \"external_id\"",
                    )
                    .with_hint("For example: \"trait\": {\"name\": \"household_id\", \"join_key\": \"id\"}."),
                );
                return;
            }
            (join, false) => {
                self.problem(
                    Problem::invalid(
                        path_key(path, join.key()),
                        format!(
                            "only first-level relationships join by \"{}\"; deeper ones use \"join_on\" or \"junction_table\"",
                            join.key()
                        ),
                    )
                    .with_hint("For example: \"join_on\": \"households.id = pets.household_id\"."),
                );
                return;
            }
        }
        let resolved = match resolve(placed) {
            Ok(r) => r,
            Err(e) => {
                let at = e
                    .key
                    .split('.')
                    .fold(path.to_string(), |p, k| path_key(&p, k));
                self.problem(Problem::invalid(at, e.message).with_opt_hint(e.hint));
                return;
            }
        };
        let Some(child) = self.cat.table(&entity.table_ref).filter(|t| t.readable) else {
            return; // reported under $.entities
        };
        let parent_table = match placed.parent {
            None => profile_table,
            Some(p) => graph
                .entity(&p.related_entity)
                .and_then(|e| self.cat.table(&e.table_ref))
                .filter(|t| t.readable),
        };
        let parent_label = placed
            .parent
            .map_or("profiles", |p| p.related_entity.as_str());
        match resolved {
            ResolvedJoin::Direct {
                parent_column,
                child_column,
            } => {
                let (pkey, ckey) = match &rel.join {
                    Join::Trait { .. } => ("trait.name", "trait.join_key"),
                    _ => ("join_on", "join_on"),
                };
                let at = |k: &str| k.split('.').fold(path.to_string(), |p, k| path_key(&p, k));
                let pc = parent_table
                    .and_then(|t| self.column(t, &parent_column, &at(pkey)).map(|c| (t, c)));
                let cc = self.column(child, &child_column, &at(ckey));
                if let (Some(pc), Some(cc)) = (pc, cc) {
                    self.check_comparable(
                        pc,
                        (child, cc),
                        &at(pkey.split('.').next().unwrap_or(pkey)),
                    );
                    self.warn_unindexed(child, &child_column, &at(ckey), parent_label);
                }
            }
            ResolvedJoin::ExternalId { child_column, .. } => {
                let at = path_key(path, "external_id");
                let cc = self.column(child, &child_column, &path_key(&at, "join_key"));
                let Some(ids) = graph.profile.as_ref().and_then(|p| p.identifiers.as_ref()) else {
                    self.problem(
                        Problem::new(
                            Kind::NotInPrerequisiteState,
                            at,
                            "the profile has no identifiers table to match an external_id against",
                        )
                        .with_hint("Add \"identifiers\" to the profile, or call la_register_identifiers first."),
                    );
                    return;
                };
                let value = self
                    .cat
                    .table(&ids.table_ref)
                    .filter(|t| t.readable)
                    .and_then(|t| t.column(&ids.value_column).map(|c| (t, c)));
                if let (Some(v), Some(cc)) = (value, cc) {
                    self.check_comparable(v, (child, cc), &at);
                    self.warn_unindexed(
                        child,
                        &child_column,
                        &path_key(&at, "join_key"),
                        parent_label,
                    );
                }
            }
            ResolvedJoin::Junction {
                table_ref,
                parent_column,
                left_column,
                right_column,
                child_column,
                ..
            } => {
                let at = path_key(path, "junction_table");
                let left = path_key(&at, "left_join_on");
                let right = path_key(&at, "right_join_on");
                let Some(jt) = self.table(&table_ref, &path_key(&at, "table_ref")) else {
                    return;
                };
                if let Join::Junction(Junction {
                    primary_key: Some(pk),
                    ..
                }) = &rel.join
                {
                    self.column(jt, pk, &path_key(&at, "primary_key"));
                }
                if let Join::Junction(Junction {
                    profile_key: Some(pk),
                    ..
                }) = &rel.join
                {
                    let pk_at = path_key(&at, "profile_key");
                    if let Some(c) = self.column(jt, pk, &pk_at) {
                        if let Some((pt, pc)) = self.profile_key_column() {
                            self.check_comparable((jt, c), (pt, pc), &pk_at);
                        }
                    }
                }
                let pc = parent_table
                    .and_then(|t| self.column(t, &parent_column, &left).map(|c| (t, c)));
                let lc = self.column(jt, &left_column, &left);
                let rc = self.column(jt, &right_column, &right);
                let cc = self.column(child, &child_column, &right);
                if let (Some(pc), Some(lc)) = (pc, lc) {
                    self.check_comparable(pc, (jt, lc), &left);
                    self.warn_unindexed(jt, &left_column, &left, parent_label);
                }
                if let (Some(rc), Some(cc)) = (rc, cc) {
                    self.check_comparable((jt, rc), (child, cc), &right);
                    self.warn_unindexed(child, &child_column, &right, &table_ref);
                }
            }
        }
    }

    fn events(&mut self, profile_table: Option<&'a Table>) {
        let Some(ev) = &self.graph.events else { return };
        let Some(t) = self.table(&ev.table_ref, "$.events.table_ref") else {
            return;
        };
        if let Some(c) = self.column(t, &ev.profile_key, "$.events.profile_key") {
            if let Some((pt, pk)) = profile_table.and_then(|pt| {
                let p = self.graph.profile.as_ref()?;
                Some((pt, pt.column(&p.primary_key)?))
            }) {
                self.check_comparable((t, c), (pt, pk), "$.events.profile_key");
            }
            self.warn_unindexed(t, &ev.profile_key, "$.events.profile_key", "profiles");
        }
        if let Some(c) = self.column(t, &ev.name_column, "$.events.name_column") {
            if c.category != 'S' {
                self.problem(
                    Problem::invalid(
                        "$.events.name_column",
                        format!("column \"{}\" is {}, not a text type", c.name, c.type_name),
                    )
                    .with_hint("The event name column holds the event's name as text."),
                );
            }
        }
        if let Some(c) = self.column(t, &ev.timestamp_column, "$.events.timestamp_column") {
            if c.category != 'D' {
                self.problem(
                    Problem::invalid(
                        "$.events.timestamp_column",
                        format!(
                            "column \"{}\" is {}, not a date or timestamp",
                            c.name, c.type_name
                        ),
                    )
                    .with_hint("Name a timestamptz, timestamp or date column."),
                );
            }
        }
        if let Some(pc) = &ev.properties_column {
            if let Some(c) = self.column(t, pc, "$.events.properties_column") {
                if c.type_name != "jsonb" && c.type_name != "json" {
                    self.problem(
                        Problem::invalid(
                            "$.events.properties_column",
                            format!("column \"{}\" is {}, not jsonb", c.name, c.type_name),
                        )
                        .with_hint("Event properties are read from a jsonb (or json) column."),
                    );
                }
            }
        }
    }
}
