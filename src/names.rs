//! Names: slug rules, JSON path segments, and "did you mean" hints.

/// `^[a-z][a-z0-9_]{0,62}$`: slugs and audience keys.
pub fn is_valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Appends an object key to a JSON path: `.key`, or `["odd key"]` when it is not a
/// plain identifier.
pub fn path_key(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::Value::String(key.to_string()))
    }
}

/// Appends an array index to a JSON path.
pub fn path_index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Edit distance (optimal string alignment: insertions, deletions, substitutions and
/// transpositions of neighbours), case-insensitive.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidates closest to `target`, best first: those within a few edits, or that
/// contain it (a prefix or part of a name typed).
pub fn nearest<'a, I>(target: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let len = target.chars().count();
    // Short names get one edit: "ts" is not a typo of "id".
    let limit = if len <= 4 { 1 } else { 2.max(len / 3) };
    let t = target.to_lowercase();
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let d = distance(target, c);
            let lc = c.to_lowercase();
            let related = t.chars().count() >= 3 && lc.contains(&t);
            (d <= limit || related).then(|| (d, c.to_string()))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// A hint naming the nearest valid names, or listing the valid ones when none is near.
/// `what` names the kind in the plural ("columns of public.pets").
pub fn hint_for<'a, I>(target: &str, candidates: I, what: &str) -> Option<String>
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    let near = nearest(target, candidates.clone());
    if !near.is_empty() {
        let quoted: Vec<String> = near.iter().map(|n| format!("\"{n}\"")).collect();
        return Some(format!("Did you mean {}?", join_or(&quoted)));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    if all.is_empty() {
        return None;
    }
    const SHOWN: usize = 12;
    let mut list = all[..all.len().min(SHOWN)].join(", ");
    if all.len() > SHOWN {
        list.push_str(&format!(", ... ({} in all)", all.len()));
    }
    Some(format!("Valid {what}: {list}."))
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "cat_owners", "x9", &"a".repeat(63)] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        for bad in ["", "9a", "_a", "Cat", "a-b", "a b", &"a".repeat(64), "é"] {
            assert!(!is_valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(path_key("$", "profile"), "$.profile");
        assert_eq!(path_key("$", "odd key"), "$[\"odd key\"]");
        assert_eq!(path_index("$.entities", 2), "$.entities[2]");
    }

    #[test]
    fn distances() {
        assert_eq!(distance("typ", "type"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("Kitten", "sitting"), 3);
        assert_eq!(distance("plna", "plan"), 1);
    }

    #[test]
    fn hints() {
        let cols = ["id", "household_id", "type", "name"];
        assert_eq!(
            hint_for("typ", cols.iter().copied(), "columns").unwrap(),
            "Did you mean \"type\"?"
        );
        assert_eq!(
            hint_for("zzzzzzzz", cols.iter().copied(), "columns").unwrap(),
            "Valid columns: id, household_id, type, name."
        );
        assert_eq!(hint_for("x", std::iter::empty::<&str>(), "columns"), None);
    }
}
