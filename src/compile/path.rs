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

    /// The joins of `hops`; `None` when the graph and the catalog snapshot disagree,
    /// which validation rules out.
    ///
    /// Co-location: on each hop where both sides carry a profile key (the profile's
    /// primary key for the profile, `profile_key` for entities and junctions), the keys
    /// are equated too: Citus joins distributed tables only on their distribution
    /// column. Hops to tables without one join as written.
    fn joins(&mut self, slugs: &[String], scope: &[Row<'a>]) -> Option<Chain<'a>> {
        let graph = self.ctx.graph;
        let cat = self.ctx.cat;
        let mut hops: Vec<Hop<'a>> = Vec::new();
        let mut rows: Vec<Row<'a>> = Vec::new();
        let mut tables: Vec<&'a Table> = Vec::new();
        let mut may_repeat = false;
        let mut through = false;
        for (i, slug) in slugs.iter().enumerate() {
            let placed = graph.relationship(slug)?;
            let entity = graph.entity(&placed.rel.related_entity)?;
            let table = cat.table(&entity.table_ref)?;
            tables.push(table);
            let parent = if i == 0 {
                scope.last().cloned()?
            } else {
                rows[i - 1].clone()
            };
            let row = self.row(slug, table, Some(entity));
            let join = resolve(&placed).ok()?;
            // The profile keys of this hop's parent and child rows, when they carry one.
            let parent_key = profile_key(graph, &parent);
            let child_key = entity.profile_key.as_deref().and_then(|k| table.column(k));
            may_repeat |= match &join {
                // Unique on the join column, or on it together with the profile key when
                // the hop equates keys (a primary key unique per profile on Citus).
                ResolvedJoin::Direct { parent_column, .. } => {
                    i > 0
                        && !parent.table.unique_on(&[parent_column.as_str()])
                        && !(child_key.is_some()
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
                        let t = cat.table(&ids.table_ref)?;
                        Some(t.unique_on(&[&ids.profile_key, &ids.type_column, &ids.value_column]))
                    })
                    .unwrap_or(false),
                ResolvedJoin::Junction { .. } => true,
            };
            let mut keys: Vec<KeyEq<'a>> = Vec::new();
            let (join, anchor, outer, keyed_junction) = match join {
                ResolvedJoin::Direct {
                    parent_column,
                    child_column,
                } => {
                    let pc = parent.table.column(&parent_column)?;
                    let cc = table.column(&child_column)?;
                    if i == 1 {
                        let (pa, rk) = match &hops[0].join {
                            HopJoin::Direct { parent, child } => (Some(*parent), Some(*child)),
                            _ => (None, None),
                        };
                        through = match (pa, rk) {
                            (Some(pa), Some(rk)) => {
                                rk.name == parent_column
                                    && passes_through(
                                        scope.last().map(|r| r.table).unwrap_or(parent.table),
                                        &pa.name,
                                        parent.table,
                                        &rk.name,
                                        table,
                                        &child_column,
                                    )
                            }
                            _ => false,
                        };
                    }
                    (
                        HopJoin::Direct {
                            parent: pc,
                            child: cc,
                        },
                        (Side::Child, cc),
                        (Side::Parent, pc),
                        false,
                    )
                }
                ResolvedJoin::ExternalId {
                    id_type,
                    child_column,
                } => {
                    let profile = graph.profile.as_ref()?;
                    let ids = profile.identifiers.as_ref()?;
                    let it = cat.table(&ids.table_ref)?;
                    tables.push(it);
                    let key = it.column(&ids.profile_key)?;
                    let profile_pk = parent.table.column(&profile.primary_key)?;
                    (
                        HopJoin::ExternalId {
                            ids: it,
                            key,
                            type_column: it.column(&ids.type_column)?,
                            value_column: it.column(&ids.value_column)?,
                            id_type,
                            child: table.column(&child_column)?,
                            profile_pk,
                        },
                        (Side::Junction, key),
                        (Side::Parent, profile_pk),
                        false,
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
                    // The junction's own profile key: equated with each side that has one.
                    let jk = junction_key.as_deref().and_then(|k| jt.column(k));
                    let mut inner = None;
                    if let Some(jk) = jk {
                        if let Some(ck) = child_key {
                            if (ck.quoted.as_str(), jk.quoted.as_str())
                                != (cc.quoted.as_str(), rc.quoted.as_str())
                            {
                                inner = Some((ck, jk));
                            }
                        }
                        if let Some(ppk) = parent_key {
                            keys.push(KeyEq {
                                left: (Side::Junction, jk),
                                right: (Side::Parent, ppk),
                            });
                        }
                    }
                    (
                        HopJoin::Junction {
                            table: jt,
                            parent: pc,
                            left: lc,
                            right: rc,
                            child: cc,
                            inner,
                        },
                        (Side::Junction, lc),
                        (Side::Parent, pc),
                        jk.is_some(),
                    )
                }
            };
            // The child's key equals the parent's, unless a junction with a key of its
            // own carries the equality across (junction = parent, child = junction).
            if !keyed_junction {
                if let (Some(ck), Some(ppk)) = (child_key, parent_key) {
                    keys.push(KeyEq {
                        left: (Side::Child, ck),
                        right: (Side::Parent, ppk),
                    });
                }
            }
            // A join on the profile key itself needs no second equality.
            keys.retain(|k| {
                !(k.left.0 == anchor.0
                    && k.left.1.quoted == anchor.1.quoted
                    && k.right.0 == outer.0
                    && k.right.1.quoted == outer.1.quoted)
            });
            hops.push(Hop {
                row: row.id,
                parent: parent.id,
                table,
                join,
                keys,
            });
            rows.push(row);
        }
        // The first row may go when nothing but the two joins refers to it: no key
        // equality of either hop, no reference (checked by the optimizer).
        let droppable = through && hops.len() > 1 && hops[0].keys.is_empty() && hops[1].keys.is_empty();
        Some(Chain {
            hops,
            rows,
            may_repeat,
            droppable,
            tables,
        })
    }
}
