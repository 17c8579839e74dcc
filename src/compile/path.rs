//! Relationship paths: which relationships a node implies (`hops`), and how their rows
//! join from the scope row (`chain`), with the pass-through row a foreign key lets us
//! leave out.

use super::*;

/// A row in scope: the profile, or a related row.
#[derive(Clone)]
pub(super) struct Row<'a> {
    /// "profile", or the relationship slug.
    pub(super) slug: String,
    pub(super) alias: String,
    pub(super) table: &'a Table,
    pub(super) entity: Option<&'a Entity>,
}

impl Row<'_> {
    pub(super) fn what(&self) -> String {
        match self.entity {
            Some(e) => format!("entity \"{}\"", e.slug),
            None => "the profile".to_string(),
        }
    }
}

/// A path of joins from a row in scope down to a relationship's rows.
pub(super) struct Chain<'a> {
    pub(super) from: String,
    /// Join conditions that are not in `from`'s ON clauses.
    pub(super) conds: Vec<String>,
    /// The expression inside the subquery that equals `outer`.
    pub(super) anchor: String,
    /// The expression on the scope row.
    pub(super) outer: String,
    pub(super) rows: Vec<Row<'a>>,
    /// Whether one target row can be reached more than once from one anchor value
    /// (a junction, an external id, or a join on a parent column that is not unique):
    /// counts must then be of distinct rows.
    pub(super) may_repeat: bool,
    /// The same path without its first row, when a foreign key makes that row a pure
    /// pass-through (see `passes_through`): usable when nothing refers to `dropped`.
    pub(super) short: Option<Short>,
    /// Every table the path joins (entities, junctions, identifiers), even those an
    /// optimization leaves out.
    pub(super) tables: Vec<&'a Table>,
}

/// A chain's `from` and `anchor` with its first row left out.
pub(super) struct Short {
    pub(super) from: String,
    pub(super) anchor: String,
    pub(super) dropped: String,
}

/// Whether a row R joined as `P.pa = R.rk` and joined on as `C.cb = R.rk` (the same key)
/// can be left out, `C.cb = P.pa` standing for both joins, without changing any result:
/// a validated foreign key (C.cb or P.pa referencing R.rk, which is then unique) makes
/// R's row exist whenever the direct comparison holds, and R.rk being unique keeps
/// repetitions as they were. The three columns have the same type (or are all
/// integers), so comparing them directly means what comparing through R did. Only when
/// the caller may read R and R has no row-level security: a policy could hide R's row,
/// and a role without SELECT on R must not compute over it.
pub(super) fn passes_through(
    p: &Table,
    pa: &str,
    r: &Table,
    rk: &str,
    c: &Table,
    cb: &str,
) -> bool {
    let (Some(a), Some(k), Some(b)) = (p.column(pa), r.column(rk), c.column(cb)) else {
        return false;
    };
    alike(a, k)
        && alike(k, b)
        && r.readable
        && !r.row_security
        && r.unique_on(&[rk])
        && (c.references(cb, r, rk) || p.references(pa, r, rk))
}

/// Whether two columns' values compare and print alike: one type, or both integers
/// (int2, int4, int8).
pub(super) fn alike(a: &Column, b: &Column) -> bool {
    const INTEGERS: [u32; 3] = [20, 21, 23];
    a.type_oid == b.type_oid || (INTEGERS.contains(&a.type_oid) && INTEGERS.contains(&b.type_oid))
}

/// The profile key column a row carries: its entity's `profile_key`, or the profile's
/// primary key for the profile; `None` when it has none (a reference table).
pub(super) fn profile_key_name(graph: &DataGraph, row: &Row<'_>) -> Option<String> {
    let name = match row.entity {
        Some(e) => e.profile_key.as_deref()?,
        None => &graph.profile.as_ref()?.primary_key,
    };
    row.table.column(name).map(|_| name.to_string())
}

