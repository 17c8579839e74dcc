//! The SQL shapes of a condition over related rows. `anchor {eq} outer` joins the rows
//! to the scope row (`eq` the join columns' type's own equality).

pub(super) fn exists(from: &str, anchor: &str, eq: &str, outer: &str, conds: &[String]) -> String {
    let mut all = vec![format!("{anchor} {eq} {outer}")];
    all.extend(conds.iter().cloned());
    format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all.join(" AND "))
}

/// A threshold over related rows: the keys whose rows meet it, joined by EXISTS; or,
/// when no rows at all meets it too, the keys whose rows fail it, joined by NOT EXISTS.
#[allow(clippy::too_many_arguments)]
pub(super) fn grouped(
    from: &str,
    anchor: &str,
    eq: &str,
    outer: &str,
    conds: &[String],
    having: &str,
    empty_holds: bool,
    g: &str,
) -> String {
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let (neg, having) = if empty_holds {
        ("NOT ", format!("({having}) IS NOT TRUE"))
    } else {
        ("", having.to_string())
    };
    format!(
        "{neg}EXISTS (SELECT 1 FROM (SELECT {anchor} AS k FROM {from}{where_sql} GROUP BY 1 HAVING {having}) {g} WHERE {g}.k {eq} {outer})"
    )
}

/// A count or aggregate evaluated for the scope row alone: an aggregate query without
/// GROUP BY returns one row even over no rows, so HAVING decides for the empty set too
/// (`exactly 0`, `sum < 100` hold there; `avg`, `min`, `max` are NULL and do not).
/// A count alone is given `cap = (limit, alias)`: it reads at most `limit` rows (a count
/// compared with k is decided by its first k + 1 rows: min(n, k + 1) compares with k as
/// n does), so a card's 6th transaction ends `more than 5` instead of its 50th.
pub(super) fn per_profile(
    from: &str,
    anchor: &str,
    eq: &str,
    outer: &str,
    conds: &[String],
    having: &str,
    cap: Option<(String, String)>,
) -> String {
    let mut all = vec![format!("{anchor} {eq} {outer}")];
    all.extend(conds.iter().cloned());
    let rows = match cap {
        None => format!("{from} WHERE {}", all.join(" AND ")),
        Some((limit, alias)) => format!(
            "(SELECT 1 FROM {from} WHERE {} LIMIT {limit}) {alias}",
            all.join(" AND ")
        ),
    };
    format!("EXISTS (SELECT 1 FROM {rows} HAVING {having})")
}
