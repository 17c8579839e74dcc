//! A snapshot of the Postgres catalog for the tables a graph names. It is a plain
//! value, read once through SPI (`crate::graph::spi`), so validation and compilation
//! stay pure and testable without a database.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Column {
    pub name: String,
    /// `quote_ident(name)`, as Postgres quotes it.
    pub quoted: String,
    /// `format_type(atttypid, atttypmod)`.
    pub type_name: String,
    /// The type without its modifier (`numeric`, not `numeric(12,2)`): what values
    /// are cast to, so a literal is never rounded to the column's scale.
    pub base_type: String,
    pub type_oid: u32,
    /// `pg_type.typcategory` of the column's type (domains: of their base type).
    pub category: char,
    /// The type a value compared with this column is cast to: a domain's base type (its
    /// CHECK must not reject a comparison value), without a modifier, and where "no
    /// modifier" would mean a length of one, the unlimited type (`pg_catalog.bpchar`,
    /// since `'abc'::character` is `'a'`). Qualified where the type lives outside
    /// pg_catalog (`public.citext`). Empty in hand-made snapshots: `base_type` then.
    #[serde(default)]
    pub param_type: String,
    /// The comparison operators of `param_type` that live outside pg_catalog (an
    /// extension type's, such as citext's case-insensitive `=`), by name, written
    /// `OPERATOR(schema.op)`; and its own `min()` and `max()` aggregates, written
    /// `schema.name`. Every function pins `search_path = pg_catalog, pg_temp`,
    /// where an unqualified `=` would not find them and Postgres would silently compare
    /// as text instead.
    #[serde(default)]
    pub operators: BTreeMap<String, String>,
}

impl Column {
    /// The type a comparison value is cast to (see `param_type`).
    pub fn value_type(&self) -> &str {
        if self.param_type.is_empty() {
            &self.base_type
        } else {
            &self.param_type
        }
    }

    /// The operator `name` as it must be written for this column's type: qualified
    /// when the type brings its own, else as is (resolved in pg_catalog).
    pub fn op(&self, name: &str) -> String {
        self.operators
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// The aggregate `name` (`min`, `max`) over this column's type: the type's own when
    /// it brings one (`public.max` for citext), else pg_catalog's.
    pub fn aggregate(&self, name: &str) -> String {
        self.operators
            .get(&format!("{name}()"))
            .cloned()
            .unwrap_or_else(|| format!("pg_catalog.{name}"))
    }

    /// The column whose type decides a comparison of this column with `other`: this one
    /// when the types are the same; else the one whose type brings its own `=` (citext
    /// with varchar compares as citext, whichever side it is on), this one first; else
    /// this one (Postgres resolves the pair of built-in types).
    pub fn comparison_owner<'c>(&'c self, other: &'c Column) -> &'c Column {
        if self.type_oid != other.type_oid && !self.has_own_op("=") && other.has_own_op("=") {
            other
        } else {
            self
        }
    }

    /// The two sides of a comparison of this column (SQL `x`) with `other` (SQL `y`),
    /// the side of the other type cast to the deciding one's (see `comparison_owner`),
    /// and the column whose type's operators compare them.
    pub fn compared_with<'c>(
        &'c self,
        x: String,
        other: &'c Column,
        y: String,
    ) -> (String, String, &'c Column) {
        let owner = self.comparison_owner(other);
        if self.type_oid == other.type_oid || !owner.has_own_op("=") {
            (x, y, owner)
        } else if std::ptr::eq(owner, self) {
            (x, format!("{y}::{}", self.value_type()), owner)
        } else {
            (format!("{x}::{}", other.value_type()), y, owner)
        }
    }

    /// Whether the type brings its own operator `name` (outside pg_catalog).
    pub fn has_own_op(&self, name: &str) -> bool {
        self.operators.contains_key(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Table {
    /// `schema.name`, quoted by Postgres: usable as is in SQL.
    pub quoted: String,
    pub schema: String,
    pub name: String,
    pub readable: bool,
    /// Row-level security is enabled on the table.
    #[serde(default)]
    pub row_security: bool,
    pub columns: Vec<Column>,
    /// Columns that lead at least one index.
    pub indexed: Vec<String>,
    /// The key columns of every unique index without a predicate.
    #[serde(default)]
    pub unique_sets: Vec<Vec<String>>,
    /// Validated, not deferrable one-column foreign keys.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
}

/// `column REFERENCES ref_schema.ref_table (ref_column)`: every non-null value of
/// `column` is a value of `ref_column`, at every statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ForeignKey {
    pub column: String,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_column: String,
}

impl Table {
    /// Whether `key` identifies a row: a unique index on it alone, or (for a table keyed
    /// per profile, as on Citus) on it together with the profile key `with`.
    pub fn unique_key(&self, key: &str, with: Option<&str>) -> bool {
        self.unique_on(&[key]) || with.is_some_and(|w| self.unique_on(&[key, w]))
    }

    /// Whether rows are unique on these columns (some unique index lies within them).
    pub fn unique_on(&self, columns: &[&str]) -> bool {
        self.unique_sets
            .iter()
            .any(|set| !set.is_empty() && set.iter().all(|c| columns.contains(&c.as_str())))
    }
}

impl Table {
    /// Whether a foreign key guarantees that each non-null `column` value is a value of
    /// `target.target_column`.
    pub fn references(&self, column: &str, target: &Table, target_column: &str) -> bool {
        self.foreign_keys.iter().any(|k| {
            k.column == column
                && k.ref_schema == target.schema
                && k.ref_table == target.name
                && k.ref_column == target_column
        })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn column_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.columns.iter().map(|c| c.name.as_str())
    }
    /// How the table is named in messages: `schema.name`, each part quoted where
    /// Postgres would quote it (`public."PetTags"`), so a message names the table as SQL
    /// must.
    pub fn display(&self) -> String {
        self.quoted.clone()
    }
}

/// What a table reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Table),
    /// Not found; `candidates` are existing tables to suggest.
    Missing {
        candidates: Vec<String>,
    },
    /// Not a valid table name at all (e.g. three dotted parts).
    Malformed(String),
    /// An unqualified name with no table in `public` and one in each of several
    /// other schemas.
    Ambiguous(Vec<String>),
}

/// The tables a graph names, by their `table_ref` as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    pub tables: BTreeMap<String, Lookup>,
}

