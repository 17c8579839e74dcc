//! Tests that need a running Postgres (`cargo pgrx test`).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::{json, Value};

    fn warehouse() {
        Spi::run(include_str!("../demo/warehouse.sql")).unwrap();
    }

    fn demo_graph() -> Value {
        serde_json::from_str(include_str!("../demo/graph.json")).unwrap()
    }

    fn one_jsonb(sql: &str) -> Value {
        Spi::get_one::<JsonB>(sql).unwrap().unwrap().0
    }

    #[pg_test]
    fn define_and_read_back_the_graph() {
        warehouse();
        let doc = demo_graph();
        let summary = Spi::get_one_with_args::<JsonB>(
            "SELECT la_define_data_graph($1)",
            &[JsonB(doc.clone()).into()],
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            summary,
            json!({"entities": 8, "relationships": 8, "max_depth": 3, "events": true, "warnings": []})
        );
        assert_eq!(one_jsonb("SELECT la_data_graph()"), doc);
        let dot = Spi::get_one::<String>("SELECT la_data_graph_dot()")
            .unwrap()
            .unwrap();
        assert!(dot.contains("\"rel:household\" -> \"rel:pets\""));
        assert_eq!(
            one_jsonb("SELECT tables FROM linked_audiences.data_graph")["public.pets"],
            json!({"schema": "public", "name": "pets"})
        );
    }

    #[pg_test(
        error = "$.entities[1].primary_key: column \"idd\" does not exist on table public.pets"
    )]
    fn bad_graph_is_refused() {
        warehouse();
        let mut doc = demo_graph();
        doc["entities"][1]["primary_key"] = json!("idd");
        Spi::run_with_args("SELECT la_define_data_graph($1)", &[JsonB(doc).into()]).unwrap();
    }

    /// The capture trigger runs as its owner: a trigger a user made with it on a table
    /// of their own, reading a relation of their choosing where the transition table
    /// should be (a temporary view), is refused before it reads anything.
    #[pg_test(
        error = "linked_audiences.capture_rows: the trigger does not declare the transition tables it reads"
    )]
    fn capture_trigger_refuses_undeclared_transition_tables() {
        Spi::run(
            "CREATE TEMP TABLE la_own (a text);
             CREATE TEMP VIEW la_new_rows AS SELECT 'planted'::text AS a;
             CREATE TRIGGER planted AFTER INSERT ON pg_temp.la_own FOR EACH STATEMENT
                 EXECUTE FUNCTION linked_audiences.capture_rows('public.pets', 'a');
             INSERT INTO la_own VALUES ('1');",
        )
        .unwrap();
    }

    /// Nor does it write the change log for a table that capture did not install it on,
    /// whatever the trigger's arguments name.
    #[pg_test(
        error = "linked_audiences.capture_rows: public.pets is not a table la_capture_changes() captures, or not this trigger's"
    )]
    fn capture_trigger_refuses_tables_it_does_not_capture() {
        Spi::run(
            "CREATE TABLE public.la_own (a text);
             CREATE TRIGGER planted AFTER INSERT ON public.la_own REFERENCING NEW TABLE AS la_new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION linked_audiences.capture_rows('public.pets', 'a');
             INSERT INTO public.la_own VALUES ('1');",
        )
        .unwrap();
    }

    #[pg_test]
    fn nothing_is_stored_on_error() {
        warehouse();
        Spi::run_with_args(
            "SELECT la_define_data_graph($1)",
            &[JsonB(demo_graph()).into()],
        )
        .unwrap();
        let before = one_jsonb("SELECT la_data_graph()");
        let failed = Spi::run(
            "DO $$ BEGIN PERFORM la_register_entity('pets', 'public.pets', 'nope');
               EXCEPTION WHEN undefined_column THEN RAISE NOTICE 'refused'; END $$",
        );
        assert!(failed.is_ok());
        assert_eq!(one_jsonb("SELECT la_data_graph()"), before);
    }

    #[pg_test]
    fn register_functions_build_the_same_graph() {
        warehouse();
        Spi::run(
            r#"
            SELECT la_register_profile('public.profiles', 'id', 'user_id');
            SELECT la_register_identifiers('public.profile_identifiers', 'profile_id', 'type', 'value');
            SELECT la_register_entity('households', 'public.households', 'id', 'Households', true);
            SELECT la_register_entity('pets', 'pets', 'id', 'Pets', NULL);
            SELECT la_register_relationship('household', 'households', name => 'Household',
                   "trait" => '{"name": "household_id", "join_key": "id"}');
            SELECT la_register_relationship('pets', 'pets', parent => 'household',
                   join_on => 'households.id = pets.household_id');
            SELECT la_register_event_source('events', 'profile_id', 'event', 'timestamp', 'properties');
            "#,
        )
        .unwrap();
        let g = one_jsonb("SELECT la_data_graph()");
        assert_eq!(
            g["profile"]["relationships"][0]["relationships"][0]["slug"],
            json!("pets")
        );
        assert_eq!(g["entities"][1]["table_ref"], json!("public.pets"));
        assert_eq!(g["events"]["table_ref"], json!("public.events"));
        let problems = one_jsonb("SELECT la_validate_data_graph(la_data_graph())");
        assert_eq!(problems, json!([]));
        let removed = one_jsonb("SELECT la_unregister_relationship('pets')");
        assert_eq!(removed["relationships"], json!(1));
    }

    #[pg_test]
    fn validate_returns_problems_as_data() {
        warehouse();
        let mut doc = demo_graph();
        doc["entities"][0]["table_ref"] = json!("public.househods");
        doc["entities"][1]["slug"] = json!(3);
        let problems = Spi::get_one_with_args::<JsonB>(
            "SELECT la_validate_data_graph($1)",
            &[JsonB(doc.clone()).into()],
        )
        .unwrap()
        .unwrap()
        .0;
        // Shape problems come first and alone.
        assert_eq!(
            problems,
            json!([{"path": "$.entities[1].slug", "sqlstate": "22023", "message": "expected a string, got a number"}])
        );
        doc["entities"][1]["slug"] = json!("pets");
        let problems = Spi::get_one_with_args::<JsonB>(
            "SELECT la_validate_data_graph($1)",
            &[JsonB(doc).into()],
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(
            problems,
            json!([{"path": "$.entities[0].table_ref", "sqlstate": "42P01",
                    "message": "table \"public.househods\" does not exist",
                    "hint": "Did you mean \"public.households\"?"}])
        );
    }

    // Property test: random well-typed definitions over the demo graph compile, run, and
    // agree with themselves (a definition and its `not` split the profiles exactly; the
    // preview's count equals the compiled SQL's).

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
        fn coin(&mut self) -> bool {
            self.below(2) == 0
        }
    }

    /// (column, kind, sample values) per relationship slug; kind: t text, n number,
    /// d date/time, b boolean.
    fn columns(slug: &str) -> Vec<(&'static str, char, Vec<Value>)> {
        let t = |c: &'static str, v: &[&str]| (c, 't', v.iter().map(|s| json!(s)).collect());
        let n = |c: &'static str, v: &[f64]| (c, 'n', v.iter().map(|x| json!(x)).collect());
        let d = |c: &'static str| {
            (
                c,
                'd',
                vec![json!("2025-06-01"), json!("2026-10-05T00:00:00Z")],
            )
        };
        match slug {
            "household" => vec![
                t("city", &["Portland", "Boston", "x"]),
                n("id", &[1.0, 3.0]),
            ],
            "pets" => vec![
                t("type", &["cat", "dog", "fish"]),
                t("name", &["Tom", "Spot"]),
            ],
            "accounts" => vec![
                t("status", &["open", "closed"]),
                t("email", &["ann@example.com"]),
            ],
            "subscriptions" => vec![
                t("status", &["active", "canceled"]),
                t("tier", &["premium", "basic"]),
                d("started_at"),
            ],
            "credit_cards" => vec![
                t("name", &["Owly Card", "Other Card"]),
                n("balance", &[0.0, 50.0, 120.5]),
            ],
            "transactions" => vec![n("amount", &[10.0, 35.0, 60.0]), d("created_at")],
            "carts" => vec![t("status", &["open", "abandoned"]), d("updated_at")],
            _ => vec![
                t("name", &["Cat food", "Leash"]),
                ("in_stock", 'b', vec![json!(true), json!(false)]),
            ],
        }
    }

    fn predicate(rng: &mut Rng, key: &str, col: &str, kind: char, values: &[Value]) -> Value {
        let v = rng.pick(values).clone();
        let ops: &[&str] = match kind {
            't' => &[
                "equals",
                "not_equals",
                "in",
                "not_in",
                "is_null",
                "contains",
                "not_contains",
                "starts_with",
            ],
            'n' => &[
                "equals",
                "not_equals",
                "gt",
                "lte",
                "between",
                "in",
                "is_not_null",
            ],
            'd' => &[
                "before",
                "after",
                "within_last",
                "not_within_last",
                "is_null",
            ],
            _ => &["equals", "not_equals"],
        };
        let op = *rng.pick(ops);
        let mut p = json!({key: col, "op": op});
        match op {
            "is_null" | "is_not_null" => {}
            "in" | "not_in" => p["value"] = json!([v, rng.pick(values).clone()]),
            "between" => p["value"] = json!([0, v]),
            "within_last" | "not_within_last" => {
                p["value"] = json!(rng.pick(&["30 days", "2 years"]))
            }
            _ => p["value"] = v,
        }
        if kind == 't' && rng.coin() && op != "is_null" {
            p["case_insensitive"] = json!(true);
        }
        p
    }

    fn filter(rng: &mut Rng, slug: &str) -> Value {
        let cols = columns(slug);
        let (c, k, vs) = rng.pick(&cols);
        let p = predicate(rng, "column", c, *k, vs);
        match rng.below(4) {
            0 => json!({"not": p}),
            1 => {
                let (c2, k2, vs2) = rng.pick(&cols);
                json!({"any": [p, predicate(rng, "column", c2, *k2, vs2)]})
            }
            _ => p,
        }
    }

    fn count(rng: &mut Rng) -> Value {
        let key = *rng.pick(&["at_least", "at_most", "exactly", "more_than", "less_than"]);
        json!({key: rng.below(4)})
    }

    const CHILDREN: &[(&str, &[&str])] = &[
        ("household", &["pets"]),
        (
            "accounts",
            &["subscriptions", "credit_cards", "transactions"],
        ),
        ("credit_cards", &["transactions"]),
        ("carts", &["cart_products"]),
    ];

    fn rel(rng: &mut Rng, slug: &str, depth: usize) -> Value {
        let mut n = json!({"relationship": slug});
        if rng.coin() {
            n["where"] = filter(rng, slug);
        }
        if rng.below(3) == 0 {
            n["count"] = count(rng);
        }
        let numeric: Vec<(&str, char, Vec<Value>)> = columns(slug)
            .into_iter()
            .filter(|(_, k, _)| *k == 'n')
            .collect();
        if !numeric.is_empty() && rng.below(4) == 0 {
            let (c, _, _) = rng.pick(&numeric);
            let f = *rng.pick(&["sum", "avg", "min", "max", "count_distinct"]);
            let op = *rng.pick(&["gt", "lt", "equals", "gte"]);
            n["aggregate"] = json!({"fn": f, "column": c, "op": op, "value": rng.below(300)});
        }
        if depth < 3 {
            if let Some((_, kids)) = CHILDREN.iter().find(|(s, _)| *s == slug) {
                if rng.coin() {
                    let kid = *rng.pick(kids);
                    n["relationships"] = json!([rel(rng, kid, depth + 1)]);
                }
            }
        }
        n
    }

    fn node(rng: &mut Rng, depth: usize) -> Value {
        match rng.below(if depth > 2 { 4 } else { 7 }) {
            0 => {
                let traits: [(&str, char, Vec<Value>); 3] = [
                    ("plan", 't', vec![json!("premium"), json!("free")]),
                    ("household_id", 'n', vec![json!(1), json!(2)]),
                    ("created_at", 'd', vec![json!("2026-01-01")]),
                ];
                let (c, k, vs) = rng.pick(&traits);
                predicate(rng, "trait", c, *k, vs)
            }
            1 => {
                let slug = *rng.pick(&[
                    "household",
                    "pets",
                    "accounts",
                    "subscriptions",
                    "credit_cards",
                    "transactions",
                    "carts",
                    "cart_products",
                ]);
                rel(rng, slug, 1)
            }
            2 => {
                let mut e = json!({"event": rng.pick(&["Order Completed", "Page Viewed", "Nope"])});
                if rng.coin() {
                    e["where"] = match rng.below(3) {
                        0 => {
                            json!({"property": "total", "op": rng.pick(&["gt", "lt", "equals"]), "value": rng.below(100)})
                        }
                        1 => {
                            json!({"property": "currency", "op": rng.pick(&["equals", "not_equals"]), "value": "USD"})
                        }
                        _ => json!({"property": "items.count", "op": "is_not_null"}),
                    };
                }
                if rng.coin() {
                    e["within"] = json!(rng.pick(&[
                        json!({"last": "30 days"}),
                        json!({"after": "2026-11-10"}),
                        json!({"between": ["2026-01-01", "2026-11-20"]})
                    ]));
                }
                if rng.coin() {
                    e["count"] = count(rng);
                }
                e
            }
            3 => json!({"audience": "cat_owners", "member": rng.coin()}),
            4 => json!({"all": [node(rng, depth + 1), node(rng, depth + 1)]}),
            5 => json!({"any": [node(rng, depth + 1), node(rng, depth + 1)]}),
            _ => json!({"not": node(rng, depth + 1)}),
        }
    }

    fn count_of(def: &Value) -> i64 {
        let preview = Spi::get_one_with_args::<JsonB>(
            "SELECT la_preview_audience($1, 0)",
            &[JsonB(def.clone()).into()],
        )
        .unwrap()
        .unwrap()
        .0;
        preview["count"].as_i64().unwrap()
    }

    #[pg_test]
    fn random_definitions_compile_run_and_complement() {
        Spi::run(include_str!("../demo/warehouse.sql")).unwrap();
        let graph: Value = serde_json::from_str(include_str!("../demo/graph.json")).unwrap();
        Spi::run_with_args("SELECT la_define_data_graph($1)", &[JsonB(graph).into()]).unwrap();
        Spi::run(r#"SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}')"#).unwrap();
        Spi::run(
            "CREATE FUNCTION linked_audiences_test_members(q text) RETURNS SETOF text LANGUAGE plpgsql AS \
             $$ BEGIN RETURN QUERY EXECUTE q; END $$",
        )
        .unwrap();
        let total = 6;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..300 {
            let def = node(&mut rng, 0);
            let problems = Spi::get_one_with_args::<JsonB>(
                "SELECT la_validate_audience($1)",
                &[JsonB(def.clone()).into()],
            )
            .unwrap()
            .unwrap()
            .0;
            assert_eq!(problems, json!([]), "definition {i} is invalid: {def}");
            let yes = count_of(&def);
            let no = count_of(&json!({"not": def}));
            assert_eq!(
                yes + no,
                total,
                "definition {i}: {yes} + {no} != {total}: {def}"
            );
            let direct = Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM linked_audiences_test_members(la_audience_sql($1))",
                &[JsonB(def.clone()).into()],
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                direct, yes,
                "definition {i}: compiled SQL gives {direct}, preview {yes}: {def}"
            );
            // la_explain_profile's root is membership, for members and non-members.
            if i % 3 == 0 {
                let explained = Spi::get_one_with_args::<JsonB>(
                    "SELECT coalesce(jsonb_agg(p.id ORDER BY p.id), '[]') FROM profiles p
                     WHERE (la_explain_profile($1::jsonb, p.id::text) ->> 'matched')::boolean",
                    &[JsonB(def.clone()).into()],
                )
                .unwrap()
                .unwrap()
                .0;
                let members = Spi::get_one_with_args::<JsonB>(
                    "SELECT coalesce(jsonb_agg(m::bigint ORDER BY m::bigint), '[]') FROM linked_audiences_test_members(la_audience_sql($1)) m",
                    &[JsonB(def.clone()).into()],
                )
                .unwrap()
                .unwrap()
                .0;
                assert_eq!(
                    explained, members,
                    "definition {i}: explained roots differ from members: {def}"
                );
            }
        }
    }

    /// The hostile corpus (compile::corpus) through the SQL functions of a live database:
    /// validate, preview, compiled SQL and define, each in a subtransaction. Nothing
    /// crashes or raises an internal error, every error is one of the documented
    /// SQLSTATEs with its JSON path first, no injected statement runs, and nothing of a
    /// failed definition is stored.
    #[pg_test]
    fn hostile_corpus_against_a_live_database() {
        use crate::compile::corpus::{corpus, seeds};
        warehouse();
        Spi::run_with_args(
            "SELECT la_define_data_graph($1)",
            &[JsonB(demo_graph()).into()],
        )
        .unwrap();
        Spi::run(r#"SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}')"#).unwrap();
        Spi::run(
            "CREATE TABLE la_fuzz_pwned (at timestamptz DEFAULT now());
             CREATE FUNCTION public.la_fuzz_pwned() RETURNS int LANGUAGE sql AS
               $$ INSERT INTO la_fuzz_pwned DEFAULT VALUES RETURNING 1 $$;
             CREATE FUNCTION la_fuzz_try(def text, key text) RETURNS text[] LANGUAGE plpgsql AS $$
             DECLARE
               calls text[] := ARRAY['SELECT la_validate_audience($1::jsonb)',
                                     'SELECT la_preview_audience($1::jsonb, 2)',
                                     'SELECT la_audience_sql($1::jsonb)',
                                     'SELECT la_define_audience($2, $1::jsonb)'];
               out text[] := '{}'; st text; msg text; c text;
             BEGIN
               FOREACH c IN ARRAY calls LOOP
                 BEGIN
                   EXECUTE c USING def, key;
                   out := out || 'ok'::text;
                 EXCEPTION WHEN others THEN
                   GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                   out := out || (st || ' ' || msg);
                 END;
               END LOOP;
               RETURN out;
             END $$;",
        )
        .unwrap();
        let pets = Spi::get_one::<i64>("SELECT count(*) FROM pets").unwrap();
        for (i, seed) in seeds().iter().enumerate() {
            let problems = Spi::get_one_with_args::<JsonB>(
                "SELECT la_validate_audience($1)",
                &[JsonB(seed.clone()).into()],
            )
            .unwrap()
            .unwrap()
            .0;
            assert_eq!(problems, json!([]), "seed {i} is not valid: {seed}");
        }
        let defs = corpus(400);
        assert!(defs.len() > 3000, "only {} definitions", defs.len());
        let mut defined = 0i64;
        let mut by_state = std::collections::BTreeMap::<String, usize>::new();
        for (i, def) in defs.iter().enumerate() {
            let results = Spi::get_one_with_args::<Vec<String>>(
                "SELECT la_fuzz_try($1, $2)",
                &[
                    serde_json::to_string(def).unwrap().into(),
                    format!("fuzz_{i}").into(),
                ],
            )
            .unwrap()
            .unwrap();
            for r in &results {
                let (state, msg) = r.split_once(' ').unwrap_or((r.as_str(), ""));
                *by_state.entry(state.to_string()).or_default() += 1;
                match state {
                    "ok" => {}
                    // jsonb input refusing a NUL character: Postgres' own message.
                    "22P05" => {}
                    "22023" | "42P01" | "42703" | "42704" => assert!(
                        msg.starts_with('$'),
                        "definition {i}: error without its JSON path first: {r}: {def}"
                    ),
                    _ => panic!("definition {i}: unexpected error {r}: {def}"),
                }
            }
            if results[3] == "ok" {
                defined += 1;
            }
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM la_fuzz_pwned").unwrap(),
            Some(0),
            "an injected statement ran"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM pets").unwrap(),
            pets
        );
        // Exactly the successful definitions are stored, one version each, all valid.
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM linked_audiences.audience WHERE key LIKE 'fuzz%'"
            )
            .unwrap(),
            Some(defined)
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM linked_audiences.audience_version v
                 JOIN linked_audiences.audience a ON a.id = v.audience_id WHERE a.key LIKE 'fuzz%'"
            )
            .unwrap(),
            Some(defined)
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM linked_audiences.audiences
                 WHERE la_validate_audience(definition) <> '[]'::jsonb"
            )
            .unwrap(),
            Some(0)
        );
        assert!(
            defined > 100,
            "only {defined} definitions were valid: {by_state:?}"
        );
        // A sample of them computes.
        let computed = Spi::get_one::<String>(
            "SELECT count(*) FILTER (WHERE r ? 'members') || ' computed, '
                    || count(*) FILTER (WHERE r ->> 'status' = 'failed') || ' failed'
             FROM (SELECT la_compute_audience(key) AS r FROM linked_audiences.audiences
                   WHERE key LIKE 'fuzz%' AND id % 20 = 0) c",
        )
        .unwrap()
        .unwrap();
        let sample = (defined / 20).max(1);
        assert!(
            computed.ends_with(" computed, 0 failed") && !computed.starts_with("0 "),
            "{computed} (of about {sample})"
        );
        pgrx::info!(
            "hostile corpus: {} definitions, {defined} defined, outcomes {by_state:?}",
            defs.len()
        );
    }

    /// The outbox maps events that need no fitting in SQL: for every preset and event
    /// shape, the SQL mapping gives what the Rust one (`map_event`) gives.
    #[pg_test]
    fn sql_mapping_is_map_event() {
        use crate::activation::payload::{map_event, map_event_sql};
        use crate::activation::PRESETS;
        let (action, mapped) = map_event_sql("x.p", "x.preset");
        let payloads = vec![
            json!({"type": "track", "event": "Audience Entered", "userId": "u-1", "messageId": "m-1",
                   "timestamp": "2026-11-28T12:00:00.000Z",
                   "properties": {"audience_key": "cats", "cats": true, "pets": [{"id": 7, "__entity": "pets"}]},
                   "context": {"personas": {"computation_class": "audience"}}}),
            json!({"type": "identify", "userId": "u-2", "messageId": "m-2", "timestamp": "t",
                   "traits": {"cats": false, "email": "é@example.com", "n": 1.25}}),
            json!({"type": "track", "event": "Entity Added"}),
            json!({"type": "identify", "userId": null, "traits": null}),
            json!({"event": "no type", "properties": {}}),
        ];
        let sql = format!(
            "SELECT pg_catalog.jsonb_build_object('action', {action}, 'mapped', {mapped})
             FROM (SELECT $1::text AS preset, $2::jsonb AS p) x"
        );
        for preset in PRESETS {
            for p in &payloads {
                let (a, m) = map_event(preset, p);
                let got = Spi::get_one_with_args::<JsonB>(
                    &sql,
                    &[preset.into(), JsonB(p.clone()).into()],
                )
                .unwrap()
                .unwrap()
                .0;
                assert_eq!(got, json!({"action": a, "mapped": m}), "{preset}: {p}");
            }
        }
    }
}
