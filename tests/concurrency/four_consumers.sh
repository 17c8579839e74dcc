#!/usr/bin/env bash
# Four consumers read one destination at once, in real concurrent sessions, while a fifth
# session keeps computing: every event is delivered and acknowledged exactly once, no two
# consumers hold the same row, and each user's events are delivered in outbox order,
# a later one only after the earlier one was acknowledged.
#   tests/concurrency/four_consumers.sh HOST_DIR PORT
set -euo pipefail
cd "$(dirname "$0")/../.."
host=$1 port=$2
source tests/lib.sh
db=la_consumers
fail() { echo "four consumers: $*"; exit 1; }

"$BIN/dropdb" -h "$host" -p "$port" --if-exists "$db" 2>/dev/null
"$BIN/createdb" -h "$host" -p "$port" "$db"
q -d "$db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION linked_audiences;
CREATE TABLE c_profiles (id bigint PRIMARY KEY, plan text);
INSERT INTO c_profiles SELECT g, 'premium' FROM generate_series(1, 300) g;
SELECT la_define_data_graph(jsonb_build_object('entities', jsonb_build_array(),
  'profile', jsonb_build_object('table_ref', 'public.c_profiles', 'primary_key', 'id')));
SELECT la_define_audience('premium', jsonb_build_object('trait', 'plan', 'op', 'equals', 'value', 'premium'));
SELECT la_create_destination('braze', 'braze');
SELECT la_activate('premium', 'braze', 'Audience Entered and Exited');
SELECT la_activate('premium', 'braze', 'Audience Entered');
SELECT la_compute_audience('premium') IS NOT NULL;
-- What each consumer received, in the transaction that acknowledged it.
CREATE TABLE delivered (id uuid, aggregateid text, seq bigint, consumer int, at timestamptz DEFAULT clock_timestamp());
SQL

# Consumer N: small batches, a short pause while holding them, acknowledge, commit.
consume() {
  q -d "$db" -c "DO \$\$
  DECLARE got int; idle int := 0;
  BEGIN
    LOOP
      WITH r AS (SELECT * FROM la_outbox_read('braze', 1 + (random() * 6)::int)),
           l AS (INSERT INTO delivered (id, aggregateid, seq, consumer) SELECT id, aggregateid, seq, $1 FROM r RETURNING id)
      SELECT count(*) INTO got FROM l;
      PERFORM pg_sleep(random() * 0.002);
      PERFORM la_outbox_ack(ARRAY(SELECT id FROM delivered WHERE consumer = $1 AND at >= now()));
      COMMIT;
      idle := CASE WHEN got = 0 THEN idle + 1 ELSE 0 END;
      EXIT WHEN idle >= 40;
      IF got = 0 THEN PERFORM pg_sleep(0.05); END IF;
    END LOOP;
  END \$\$"
}
pids=()
for n in 1 2 3 4; do consume "$n" & pids+=($!); done
# Meanwhile the audience swings twice: every user exits, then enters again.
q -d "$db" -c "SET client_min_messages = warning" -c "UPDATE c_profiles SET plan = 'free'" \
  -c "SELECT la_compute_audience('premium') ->> 'events_written'" >/dev/null
q -d "$db" -c "SET client_min_messages = warning" -c "UPDATE c_profiles SET plan = 'premium'" \
  -c "SELECT la_compute_audience('premium') ->> 'events_written'" >/dev/null
for p in "${pids[@]}"; do wait "$p" || fail "a consumer failed"; done

result=$(q -d "$db" -c "SELECT jsonb_build_object(
  'events', (SELECT count(*) FROM linked_audiences.outbox),
  'delivered', (SELECT count(*) FROM delivered),
  'distinct', (SELECT count(DISTINCT id) FROM delivered),
  'acked', (SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'acked'),
  'consumers', (SELECT count(DISTINCT consumer) FROM delivered),
  'out_of_order', (SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY aggregateid ORDER BY at, seq) AS prev
                                          FROM delivered) x WHERE prev > seq))")
expected=$(q -d "$db" -c "SELECT jsonb_build_object('events', n, 'delivered', n, 'distinct', n, 'acked', n,
  'consumers', 4, 'out_of_order', 0) FROM (SELECT count(*) AS n FROM linked_audiences.outbox) o")
[ "$result" = "$expected" ] || fail "expected $expected, got $result"
events=$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox")
[ "$events" -ge 1500 ] || fail "only $events events"
"$BIN/dropdb" -h "$host" -p "$port" "$db"
echo "four consumers: ok ($events events over 300 users, each delivered and acknowledged once, in per-user order, while computes ran)"
