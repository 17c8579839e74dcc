//! How each relationship joins its parent, resolved to columns. Shared by the
//! validator (which reports what does not resolve) and the compiler.

use super::catalog::split_table_ref;
use super::model::{Join, Placed};

/// One side of `a.b = c`: an optional qualifier and a column, both as Postgres folds
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub qualifier: Option<String>,
    pub column: String,
}

/// Parses `left = right`, each side `[qualifier.]column`.
pub fn parse_equation(s: &str) -> Result<(Side, Side), String> {
    let mut in_quotes = false;
    let mut eq = None;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '=' if !in_quotes => {
                if eq.is_some() {
                    return Err("expected exactly one \"=\"".into());
                }
                eq = Some(i);
            }
            _ => {}
        }
    }
    let eq = eq.ok_or("expected the form <entity>.<column> = <entity>.<column>")?;
    let side = |text: &str| -> Result<Side, String> {
        let mut parts = split_table_ref(text).map_err(|e| format!("{e} in {:?}", text.trim()))?;
        let column = parts
            .pop()
            .expect("split_table_ref returns one part at least");
        Ok(Side {
            qualifier: parts.pop(),
            column,
        })
    };
    Ok((side(&s[..eq])?, side(&s[eq + 1..])?))
}

/// A relationship's join, as columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedJoin {
    /// `parent.parent_column = child.child_column`; the parent is the profile at the
    /// first level.
    Direct {
        parent_column: String,
        child_column: String,
    },
    /// The profile has an identifier of `id_type` whose value equals
    /// `child.child_column`.
    ExternalId {
        id_type: String,
        child_column: String,
    },
    /// `parent.parent_column = junction.left_column` and
    /// `junction.right_column = child.child_column`.
    Junction {
        table_ref: String,
        parent_column: String,
        left_column: String,
        right_column: String,
        child_column: String,
        /// The junction's column holding the owning profile's key, if it names one.
        profile_key: Option<String>,
    },
}

/// Why a join expression does not resolve: which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    /// Key under the relationship: `join_on`, `junction_table.left_join_on`, ...
    pub key: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

/// The names the parent of a relationship goes by in expressions.
fn parent_names<'g>(placed: &Placed<'g>) -> Vec<&'g str> {
    match placed.parent {
        Some(p) => vec![p.slug.as_str(), p.related_entity.as_str()],
        None => vec!["profile"],
    }
}

fn child_names<'g>(placed: &Placed<'g>) -> Vec<&'g str> {
    vec![placed.rel.slug.as_str(), placed.rel.related_entity.as_str()]
}

fn names_match(q: &Option<String>, names: &[&str]) -> bool {
    q.as_deref().is_some_and(|q| names.contains(&q))
}

/// Resolves a relationship's join to columns (not yet checked against the catalog).
pub fn resolve(placed: &Placed<'_>) -> Result<ResolvedJoin, JoinError> {
    let parent = parent_names(placed);
    let child = child_names(placed);
    let example = format!(
        "Compare a column of \"{}\" with one of \"{}\", for example \"{}.id = {}.<column>\".",
        parent.last().unwrap_or(&"parent"),
        child[1],
        parent.last().unwrap_or(&"parent"),
        child[1],
    );
    match &placed.rel.join {
        Join::Trait { name, join_key } => Ok(ResolvedJoin::Direct {
            parent_column: name.clone(),
            child_column: join_key.clone(),
        }),
        Join::ExternalId { id_type, join_key } => Ok(ResolvedJoin::ExternalId {
            id_type: id_type.clone(),
            child_column: join_key.clone(),
        }),
        Join::JoinOn(expr) => {
            let err = |message: String, hint: Option<String>| JoinError {
                key: "join_on",
                message,
                hint,
            };
            let (l, r) = parse_equation(expr).map_err(|e| err(e, Some(example.clone())))?;
            // The left side names the parent when both could (an entity joined to itself).
            if names_match(&l.qualifier, &parent) && names_match(&r.qualifier, &child) {
                Ok(ResolvedJoin::Direct {
                    parent_column: l.column,
                    child_column: r.column,
                })
            } else if names_match(&l.qualifier, &child) && names_match(&r.qualifier, &parent) {
                Ok(ResolvedJoin::Direct {
                    parent_column: r.column,
                    child_column: l.column,
                })
            } else {
                let seen: Vec<String> = [&l.qualifier, &r.qualifier]
                    .iter()
                    .map(|q| q.as_deref().unwrap_or("(none)").to_string())
                    .collect();
                Err(err(
                    format!(
                        "join_on must compare a column of \"{}\" with a column of \"{}\", but it names {} and {}",
                        parent.last().unwrap_or(&"the parent"),
                        child[1],
                        seen[0],
                        seen[1]
                    ),
                    Some(example),
                ))
            }
        }
        Join::Junction(j) => {
            let junction_names: Vec<String> = split_table_ref(&j.table_ref)
                .ok()
                .and_then(|p| p.last().cloned())
                .into_iter()
                .collect();
            let is_junction = |s: &Side| match &s.qualifier {
                None => true,
                Some(q) => junction_names.iter().any(|n| n == q),
            };
            // One side names `names` (the parent or the child), the other the junction.
            let split = |key: &'static str, expr: &str, names: &[&str], who: &str| {
                let (l, r) = parse_equation(expr).map_err(|e| JoinError {
                    key,
                    message: e,
                    hint: None,
                })?;
                if names_match(&l.qualifier, names) && is_junction(&r) {
                    Ok((l.column, r.column))
                } else if names_match(&r.qualifier, names) && is_junction(&l) {
                    Ok((r.column, l.column))
                } else {
                    Err(JoinError {
                        key,
                        message: format!(
                            "{key} must compare a column of \"{who}\" with a column of the junction table"
                        ),
                        hint: Some(format!(
                            "Qualify the {who} column with \"{}.\" and leave the junction column unqualified.",
                            names.last().unwrap_or(&who)
                        )),
                    })
                }
            };
            let (parent_column, left_column) = split(
                "junction_table.left_join_on",
                &j.left_join_on,
                &parent,
                parent.last().unwrap_or(&"parent"),
            )?;
            let (child_column, right_column) = split(
                "junction_table.right_join_on",
                &j.right_join_on,
                &child,
                child[1],
            )?;
            Ok(ResolvedJoin::Junction {
                table_ref: j.table_ref.clone(),
                parent_column,
                left_column,
                right_column,
                child_column,
                profile_key: j.profile_key.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations() {
        let (l, r) = parse_equation("households.id = pets.household_id").unwrap();
        assert_eq!(l.qualifier.as_deref(), Some("households"));
        assert_eq!(l.column, "id");
        assert_eq!(r.qualifier.as_deref(), Some("pets"));
        assert_eq!(r.column, "household_id");
        let (l, r) = parse_equation("carts.id=cart_id").unwrap();
        assert_eq!(l.column, "id");
        assert_eq!(r.qualifier, None);
        let (l, _) = parse_equation("\"Odd=Name\".\"Col\" = x.y").unwrap();
        assert_eq!(l.qualifier.as_deref(), Some("Odd=Name"));
        assert_eq!(l.column, "Col");
        assert!(parse_equation("a.b").is_err());
        assert!(parse_equation("a.b = c.d = e.f").is_err());
        assert!(parse_equation("a.b = c.d; drop table x").is_err());
        assert!(parse_equation("a.b.c.d = x").is_err());
    }
}
