//! The type matrix (`cargo pgrx test`): for columns of many types, on the profile and
//! on an entity, every operator that applies gives the same members four ways: the
//! count preview reports, the rows of the SQL `la_audience_sql` displays, the members
//! a compute stores, and a hand-written query that uses the column type's own
//! semantics (citext compares case-insensitively, `char(n)` ignores trailing blanks, a
//! domain's CHECK does not reject a comparison value...).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::{json, Value};

    const WAREHOUSE: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext SCHEMA public;
CREATE DOMAIN public.short_code AS text CHECK (length(VALUE) <= 3);
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.tm_profiles (
    id bigint PRIMARY KEY,
    email public.citext, code char(5), label varchar(10), mood public.mood, sc public.short_code,
    uid uuid, i2 smallint, i4 integer, i8 bigint, num numeric(10,2), r4 real, r8 double precision,
    d date, ts timestamp, tstz timestamptz, b boolean, t text);
CREATE TABLE public.tm_items (LIKE public.tm_profiles, profile_id bigint);
ALTER TABLE public.tm_items ADD PRIMARY KEY (id);
INSERT INTO public.tm_profiles VALUES
 (1, 'Ann@Example.com', 'ab', 'Cat', 'sad', 'abc', '00000000-0000-0000-0000-000000000001', 1, 10, 100, 1.50, 0.1, 0.1,
  '2026-01-01', '2026-01-01 10:00', '2026-01-01 10:00+00', true, 'Ann'),
 (2, 'bob@example.com', 'AB', 'cat', 'ok', 'xy', '00000000-0000-0000-0000-000000000002', 2, 20, 200, 2.25, 1.5, 1.5,
  '2026-02-01', '2026-02-01 10:00', '2026-02-01 10:00+00', false, 'bob'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'ANN@EXAMPLE.COM', 'abc', 'dog%', 'happy', 'a', '00000000-0000-0000-0000-000000000004', -1, -10, -100, -0.50, 2.5, 2.5,
  '2025-12-31', '2025-12-31 23:59', '2025-12-31 23:59+00', true, 'ANN'),
 (5, 'Annie@x.org', 'ab ', 'd_g', 'ok', 'xyz', '00000000-0000-0000-0000-000000000005', 3, 30, 300, 3.00, 3.5, 3.5,
  '2026-03-01', '2026-03-01 00:00', '2026-03-01 00:00+00', false, 'annie');
