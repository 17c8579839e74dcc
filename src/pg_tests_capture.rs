//! What the capture trigger records, for link columns of many types: a statement that
//! touched one row is written into the change log directly (`capture::direct`), one of
//! several rows through the prepared set-based INSERT; both must record the same
//! (column, text) pairs, each value's text as `value::pg_catalog.text` gives it (the
//! form incremental computes cast back to the column's type).

#[pgrx::pg_schema]
mod tests {
    use crate::capture::direct;
    use pgrx::prelude::*;

    /// The pairs the log holds for `public.cap_item`, sorted, then emptied.
    fn logged() -> Vec<String> {
        let v = Spi::get_one::<Vec<String>>(
            "WITH d AS (DELETE FROM linked_audiences.change_log RETURNING relation, col, value)
             SELECT coalesce(array_agg(col || '=' || value ORDER BY col, value), '{}') FROM d
             WHERE relation = 'public.cap_item'",
        )
        .unwrap()
        .unwrap_or_default();
        v
    }

    /// A test value as a quoted literal.
    fn lit(v: &str) -> String {
        format!("'{}'", v.replace('\'', "''"))
    }

    /// The pairs expected, `col=<v::text>` for each (column, value), sorted.
    fn expected(ty: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        let mut e: Vec<String> = pairs
            .iter()
            .map(|(col, v)| {
                let text = Spi::get_one_with_args::<String>(
                    &format!("SELECT ($1::{ty})::pg_catalog.text"),
                    &[(*v).into()],
                )
                .unwrap()
                .unwrap();
                format!("{col}={text}")
            })
            .collect();
        e.sort();
        e.dedup();
        e
    }

    /// One type: a profile table keyed by it and an entity that two relationships reach,
    /// pointing at its profiles by two columns of it (`owner`, `maker`: its two link
    /// columns); captured; then single-row and multi-row inserts, updates (moving a row
    /// between profiles, leaving it where it is, a value set to NULL) and deletes.
    /// `direct`: whether single-row statements take the direct path for this type.
    fn check(ty: &str, a: &str, b: &str, direct: bool) {
        Spi::run(&format!(
            "DROP TABLE IF EXISTS public.cap_item, public.cap_profile;
             CREATE TABLE public.cap_profile (id {ty} PRIMARY KEY, user_id text);
             CREATE TABLE public.cap_item (id integer PRIMARY KEY, owner {ty}, maker {ty});"
        ))
        .unwrap();
        let (la, lb) = (lit(a), lit(b));
        Spi::run(&format!(
            "INSERT INTO public.cap_profile VALUES ({la}, 'u-a'), ({lb}, 'u-b');
             INSERT INTO public.cap_item VALUES (1, {la}, {la}), (2, {la}, {lb}), (3, {lb}, {lb});
             SELECT la_define_data_graph('{{\"entities\": [{{\"slug\": \"items\", \"table_ref\": \"public.cap_item\", \"primary_key\": \"id\"}}],
                 \"profile\": {{\"table_ref\": \"public.cap_profile\", \"primary_key\": \"id\", \"user_id\": \"user_id\",
                     \"relationships\": [
                         {{\"slug\": \"owned\", \"related_entity\": \"items\", \"trait\": {{\"name\": \"id\", \"join_key\": \"owner\"}}}},
                         {{\"slug\": \"made\", \"related_entity\": \"items\", \"trait\": {{\"name\": \"id\", \"join_key\": \"maker\"}}}}]}}}}');
             SELECT la_capture_changes();"
        ))
        .unwrap();
        logged();
        let before = direct::recorded();
        let run = |sql: String| Spi::run(&sql).unwrap();
        // One row: moved from a to b by its owner (both recorded, its maker once), left
        // in place, inserted, its values swapped for NULL and back, deleted.
        run(format!(
            "UPDATE public.cap_item SET owner = {lb} WHERE id = 1"
        ));
        assert_eq!(
            logged(),
            expected(ty, &[("owner", a), ("owner", b), ("maker", a)]),
            "{ty}: move"
        );
        run("UPDATE public.cap_item SET owner = owner WHERE id = 2".into());
        assert_eq!(
            logged(),
            expected(ty, &[("owner", a), ("maker", b)]),
            "{ty}: in place"
        );
        run(format!(
            "INSERT INTO public.cap_item VALUES (4, {lb}, NULL)"
        ));
        assert_eq!(logged(), expected(ty, &[("owner", b)]), "{ty}: insert");
        run(format!(
            "UPDATE public.cap_item SET owner = NULL, maker = {la} WHERE id = 4"
        ));
        assert_eq!(
            logged(),
            expected(ty, &[("owner", b), ("maker", a)]),
            "{ty}: NULLs"
        );
        run("DELETE FROM public.cap_item WHERE id = 4".into());
        assert_eq!(logged(), expected(ty, &[("maker", a)]), "{ty}: delete");
        let after_single = direct::recorded();
        assert_eq!(
            after_single - before,
            if direct { 5 } else { 0 },
            "{ty}: single-row statements recorded directly"
        );
        // Several rows: through the set-based INSERT, the same pairs.
        run(format!(
            "UPDATE public.cap_item SET owner = {la} WHERE id IN (1, 3)"
        ));
        assert_eq!(
            logged(),
            expected(
                ty,
                &[("owner", a), ("owner", b), ("maker", a), ("maker", b)]
            ),
            "{ty}: multi-row move"
        );
        run("DELETE FROM public.cap_item WHERE id IN (1, 2)".into());
        assert_eq!(
            logged(),
            expected(ty, &[("owner", a), ("maker", a), ("maker", b)]),
            "{ty}: multi-row delete"
        );
        // A statement that touched nothing records nothing.
        run("UPDATE public.cap_item SET owner = owner WHERE false".into());
        assert_eq!(logged(), Vec::<String>::new(), "{ty}: no row");
        assert_eq!(
            direct::recorded(),
            after_single,
            "{ty}: several rows went through the INSERT"
        );
        Spi::run("SELECT la_capture_changes(false)").unwrap();
    }

    #[pg_test]
    fn single_and_multi_row_statements_record_the_same_values() {
        Spi::run("SET TimeZone = 'Europe/Paris'").unwrap();
        // (type, two values, recorded directly): types whose text is their output
        // function's are; those whose cast to text is a function of its own (trailing
        // blanks trimmed, 'true' for 't') go through the INSERT, whatever the row count.
        let types = [
            ("integer", "7", "-12", true),
            ("bigint", "9007199254740993", "-1", true),
            ("text", "a'b", "ünï \"x\"", true),
            ("character varying(20)", "Mixed Case", "x", true),
            (
                "uuid",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "00000000-0000-0000-0000-000000000001",
                true,
            ),
            ("numeric", "1.50", "100000000000000000000.000001", true),
            ("date", "2024-02-29", "1999-12-31", true),
            (
                "timestamp with time zone",
                "2024-03-31 02:30:00+00",
                "2024-10-27 01:15:00+00",
                true,
            ),
            ("character(6)", "ab", "cd  e", false),
            ("boolean", "true", "false", false),
        ];
        for (ty, a, b, direct) in types {
            check(ty, a, b, direct);
        }
    }
}
