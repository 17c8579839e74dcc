#!/usr/bin/env bash
# The delivery relay (relay/, la-relay) end to end, as a real process against a throwaway
# cluster and a mock of the destinations' APIs on 127.0.0.1 (tests/relay/mock_server.py):
#   1. request shapes: one destination per preset, the demo's cat owners, `--once`; every
#      request body equals its pinned file in tests/relay/expected/ (ids and times
#      normalized; each file's header cites the API's documentation);
#   2. faults: 429 with Retry-After (seconds and HTTP date), 500, 503, slow answers past the
#      timeout, dropped connections, per-event failures (Braze errors[], Iterable
#      invalidUserIds/failedUpdates, Customer.io errors[]) and a destination that answers
#      400 to everything, with the relay running until every row is settled (the webhook
#      with two workers under requests_per_second 5);
#   3. SIGTERM while requests are in flight: exit 0, nothing left claimed, a second run
#      finishes the rest.
# Then: every outbox row reached the server and is acknowledged (the 400 destination's
# rows are dead letters with the status and body), delivered items all match outbox rows
# (a duplicate is the same row again, same messageId), and each user's events first
# arrived in outbox order. Assumes the extension is installed (cargo pgrx install).
#   tests/relay/relay.sh [--update]   (--update rewrites the pinned bodies, keeping headers)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
update=${1:-}
dir=$(la_tmp la-relay) port=54336 db=la_relay host=$dir
work=$dir/work
source tests/lib.sh

cargo build -q -p la-relay --release
relay_bin=$PWD/target/release/la-relay

mock_pid= relay_pid=
cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
  scripts/cluster.sh stop "$dir"
}
trap cleanup EXIT
fail() { echo "relay: FAILED: $*"; exit 1; }

scripts/cluster.sh stop "$dir"
rm -rf "$work"
scripts/cluster.sh start "$dir" "$port" "$db"
mkdir -p "$work"
[ "$(id -u)" = 0 ] && chmod 755 "$dir"

python3 tests/relay/mock_server.py --port 0 --port-file "$work/port" --log "$work/requests.jsonl" \
  --secret test-hook-secret &
mock_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
mock="http://127.0.0.1:$(cat "$work/port")"
rules() { curl -fsS -X POST "$mock/__rules" -d "$1" >/dev/null; }

export LA_TEST_SEGMENT_KEY=test-segment-key LA_TEST_BRAZE_KEY=test-braze-key \
  LA_TEST_ITERABLE_KEY=test-iterable-key LA_TEST_CIO_SITE=test-site LA_TEST_CIO_KEY=test-cio-key \
  LA_TEST_HOOK_SECRET=test-hook-secret
# The relay connects as a role with the consumer grant only.
url="postgresql://la_relay_consumer@/$db?host=$dir&port=$port"

