-- linked_audiences 0.1.0 -> 0.2.0
--
-- Every function implemented in Rust pins its search_path, as the SQL ones already
-- did: nothing is resolved through the caller's search_path.
\echo Use "ALTER EXTENSION linked_audiences UPDATE TO '0.2.0'" to load this file. \quit

ALTER FUNCTION @extschema@.la_activate(text,text,text,text,jsonb,text,boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_audience_sql(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_create_destination(text,text,jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_data_graph() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_data_graph_dot() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_define_audience(text,jsonb,text,text,boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_define_data_graph(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_drop_audience(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_preview_audience(jsonb,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_preview_audience(text,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_preview_event(bigint,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_register_entity(text,regclass,text,text,boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_register_event_source(regclass,text,text,text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_register_identifiers(regclass,text,text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_register_profile(regclass,text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_register_relationship(text,text,text,text,jsonb,jsonb,jsonb,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_set_activation_enabled(bigint,boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_set_audience_enabled(text,boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_unregister_entity(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_unregister_relationship(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_validate_audience(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.la_validate_data_graph(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION linked_audiences.bench_compile(jsonb,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION linked_audiences.compute_audience(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION linked_audiences.finish_event(text,jsonb,integer) SET search_path = pg_catalog, pg_temp;

-- The high-volume tables carry no foreign keys: checked row by row, they cost a first
-- compute more than writing its rows. la_drop_audience and la_outbox_prune delete what
-- the cascades did.
ALTER TABLE linked_audiences.audience_members DROP CONSTRAINT audience_members_audience_id_fkey;
ALTER TABLE linked_audiences.audience_entities DROP CONSTRAINT audience_entities_audience_id_fkey;
ALTER TABLE linked_audiences.membership_changes DROP CONSTRAINT membership_changes_run_id_fkey;
ALTER TABLE linked_audiences.outbox_state DROP CONSTRAINT outbox_state_id_fkey;
CREATE OR REPLACE FUNCTION @extschema@.la_outbox_prune(older_than interval) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH s AS (
        DELETE FROM linked_audiences.outbox_state s
        WHERE s.status = 'acked' AND s.acked_at < clock_timestamp() - older_than
        RETURNING s.id),
    o AS (
        DELETE FROM linked_audiences.outbox o USING s WHERE o.id = s.id
        RETURNING 1)
    SELECT count(*) FROM o;
$$;
