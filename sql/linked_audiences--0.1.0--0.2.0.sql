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