q -d "$db" >/dev/null <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\i demo/warehouse.sql
\set graph \`cat demo/graph.json\`
SELECT la_define_data_graph(:'graph');
SELECT la_define_audience('cat_owners', '{"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}}');
DROP ROLE IF EXISTS la_relay_consumer;
CREATE ROLE la_relay_consumer LOGIN;
SELECT la_grant('la_relay_consumer', 'consumer');
-- Short retries and timeouts so faults settle within seconds.
SELECT la_create_destination('seg', 'segment', jsonb_build_object('endpoint', '$mock/seg',
  'write_key_env', 'LA_TEST_SEGMENT_KEY', 'retry_after_seconds', 0.2, 'timeout_seconds', 2));
SELECT la_create_destination('brz', 'braze', jsonb_build_object('endpoint', '$mock/brz',
  'api_key_env', 'LA_TEST_BRAZE_KEY', 'retry_after_seconds', 0.2, 'timeout_seconds', 2));
SELECT la_create_destination('itb', 'iterable', jsonb_build_object('endpoint', '$mock/itb',
  'api_key_env', 'LA_TEST_ITERABLE_KEY', 'retry_after_seconds', 0.2, 'timeout_seconds', 2));
SELECT la_create_destination('cio', 'customerio', jsonb_build_object('endpoint', '$mock/cio',
  'site_id_env', 'LA_TEST_CIO_SITE', 'api_key_env', 'LA_TEST_CIO_KEY', 'retry_after_seconds', 0.2,
  'timeout_seconds', 1));
SELECT la_create_destination('hook', 'webhook', jsonb_build_object('url', '$mock/hook',
  'secret_env', 'LA_TEST_HOOK_SECRET', 'retry_after_seconds', 0.2, 'timeout_seconds', 2));
SELECT la_create_destination('strict', 'webhook', jsonb_build_object('url', '$mock/strict',
  'retry_after_seconds', 0.2, 'max_attempts', 3));
SELECT la_activate('cat_owners', d, 'Audience Entered and Exited', properties => '{"traits": ["email"]}')
FROM unnest(ARRAY['seg', 'brz', 'itb', 'cio', 'hook', 'strict']) d;
SELECT la_activate('cat_owners', d, 'Audience Entered',
  properties => '{"traits": ["email", "first_name"], "relationships": {"pets": ["name", "type"]}}')
FROM unnest(ARRAY['seg', 'brz', 'itb', 'cio', 'hook', 'strict']) d;
SELECT la_activate('cat_owners', d, 'Entity Added', 'pets', '{"traits": ["email"]}')
FROM unnest(ARRAY['seg', 'brz', 'itb', 'cio', 'hook', 'strict']) d;
SELECT count(*) FROM la_compute_all();
SQL
dead_at_once=$(q -d "$db" -c "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'la_outbox_fail' AND 'dead' = ANY (proargnames))")

pending() { q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'pending'"; }
settled_within() { # SECONDS: wait until no row is pending
  for _ in $(seq $(($1 * 10))); do [ "$(pending)" = 0 ] && return 0; sleep 0.1; done
  return 1
}

# 1. Request shapes, with `--once`.
rules '[{"path": "/strict", "status": 400, "body": {"error": "bad event"}, "times": -1}]'
"$relay_bin" --database-url "$url" --once --destination seg --destination brz --destination itb \
  --destination cio --destination hook 2>"$work/once.log" || { cat "$work/once.log"; fail "--once exited non-zero"; }
grep -q 'batch destination=' "$work/once.log" || fail "no batch log lines"
for d in seg brz itb cio hook; do
  preset=$(q -d "$db" -c "SELECT preset FROM linked_audiences.destination WHERE key = '$d'")
  python3 tests/relay/check.py bodies "$work/requests.jsonl" "$d" "tests/relay/expected/$preset.txt" $update \
    || fail "$d: request bodies differ from tests/relay/expected/$preset.txt (tests/relay/relay.sh --update rewrites them)"
done
left=$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'pending' AND destination <> 'strict'")
[ "$left" = 0 ] || fail "--once left $left rows pending"
first_events=$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox")

# 2. Faults, with the relay running until every row is settled. 150 more cat owners,
# a third of them with a second cat: more batches, and users with three events in order.
# The webhook now runs two workers under a rate limit.
q -d "$db" >/dev/null <<'SQL'
SET client_min_messages = warning;
UPDATE linked_audiences.destination SET settings = settings || '{"concurrency": 2, "requests_per_second": 5}'
WHERE key = 'hook';
INSERT INTO households SELECT 1000 + g, 'H' || g, 'Portland' FROM generate_series(1, 150) g;
INSERT INTO profiles (id, user_id, email, first_name, plan, household_id)
SELECT 1000 + g, 'x-' || g, 'x' || g || '@example.com', 'X' || g, 'free', 1000 + g FROM generate_series(1, 150) g;
INSERT INTO pets SELECT 1000 + g, 1000 + g, 'Cat ' || g, 'cat' FROM generate_series(1, 150) g;
INSERT INTO pets SELECT 2000 + g, 1000 + g, 'Kit ' || g, 'cat' FROM generate_series(1, 150) g WHERE g % 3 = 0;
SELECT count(*) FROM la_compute_all();
SQL
# The webhook's 429 carries an HTTP date two seconds ahead.
date=$(LC_ALL=C date -u -d '+2 seconds' '+%a, %d %b %Y %H:%M:%S GMT')
rules "$(sed "s/__DATE__/$date/" <<'JSON'
[
  {"path": "/seg/", "status": 429, "retry_after": "1"},
  {"path": "/seg/", "status": 500},
  {"path": "/brz/", "status": 500},
  {"path": "/brz/", "fail_user": "x-7"},
  {"path": "/itb/api/events", "status": 503},
  {"path": "/itb/api/events", "fail_user": "x-9"},
  {"path": "/itb/api/users", "fail_user": "x-12"},
  {"path": "/cio/", "delay": 3},
  {"path": "/cio/", "fail_user": "x-15"},
  {"path": "/hook", "drop": true},
  {"path": "/hook", "status": 429, "retry_after": "__DATE__"},
  {"path": "/hook", "status": 502, "body": "<html>bad gateway</html>"},
  {"path": "/strict", "status": 400, "body": {"error": "bad event"}, "times": -1}
]
JSON
)"
phase2=$(date +%s.%N)
"$relay_bin" --database-url "$url" --poll-interval 1 --batch 40 2>"$work/daemon.log" &
relay_pid=$!
settled_within 90 || { tail -20 "$work/daemon.log"; fail "rows still pending after 90 s: $(pending)"; }
kill -TERM "$relay_pid"
wait "$relay_pid" || { tail -20 "$work/daemon.log"; fail "the relay exited non-zero after SIGTERM"; }
relay_pid=
# The webhook's two workers kept to 5 requests a second between them.
busiest=$(python3 - "$work/requests.jsonl" "$phase2" <<'PY'
import json, sys
t = sorted(r["t"] for r in map(json.loads, open(sys.argv[1])) if r["path"] == "/hook" and r["t"] >= float(sys.argv[2]))
print(max(sum(1 for u in t if s <= u < s + 1) for s in t))
PY
)
[ "$busiest" -le 6 ] || fail "hook: $busiest requests within one second, over requests_per_second 5"
for what in 'status=[0-9,]*429' 'status=[0-9,]*500' 'timeout' 'retrying=[1-9]' 'dead=[1-9]' 'totals'; do
  grep -q "$what" "$work/daemon.log" || { tail -30 "$work/daemon.log"; fail "the relay log has no $what"; }
done

# 3. SIGTERM while slow requests are in flight: exit 0, nothing left claimed, and a second
# run delivers the rest. A Braze batch of 100 is two requests (75 + 25): the one in flight
# finishes and is acknowledged, the unsent one is released.
q -d "$db" >/dev/null <<'SQL'
SET client_min_messages = warning;
INSERT INTO households SELECT 3000 + g, 'S' || g, 'Austin' FROM generate_series(1, 100) g;
INSERT INTO profiles (id, user_id, email, first_name, plan, household_id)
SELECT 3000 + g, 's-' || g, 's' || g || '@example.com', 'S' || g, 'free', 3000 + g FROM generate_series(1, 100) g;
INSERT INTO pets SELECT 3000 + g, 3000 + g, 'Tabby ' || g, 'cat' FROM generate_series(1, 100) g;
SELECT count(*) FROM la_compute_all();
SQL
rules '[{"path": "/", "delay": 0.4, "times": -1}]'
before=$(curl -fsS "$mock/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
"$relay_bin" --database-url "$url" --batch 100 --destination seg --destination brz --destination hook \
  2>"$work/sigterm.log" &
relay_pid=$!
for _ in $(seq 100); do
  now=$(curl -fsS "$mock/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  [ $((now - before)) -ge 3 ] && break
  sleep 0.1
done
kill -TERM "$relay_pid"
started=$(date +%s)
wait "$relay_pid" || { tail -20 "$work/sigterm.log"; fail "the relay exited non-zero after SIGTERM mid-run"; }
relay_pid=
[ $(($(date +%s) - started)) -le 10 ] || fail "the relay took more than 10 s to stop"
held=$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox_state
                      WHERE status = 'pending' AND visible_at > clock_timestamp() AND destination IN ('seg', 'brz', 'hook')")
[ "$held" = 0 ] || fail "$held rows still claimed after SIGTERM (not released)"
[ "$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'pending' AND destination IN ('seg', 'brz', 'hook')")" -gt 0 ] \
  || fail "SIGTERM came too late to test: nothing was left pending"
grep -q 'shutting down' "$work/sigterm.log" || fail "no shutdown line in the log"
grep -q 'destination=brz .*delivered=[1-9].*released=[1-9]' "$work/sigterm.log" \
  || { cat "$work/sigterm.log"; fail "the Braze batch in flight at SIGTERM was not part delivered, part released"; }
rules '[{"path": "/strict", "status": 400, "body": {"error": "bad event"}, "times": -1}]'
"$relay_bin" --database-url "$url" --once 2>"$work/rest.log" || { cat "$work/rest.log"; fail "the second --once run failed"; }
settled_within 30 || fail "rows still pending after the second run: $(pending)"

# Every row against what the server received.
q -d "$db" -c "SELECT jsonb_agg(jsonb_build_object('destination', o.destination, 'preset', d.preset, 'seq', o.seq,
                 'id', o.id, 'aggregateid', o.aggregateid, 'type', o.type, 'action', o.action, 'mapped', o.mapped,
                 'status', s.status, 'attempts', s.attempts, 'last_error', s.last_error) ORDER BY o.seq)
               FROM linked_audiences.outbox o JOIN linked_audiences.outbox_state s USING (id)
               JOIN linked_audiences.destination d ON d.key = o.destination" >"$work/outbox.json"
at_once=
[ "$dead_at_once" = t ] || fail "la_outbox_fail has no dead argument"
at_once=--dead-at-once
summary=$(python3 tests/relay/check.py verify "$work/requests.jsonl" "$work/outbox.json" --dead=strict $at_once) \
  || { echo "$summary"; fail "delivery check"; }
dead=$(q -d "$db" -c "SELECT count(*) FROM la_outbox_dead_letters('strict') WHERE last_error LIKE 'HTTP 400%bad event%'")
total=$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox")
[ "$dead" = "$(q -d "$db" -c "SELECT count(*) FROM linked_audiences.outbox WHERE destination = 'strict'")" ] \
  || fail "strict: $dead dead letters with the 400 reason"
requests=$(wc -l <"$work/requests.jsonl")
mode="dead at once"
echo "relay: ok ($total events over 6 destinations, $requests requests, first shapes from $first_events events, $dead dead letters ($mode); $summary)"
