-- Joins compare as their columns' type, whichever side brings it: a text trait joined
-- to a citext key compares case-insensitively in preview, the displayed SQL and
-- compute, and an incremental compute maps a change up the join the same way.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
CREATE EXTENSION IF NOT EXISTS citext;
DROP TABLE IF EXISTS ty_groups, ty_profiles;
CREATE TABLE ty_groups (code citext PRIMARY KEY, region text);
CREATE TABLE ty_profiles (id int PRIMARY KEY, grp text);
INSERT INTO ty_groups VALUES ('eu-1', 'eu'), ('US', 'us');
INSERT INTO ty_profiles VALUES (1, 'EU-1'), (2, 'us'), (3, 'eu-2');
SELECT la_define_data_graph('{
  "entities": [{"slug": "groups", "table_ref": "ty_groups", "primary_key": "code"}],
  "profile": {"table_ref": "ty_profiles", "primary_key": "id",
              "relationships": [{"slug": "grp", "related_entity": "groups",
                                 "trait": {"name": "grp", "join_key": "code"}}]}}') ->> 'relationships' AS relationships;
SELECT la_audience_sql('{"relationship": "grp"}');
SELECT la_preview_audience('{"relationship": "grp"}'::jsonb, 0) -> 'count' AS in_a_group;
SELECT la_define_audience('eu_x', '{"relationship": "grp", "where": {"column": "region", "op": "equals", "value": "x"}}') ->> 'key' AS defined;
SELECT jsonb_array_length(la_capture_changes()) AS captured;
SELECT la_compute_audience('eu_x') - 'duration_ms' - 'run_id' AS first;
-- The group 'eu-1' changes: its profile (grp 'EU-1') is evaluated, and enters.
UPDATE ty_groups SET region = 'x' WHERE code = 'eu-1';
SELECT la_compute_audience('eu_x', 'incremental') - 'duration_ms' - 'run_id' AS after_the_change;
SELECT profile_id FROM linked_audiences.audience_members ORDER BY 1;
-- Computed in another time zone (or by another role): not incremental, since
-- comparisons with now() or with date literals may mean other instants there.
SET TimeZone = 'Asia/Kolkata';
SELECT la_compute_audience('eu_x', 'incremental') ->> 'error' AS other_zone;
SELECT la_compute_audience('eu_x') ->> 'mode' AS auto;
RESET TimeZone;
SELECT la_capture_changes(false) = '[]' AS capture_off;
-- A mixed-case table is named in messages as SQL must name it.
CREATE TABLE "TyPets" (id int PRIMARY KEY, "OwnerId" int);
SELECT la_validate_data_graph('{
  "entities": [{"slug": "pets", "table_ref": "\"TyPets\"", "primary_key": "id"}],
  "profile": {"table_ref": "ty_profiles", "primary_key": "id",
              "relationships": [{"slug": "pets", "related_entity": "pets",
                                 "trait": {"name": "id", "join_key": "ownerid"}}]}}') -> 0 ->> 'message' AS message;
DROP TABLE "TyPets";
