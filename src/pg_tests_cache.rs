//! The catalog snapshot a session keeps (`graph::cache`), as `cargo pgrx test` runs it:
//! in one transaction, so what is checked here is the session's own DDL, savepoints and
//! roles; another session's DDL and REPEATABLE READ are in
//! `tests/isolation/specs/catalog_cache.spec`.

#[pgrx::pg_schema]
mod tests {
    use crate::graph::cache;
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::{json, Value};

    fn setup() {
        Spi::run(
            "CREATE TABLE public.ck_profiles (id bigint PRIMARY KEY, score integer);
             INSERT INTO public.ck_profiles SELECT g, g FROM generate_series(1, 10) g;
             SELECT la_define_data_graph('{\"entities\": [], \"profile\": {\"table_ref\": \"public.ck_profiles\", \"primary_key\": \"id\"}}');
             SELECT la_define_audience('high', '{\"trait\": \"score\", \"op\": \"gt\", \"value\": 7}');",
        )
        .unwrap();
    }

    fn problems(def: Value) -> Vec<String> {
        let v = Spi::get_one_with_args::<JsonB>(
            "SELECT la_validate_audience($1)",
            &[JsonB(def).into()],
        )
        .unwrap()
        .unwrap()
        .0;
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Whether `call` used a kept snapshot, in one of ten tries: the tests running beside
    /// this one (other sessions) create functions, roles and schemas, whose invalidations
    /// rightly drop every kept snapshot now and then (the role test retries the same way).
    fn kept(mut call: impl FnMut()) -> bool {
        (0..10).any(|_| {
            let before = cache::hits();
            call();
            cache::hits() > before
        })
    }

    fn members() -> i64 {
        let v = Spi::get_one::<JsonB>("SELECT la_compute_audience('high', 'full')")
            .unwrap()
            .unwrap()
            .0;
        v["members"].as_i64().unwrap()
    }

    #[pg_test]
    fn computes_use_the_kept_snapshot_and_see_ddl_at_once() {
        setup();
        // (The session's first temporary table creates its temporary schema, which
        // drops the snapshot once.)
        assert_eq!(members(), 3);
        assert_eq!(members(), 3);
        // The compute's own temporary tables (a new relation and row type each time)
        // do not drop the snapshot: the next compute uses it.
        assert!(
            kept(|| assert_eq!(members(), 3)),
            "the compute read the catalog again"
        );
        // A column added in this transaction is seen by the next call.
        let tier = json!({"trait": "tier", "op": "equals", "value": "gold"});
        assert_eq!(problems(tier.clone()).len(), 1);
        Spi::run("ALTER TABLE public.ck_profiles ADD COLUMN tier text").unwrap();
        assert_eq!(problems(tier.clone()), Vec::<String>::new());
        // A column type changed: the comparison follows it.
        Spi::run("ALTER TABLE public.ck_profiles ALTER COLUMN score TYPE numeric").unwrap();
        let sql = Spi::get_one::<String>(
            "SELECT la_audience_sql(definition) FROM linked_audiences.audience WHERE key = 'high'",
        )
        .unwrap()
        .unwrap();
        assert!(sql.contains("'7'::numeric"), "{sql}");
        assert_eq!(members(), 3);
        // DDL in a subtransaction that rolls back: the snapshot read inside it is
        // dropped with it.
        let extra = json!({"trait": "extra", "op": "is_null"});
        Spi::run(
            "DO $$ BEGIN
               ALTER TABLE public.ck_profiles ADD COLUMN extra integer;
               IF jsonb_array_length(la_validate_audience('{\"trait\": \"extra\", \"op\": \"is_null\"}')) <> 0 THEN
                 RAISE 'the new column was not seen';
               END IF;
               RAISE EXCEPTION USING ERRCODE = 'P0004';
             EXCEPTION WHEN assert_failure THEN NULL;
             END $$",
        )
        .unwrap();
        assert_eq!(problems(extra).len(), 1);
        Spi::run("DROP TABLE public.ck_profiles CASCADE").unwrap();
        assert!(
            problems(json!({"trait": "score", "op": "gt", "value": 7}))[0]
                .contains("no longer valid"),
            "a dropped table must be noticed"
        );
    }

    #[pg_test]
    fn the_snapshot_is_kept_per_role() {
        setup();
        assert_eq!(members(), 3);
        // A role without SELECT on the profiles is told so by the compiler (a snapshot
        // kept for the superuser would say the table is readable, and the query would
        // fail later with Postgres's own message).
        Spi::run(
            "CREATE ROLE ck_editor; SELECT la_grant('ck_editor', 'editor');
             SET ROLE ck_editor",
        )
        .unwrap();
        let denied = problems(json!({"trait": "score", "op": "gt", "value": 7}));
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert!(
            denied[0].starts_with("permission denied for table public.ck_profiles"),
            "{denied:?}"
        );
        // Each role's snapshot is kept beside the others' (the real-time worker computes
        // each audience as its owner): a call as the superuser, then one as the role.
        let score = json!({"trait": "score", "op": "gt", "value": 7});
        let role_hit = (0..10).any(|_| {
            assert_eq!(problems(score.clone()), Vec::<String>::new());
            Spi::run("SET ROLE ck_editor").unwrap();
            let before = cache::hits();
            let again = problems(score.clone());
            let hit = cache::hits() > before;
            Spi::run("RESET ROLE").unwrap();
            assert_eq!(again, denied);
            hit
        });
        assert!(role_hit, "the role's snapshot was not kept");
        // Granted in the same transaction: seen at once.
        Spi::run("GRANT SELECT ON public.ck_profiles TO ck_editor; SET ROLE ck_editor").unwrap();
        let allowed = problems(json!({"trait": "score", "op": "gt", "value": 7}));
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(allowed, Vec::<String>::new());
    }
}
