-- SQL-level wrappers, installed after the Rust functions they call.

-- Computes one audience. A failure inside the compute rolls back everything it wrote
-- (its subtransaction), records a failed run, and returns it with a WARNING, so that
-- la_compute_all and schedules go on with the next audience.
CREATE FUNCTION @extschema@.la_compute_audience(key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    aid bigint;
    started timestamptz := clock_timestamp();
    st text;
    msg text;
    rid bigint;
BEGIN
    SELECT a.id INTO aid FROM linked_audiences.audience a WHERE a.key = la_compute_audience.key;
    IF aid IS NULL THEN
        -- Raises the error for an unknown key, with the nearest names.
        RETURN linked_audiences.compute_audience(key);
    END IF;
    BEGIN
        RETURN linked_audiences.compute_audience(key);
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
-- them.
CREATE FUNCTION @extschema@.la_compute_all() RETURNS TABLE (audience text, result jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
BEGIN
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
        result := @extschema@.la_compute_audience(k);
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION linked_audiences.require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries and set cron.database_name to this database in postgresql.conf, restart, then run CREATE EXTENSION pg_cron.';
    END IF;
END
$$;

-- Schedules one audience (pg_cron job "linked_audiences:<key>"); a disabled audience is
-- skipped when the job runs. Scheduling the same key again replaces its schedule.
CREATE FUNCTION @extschema@.la_schedule(key text, schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM linked_audiences.require_pg_cron();
    IF NOT EXISTS (SELECT 1 FROM linked_audiences.audience a WHERE a.key = la_schedule.key) THEN
        RAISE EXCEPTION 'key: audience "%" does not exist', key USING ERRCODE = '42704';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
    USING 'linked_audiences:' || key, schedule,
          format('SELECT %I.la_compute_audience(a.key) FROM linked_audiences.audience a WHERE a.key = %L AND a.enabled',
                 '@extschema@', key);
    RETURN job;
END
$$;

-- One job ("linked_audiences:*") computing every enabled audience in dependency order.
CREATE FUNCTION @extschema@.la_schedule_all(schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM linked_audiences.require_pg_cron();
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
    USING 'linked_audiences:*', schedule, format('SELECT * FROM %I.la_compute_all()', '@extschema@');
    RETURN job;
END
$$;

-- Removes the job of an audience ('*': the la_schedule_all job). Returns whether there
-- was one.
CREATE FUNCTION @extschema@.la_unschedule(key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM linked_audiences.require_pg_cron();
    EXECUTE 'SELECT jobid FROM cron.job WHERE jobname = $1' INTO job USING 'linked_audiences:' || key;
    IF job IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT cron.unschedule($1)' USING job;
    RETURN true;
END
$$;

-- Removes an audience's pg_cron job, if pg_cron is there and the job exists.
CREATE FUNCTION linked_audiences.drop_job(key text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE 'SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1' USING 'linked_audiences:' || key;
    END IF;
END
$$;
