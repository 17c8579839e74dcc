-- linked_audiences 0.2.0 -> 0.3.0
--
-- Schedules: la_schedules() shows each schedule with pg_cron's last run and a hint for
-- failures; la_compute_all() and la_schedules() warn about a schedule whose last three
-- runs failed; la_schedule, la_schedule_all and la_unschedule say what to run in
-- pg_cron's database when pg_cron lives in another one.
-- Outbox: la_outbox_release gives claimed rows back without counting an attempt;
-- la_outbox_fail(..., dead => true) dead-letters at once (a permanent failure).
-- Incremental computes: change capture (la_capture_changes, the change log, each
-- audience's position), la_compute_audience(key, mode) and la_compute_all(mode).
-- Activations: "Audience Membership Changed" is the identify event's name ("Audience
-- Entered and Exited" stays an alias); send_existing; an activation sends the changes
-- computed after its creation, and a relationship newly tracked for an audience with
-- members starts silently (audience.tracked).
\echo Use "ALTER EXTENSION linked_audiences UPDATE TO '0.3.0'" to load this file. \quit

DROP FUNCTION linked_audiences.require_pg_cron();

ALTER TABLE linked_audiences.runs ADD COLUMN mode text, ADD COLUMN profiles_evaluated bigint;
ALTER TABLE linked_audiences.audience ADD COLUMN tracked text[] NOT NULL DEFAULT '{}';
-- The real-time worker computes an audience as the role that defined it; audiences
-- defined before 0.3.0 get the role that updates the extension.
ALTER TABLE linked_audiences.audience ADD COLUMN owner name NOT NULL DEFAULT CURRENT_USER;
-- What 0.2.0 computes kept: the entities of the relationships enabled entity activations name.
UPDATE linked_audiences.audience a
SET tracked = coalesce((SELECT array_agg(DISTINCT e.relationship ORDER BY e.relationship)
                        FROM linked_audiences.audience_entities e WHERE e.audience_id = a.id), '{}');

ALTER TABLE linked_audiences.activation DROP CONSTRAINT activation_event_check;
UPDATE linked_audiences.activation SET event = 'Audience Membership Changed' WHERE event = 'Audience Entered and Exited';
ALTER TABLE linked_audiences.activation
    ADD CONSTRAINT activation_event_check CHECK (event IN ('Audience Entered', 'Audience Exited',
        'Audience Membership Changed', 'Entity Added', 'Entity Removed')),
    ADD COLUMN send_existing boolean NOT NULL DEFAULT false,
    ADD COLUMN first_run_id bigint;
-- Activations that have been through a compute have had their first one.
UPDATE linked_audiences.activation v SET first_run_id = a.last_run_id
FROM linked_audiences.audience a WHERE a.id = v.audience_id;

-- The pg_cron job of one audience: its name and command (a disabled audience is skipped
-- when the job runs; the key is quoted as a literal).
CREATE FUNCTION linked_audiences.job_command(key text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN key = '*' THEN format('SELECT * FROM %I.la_compute_all()', '@extschema@')
           ELSE format('SELECT %I.la_compute_audience(a.key) FROM linked_audiences.audience a WHERE a.key = %L AND a.enabled',
                       '@extschema@', key) END
$$;

-- The statement that schedules a job from pg_cron's database, for the HINT. pg_cron
-- keeps one job per name and role across databases, so the job is named
-- "linked_audiences:<key>@<database>": two databases with the same audience key keep
-- a job each.
CREATE FUNCTION linked_audiences.schedule_elsewhere(key text, schedule text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('run, as a superuser or a role granted EXECUTE on cron.schedule_in_database: '
                  'SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                  'linked_audiences:' || key || '@' || current_database(), schedule,
                  linked_audiences.job_command(key), current_database())
$$;

-- Refuses with 55000 unless pg_cron is installed in this database. The HINT says what
-- to do: install it, or, when pg_cron is preloaded but lives in another database,
-- `elsewhere` (the statement to run there, or how to list jobs there).
CREATE FUNCTION linked_audiences.require_pg_cron(elsewhere text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF cron_db IS NULL OR current_setting('shared_preload_libraries') NOT LIKE '%pg_cron%' THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries and set cron.database_name to this database in postgresql.conf, restart, then run CREATE EXTENSION pg_cron.';
    ELSIF cron_db = current_database() THEN
        RAISE EXCEPTION 'pg_cron is preloaded for this database but not installed in it'
            USING ERRCODE = '55000', HINT = 'Run CREATE EXTENSION pg_cron;';
    ELSIF elsewhere IS NULL THEN
        RAISE EXCEPTION 'pg_cron lives in database "%", not in "%"', cron_db, current_database()
            USING ERRCODE = '55000',
                  HINT = format('Schedule from database %I with cron.schedule_in_database, or set cron.database_name = %L and restart.',
                                cron_db, current_database());
    ELSE
        RAISE EXCEPTION 'pg_cron lives in database "%", not in "%": its jobs for this database are kept there', cron_db, current_database()
            USING ERRCODE = '55000', HINT = format('In database %I, %s', cron_db, elsewhere);
    END IF;
END
$$;

-- What to do about a failed pg_cron run, from its message.
CREATE FUNCTION linked_audiences.cron_hint(message text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN message ILIKE '%connection failed%' OR message ILIKE '%could not connect%' THEN
            'pg_cron could not connect to this server: set cron.use_background_workers = on (with max_worker_processes high enough) '
            'or cron.host to the server''s socket directory in postgresql.conf, and restart'
        WHEN message ILIKE '%password authentication failed%' OR message ILIKE '%no pg_hba.conf entry%' THEN
            'pg_cron connects as the job''s role: allow it in pg_hba.conf (trust or peer for local connections, or a .pgpass entry), '
            'or set cron.use_background_workers = on'
        WHEN message ILIKE '%permission denied%' THEN
            'the job runs as the role that scheduled it: grant it la_grant(role, ''editor'') and SELECT on the graph''s tables'
        WHEN message ILIKE '%does not exist%' THEN
            'the job''s database, role or function is gone: check cron.job.database and username, and that the extension is installed there'
        ELSE 'see the message; the job''s command is in cron.job'
    END
$$;

-- Warns about each visible schedule of this database whose last three runs failed.
CREATE FUNCTION linked_audiences.warn_failing_schedules() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT j.jobname, j.jobid, last.msg
        FROM cron.job j
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE d.status = 'failed') AS failures, count(*) AS runs,
                   (array_agg(d.return_message ORDER BY d.runid DESC))[1] AS msg
            FROM (SELECT status, return_message, runid FROM cron.job_run_details
                  WHERE jobid = j.jobid AND status IN ('succeeded', 'failed')
                  ORDER BY runid DESC LIMIT 3) d) last
        WHERE j.jobname LIKE 'linked_audiences:%' AND j.database = current_database()
          AND last.runs = 3 AND last.failures = 3
        ORDER BY j.jobname $q$
    LOOP
        RAISE WARNING 'linked_audiences: schedule "%" (pg_cron job %) failed its last three runs: %',
            substr(r.jobname, 18), r.jobid, r.msg
            USING HINT = linked_audiences.cron_hint(r.msg);
    END LOOP;
EXCEPTION WHEN insufficient_privilege OR undefined_table OR undefined_column OR invalid_schema_name THEN
    RETURN;  -- a pg_cron we cannot read is no reason to fail a compute
END
$$;

-- Schedules one audience (pg_cron job "linked_audiences:<key>"); a disabled audience is
-- skipped when the job runs. Scheduling the same key again replaces its schedule.
CREATE OR REPLACE FUNCTION @extschema@.la_schedule(key text, schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    IF key IS NULL OR schedule IS NULL THEN
        RAISE EXCEPTION '%: must not be null', CASE WHEN key IS NULL THEN 'key' ELSE 'schedule' END
            USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM linked_audiences.audience a WHERE a.key = la_schedule.key) THEN
        RAISE EXCEPTION 'key: audience "%" does not exist', key USING ERRCODE = '42704';
    END IF;
    PERFORM linked_audiences.require_pg_cron(linked_audiences.schedule_elsewhere(key, schedule));
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
    USING 'linked_audiences:' || key, schedule, linked_audiences.job_command(key);
    RETURN job;
END
$$;

-- One job ("linked_audiences:*") computing every enabled audience in dependency order.
CREATE OR REPLACE FUNCTION @extschema@.la_schedule_all(schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    IF schedule IS NULL THEN
        RAISE EXCEPTION 'schedule: must not be null' USING ERRCODE = '22023';
    END IF;
    PERFORM linked_audiences.require_pg_cron(linked_audiences.schedule_elsewhere('*', schedule));
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
    USING 'linked_audiences:*', schedule, linked_audiences.job_command('*');
    RETURN job;
END
$$;

-- Removes the job of an audience ('*': the la_schedule_all job). Returns whether there
-- was one.
CREATE OR REPLACE FUNCTION @extschema@.la_unschedule(key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM linked_audiences.require_pg_cron(format(
        'remove it as the role that scheduled it: SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %L AND database = %L;',
        'linked_audiences:' || key || '@' || current_database(), current_database()));
    EXECUTE 'SELECT jobid FROM cron.job WHERE jobname = $1 AND database = current_database()'
        INTO job USING 'linked_audiences:' || key;
    IF job IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT cron.unschedule($1)' USING job;
    RETURN true;
END
$$;

-- The schedules of this database that the caller can see (pg_cron shows each role only
-- its own jobs), with pg_cron's last run of each and a hint for a failure.
CREATE FUNCTION @extschema@.la_schedules()
RETURNS TABLE (audience text, jobid bigint, schedule text, active boolean, last_start timestamptz,
               last_end timestamptz, last_status text, last_message text, hint text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM linked_audiences.require_pg_cron(format(
        'list them with: SELECT jobid, jobname, schedule, active FROM cron.job WHERE jobname LIKE %L AND database = %L;',
        'linked_audiences:%', current_database()));
    PERFORM linked_audiences.warn_failing_schedules();
    RETURN QUERY EXECUTE $q$
        SELECT substr(j.jobname, 18), j.jobid, j.schedule, j.active, d.start_time, d.end_time, d.status, d.return_message,
               CASE
                   WHEN d.status = 'failed' THEN linked_audiences.cron_hint(d.return_message)
                   WHEN d.status = 'succeeded' AND EXISTS (
                        SELECT 1 FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
                        WHERE (a.key = substr(j.jobname, 18) OR j.jobname = 'linked_audiences:*')
                          AND r.status = 'failed' AND r.started_at >= d.start_time)
                   THEN 'the job ran but a compute failed: see linked_audiences.runs (status failed, error)'
               END
        FROM cron.job j
        LEFT JOIN LATERAL (SELECT * FROM cron.job_run_details x WHERE x.jobid = j.jobid
                           ORDER BY x.runid DESC LIMIT 1) d ON true
        WHERE j.jobname LIKE 'linked_audiences:%' AND j.database = current_database()
        ORDER BY j.jobname $q$;
END
$$;

-- Gives claimed rows back without counting an attempt (a consumer shutting down, or told
-- by the destination to slow down): each is visible again after `after`. Only rows whose
-- claim is still live are released (a claim whose visibility timeout has passed may
-- already be another consumer's). Returns how many were released.
CREATE FUNCTION @extschema@.la_outbox_release(ids uuid[], after interval DEFAULT '0 seconds') RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    IF after IS NULL OR after < interval '0' THEN
        RAISE EXCEPTION 'after: must be zero or positive, got %', after USING ERRCODE = '22023';
    END IF;
    WITH r AS (
        UPDATE linked_audiences.outbox_state s
        SET visible_at = clock_timestamp() + after, attempts = greatest(s.attempts - 1, 0)
        WHERE s.id = ANY (ids) AND s.status = 'pending' AND s.visible_at > clock_timestamp()
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM r;
    RETURN n;
END
$$;


-- la_activate gains send_existing (a new signature: the old one goes).
DROP FUNCTION @extschema@.la_activate(text, text, text, text, jsonb, text, boolean);
CREATE FUNCTION @extschema@."la_activate"(
	"audience" TEXT, /* & str */
	"destination" TEXT, /* & str */
	"event" TEXT, /* & str */
	"entity" TEXT DEFAULT NULL, /* Option < String > */
	"properties" jsonb DEFAULT '{}', /* Doc */
	"event_name" TEXT DEFAULT NULL, /* Option < String > */
	"enabled" bool DEFAULT true, /* bool */
	"send_existing" bool DEFAULT false /* bool */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'la_activate_with_wrapper';

-- Why is this profile in?
CREATE FUNCTION @extschema@."la_explain_profile"(
	"definition" jsonb, /* Doc */
	"profile_id" TEXT /* & str */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'la_explain_profile_definition_wrapper';
CREATE FUNCTION @extschema@."la_explain_profile"(
	"audience" TEXT, /* & str */
	"profile_id" TEXT /* & str */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'la_explain_profile_key_wrapper';

-- la_outbox_fail gains dead (a new signature: the old one goes).
DROP FUNCTION @extschema@.la_outbox_fail(uuid, text, interval);
-- Reports a failed delivery: the row becomes visible again after retry_after, doubled
-- for each earlier attempt (capped at 2^10), or is dead-lettered once it has been
-- handed out max_attempts times (destination setting, default 10), or at once with
-- dead => true (a permanent failure: the destination refused the event). Returns
-- 'retrying' or 'dead'.
CREATE FUNCTION @extschema@.la_outbox_fail(id uuid, error text, retry_after interval DEFAULT '1 minute',
                                           dead boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tries integer;
    max_tries integer;
BEGIN
    IF retry_after IS NULL OR retry_after < interval '0' THEN
        RAISE EXCEPTION 'retry_after: must be zero or positive, got %', coalesce(retry_after::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT s.attempts, coalesce((d.settings->>'max_attempts')::integer, 10) INTO tries, max_tries
    FROM linked_audiences.outbox_state s JOIN linked_audiences.destination d ON d.key = s.destination
    WHERE s.id = la_outbox_fail.id AND s.status = 'pending'
    FOR UPDATE OF s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'id: outbox row % is not pending', la_outbox_fail.id USING ERRCODE = '42704';
    END IF;
    IF tries >= max_tries OR coalesce(la_outbox_fail.dead, false) THEN
        UPDATE linked_audiences.outbox_state s SET status = 'dead', last_error = error
        WHERE s.id = la_outbox_fail.id;
        RETURN 'dead';
    END IF;
    UPDATE linked_audiences.outbox_state s
    SET visible_at = clock_timestamp() + retry_after * power(2, least(greatest(tries - 1, 0), 10)),
        last_error = error
    WHERE s.id = la_outbox_fail.id;
    RETURN 'retrying';
END
$$;


-- Change capture for incremental computes (la_capture_changes). None of it is dumped:
-- after a restore, capture is turned on again and each audience computes in full once.
CREATE TABLE linked_audiences.capture (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled    boolean NOT NULL DEFAULT false,
    -- The transaction that turned capture on: a compute whose previous snapshot does not
    -- see it cannot rely on the log.
    started_tx xid8,
    -- The tables with capture triggers (quoted names).
    tables     jsonb NOT NULL DEFAULT '[]',
    -- Log rows of transactions before this one have been pruned.
    pruned_before xid8
);
INSERT INTO linked_audiences.capture DEFAULT VALUES;
-- The link values of every row a captured statement touched (old and new), by writing
-- transaction: shared by all audiences, each reading from its own position.
-- Unlogged: writers pay for a row in it on every captured statement, and without WAL
-- it costs them less. A crash empties it (and a standby or a physical backup never
-- has its rows); capture_alive tells that it happened.
CREATE UNLOGGED TABLE linked_audiences.change_log (
    tx       xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    relation text NOT NULL,
    col      text NOT NULL,
    value    text
);
CREATE INDEX change_log_tx ON linked_audiences.change_log (tx);
-- Unlogged too, emptied by the same crash: while capture is on it holds a row written
-- after the last crash (by the transaction in `since`, the one that turned capture on
-- or the first compute after the crash). An audience continues incrementally only from
-- a position whose snapshot sees such a row; every other computes in full once.
CREATE UNLOGGED TABLE linked_audiences.capture_alive (
    since xid8 NOT NULL
);
-- Where each audience's last compute left the warehouse: the snapshot taken before it
-- read anything, and a fingerprint of what it computed (its query and parameters, the
-- relationships it tracks, the graph): an incremental compute continues from there only
-- when the fingerprint is unchanged.
CREATE TABLE linked_audiences.compute_position (
    audience_id bigint PRIMARY KEY,
    snapshot    pg_snapshot NOT NULL,
    -- The computing transaction: what it wrote itself is after the snapshot.
    tx          xid8 NOT NULL,
    -- Its now(): conditions relative to the clock are continued from there.
    at          timestamptz NOT NULL,
    -- The audience has such conditions: it changes as time passes, without writes.
    clock       boolean NOT NULL DEFAULT false,
    fingerprint text NOT NULL
);

-- The capture trigger (la_capture_changes): records, once per statement and set-based,
-- the distinct values of the link columns (TG_ARGV[1:]) of the rows in the transition
-- tables of relation TG_ARGV[0]; a TRUNCATE is recorded as such. SECURITY DEFINER (an
-- exception to "functions run as the caller"): writers to the warehouse need no grant on
-- the extension's tables.
CREATE FUNCTION linked_audiences.capture_rows() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'capture_rows_wrapper';

-- The compute takes a mode (new signatures: the old ones go; pg_cron jobs calling
-- la_compute_audience(key) or la_compute_all() resolve to them through the default).
DROP FUNCTION @extschema@.la_compute_all();
DROP FUNCTION @extschema@.la_compute_audience(text);
DROP FUNCTION linked_audiences.compute_audience(text);
CREATE FUNCTION linked_audiences.compute_audience(key text, mode text) RETURNS jsonb STRICT VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', 'compute_audience_mode_wrapper';
-- Computes one audience (mode: full, incremental or auto). A failure inside the compute
-- rolls back everything it wrote (its subtransaction), records a failed run, and returns
-- it with a WARNING, so that la_compute_all and schedules go on with the next audience.
CREATE FUNCTION @extschema@.la_compute_audience(key text, mode text DEFAULT 'auto') RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    aid bigint;
    started timestamptz := clock_timestamp();
    st text;
    msg text;
    rid bigint;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'key: must not be null' USING ERRCODE = '22023';
    END IF;
    SELECT a.id INTO aid FROM linked_audiences.audience a WHERE a.key = la_compute_audience.key;
    IF aid IS NULL THEN
        -- Raises the error for an unknown key, with the nearest names.
        RETURN linked_audiences.compute_audience(key, mode);
    END IF;
    IF mode IS NULL OR mode NOT IN ('full', 'incremental', 'auto') THEN
        RAISE EXCEPTION 'mode: unknown mode "%"', mode USING ERRCODE = '22023', HINT = 'Modes: full, incremental, auto.';
    END IF;
    BEGIN
        RETURN linked_audiences.compute_audience(key, mode);
    EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        INSERT INTO linked_audiences.runs (audience_id, started_at, finished_at, status, error)
        VALUES (aid, started, clock_timestamp(), 'failed', st || ': ' || msg)
        RETURNING id INTO rid;
        RAISE WARNING 'linked_audiences: computing audience "%" failed: %', key, msg;
        RETURN jsonb_build_object('run_id', rid, 'status', 'failed', 'sqlstate', st, 'error', msg);
    END;
END
$$;

-- Computes every enabled audience, referenced audiences before those that reference
-- them. First warns about schedules whose last three runs failed.
CREATE FUNCTION @extschema@.la_compute_all(mode text DEFAULT 'auto') RETURNS TABLE (audience text, result jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
BEGIN
    PERFORM linked_audiences.warn_failing_schedules();
    FOR k IN
        WITH RECURSIVE d(key, depth) AS (
            SELECT a.key, 0 FROM linked_audiences.audience a
            UNION ALL
            SELECT a.key, d.depth + 1
            FROM linked_audiences.audience a JOIN d ON d.key = ANY (a.depends_on)
            WHERE d.depth < 64)
        SELECT d.key FROM d JOIN linked_audiences.audience a ON a.key = d.key
        WHERE a.enabled
        GROUP BY d.key, a.id
        ORDER BY max(d.depth), a.id
    LOOP
        audience := k;
        result := @extschema@.la_compute_audience(k, mode);
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION linked_audiences.capture_sync() RETURNS void VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp LANGUAGE c AS 'MODULE_PATHNAME', 'capture_sync_wrapper';
CREATE FUNCTION @extschema@."la_capture_changes"(
	"enabled" bool DEFAULT true /* bool */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'la_capture_changes_wrapper';

-- Editors also compute incrementally.
-- Grants a role what one level of use needs (SPEC section 6). Functions run as their
-- caller, so these table privileges (and the caller's own grants and row-level
-- security on the warehouse tables) decide what each role can do.
--   viewer:   read the graph, audiences, members, history and runs
--   consumer: read and settle the outbox
--   editor:   everything: define the graph, audiences and activations, compute
CREATE OR REPLACE FUNCTION @extschema@.la_grant(role name, level text) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = la_grant.role) THEN
        RAISE EXCEPTION 'role: role "%" does not exist', role USING ERRCODE = '42704';
    END IF;
    IF level IS NULL OR level NOT IN ('viewer', 'consumer', 'editor') THEN
        RAISE EXCEPTION 'level: unknown level "%"', level
            USING ERRCODE = '22023', HINT = 'Levels: viewer, consumer, editor.';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA linked_audiences TO %I', role);
    IF level IN ('viewer', 'editor') THEN
        EXECUTE format('GRANT SELECT ON linked_audiences.data_graph, linked_audiences.audience,
            linked_audiences.audiences, linked_audiences.audience_version, linked_audiences.audience_members,
            linked_audiences.audience_entities, linked_audiences.membership_changes, linked_audiences.runs,
            linked_audiences.running, linked_audiences.destination, linked_audiences.activation TO %I', role);
    END IF;
    IF level IN ('consumer', 'editor') THEN
        EXECUTE format('GRANT SELECT ON linked_audiences.destination TO %I', role);
        EXECUTE format('GRANT SELECT, DELETE ON linked_audiences.outbox TO %I', role);
        EXECUTE format('GRANT SELECT, UPDATE, DELETE ON linked_audiences.outbox_state TO %I', role);
    END IF;
    IF level = 'editor' THEN
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON linked_audiences.data_graph, linked_audiences.audience,
            linked_audiences.audience_version, linked_audiences.audience_members, linked_audiences.audience_entities,
            linked_audiences.membership_changes, linked_audiences.runs, linked_audiences.destination,
            linked_audiences.activation TO %I', role);
        EXECUTE format('GRANT INSERT ON linked_audiences.outbox, linked_audiences.outbox_state TO %I', role);
        -- Incremental computes: capture state, the change log, each audience's position.
        EXECUTE format('GRANT SELECT, UPDATE ON linked_audiences.capture TO %I', role);
        EXECUTE format('GRANT SELECT, DELETE ON linked_audiences.change_log TO %I', role);
        EXECUTE format('GRANT SELECT, INSERT ON linked_audiences.capture_alive TO %I', role);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON linked_audiences.compute_position TO %I', role);
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA linked_audiences TO %I', role);
    END IF;
    RETURN level;
END
$$;
-- Roles already granted 'editor' get the new tables too.
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
             WHERE g.table_schema = 'linked_audiences' AND g.table_name = 'runs' AND g.privilege_type = 'INSERT'
               AND g.grantee <> current_user
    LOOP
        EXECUTE format('GRANT SELECT, UPDATE ON linked_audiences.capture TO %I', r);
        EXECUTE format('GRANT SELECT, DELETE ON linked_audiences.change_log TO %I', r);
        EXECUTE format('GRANT SELECT, INSERT ON linked_audiences.capture_alive TO %I', r);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON linked_audiences.compute_position TO %I', r);
    END LOOP;
END
$$;

-- Citus: distributes the members, tracked entities and history by the profile, co-located
-- with the profile table (run once, after the profile table is distributed). Each gets a
-- column profile_key of the profile key's type (Citus co-locates only columns of one
-- type), filled from profile_id (which stays, as text, for readers), made part of its
-- keys; computes then diff on the workers (compute::distributed). The outbox, its
-- delivery state, runs and the catalog stay on the coordinator. Never run by CREATE or
-- ALTER EXTENSION: a single node is unaffected.
CREATE FUNCTION @extschema@.la_distribute() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prof regclass;
    pk text;
    pk_type text;
    dist_col text;
    t text;
    done boolean;
    cmds text[] := '{}';
    failed text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION 'la_distribute: Citus is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'la_distribute() is for a Citus cluster: CREATE EXTENSION citus, distribute the profile table, then call it. A single node needs nothing.';
    END IF;
    SELECT pg_catalog.to_regclass(g.graph #>> '{profile,table_ref}'), g.graph #>> '{profile,primary_key}'
    INTO prof, pk FROM linked_audiences.data_graph g;
    IF prof IS NULL OR pk IS NULL THEN
        RAISE EXCEPTION 'la_distribute: no Data Graph with a profile table is defined'
            USING ERRCODE = '55000',
                  HINT = 'Define the Data Graph first (la_define_data_graph), with its profile table distributed by its primary key.';
    END IF;
    EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) FROM pg_catalog.pg_dist_partition p
             WHERE p.logicalrelid = $1 AND p.partmethod = ''h'''
        INTO dist_col USING prof;
    IF dist_col IS DISTINCT FROM pk THEN
        RAISE EXCEPTION 'la_distribute: the profile table % is not distributed by its primary key %', prof, pk
            USING ERRCODE = '55000',
                  HINT = format('Distribute it first: SELECT create_distributed_table(%L, %L).', prof::text, pk);
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                            WHERE p.logicalrelid = ''linked_audiences.audience_members''::pg_catalog.regclass)'
        INTO STRICT done;
    IF done THEN
        RETURN 'already distributed';
    END IF;
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO pk_type
    FROM pg_attribute a WHERE a.attrelid = prof AND a.attname = pk AND NOT a.attisdropped;
    -- The workers hold the extension's tables too (Citus propagated CREATE EXTENSION):
    -- the same columns and keys there (empty tables, idempotent commands), then here.
    FOREACH t IN ARRAY ARRAY['audience_members', 'audience_entities', 'membership_changes'] LOOP
        cmds := cmds || format('ALTER TABLE linked_audiences.%I ADD COLUMN IF NOT EXISTS profile_key %s', t, pk_type);
    END LOOP;
    cmds := cmds || ARRAY[
        'ALTER TABLE linked_audiences.audience_members DROP CONSTRAINT IF EXISTS audience_members_pkey, '
        'ADD PRIMARY KEY (audience_id, profile_key)',
        'ALTER TABLE linked_audiences.audience_entities DROP CONSTRAINT IF EXISTS audience_entities_pkey, '
        'ADD PRIMARY KEY (audience_id, relationship, profile_key, entity_id)'];
    FOREACH t IN ARRAY cmds LOOP
        EXECUTE 'SELECT pg_catalog.string_agg(r.nodename || '':'' || r.nodeport || '': '' || r.result, ''; '')
                 FROM pg_catalog.run_command_on_workers($1) r WHERE NOT r.success'
            INTO failed USING t;
        IF failed IS NOT NULL THEN
            RAISE EXCEPTION 'la_distribute: on the workers, % failed: %', t, failed USING ERRCODE = '55000';
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['audience_members', 'audience_entities', 'membership_changes'] LOOP
        EXECUTE format('ALTER TABLE linked_audiences.%I ADD COLUMN profile_key %s', t, pk_type);
        EXECUTE format('UPDATE linked_audiences.%I SET profile_key = profile_id::%s', t, pk_type);
        EXECUTE format('ALTER TABLE linked_audiences.%I ALTER COLUMN profile_key SET NOT NULL', t);
    END LOOP;
    ALTER TABLE linked_audiences.audience_members DROP CONSTRAINT audience_members_pkey,
        ADD PRIMARY KEY (audience_id, profile_key);
    ALTER TABLE linked_audiences.audience_entities DROP CONSTRAINT audience_entities_pkey,
        ADD PRIMARY KEY (audience_id, relationship, profile_key, entity_id);
    FOREACH t IN ARRAY ARRAY['audience_members', 'audience_entities', 'membership_changes'] LOOP
        EXECUTE 'SELECT pg_catalog.create_distributed_table($1, ''profile_key'', colocate_with => $2)'
            USING 'linked_audiences.' || t, prof::text;
    END LOOP;
    RETURN format('distributed linked_audiences.audience_members, audience_entities and membership_changes by profile_key (%s), co-located with %s', pk_type, prof);
END
$$;
