//! Planning relationship paths: which relationships a node implies (`hops`), and how
//! their rows join from the scope row (`chain`): the catalog's columns of each hop, the
//! profile keys equated on it, and whether its first row is a pass-through a foreign key
//! lets the optimizer leave out.

use super::plan::*;
use super::*;

/// The planned path from a row in scope down to a relationship's rows.
pub(super) struct Chain<'a> {
    pub(super) hops: Vec<Hop<'a>>,
    pub(super) rows: Vec<Row<'a>>,
    /// Whether one target row can be reached more than once from one scope row
    /// (a junction, an external id, or a join on a parent column that is not unique):
    /// counts must then be of distinct rows.
    pub(super) may_repeat: bool,
    /// The first row passes through (see `passes_through`) and no key equality of the
    /// first two hops needs it.
    pub(super) droppable: bool,
    /// Every table the path joins (entities, junctions, identifiers), even those an
    /// optimization leaves out.
    pub(super) tables: Vec<&'a Table>,
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
pub(super) fn profile_key<'a>(graph: &DataGraph, row: &Row<'a>) -> Option<&'a Column> {
    let name = match row.entity {
        Some(e) => e.profile_key.as_deref()?,
        None => &graph.profile.as_ref()?.primary_key,
    };
    row.table.column(name)
}

impl<'a> Planner<'a> {
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

    /// Plans the joins for `hops` starting at the scope row (for the node at `at`).
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