INSERT INTO public.tm_items SELECT p.*, p.id FROM public.tm_profiles p;
UPDATE public.tm_items SET id = id + 100;
"#;

    const GRAPH: &str = r#"{
      "entities": [{"slug": "items", "table_ref": "public.tm_items", "primary_key": "id"}],
      "profile": {"table_ref": "public.tm_profiles", "primary_key": "id",
                  "relationships": [{"slug": "items", "related_entity": "items",
                                     "trait": {"name": "id", "join_key": "profile_id"}}]}}"#;

    /// (column, operator, value, hand-written predicate over `{c}`).
    fn cases() -> Vec<(&'static str, &'static str, Value, &'static str)> {
        vec![
            // citext: case-insensitive everywhere.
            (
                "email",
                "equals",
                json!("ann@example.com"),
                "{c} = 'ann@example.com'::citext",
            ),
            (
                "email",
                "not_equals",
                json!("ann@example.com"),
                "{c} IS DISTINCT FROM 'ann@example.com'::citext",
            ),
            (
                "email",
                "in",
                json!(["ANN@example.com", "BOB@EXAMPLE.COM"]),
                "{c} IN ('ann@example.com'::citext, 'bob@example.com'::citext)",
            ),
            (
                "email",
                "not_in",
                json!(["ann@example.com"]),
                "{c} IS NULL OR {c} <> 'ann@example.com'::citext",
            ),
            (
                "email",
                "contains",
                json!("EXAMPLE"),
                "{c} ILIKE '%example%'",
            ),
            (
                "email",
                "not_contains",
                json!("EXAMPLE"),
                "{c} IS NULL OR {c} NOT ILIKE '%example%'",
            ),
            ("email", "starts_with", json!("ANN"), "{c} ILIKE 'ann%'"),
            ("email", "ends_with", json!(".COM"), "{c} ILIKE '%.com'"),
            ("email", "is_null", Value::Null, "{c} IS NULL"),
            ("t", "equals", json!("ann"), "{c} = 'ann'"),
            // char(n): trailing blanks ignored; pattern operators compare as text.
            ("code", "equals", json!("ab"), "{c} = 'ab'::bpchar"),
            ("code", "equals", json!("ab   "), "{c} = 'ab'::bpchar"),
            ("code", "equals", json!("abc"), "{c} = 'abc'::bpchar"),
            (
                "code",
                "in",
                json!(["abc", "AB"]),
                "{c} IN ('abc'::bpchar, 'AB'::bpchar)",
            ),
            (
                "code",
                "not_equals",
                json!("ab"),
                "{c} IS DISTINCT FROM 'ab'::bpchar",
            ),
            ("code", "ends_with", json!("b"), "{c}::text LIKE '%b'"),
            ("code", "starts_with", json!("ab"), "{c}::text LIKE 'ab%'"),
            ("code", "contains", json!("b "), "false"),
            // varchar: LIKE's wildcards in a value are plain characters.
            ("label", "equals", json!("cat"), "{c} = 'cat'"),
            ("label", "contains", json!("%"), "strpos({c}, '%') > 0"),
            ("label", "starts_with", json!("d_"), "{c} LIKE 'd\\_%'"),
            ("label", "equals", json!("Cat"), "{c} = 'Cat'"),
            // enum and domain.
            ("mood", "equals", json!("ok"), "{c} = 'ok'::mood"),
            (
                "mood",
                "not_in",
                json!(["sad", "happy"]),
                "{c} IS NULL OR {c} NOT IN ('sad', 'happy')",
            ),
            (
                "mood",
                "in",
                json!(["sad", "happy"]),
                "{c} IN ('sad', 'happy')",
            ),
            ("sc", "equals", json!("abc"), "{c} = 'abc'"),
            ("sc", "equals", json!("abcdef"), "false"),
            ("sc", "in", json!(["xy", "much too long"]), "{c} = 'xy'"),
            ("sc", "starts_with", json!("xy"), "{c} LIKE 'xy%'"),
            // uuid.
            (
                "uid",
                "equals",
                json!("00000000-0000-0000-0000-000000000002"),
                "{c} = '00000000-0000-0000-0000-000000000002'::uuid",
            ),
            (
                "uid",
                "not_in",
                json!(["00000000-0000-0000-0000-000000000002"]),
                "{c} IS NULL OR {c} <> '00000000-0000-0000-0000-000000000002'::uuid",
            ),
            // integers, numeric, floating point.
            ("i2", "equals", json!(2), "{c} = 2"),
            ("i2", "between", json!([0, 2]), "{c} BETWEEN 0 AND 2"),
            ("i4", "gt", json!(10), "{c} > 10"),
            ("i4", "in", json!([10, 30]), "{c} IN (10, 30)"),
            ("i8", "lte", json!(100), "{c} <= 100"),
            ("i8", "not_equals", json!(100), "{c} IS DISTINCT FROM 100"),
            ("num", "equals", json!(1.5), "{c} = 1.5"),
            ("num", "gt", json!(2.245), "{c} > 2.245"),
            ("num", "lt", json!(0), "{c} < 0"),
            ("r4", "equals", json!(0.1), "{c} = '0.1'::real"),
            (
                "r4",
                "between",
                json!([1.5, 2.5]),
                "{c} BETWEEN 1.5 AND 2.5",
            ),
            ("r8", "equals", json!(0.1), "{c} = 0.1::float8"),
            ("r8", "gte", json!(2.5), "{c} >= 2.5"),
            // dates and times.
            (
                "d",
                "equals",
                json!("2026-01-01"),
                "{c} = '2026-01-01'::date",
            ),
            (
                "d",
                "before",
                json!("2026-01-01"),
                "{c} < '2026-01-01'::date",
            ),
            (
                "d",
                "between",
                json!(["2026-01-01", "2026-02-01"]),
                "{c} BETWEEN '2026-01-01' AND '2026-02-01'",
            ),
            (
                "ts",
                "after",
                json!("2026-01-01T10:00:00"),
                "{c} > '2026-01-01 10:00'::timestamp",
            ),
            (
                "ts",
                "equals",
                json!("2026-03-01"),
                "{c} = '2026-03-01'::timestamp",
            ),
            (
                "tstz",
                "gte",
                json!("2026-02-01T10:00:00Z"),
                "{c} >= '2026-02-01 10:00+00'::timestamptz",
            ),
            (
                "tstz",
                "within_last",
                json!("100000 days"),
                "{c} >= now() - '100000 days'::interval",
            ),
            (
                "tstz",
                "not_within_last",
                json!("1 day"),
                "{c} < now() - '1 day'::interval",
            ),
            // boolean.
            ("b", "equals", json!(true), "{c}"),
            ("b", "not_equals", json!(true), "{c} IS NOT TRUE"),
            ("b", "in", json!([false]), "{c} = false"),
        ]
    }

    fn ids(sql: &str) -> Vec<i64> {
        let got = Spi::get_one::<JsonB>(&format!(
            "SELECT coalesce(jsonb_agg(x ORDER BY x), '[]') FROM (SELECT profile_id::bigint AS x FROM ({sql}) s) q"
        ))
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
        .unwrap()
        .0;
        serde_json::from_value(got).unwrap()
    }

    #[pg_test]
    fn every_type_and_operator_agrees_four_ways() {
        Spi::run(WAREHOUSE).unwrap();
        Spi::run_with_args(
            "SELECT la_define_data_graph($1)",
            &[JsonB(serde_json::from_str(GRAPH).unwrap()).into()],
        )
        .unwrap();
        let mut checked = 0;
        for (column, op, value, hand) in cases() {
            let mut pred = json!({"op": op});
            if !value.is_null() {
                pred["value"] = value.clone();
            }
            let mut on_trait = pred.clone();
            on_trait["trait"] = json!(column);
            let mut on_entity = pred.clone();
            on_entity["column"] = json!(column);
            let shapes = [
                (on_trait, format!("SELECT id::text AS profile_id FROM public.tm_profiles p WHERE coalesce(({}), false)",
                                   hand.replace("{c}", &format!("p.{column}")))),
                (json!({"relationship": "items", "where": on_entity}),
                 format!("SELECT id::text AS profile_id FROM public.tm_profiles p WHERE EXISTS (SELECT 1 FROM public.tm_items x WHERE x.profile_id = p.id AND coalesce(({}), false))",
                         hand.replace("{c}", &format!("x.{column}")))),
            ];
            for (def, hand_sql) in shapes {
                four_ways(&format!("{column} {op} {value}"), def, &hand_sql);
                checked += 1;
            }
        }
        // The reference itself means what the semantics say, on a few cases.
        let email = ids("SELECT id::text AS profile_id FROM public.tm_profiles WHERE email = 'ann@example.com'::citext");
        assert_eq!(email, vec![1, 4]);
        let code =
            ids("SELECT id::text AS profile_id FROM public.tm_profiles WHERE code = 'ab'::bpchar");
        assert_eq!(code, vec![1, 5]);
        assert_eq!(checked, cases().len() * 2);
    }

    /// The members of `def`, four ways: the count preview reports, the rows of the SQL
    /// `la_audience_sql` displays, the members a compute stores, and `hand_sql` (a query
    /// of `profile_id`s).
    fn four_ways(what: &str, def: Value, hand_sql: &str) {
        let what = format!("{what} as {def}");
        let expected = ids(&format!("SELECT * FROM ({hand_sql}) h"));
        let preview = Spi::get_one_with_args::<JsonB>(
            "SELECT la_preview_audience($1::jsonb, 0)",
            &[JsonB(def.clone()).into()],
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .unwrap()
        .0;
        assert_eq!(
            preview["count"],
            json!(expected.len()),
            "preview count, {what}"
        );
        let shown = Spi::get_one_with_args::<String>(
            "SELECT la_audience_sql($1::jsonb)",
            &[JsonB(def.clone()).into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ids(&shown), expected, "displayed SQL, {what}:\n{shown}");
        Spi::run_with_args(
            "SELECT la_define_audience('tm', $1::jsonb)",
            &[JsonB(def.clone()).into()],
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let run = Spi::get_one::<JsonB>("SELECT la_compute_audience('tm')")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(run.get("status"), None, "compute failed, {what}: {run}");
        let members = ids(
            "SELECT m.profile_id FROM linked_audiences.audience_members m
             JOIN linked_audiences.audience a ON a.id = m.audience_id WHERE a.key = 'tm'",
        );
        assert_eq!(members, expected, "computed members, {what}");
    }

    /// Comparisons between columns of different text types, aggregates of an extension
    /// type and of reals, and a column under a nondeterministic collation: each follows
    /// the column type's (or collation's) semantics, four ways.
    #[pg_test]
    fn references_aggregates_and_collations_follow_the_types() {
        Spi::run(
            r#"
CREATE EXTENSION IF NOT EXISTS citext SCHEMA public;
CREATE COLLATION public.tx_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE public.tx_groups (code public.citext PRIMARY KEY, region text);
INSERT INTO public.tx_groups VALUES ('eu-1', 'eu'), ('US', 'us');
CREATE TABLE public.tx_profiles (id int PRIMARY KEY, nick varchar(10), ci public.citext,
                                 nd text COLLATE public.tx_ci, tags text[], doc jsonb, grp text);
CREATE TABLE public.tx_items (id int PRIMARY KEY, profile_id int, kind public.citext, r real, v text);
INSERT INTO public.tx_profiles VALUES (1, 'Cat', 'ANN', 'Ann', '{a,b}', '{"k": 1}', 'EU-1'),
    (2, 'dog', 'bob', 'bob', '{b}', '{"k": [1]}', 'us'), (3, NULL, NULL, NULL, NULL, NULL, 'eu-2');
INSERT INTO public.tx_items VALUES (10, 1, 'cat', 0.1, 'ann'), (11, 1, 'Dog', 0.2, 'z'),
                                   (20, 2, 'DOG', 0.1, 'Bob'), (30, 3, 'x', NULL, NULL);
"#,
        )
        .unwrap();
        Spi::run(
            r#"SELECT la_define_data_graph('{
              "entities": [{"slug": "items", "table_ref": "public.tx_items", "primary_key": "id"},
                           {"slug": "groups", "table_ref": "public.tx_groups", "primary_key": "code"}],
              "profile": {"table_ref": "public.tx_profiles", "primary_key": "id",
                          "relationships": [{"slug": "items", "related_entity": "items",
                                             "trait": {"name": "id", "join_key": "profile_id"}},
                                            {"slug": "grp", "related_entity": "groups",
                                             "trait": {"name": "grp", "join_key": "code"}}]}}')"#,
        )
        .unwrap();
        let items = |cond: &str| {
            format!("SELECT p.id::text AS profile_id FROM public.tx_profiles p WHERE EXISTS (SELECT 1 FROM public.tx_items x WHERE x.profile_id = p.id AND {cond})")
        };
        let grouped = |having: &str| {
            format!("SELECT x.profile_id::text AS profile_id FROM public.tx_items x GROUP BY 1 HAVING {having}")
        };
        let cases = [
            // citext with a varchar on the other side, either way round: as citext.
            (
                json!({"relationship": "items", "where": {"column": "kind", "op": "equals", "value": {"ref": "profile.nick"}}}),
                items("x.kind = p.nick::public.citext"),
            ),
            (
                json!({"relationship": "items", "where": {"column": "v", "op": "equals", "value": {"ref": "profile.ci"}}}),
                items("x.v::public.citext = p.ci"),
            ),
            // citext's own max and min.
            (
                json!({"relationship": "items", "aggregate": {"fn": "max", "column": "kind", "op": "equals", "value": "DOG"}}),
                grouped("public.max(x.kind) = 'DOG'::public.citext"),
            ),
            (
                json!({"relationship": "items", "aggregate": {"fn": "min", "column": "kind", "op": "equals", "value": "CAT"}}),
                grouped("public.min(x.kind) = 'CAT'::public.citext"),
            ),
            // A sum of reals equals the real literal.
            (
                json!({"relationship": "items", "aggregate": {"fn": "sum", "column": "r", "op": "equals", "value": 0.1}}),
                grouped("sum(x.r) = 0.1::real"),
            ),
            // A nondeterministic collation: equality is the collation's (case-insensitive
            // here); substring searches, which Postgres refuses under it, match exactly.
            (
                json!({"trait": "nd", "op": "equals", "value": "ANN"}),
                "SELECT id::text AS profile_id FROM public.tx_profiles WHERE nd = 'ANN'".to_string(),
            ),
            (
                json!({"trait": "nd", "op": "contains", "value": "nn"}),
                "SELECT id::text AS profile_id FROM public.tx_profiles WHERE strpos(nd COLLATE \"default\", 'nn') > 0".to_string(),
            ),
            (
                json!({"trait": "nd", "op": "starts_with", "value": "b"}),
                "SELECT id::text AS profile_id FROM public.tx_profiles WHERE starts_with(nd COLLATE \"default\", 'b')".to_string(),
            ),
            // An array column takes a JSON array, a jsonb column a JSON object.
            (
                json!({"trait": "tags", "op": "equals", "value": ["a", "b"]}),
                "SELECT id::text AS profile_id FROM public.tx_profiles WHERE tags = '{a,b}'::text[]".to_string(),
            ),
            (
                json!({"trait": "doc", "op": "equals", "value": {"k": [1]}}),
                "SELECT id::text AS profile_id FROM public.tx_profiles WHERE doc = '{\"k\": [1]}'::jsonb".to_string(),
            ),
            // A join between text and citext columns: as citext.
            (
                json!({"relationship": "grp"}),
                "SELECT p.id::text AS profile_id FROM public.tx_profiles p WHERE EXISTS (SELECT 1 FROM public.tx_groups g WHERE g.code = p.grp::public.citext)".to_string(),
            ),
        ];
        let expected: [&[i64]; 11] = [
            &[1, 2],
            &[1, 2],
            &[1, 2],
            &[1],
            &[2],
            &[1],
            &[1],
            &[2],
            &[1],
            &[2],
            &[1, 2],
        ];
        for ((def, hand), want) in cases.into_iter().zip(expected) {
            // The hand-written answers are the ones the semantics call for.
            assert_eq!(ids(&hand), want.to_vec(), "{hand}");
            four_ways("", def, &hand);
        }
    }

    /// Keys without a primary key or unique index (a view, a table without
    /// constraints): a profile is a distinct non-null key, related rows count once per
    /// key, a row without a key is no entity, and each entity gets one event.
    #[pg_test]
    fn keys_without_constraints_count_once() {
        Spi::run(
            r#"
CREATE TABLE public.nk_profiles (id text, plan text);
INSERT INTO public.nk_profiles VALUES ('1', 'x'), ('1', 'x'), ('2', 'y'), (NULL, 'x'), ('3', 'x');
CREATE TABLE public.nk_orders (id int, profile_id text, amount numeric);
INSERT INTO public.nk_orders VALUES (1, '1', 10), (1, '1', 10), (2, '2', 5), (NULL, '3', 7);
"#,
        )
        .unwrap();
        let defined = Spi::get_one::<JsonB>(
            r#"SELECT la_define_data_graph('{
              "entities": [{"slug": "orders", "table_ref": "public.nk_orders", "primary_key": "id"}],
              "profile": {"table_ref": "public.nk_profiles", "primary_key": "id",
                          "relationships": [{"slug": "orders", "related_entity": "orders",
                                             "trait": {"name": "id", "join_key": "profile_id"}}]}}')"#,
        )
        .unwrap()
        .unwrap()
        .0;
        // Validation says so, at both keys.
        let warned: Vec<String> = defined["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("{defined}"))
            .iter()
            .filter_map(|w| w["path"].as_str().map(str::to_string))
            .collect();
        for path in ["$.profile.primary_key", "$.entities[0].primary_key"] {
            assert!(warned.iter().any(|p| p == path), "{path} in {defined}");
        }
        let profiles = |cond: &str| {
            format!("SELECT DISTINCT p.id AS profile_id FROM public.nk_profiles p WHERE p.id IS NOT NULL AND {cond}")
        };
        let cases = [
            (json!({"trait": "plan", "op": "equals", "value": "x"}), profiles("p.plan = 'x'"), vec![1, 3]),
            (
                json!({"relationship": "orders", "count": {"exactly": 1}}),
                profiles("(SELECT count(DISTINCT o.id) FROM public.nk_orders o WHERE o.profile_id = p.id) = 1"),
                vec![1, 2],
            ),
            (
                json!({"relationship": "orders", "count": {"exactly": 0}}),
                profiles("(SELECT count(DISTINCT o.id) FROM public.nk_orders o WHERE o.profile_id = p.id) = 0"),
                vec![3],
            ),
            (
                json!({"relationship": "orders", "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 8}}),
                profiles("(SELECT coalesce(sum(d.amount), 0) FROM (SELECT DISTINCT ON (o.id) o.amount FROM public.nk_orders o WHERE o.profile_id = p.id) d) > 8"),
                vec![1],
            ),
        ];
        for (def, hand, want) in cases {
            assert_eq!(ids(&hand), want, "{hand}");
            four_ways("", def, &hand);
        }
        // Entity tracking: the order without an id is no entity; the duplicated order is
        // one entity with one event.
        Spi::run(
            "SELECT la_create_destination('nk_hook', 'webhook', '{\"url\": \"https://example.com/hook\"}');
             SELECT la_define_audience('nk_orders', '{\"relationship\": \"orders\"}');
             SELECT la_activate('nk_orders', 'nk_hook', 'Entity Added', 'orders');",
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT la_compute_audience('nk_orders')")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(run["members"], json!(3), "{run}");
        assert_eq!(run["entities_added"], json!(2), "{run}");
        assert_eq!(run["events_written"], json!(2), "{run}");
    }
}
