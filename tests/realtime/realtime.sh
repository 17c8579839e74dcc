#!/usr/bin/env bash
# Real time without cron: with linked_audiences preloaded and linked_audiences.realtime
# on, the background worker computes incrementally after each captured commit, as the
# audience's owner, and the events reach the outbox within seconds. Also: a failing
# audience does not stop the others, and the worker comes back after being killed.
#   tests/realtime/realtime.sh    (starts and stops its own cluster)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
dir=$(la_tmp la-realtime) port=54338 db=la_rt
fail() { echo "realtime: $*"; tail -20 "$dir/server.log" 2>/dev/null; exit 1; }
q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d "$db" "$@"; }
scripts/cluster.sh stop "$dir"
rm -rf "$dir"
trap 'scripts/cluster.sh stop "$dir"' EXIT
trap 'echo "realtime: failed at line $LINENO"; tail -20 "$dir/server.log"' ERR
scripts/cluster.sh start "$dir" "$port" "$db" realtime

q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION linked_audiences;
\i demo/warehouse.sql
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph');
CREATE ROLE la_rt_editor;
SELECT la_grant('la_rt_editor', 'editor');
GRANT SELECT ON ALL TABLES IN SCHEMA public TO la_rt_editor;
SET ROLE la_rt_editor;
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
RESET ROLE;
SELECT la_define_audience('broken', '{"trait": "plan", "op": "equals", "value": "premium"}');
SELECT la_create_destination('hook', 'webhook');
SELECT la_activate('cat_owners', 'hook', 'Audience Entered');
SELECT la_capture_changes();
SELECT la_compute_all('full');
SQL
[ "$(q -c "SELECT owner FROM linked_audiences.audience WHERE key = 'cat_owners'")" = la_rt_editor ] || fail "owner not recorded"
# broken: owned by a role that may not read the warehouse; its computes fail (recorded as
# failed runs), the others go on.
q -c "CREATE ROLE la_rt_nobody" -c "SELECT la_grant('la_rt_nobody', 'editor')" \
  -c "UPDATE linked_audiences.audience SET owner = 'la_rt_nobody' WHERE key = 'broken'" >/dev/null

# The worker started before its database existed; the postmaster starts it again (5 s).
for _ in $(seq 1 100); do
  [ -n "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'linked_audiences realtime'")" ] && break
  sleep 0.1
done
# A cat appears in Bob's household: the worker computes, Bob's event reaches the outbox.
wait_event() { # USER_ID
  local t0=$1 user=$2
  for _ in $(seq 1 150); do
    [ "$(q -c "SELECT count(*) FROM linked_audiences.outbox WHERE aggregateid = '$user'")" -ge 1 ] && {
      echo $(( $(date +%s%N) / 1000000 - t0 )); return 0; }
    sleep 0.1
  done
  return 1
}
t0=$(( $(date +%s%N) / 1000000 ))
q -c "UPDATE pets SET type = 'cat' WHERE name = 'Bubbles'"
ms=$(wait_event "$t0" u-2) || fail "no event for u-2 within 15 s"
runs=$(q -c "SELECT count(*) FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id WHERE a.key = 'cat_owners'")
[ "$runs" -ge 2 ] || fail "expected a second run of cat_owners, got $runs"
q -c "UPDATE profiles SET plan = 'premium' WHERE id = 4" >/dev/null
for _ in $(seq 1 50); do
  [ "$(q -c "SELECT count(*) FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id WHERE a.key = 'broken' AND r.status = 'failed'")" -ge 1 ] && break
  sleep 0.1
done
[ "$(q -c "SELECT count(*) FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id WHERE a.key = 'broken' AND r.status = 'failed'")" -ge 1 ] \
  || fail "the failing audience left no failed run"