impl<'a> Compiler<'a> {
    /// The relationship rows below the scope row down to `slug`.
    pub(super) fn hops(
        &mut self,
        slug: &str,
        at: &str,
        scope: &[Row<'a>],
    ) -> Result<Vec<String>, Recorded> {
        let graph = self.ctx.graph;
        let current = scope.last().expect("scope has the profile");
        let Some(full) = graph.path_to(slug) else {
            let all: Vec<String> = graph
                .relationships()
                .iter()
                .map(|p| p.rel.slug.clone())
                .collect();
            let hint = hint_for(slug, all.iter().map(String::as_str), "relationships");
            return Err(self.problem(
                Problem::invalid(at, format!("relationship \"{slug}\" does not exist"))
                    .with_opt_hint(hint),
            ));
        };
        let base = if current.entity.is_none() {
            Vec::new()
        } else {
            let path = graph.path_to(&current.slug);
            self.found(path, at, "the enclosing relationship's path")?
        };
        if full.len() <= base.len() || full[..base.len()] != base[..] {
            let below: Vec<String> = graph
                .relationships()
                .iter()
                .filter(|p| {
                    graph
                        .path_to(&p.rel.slug)
                        .is_some_and(|t| t.len() > base.len() && t[..base.len()] == base[..])
                })
                .map(|p| p.rel.slug.clone())
                .collect();
            let hint = if below.is_empty() {
                format!("Nothing is related below \"{}\".", current.slug)
            } else {
                format!(
                    "Relationships below \"{}\": {}.",
                    current.slug,
                    below.join(", ")
                )
            };
            return Err(self.problem(
                Problem::invalid(
                    at,
                    format!("relationship \"{slug}\" is not below \"{}\"", current.slug),
                )
                .with_hint(hint),
            ));
        }
        Ok(full[base.len()..].to_vec())
    }

    /// Builds the joins for `hops` starting at the scope row (for the node at `at`).
    pub(super) fn chain(
        &mut self,
        hops: &[String],
        scope: &[Row<'a>],
        at: &str,
    ) -> Result<Chain<'a>, Recorded> {
        let chain = self.joins(hops, scope);
        self.found(
            chain,
            at,
            "a table, column or join of this relationship's path",
        )
    }

    /// The joins of `chain`; `None` when the graph and the catalog snapshot disagree,
    /// which validation rules out.
    fn joins(&mut self, hops: &[String], scope: &[Row<'a>]) -> Option<Chain<'a>> {
        let graph = self.ctx.graph;
        let cat = self.ctx.cat;
        let mut from = String::new();
        let mut conds = Vec::new();
        let mut rows: Vec<Row<'a>> = Vec::new();
        let mut tables: Vec<&'a Table> = Vec::new();
        let (mut anchor, mut outer) = (String::new(), String::new());
        let mut may_repeat = false;
        let mut short: Option<Short> = None;
        // The first hop's join columns, when it is a direct join: (parent's, its own).
        let mut first_direct: Option<(String, String)> = None;
        // Co-location: on each hop where both sides carry a profile key (the profile's
        // primary key for the profile, `profile_key` for entities and junctions), the
        // keys are equated too: Citus joins distributed tables only on their
        // distribution column. Hops to tables without one join as written.
        for (i, slug) in hops.iter().enumerate() {
            let placed = graph.relationship(slug)?;
            let entity = graph.entity(&placed.rel.related_entity)?;
            let table = cat.table(&entity.table_ref)?;
            tables.push(table);
            let alias = self.alias("r");
            let parent = if i == 0 {
                scope.last().cloned()?
            } else {
                rows[i - 1].clone()
            };
            let join = resolve(&placed).ok()?;
            let col = |t: &Table, name: &str| t.column(name).map(|c| c.quoted.clone());
            let mut on: Vec<String> = Vec::new();
            let mut piece = String::new();
            // The profile keys of this hop's parent and child rows, when they carry one.
            let parent_key = profile_key_name(graph, &parent);
            let child_key = entity
                .profile_key
                .as_deref()
                .filter(|k| table.column(k).is_some());
            may_repeat |= match &join {
                // Unique on the join column, or on it together with the profile key when
                // the hop equates keys (a primary key unique per profile on Citus).
                ResolvedJoin::Direct { parent_column, .. } => {
                    i > 0
                        && !parent.table.unique_on(&[parent_column.as_str()])
                        && !(child_key.is_some()
                            && parent_key.as_deref().is_some_and(|k| {
                                parent.table.unique_on(&[parent_column.as_str(), k])
                            }))
                }
                // One identifier row per (profile, type, value) reaches each row once.
                ResolvedJoin::ExternalId { .. } => !graph
                    .profile
                    .as_ref()
                    .and_then(|p| p.identifiers.as_ref())
                    .and_then(|ids| {
                        let t = cat.table(&ids.table_ref)?;
                        Some(t.unique_on(&[&ids.profile_key, &ids.type_column, &ids.value_column]))
                    })
                    .unwrap_or(false),
                ResolvedJoin::Junction { .. } => true,
            };
            let mut through: Option<bool> = None;
            let mut keyed_junction = false;
            let (a, o) = match join {
                ResolvedJoin::Direct {
                    parent_column,
                    child_column,
                } => {
                    let pc = col(parent.table, &parent_column)?;
                    let cc = col(table, &child_column)?;
                    piece.push_str(&format!("{} {alias}", table.quoted));
                    if i == 0 {
                        first_direct = Some((parent_column.clone(), child_column.clone()));
                    } else if i == 1 {
                        through = Some(first_direct.as_ref().is_some_and(|(pa, rk)| {
                            *rk == parent_column
                                && passes_through(
                                    scope.last().map(|r| r.table).unwrap_or(parent.table),
                                    pa,
                                    parent.table,
                                    rk,
                                    table,
                                    &child_column,
                                )
                        }));
                    }
                    (format!("{alias}.{cc}"), format!("{}.{pc}", parent.alias))
                }
                ResolvedJoin::ExternalId {
                    id_type,
                    child_column,
                } => {
                    let profile = graph.profile.as_ref()?;
                    let ids = profile.identifiers.as_ref()?;
                    let it = cat.table(&ids.table_ref)?;
                    tables.push(it);
                    let ia = self.alias("i");
                    let cc = col(table, &child_column)?;
                    let key = col(it, &ids.profile_key)?;
                    let ty_col = it.column(&ids.type_column)?;
                    let (ty, eq) = (ty_col.quoted.clone(), ty_col.op("="));
                    let val = col(it, &ids.value_column)?;
                    let p = self.column_value(&id_type, ty_col);
                    piece.push_str(&format!(
                        "{it} {ia} JOIN {t} {alias} ON {alias}.{cc} = {ia}.{val} AND {ia}.{ty} {eq} {p}",
                        it = it.quoted,
                        t = table.quoted
                    ));
                    let ppk = col(parent.table, &profile.primary_key)?;
                    (format!("{ia}.{key}"), format!("{}.{ppk}", parent.alias))
                }
                ResolvedJoin::Junction {
                    table_ref,
                    parent_column,
                    left_column,
                    right_column,
                    child_column,
                    profile_key,
                } => {
                    let jt = cat.table(&table_ref)?;
                    tables.push(jt);
                    let ja = self.alias("j");
                    let pc = col(parent.table, &parent_column)?;
                    let lc = col(jt, &left_column)?;
                    let rc = col(jt, &right_column)?;
                    let cc = col(table, &child_column)?;
                    // The junction's own profile key: equated with each side that has one.
                    let jk = profile_key.as_deref().and_then(|k| col(jt, k));
                    let mut inner = format!("{alias}.{cc} = {ja}.{rc}");
                    if let Some(jk) = &jk {
                        if let Some(ck) = child_key.and_then(|k| col(table, k)) {
                            if (&ck, jk) != (&cc, &rc) {
                                inner.push_str(&format!(" AND {alias}.{ck} = {ja}.{jk}"));
                            }
                        }
                        if let Some(ppk) = parent_key.as_deref().and_then(|k| col(parent.table, k))
                        {
                            on.push(format!("{ja}.{jk} = {}.{ppk}", parent.alias));
                        }
                    }
                    piece.push_str(&format!(
                        "{} {ja} JOIN {} {alias} ON {inner}",
                        jt.quoted, table.quoted
                    ));
                    keyed_junction = jk.is_some();
                    (format!("{ja}.{lc}"), format!("{}.{pc}", parent.alias))
                }
            };
            // The child's key equals the parent's, unless a junction with a key of its
            // own carries the equality across (junction = parent, child = junction).
            if !keyed_junction {
                if let (Some(ck), Some(ppk)) = (
                    child_key.and_then(|k| col(table, k)),
                    parent_key.as_deref().and_then(|k| col(parent.table, k)),
                ) {
                    on.push(format!("{alias}.{ck} = {}.{ppk}", parent.alias));
                }
            }
            // A join on the profile key itself needs no second equality.
            on.retain(|c| *c != format!("{a} = {o}"));
            if i == 0 {
                from = piece;
                anchor = a;
                outer = o;
                conds.extend(on);
            } else {
                // Not when this hop equates profile keys with the row left out.
                // The first row may go when nothing but the two joins refers to it: no
                // condition of its hop (`conds`), no reference (checked by the caller).
                if through == Some(true) && on.is_empty() && conds.is_empty() {
                    short = Some(Short {
                        from: piece.clone(),
                        anchor: a.clone(),
                        dropped: rows[0].alias.clone(),
                    });
                } else if let Some(s) = short.as_mut() {
                    let mut on = on.clone();
                    on.insert(0, format!("{a} = {o}"));
                    s.from
                        .push_str(&format!(" JOIN {piece} ON {}", on.join(" AND ")));
                }
                on.insert(0, format!("{a} = {o}"));
                from.push_str(&format!(" JOIN {piece} ON {}", on.join(" AND ")));
            }
            rows.push(Row {
                slug: slug.clone(),
                alias,
                table,
                entity: Some(entity),
            });
        }
        Some(Chain {
            from,
            conds,
            anchor,
            outer,
            rows,
            may_repeat,
            short,
            tables,
        })
    }
}
