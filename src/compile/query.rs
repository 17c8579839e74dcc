//! The compiled query: SQL text whose every value is a typed `$n`, its parameters, and
//! what compute, preview, activation and explanations read from it.

use super::*;

/// The profile table as SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSql {
    pub table: String,
    /// Quoted primary key column.
    pub pk: String,
    /// The primary key's type, to cast text ids back for index lookups.
    pub pk_type: String,
    /// Quoted column sent as userId.
    pub user_id: String,
    /// A primary key or unique index is on the key alone. When not (a view, a table
    /// without constraints), members are the distinct non-null keys.
    pub unique: bool,
}

impl ProfileSql {
    /// `DISTINCT ` when keys may repeat.
    fn distinct(&self) -> &'static str {
        if self.unique {
            ""
        } else {
            "DISTINCT "
        }
    }

    /// `p.key IS NOT NULL AND ` when keys may be missing (a profile without a key is no
    /// member).
    fn keyed(&self) -> String {
        if self.unique {
            String::new()
        } else {
            format!("p.{} IS NOT NULL AND ", self.pk)
        }
    }
}

/// How to select the rows of one relationship that satisfy a node, per profile: `FROM
/// {from} WHERE {correlation} AND {conds}`, where `correlation` refers to the profile
/// row as `p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySelect {
    pub relationship: String,
    pub entity: String,
    pub from: String,
    pub correlation: String,
    pub conds: Vec<String>,
    pub target_alias: String,
    /// Quoted primary key column of the entity.
    pub target_pk: String,
}

impl EntitySelect {
    /// `WHERE` body: the correlation to `p` and the conditions.
    pub fn where_sql(&self) -> String {
        let mut all = vec![self.correlation.clone()];
        all.extend(self.conds.iter().cloned());
        all.join(" AND ")
    }

    /// The row's primary key as text.
    pub fn key_text(&self) -> String {
        format!("{}.{}::pg_catalog.text", self.target_alias, self.target_pk)
    }

    /// `SELECT columns` of the rows, per profile row `p` (a correlated subquery).
    pub fn select(&self, columns: &str) -> String {
        format!(
            "SELECT {columns} FROM {} WHERE {}",
            self.from,
            self.where_sql()
        )
    }

    /// `SELECT columns` of the rows reached from the profile rows `p` that satisfy
    /// `cond` (SQL over `p` and the rows).
    pub fn reached(&self, profile: &ProfileSql, columns: &str, cond: &str) -> String {
        format!(
            "SELECT {columns} FROM {} p, {} WHERE {} AND {cond}",
            profile.table,
            self.from,
            self.where_sql()
        )
    }
}

/// One node of the definition as compiled (not those inside referenced audiences),
/// for explanations (`la_explain_profile`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSql {
    pub path: String,
    /// The node's condition, over the profile row `p` and, for a node nested under a
    /// relationship node, over that node's row (`scope`'s `candidates.target_alias`).
    pub condition: String,
    /// The path of the enclosing relationship node, for a nested node.
    pub scope: Option<String>,
    /// Relationship node: its rows that pass `where` and the nested conditions. Event
    /// node: the matching events (`target_pk` is the timestamp column).
    pub rows: Option<EntitySelect>,
    /// Relationship node: its rows that pass `where` (those nested nodes are evaluated
    /// for).
    pub candidates: Option<EntitySelect>,
}

/// A compiled audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub profile: ProfileSql,
    /// Boolean SQL over the profile row `p`.
    pub condition: String,
    pub params: Params,
    /// Audience keys referenced directly.
    pub depends_on: Vec<String>,
    /// Relationship slugs the definition names.
    pub relationships: Vec<String>,
    pub entity_selects: Vec<EntitySelect>,
    pub literal_checks: Vec<LiteralCheck>,
    /// The members read straight from the events table, when that is the same set
    /// without joining the profiles (see `Compiler::event`).
    pub direct: Option<String>,
    /// Every node of the definition, in the order compiled.
    pub nodes: Vec<NodeSql>,
    /// Every table the audience reads (quoted), including those left out of the SQL.
    pub tables: Vec<String>,
    /// A condition compares with `now()` (`within_last`, `not_within_last`, an event
    /// window `last`): membership changes with the clock, not only with writes.
    pub uses_now: bool,
    /// Those comparisons: whose rows change sides as time passes.
    pub clock: Vec<ClockWindow>,
}

/// A comparison of a timestamp column with `now()` minus an interval: between two
/// computes at `then` and `now`, exactly the rows with a timestamp in
/// `[then - interval, now - interval)` changed sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockWindow {
    /// The table (quoted), the timestamp column (quoted), and the interval as written.
    pub table: String,
    pub column: String,
    pub interval: String,
}