impl Catalog {
    pub fn table(&self, table_ref: &str) -> Option<&Table> {
        match self.tables.get(table_ref) {
            Some(Lookup::Found(t)) => Some(t),
            _ => None,
        }
    }
}

/// Whether `=` between the two column types is well defined without a cast the user
/// did not ask for: the same type, or two types of the numeric, string or date/time
/// categories (int4 = int8, varchar = text, date = timestamptz).
pub fn comparable(a: &Column, b: &Column) -> bool {
    a.type_oid == b.type_oid || (a.category == b.category && matches!(a.category, 'N' | 'S' | 'D'))
}

/// Splits a table reference into `[schema, name]` or `[name]`, Postgres style:
/// unquoted parts fold to lower case, `"quoted"` parts keep case and may hold dots.
pub fn split_table_ref(table_ref: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = table_ref.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated quoted identifier".into()),
                }
            }
            if part.is_empty() {
                return Err("zero-length quoted identifier".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(format!("unexpected character {c:?}"));
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err("empty name".into());
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected character {c:?}")),
        }
    }
    if parts.len() > 2 {
        return Err(format!(
            "{} dotted parts; a table is named as schema.table or table",
            parts.len()
        ));
    }
    Ok(parts)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn col(name: &str, ty: &str) -> Column {
        let (oid, cat) = match ty {
            "integer" => (23, 'N'),
            "bigint" => (20, 'N'),
            "numeric" => (1700, 'N'),
            "text" => (25, 'S'),
            "character varying" => (1043, 'S'),
            "boolean" => (16, 'B'),
            "date" => (1082, 'D'),
            "timestamp with time zone" => (1184, 'D'),
            "jsonb" => (3802, 'U'),
            "uuid" => (2950, 'U'),
            other => panic!("no test type {other}"),
        };
        Column {
            name: name.into(),
            quoted: if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                name.into()
            } else {
                format!("\"{name}\"")
            },
            type_name: ty.into(),
            base_type: ty.into(),
            type_oid: oid,
            category: cat,
            param_type: String::new(),
            operators: BTreeMap::new(),
        }
    }

    pub fn table(schema: &str, name: &str, cols: &[(&str, &str)], indexed: &[&str]) -> Table {
        Table {
            quoted: format!("{schema}.{name}"),
            schema: schema.into(),
            name: name.into(),
            readable: true,
            row_security: false,
            columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
            indexed: indexed.iter().map(|s| s.to_string()).collect(),
            unique_sets: if name == "profile_identifiers" {
                vec![vec!["profile_id".into(), "type".into(), "value".into()]]
            } else {
                indexed
                    .iter()
                    .filter(|c| **c == "id" || **c == "sku")
                    .map(|c| vec![c.to_string()])
                    .collect()
            },
            foreign_keys: Vec::new(),
        }
    }

    #[test]
    fn splits_table_refs() {
        assert_eq!(
            split_table_ref("public.pets").unwrap(),
            vec!["public", "pets"]
        );
        assert_eq!(split_table_ref("Pets").unwrap(), vec!["pets"]);
        assert_eq!(
            split_table_ref("\"My Schema\".\"a.b\"").unwrap(),
            vec!["My Schema", "a.b"]
        );
        assert!(split_table_ref("db.public.pets").is_err());
        assert!(split_table_ref("pets; drop table x").is_err());
        assert!(split_table_ref("").is_err());
        assert!(split_table_ref("\"open").is_err());
    }

    #[test]
    fn comparability() {
        assert!(comparable(&col("a", "integer"), &col("b", "bigint")));
        assert!(comparable(
            &col("a", "text"),
            &col("b", "character varying")
        ));
        assert!(comparable(&col("a", "uuid"), &col("b", "uuid")));
        assert!(!comparable(&col("a", "uuid"), &col("b", "text")));
        assert!(!comparable(&col("a", "integer"), &col("b", "text")));
        assert!(!comparable(&col("a", "boolean"), &col("b", "integer")));
    }
}
