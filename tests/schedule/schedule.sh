#!/usr/bin/env bash
# Schedules fire: pg_cron really runs the computes, in both placements.
#  - here: pg_cron lives in the audiences' database; la_schedule creates the job.
#  - elsewhere: pg_cron lives in another database; la_schedule refuses with 55000 and a
#    HINT holding the exact cron.schedule_in_database statement, which, run there, makes
#    pg_cron compute this database's audience.
# Waits (at most 80 s: pg_cron 1.4 fires at the start of a minute) for a succeeded run
# row in each database and its events in the outbox. The cluster is one of
# scripts/cluster.sh, configured as the demo's and the tests' are.
#   tests/schedule/schedule.sh    (starts and stops its own cluster)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
dir=$(la_tmp la-schedule) port=54335
host=$dir
source tests/lib.sh   # q: psql on this cluster
fail() { echo "schedules: $*"; exit 1; }
scripts/cluster.sh stop "$dir"
rm -rf "$dir"
trap 'scripts/cluster.sh stop "$dir"; rm -rf "$dir"' EXIT
scripts/cluster.sh start "$dir" "$port" la_cron
"$PGBIN/createdb" -h "$dir" -p "$port" la_other

setup() { # DB
  q -d "$1" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION linked_audiences;
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph');
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
SELECT la_create_destination('hook', 'webhook');
SELECT la_activate('cat_owners', 'hook', 'Audience Entered');
SQL
}
setup la_cron
setup la_other
q -d la_cron -c "CREATE EXTENSION pg_cron"

# Here: the job is created in this database.
job=$(q -d la_cron -c "SELECT la_schedule('cat_owners', '* * * * *')")
[ -n "$job" ] || fail "la_schedule returned no job id"

# Elsewhere: refused with 55000 and the statement to run in pg_cron's database.
out=$(q -d la_other -v VERBOSITY=verbose -c "SELECT la_schedule('cat_owners', '* * * * *')" 2>&1) && fail "la_schedule in la_other succeeded"
echo "$out" | grep -q '^ERROR:  55000: pg_cron lives in database "la_cron", not in "la_other"' || fail "unexpected error: $out"
statement=$(echo "$out" | sed -n 's/^HINT:  In database la_cron, run, as a superuser or a role granted EXECUTE on cron.schedule_in_database: //p')
case $statement in "SELECT cron.schedule_in_database("*"la_other');") ;; *) fail "no statement in the HINT: $out" ;; esac
other_job=$(q -d la_cron -c "$statement")
q -d la_other -c "SELECT la_schedules()" >/dev/null 2>&1 && fail "la_schedules in la_other did not refuse"
echo "schedules: jobs $job (la_cron) and $other_job (la_other, from la_cron); waiting for pg_cron's next minute"

runs() { # DB
  q -d "$1" -c "SELECT count(*) FROM linked_audiences.runs WHERE status = 'succeeded'"
}
for i in $(seq 1 80); do
  [ "$(runs la_cron)" -ge 1 ] && [ "$(runs la_other)" -ge 1 ] && break
  sleep 1
done
[ "$(runs la_cron)" -ge 1 ] || fail "no scheduled run in la_cron after 80 s: $(q -d la_cron -c "SELECT la_schedules()")"
[ "$(runs la_other)" -ge 1 ] || fail "no scheduled run in la_other after 80 s: $(q -d la_cron -c "SELECT status, return_message FROM cron.job_run_details WHERE jobid = $other_job")"
for db in la_cron la_other; do
  events=$(q -d "$db" -c "SELECT string_agg(aggregateid, ',' ORDER BY aggregateid) FROM linked_audiences.outbox WHERE type = 'Audience Entered'")
  [ "$events" = "u-1,u-3,u-6" ] || fail "$db: expected Audience Entered for u-1,u-3,u-6, got '$events'"
done
# The run is visible in la_schedules(), as pg_cron recorded it.
for _ in $(seq 1 20); do
  status=$(q -d la_cron -c "SELECT audience || ' ' || jobid || ' ' || last_status FROM la_schedules()")
  [ "$status" = "cat_owners $job succeeded" ] && break
  sleep 0.5
done
[ "$status" = "cat_owners $job succeeded" ] || fail "la_schedules() says '$status'"
q -d la_cron -c "SELECT la_unschedule('cat_owners')" >/dev/null
q -d la_cron -c "SELECT cron.unschedule($other_job)" >/dev/null
echo "schedules: ok (pg_cron ran cat_owners after ${i} s in la_cron and in la_other; 3 Audience Entered events each)"