    /// The joins of `slugs` below the scope row; `None` when the graph and the catalog
    /// snapshot disagree, which validation rules out.
    fn joins(&mut self, slugs: &[String], scope: &[Row<'a>]) -> Option<Chain<'a>> {
        let mut chain = Chain {
            hops: Vec::new(),
            rows: Vec::new(),
            may_repeat: false,
            droppable: false,
            tables: Vec::new(),
        };
        for slug in slugs {
            let parent = chain.rows.last().or(scope.last())?.clone();
            let nested = !chain.rows.is_empty();
            let (hop, row, repeats) = self.hop(slug, &parent, nested, &mut chain.tables)?;
            chain.may_repeat |= repeats;
            chain.hops.push(hop);
            chain.rows.push(row);
        }
        chain.droppable = first_row_passes_through(&chain.hops, scope.last()?);
        Some(chain)
    }

    /// One hop down to `slug`'s rows from `parent` (`nested`: not the scope row), the
    /// tables it joins added to `tables`; with whether a row can be reached more than
    /// once from one parent row.
    fn hop(
        &mut self,
        slug: &str,
        parent: &Row<'a>,
        nested: bool,
        tables: &mut Vec<&'a Table>,
    ) -> Option<(Hop<'a>, Row<'a>, bool)> {
        let graph = self.ctx.graph;
        let placed = graph.relationship(slug)?;
        let entity = graph.entity(&placed.rel.related_entity)?;
        let table = self.ctx.cat.table(&entity.table_ref)?;
        tables.push(table);
        let row = self.row(slug, table, Some(entity));
        let join = resolve(&placed).ok()?;
        // The profile keys of this hop's parent and child rows, when they carry one.
        let parent_key = profile_key(graph, parent);
        let child_key = entity.profile_key.as_deref().and_then(|k| table.column(k));
        let repeats = self.repeats(&join, parent, nested, child_key.is_some(), parent_key);
        let (join, anchor, outer, junction_key) =
            self.hop_join(join, parent, table, child_key, tables)?;
        let keys = hop_keys(anchor, outer, junction_key, child_key, parent_key);
        let hop = Hop {
            row: row.id,
            parent: parent.id,
            table,
            join,
            keys,
        };
        Some((hop, row, repeats))
    }

    /// Whether one row of a hop's table can be reached more than once from one parent
    /// row.
    fn repeats(
        &self,
        join: &ResolvedJoin,
        parent: &Row<'a>,
        nested: bool,
        child_keyed: bool,
        parent_key: Option<&Column>,
    ) -> bool {
        let graph = self.ctx.graph;
        match join {
            // Unique on the join column, or on it together with the profile key when the
            // hop equates keys (a primary key unique per profile on Citus).
            ResolvedJoin::Direct { parent_column, .. } => {
                nested
                    && !parent.table.unique_on(&[parent_column.as_str()])
                    && !(child_keyed
                        && parent_key.is_some_and(|k| {
                            parent.table.unique_on(&[parent_column.as_str(), &k.name])
                        }))
            }
            // One identifier row per (profile, type, value) reaches each row once.
            ResolvedJoin::ExternalId { .. } => !graph
                .profile
                .as_ref()
                .and_then(|p| p.identifiers.as_ref())
                .and_then(|ids| {
                    let t = self.ctx.cat.table(&ids.table_ref)?;
                    Some(t.unique_on(&[&ids.profile_key, &ids.type_column, &ids.value_column]))
                })
                .unwrap_or(false),
            ResolvedJoin::Junction { .. } => true,
        }
    }

    /// A hop's join in catalog columns, with the columns it joins on (`anchor` on the
    /// hop's side, `outer` on the parent) and a junction's own profile key.
    #[allow(clippy::type_complexity)]
    fn hop_join(
        &self,
        join: ResolvedJoin,
        parent: &Row<'a>,
        table: &'a Table,
        child_key: Option<&'a Column>,
        tables: &mut Vec<&'a Table>,
    ) -> Option<(
        HopJoin<'a>,
        (Side, &'a Column),
        (Side, &'a Column),
        Option<&'a Column>,
    )> {
        let cat = self.ctx.cat;
        Some(match join {
            ResolvedJoin::Direct {
                parent_column,
                child_column,
            } => {
                let pc = parent.table.column(&parent_column)?;
                let cc = table.column(&child_column)?;
                let join = HopJoin::Direct {
                    parent: pc,
                    child: cc,
                };
                (join, (Side::Child, cc), (Side::Parent, pc), None)
            }
            ResolvedJoin::ExternalId {
                id_type,
                child_column,
            } => {
                let profile = self.ctx.graph.profile.as_ref()?;
                let ids = profile.identifiers.as_ref()?;
                let it = cat.table(&ids.table_ref)?;
                tables.push(it);
                let key = it.column(&ids.profile_key)?;
                let profile_pk = parent.table.column(&profile.primary_key)?;
                let join = HopJoin::ExternalId {
                    ids: it,
                    key,
                    type_column: it.column(&ids.type_column)?,
                    value_column: it.column(&ids.value_column)?,
                    id_type,
                    child: table.column(&child_column)?,
                    profile_pk,
                };
                (
                    join,
                    (Side::Junction, key),
                    (Side::Parent, profile_pk),
                    None,
                )
            }
            ResolvedJoin::Junction {
                table_ref,
                parent_column,
                left_column,
                right_column,
                child_column,
                profile_key: junction_key,
            } => {
                let jt = cat.table(&table_ref)?;
                tables.push(jt);
                let pc = parent.table.column(&parent_column)?;
                let lc = jt.column(&left_column)?;
                let rc = jt.column(&right_column)?;
                let cc = table.column(&child_column)?;
                // The junction's own profile key, equated with the child's (unless that is
                // the join itself) and the parent's.
                let jk = junction_key.as_deref().and_then(|k| jt.column(k));
                let inner = jk.zip(child_key).and_then(|(jk, ck)| {
                    let same = ck.quoted == cc.quoted && jk.quoted == rc.quoted;
                    (!same).then_some((ck, jk))
                });
                let join = HopJoin::Junction {
                    table: jt,
                    parent: pc,
                    left: lc,
                    right: rc,
                    child: cc,
                    inner,
                };
                (join, (Side::Junction, lc), (Side::Parent, pc), jk)
            }
        })
    }
}

/// Co-location: on each hop where both sides carry a profile key (the profile's primary
/// key for the profile, `profile_key` for entities and junctions), the keys are equated
/// too: Citus joins distributed tables only on their distribution column. A junction
/// with a key of its own carries the equality across (junction = parent, child =
/// junction); a join on the profile key itself needs no second equality.
fn hop_keys<'a>(
    anchor: (Side, &'a Column),
    outer: (Side, &'a Column),
    junction_key: Option<&'a Column>,
    child_key: Option<&'a Column>,
    parent_key: Option<&'a Column>,
) -> Vec<KeyEq<'a>> {
    let key = match (junction_key, child_key, parent_key) {
        (Some(jk), _, Some(ppk)) => Some(((Side::Junction, jk), (Side::Parent, ppk))),
        (None, Some(ck), Some(ppk)) => Some(((Side::Child, ck), (Side::Parent, ppk))),
        _ => None,
    };
    let same = |a: (Side, &Column), b: (Side, &Column)| a.0 == b.0 && a.1.quoted == b.1.quoted;
    key.filter(|(l, r)| !(same(*l, anchor) && same(*r, outer)))
        .map(|(left, right)| KeyEq { left, right })
        .into_iter()
        .collect()
}

/// Whether the first row of a path may be left out: the first two hops join directly
/// on the same key of that row, a foreign key makes it a pass-through (see
/// `passes_through`), and neither hop equates profile keys with it.
fn first_row_passes_through(hops: &[Hop<'_>], scope: &Row<'_>) -> bool {
    let [first, second, ..] = hops else {
        return false;
    };
    let (
        HopJoin::Direct {
            parent: pa,
            child: rk,
        },
        HopJoin::Direct {
            parent: pc,
            child: cc,
        },
    ) = (&first.join, &second.join)
    else {
        return false;
    };
    first.keys.is_empty()
        && second.keys.is_empty()
        && rk.name == pc.name
        && passes_through(
            scope.table,
            &pa.name,
            first.table,
            &rk.name,
            second.table,
            &cc.name,
        )
}