impl Compiled {
    /// The relationships whose rows the audience matches (those of its entity selects,
    /// not of referenced audiences), in the order first met: what activations may
    /// select and track.
    pub fn entity_relationships(&self) -> Vec<String> {
        self.entity_selects.iter().fold(Vec::new(), |mut v, s| {
            if !v.contains(&s.relationship) {
                v.push(s.relationship.clone());
            }
            v
        })
    }

    /// The members: one row per profile, `profile_id` as text.
    pub fn members_sql(&self) -> String {
        if let Some(d) = &self.direct {
            return d.clone();
        }
        format!(
            "SELECT {d}p.{pk}::pg_catalog.text AS profile_id\nFROM {t} p\nWHERE {k}{c}",
            d = self.profile.distinct(),
            k = self.profile.keyed(),
            pk = self.profile.pk,
            t = self.profile.table,
            c = self.condition
        )
    }

    /// The members among the profiles whose ids (as text) are in `ids` (a relation with a
    /// `profile_id` column): an incremental compute evaluates only those.
    pub fn members_among_sql(&self, ids: &str) -> String {
        format!(
            "SELECT {d}p.{pk}::pg_catalog.text AS profile_id\nFROM {t} p\nWHERE p.{pk} IN (SELECT d.profile_id::{ty} FROM {ids} d) AND {c}",
            d = self.profile.distinct(),
            pk = self.profile.pk,
            ty = self.profile.pk_type,
            t = self.profile.table,
            c = self.condition
        )
    }

    /// Up to `limit` members with their traits and up to ten matched entities per
    /// relationship, as one jsonb array; its values are added to `params` (a copy of
    /// the compiled ones).
    pub fn sample_sql(&self, params: &mut Params, limit: i64) -> String {
        let limit = params.typed(limit.to_string(), "pg_catalog.int8");
        let mut by_slug: Vec<(&str, Vec<&EntitySelect>)> = Vec::new();
        for s in &self.entity_selects {
            match by_slug.iter_mut().find(|(k, _)| *k == s.relationship) {
                Some((_, v)) => v.push(s),
                None => by_slug.push((&s.relationship, vec![s])),
            }
        }
        let entities: Vec<String> = by_slug
            .iter()
            .map(|(slug, selects)| {
                let parts: Vec<String> = selects
                    .iter()
                    .map(|s| {
                        // By the key as its type orders (as explanations list them).
                        s.select(&format!(
                            "{a}.{k} AS k, pg_catalog.to_jsonb({a}) AS r",
                            a = s.target_alias,
                            k = s.target_pk
                        ))
                    })
                    .collect();
                format!(
                    "pg_catalog.jsonb_build_object({}, (SELECT coalesce(pg_catalog.jsonb_agg(x.r ORDER BY x.k), '[]') FROM (SELECT DISTINCT ON (u.k) u.k, u.r FROM ({}) u ORDER BY u.k LIMIT 10) x))",
                    params.typed(*slug, "pg_catalog.text"),
                    parts.join(" UNION ALL ")
                )
            })
            .collect();
        let entities = if entities.is_empty() {
            "'{}'::pg_catalog.jsonb".to_string()
        } else {
            entities.join(" || ")
        };
        format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(s.row ORDER BY s.ord), '[]') FROM (\
             SELECT {d}p.{pk} AS ord, pg_catalog.jsonb_build_object('profile_id', p.{pk}::pg_catalog.text, \
             'user_id', p.{uid}::pg_catalog.text, 'traits', pg_catalog.to_jsonb(p), 'entities', {entities}) AS row \
             FROM {t} p WHERE {k}{c} ORDER BY p.{pk} LIMIT {limit}) s",
            d = if self.profile.unique { String::new() } else { format!("DISTINCT ON (p.{}) ", self.profile.pk) },
            k = self.profile.keyed(),
            pk = self.profile.pk,
            uid = self.profile.user_id,
            t = self.profile.table,
            c = self.condition
        )
    }

    pub fn count_sql(&self) -> String {
        if let Some(d) = &self.direct {
            return format!("SELECT pg_catalog.count(*) FROM ({d}) d");
        }
        if !self.profile.unique {
            return format!(
                "SELECT pg_catalog.count(DISTINCT p.{}) FROM {} p WHERE {}",
                self.profile.pk, self.profile.table, self.condition
            );
        }
        format!(
            "SELECT pg_catalog.count(*) FROM {} p WHERE {}",
            self.profile.table, self.condition
        )
    }
}
