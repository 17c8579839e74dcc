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
}