# Killed, the worker comes back (restart after 5 s) and goes on. A process killed with
# SIGKILL is a crash to the postmaster: every session ends and crash recovery empties the
# unlogged change log. A change committed while the worker was paused (realtime off), so
# captured but not yet computed, is lost from the log with it; capture_alive tells, and
# the worker computes cat_owners in full as soon as it is back: Eve's event arrives
# though no write follows the crash.
q -c "ALTER SYSTEM SET linked_audiences.realtime = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1.5
# (A durable commit: the test cluster commits asynchronously, and a crash loses the last
# asynchronous commits themselves, not only their log rows.)
q -c "SET synchronous_commit = on" -c "UPDATE pets SET type = 'cat' WHERE name = 'Spot'"
[ "$(q -c "SELECT count(*) FROM linked_audiences.change_log WHERE relation = 'public.pets'")" -ge 1 ] \
  || fail "the change was not captured"
[ "$(q -c "SELECT count(*) FROM linked_audiences.outbox WHERE aggregateid = 'u-5'")" = 0 ] \
  || fail "the paused worker computed"
pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'linked_audiences realtime'")
[ -n "$pid" ] || fail "no worker in pg_stat_activity"
kill -9 "$pid" 2>/dev/null || as_server kill -9 "$pid"
sleep 1
for _ in $(seq 1 100); do
  "$PGBIN/pg_isready" -q -h "$dir" -p "$port" && q -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2
done
grep -q "terminating any other active server processes\|all server processes terminated" "$dir/server.log" \
  || fail "the SIGKILL did not make a crash restart"
[ "$(q -c "SELECT count(*) FROM linked_audiences.change_log")" = 0 ] || fail "crash recovery left the change log"
[ "$(q -c "SELECT count(*) FROM linked_audiences.capture_alive")" = 0 ] || fail "crash recovery left capture_alive"
t1=$(( $(date +%s%N) / 1000000 ))
q -c "ALTER SYSTEM SET linked_audiences.realtime = on" -c "SELECT pg_reload_conf()" >/dev/null
ms2=$(wait_event "$t1" u-5) || fail "no event for u-5 after the crash"
mode=$(q -c "SELECT r.mode FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
             WHERE a.key = 'cat_owners' AND r.status = 'succeeded' ORDER BY r.id DESC LIMIT 1")
[ "$mode" = full ] || fail "after the crash cat_owners computed $mode, not full"
# From then on incremental again: Dan moves into Bob's household (Bubbles is a cat).
t2=$(( $(date +%s%N) / 1000000 ))
q -c "UPDATE profiles SET household_id = 2 WHERE id = 4"
ms3=$(wait_event "$t2" u-4) || fail "no event for u-4 after the crash"
mode=$(q -c "SELECT r.mode FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
             WHERE a.key = 'cat_owners' AND r.status = 'succeeded' ORDER BY r.id DESC LIMIT 1")
[ "$mode" = incremental ] || fail "the compute after the crash's full one was $mode, not incremental"
# The failing audience was retried with a backoff (1 s after one failure, doubling, at
# most 5 minutes), not at every 200 ms interval while its changes stayed pending: each
# failed run at least a second after the one before, and few of them.
failed=$(q -c "SELECT count(*) FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
               WHERE a.key = 'broken' AND r.status = 'failed'")
gaps=$(q -c "SELECT coalesce(string_agg(round(extract(epoch FROM x.started_at - x.before)::numeric, 1)::text, ' ' ORDER BY x.id), '')
             FROM (SELECT r.id, r.started_at, lag(r.started_at) OVER (ORDER BY r.id) AS before
                   FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
                   WHERE a.key = 'broken' AND r.status = 'failed') x WHERE x.before IS NOT NULL")
[ "$failed" -ge 1 ] && [ "$failed" -le 12 ] || fail "the failing audience failed $failed times (gaps: $gaps s)"
for g in $gaps; do
  awk -v g="$g" 'BEGIN { exit !(g >= 0.95) }' || fail "the failing audience was retried after $g s (gaps: $gaps s)"
done
echo "realtime: ok (worker computed cat_owners as its owner: Bob's event in the outbox ${ms} ms after the commit; a failing audience recorded $failed failed runs, retried after ${gaps// /, } s, while the others went on; after a SIGKILL (a crash: the unlogged change log emptied, a captured change lost from it) the worker computed in full at once: Eve's event ${ms2} ms after it was turned on again, then incremental: Dan's ${ms3} ms after the commit)"
