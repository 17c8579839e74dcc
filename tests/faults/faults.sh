#!/usr/bin/env bash
# Faults: a backend terminated (pg_terminate_backend) and killed (SIGKILL) in the middle
# of a compute and of a consumer batch, and a server restart between compute and
# consumption. After each, the previous state is intact, the next compute emits exactly
# the expected changes, no event is lost, and an event is delivered again only as a
# redelivery of an unacknowledged row with the same messageId.
#   tests/faults/faults.sh CLUSTER_DIR PORT   (the cluster of scripts/cluster.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1 port=$2
source scripts/env.sh
BIN=$PGBIN
q() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d la_faults "$@"; }
fail() { echo "faults: $*"; exit 1; }
expect() { [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"; }
wait_ready() { for _ in $(seq 1 60); do "$BIN/pg_isready" -q -h "$dir" -p "$port" && return 0; sleep 0.5; done; fail "server did not come back"; }

"$BIN/dropdb" -h "$dir" -p "$port" --if-exists la_faults 2>/dev/null
"$BIN/createdb" -h "$dir" -p "$port" la_faults
q -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences" -f demo/warehouse.sql >/dev/null
q >/dev/null <<'SQL'
SET client_min_messages = warning;
\set graph `cat demo/graph.json`
SELECT la_define_data_graph(:'graph');
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
SELECT la_create_destination('hook', 'webhook');
SELECT la_activate('cat_owners', 'hook', 'Audience Entered');
SELECT la_compute_audience('cat_owners');
-- Bob's fish becomes a cat; a compute would now add Bob. Make computes stall while
-- writing members, so they can be interrupted there.
UPDATE pets SET type = 'cat' WHERE name = 'Bubbles';
CREATE FUNCTION public.stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
CREATE TRIGGER stall BEFORE INSERT ON linked_audiences.audience_members FOR EACH ROW EXECUTE FUNCTION public.stall();
SQL
state() {
  q -c "SELECT (SELECT string_agg(profile_id, ',' ORDER BY profile_id) FROM linked_audiences.audience_members)
           || ' | ' || (SELECT count(*) FROM linked_audiences.outbox)
           || ' | ' || (SELECT count(*) FROM linked_audiences.membership_changes)
           || ' | ' || (SELECT count(*) FROM linked_audiences.runs)"
}
before=$(state)
expect "initial state" "$before" "1,3,6 | 3 | 3 | 1"

# Starts a compute in the background and waits until it stalls inside the trigger.
stalled_compute() {
  (q -c "SELECT la_compute_audience('cat_owners')" || true) >/dev/null 2>&1 &
  for _ in $(seq 1 100); do
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%la_compute_audience%'")
    [ -n "$pid" ] && { echo "$pid"; return 0; }
    sleep 0.1
  done
  fail "the compute never reached the stall"
}

pid=$(stalled_compute)
q -c "SELECT pg_terminate_backend($pid)" >/dev/null
wait
expect "after pg_terminate_backend" "$(state)" "$before"

pid=$(stalled_compute)
kill -KILL "$pid"
wait
wait_ready
expect "after SIGKILL and crash recovery" "$(state)" "$before"

q -c "DROP TRIGGER stall ON linked_audiences.audience_members" -c "DROP FUNCTION public.stall()"
result=$(q -c "SET client_min_messages = warning" -c "SELECT (r->>'entered') || ' entered, ' || (r->>'events_written') || ' events' FROM la_compute_audience('cat_owners') r")
expect "the next compute" "$result" "1 entered, 1 events"
expect "state after it" "$(state)" "1,2,3,6 | 4 | 4 | 2"

# A restart between compute and consumption loses nothing; messageIds stay the same.
ids_before=$(q -c "SELECT string_agg(id::text, ',' ORDER BY seq) FROM linked_audiences.outbox")
as_server "$BIN/pg_ctl" -D "$dir/data" -m fast -w restart -l "$dir/server.log" >/dev/null
wait_ready
expect "events after restart" "$(q -c "SELECT string_agg(id::text, ',' ORDER BY seq) FROM linked_audiences.outbox")" "$ids_before"

# A consumer killed in the middle of a batch. It runs SQL (a transaction or a statement
# list) in the background as application la_consumer and stalls in pg_sleep; prints its pid.
stalled_consumer() {
  (PGAPPNAME=la_consumer q "$@" || true) >/dev/null 2>&1 &
  for _ in $(seq 1 100); do
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND application_name = 'la_consumer'")
    [ -n "$pid" ] && { echo "$pid"; return 0; }
    sleep 0.1
  done
  fail "the consumer never reached the stall"
}
pending() { q -c "SELECT string_agg(id::text || ':' || attempts, ',' ORDER BY seq) FROM linked_audiences.outbox_state WHERE status = 'pending'"; }
all_pending=$(q -c "SELECT string_agg(id::text || ':0', ',' ORDER BY seq) FROM linked_audiences.outbox")
expect "pending before consumers" "$(pending)" "$all_pending"

# Killed while its claim is uncommitted (terminated, then SIGKILLed): the claim rolls
# back; every event is still pending, unclaimed and never counted as an attempt.
pid=$(stalled_consumer -c "BEGIN" -c "SELECT la_outbox_read('hook', 2)" -c "SELECT pg_sleep(30)" -c "COMMIT")
q -c "SELECT pg_terminate_backend($pid)" >/dev/null
wait
expect "consumer terminated mid-batch" "$(pending)" "$all_pending"
pid=$(stalled_consumer -c "BEGIN" -c "SELECT la_outbox_read('hook', 2)" -c "SELECT pg_sleep(30)" -c "COMMIT")
kill -KILL "$pid"
wait
wait_ready
expect "consumer SIGKILLed mid-batch" "$(pending)" "$all_pending"

# Killed after its claim committed but before acknowledging: the two claimed events are
# hidden for the visibility timeout (10 s: crash recovery on a busy machine takes
# seconds), the others flow, then the two are redelivered with the same messageId; each
# event is acknowledged once. The claim commits synchronously (the test clusters run
# with synchronous_commit off, which a crash right after a commit may undo).
pid=$(stalled_consumer -c "SET synchronous_commit = on" -c "SELECT la_outbox_read('hook', 2, '10 seconds')" -c "SELECT pg_sleep(30)")
claimed=$(q -c "SELECT string_agg(id::text, ',' ORDER BY seq) FROM linked_audiences.outbox_state WHERE attempts = 1")
kill -KILL "$pid"
wait
wait_ready
expect "claims survive the crash" "$(q -c "SELECT count(*) FROM linked_audiences.outbox_state WHERE attempts = 1 AND visible_at > clock_timestamp()")" "2"
others=$(q -c "SELECT string_agg(id::text, ',' ORDER BY seq) FROM la_outbox_read('hook', 100)")
expect "the unclaimed events flow" "$others" "$(q -c "SELECT string_agg(id::text, ',' ORDER BY seq) FROM linked_audiences.outbox_state WHERE id::text <> ALL (string_to_array('$claimed', ','))")"
expect "acknowledged" "$(q -c "SELECT la_outbox_ack(string_to_array('$others', ',')::uuid[])")" "2"
expect "nothing visible before the timeout" "$(q -c "SELECT count(*) FROM la_outbox_read('hook', 100)")" "0"
for _ in $(seq 1 150); do
  [ "$(q -c "SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'pending' AND visible_at > clock_timestamp()")" = 0 ] && break
  sleep 0.1
done
redelivered=$(q -c "SELECT string_agg(id::text || ':' || attempts, ',' ORDER BY seq) FROM la_outbox_read('hook', 100)")
expect "redelivered with the same messageId" "$redelivered" "$(echo "$claimed" | sed 's/,/:2,/g; s/$/:2/')"
expect "acknowledged once" "$(q -c "SELECT la_outbox_ack(string_to_array('$claimed', ',')::uuid[])")" "2"
expect "every event acknowledged" "$(q -c "SELECT string_agg(o.id::text, ',' ORDER BY o.seq) FROM linked_audiences.outbox o JOIN linked_audiences.outbox_state s USING (id) WHERE s.status = 'acked'")" "$ids_before"
expect "nothing left" "$(q -c "SELECT count(*) FROM la_outbox_read('hook', 100)")" "0"

"$BIN/dropdb" -h "$dir" -p "$port" la_faults
echo "faults: ok (terminate and SIGKILL mid-compute leave state intact; next compute emits exactly 1 change and 1 event; a restart loses no event; consumers terminated or SIGKILLed mid-batch lose nothing, unacknowledged claims come back after their timeout with the same messageId)"
