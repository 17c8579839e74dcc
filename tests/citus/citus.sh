#!/usr/bin/env bash
# The Citus suite: the same warehouse, graph and audiences on a single node and on a
# Citus cluster (a coordinator and two workers, scripts/citus.sh), compared.
#   tests/citus/citus.sh [--keep] [--explore]
#     --keep      leave the cluster running (scripts/citus.sh stop stops it)
#     --explore   afterwards, run tests/citus/proposal.sql (the distributed statements
#                 written by hand) and print their plans
#   CITUS_TEST_PROFILES=2000   profiles in the warehouse (tests/citus/warehouse.sql)
# Skipped, with one line and exit status 77, when Citus is neither installed nor
# buildable from source ($CITUS_SRC, default ../shared/vendor). Uses the extension as
# installed (scripts/test.sh installs it first; standalone: la_install).
#
# Checks, for every audience of tests/citus/audiences.sql (every node kind):
#   1. la_preview_audience counts, la_audience_sql text and the rows that SQL returns
#      are identical on both; the audience that cannot be co-located (a keyed entity
#      reached through a reference table) is refused by Citus with its known error.
#   2. EXPLAIN of the members query on Citus: one task per shard group and no
#      intermediate results or repartitioning (nothing pulled to the coordinator).
#   3. la_distribute() on Citus (and its refusal on the single node, without Citus), then
#      la_compute_all on both, then after changes to the warehouse: identical members,
#      tracked entities and outbox events for every audience; the one that cannot be
#      co-located (KNOWN_COMPUTE_FAILURES) fails with Citus' error, any other failure
#      fails the suite.
#   4. EXPLAIN (auto_explain) of the statements a compute runs on Citus: the diff of
#      members and entities, one task per shard group, nothing pulled to the coordinator;
#      the events built on the workers from the run's changes.
#   The activations of 3 include entity events with relationships nested below the entity
#   (Entity Added and Removed) and, created between the two rounds, activations with
#   send_existing (Audience Entered, Audience Membership Changed, Entity Added).
#   5. ALTER EXTENSION UPDATE on a distributed database: in a fresh database (la_upgrade),
#      version 0.2.0 over the distributed warehouse, computed; updated to 0.3.0 (on the
#      workers too), la_distribute(), computed again, the same changes: members, entities
#      and events identical to the single node's.
#   6. pg_dump of that database: the extension's tables' data (members, entities, history,
#      runs, outbox) is in it; restored into a fresh Citus database (la_restore) by the
#      README's recipe (schema, distribute, the graph, la_distribute(), the data), the state
#      is identical, and a compute there writes no members, entities or events.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
keep=0 explore=0
for a in "$@"; do
  case $a in --keep) keep=1 ;; --explore) explore=1 ;; *) echo "usage: $0 [--keep] [--explore]" >&2; exit 2 ;; esac
done
n=${CITUS_TEST_PROFILES:-2000}
src=${CITUS_SRC:-$PWD/../shared/vendor}
if [ ! -f "$($PG_CONFIG --pkglibdir)/citus.so" ] &&
   ! { [ -f "$src" ] || [ -f "$src/citus-13.2.2.tar.gz" ] || [ -f "$src/configure" ]; }; then
  echo "citus: skipped (Citus is not installed and its source is not at $src; set CITUS_SRC)"
  exit 77
fi
# The compute that fails on Citus, and why: bought_well_reviewed is not co-located (a keyed
# entity reached through a reference table; the README, "Running on Citus").
KNOWN_COMPUTE_FAILURES="bought_well_reviewed"

out=$(scripts/citus.sh start 2>&1) || { echo "$out"; echo "citus: the cluster did not start"; exit 1; }
echo "$out" | grep -v '^postgresql://'
uri=$(echo "$out" | tail -1)
single=${uri%/*}/la_single
qc() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$uri" "$@"; }
qs() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$single" "$@"; }
fail=0
bad() { echo "citus: $*"; fail=1; }

# --- the same warehouse, graph and audiences on both -------------------------------
"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${uri%/*}/postgres" \
  -c "DROP DATABASE IF EXISTS la_single" -c "CREATE DATABASE la_single" || exit 1
qc -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS linked_audiences CASCADE" \
   -c "CREATE EXTENSION linked_audiences" || exit 1
qs -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences" || exit 1
t0=$(date +%s.%N)
qs -v n="$n" -v distribute=off -f tests/citus/warehouse.sql >/dev/null || exit 1
t1=$(date +%s.%N)
qc -v n="$n" -v distribute=on -f tests/citus/warehouse.sql >/dev/null || exit 1
t2=$(date +%s.%N)
printf 'citus: warehouse of %s profiles loaded: single node %.1f s, Citus %.1f s (%s shards per table)\n' \
  "$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" \
  "$(qc -c "SELECT shardcount FROM pg_dist_colocation c JOIN pg_dist_partition p USING (colocationid) WHERE p.logicalrelid = 'profiles'::regclass")"
defined=$(mktemp -d)
for q in qs qc; do
  $q >"$defined/$q.out" <<'SQL' || exit 1
\set graph `cat tests/citus/graph.json`
SELECT la_define_data_graph(:'graph');
\i tests/citus/audiences.sql
SQL
done
# Validation warns about the join that cannot be co-located (reviews, keyed, below the
# reference table products) before any audience reaching it fails.
if grep -q '"reviews\\" carries profile_key but its parent \\"products\\" does not' "$defined/qc.out"; then
  echo "citus: validation warns that reviews (keyed) below products (reference) cannot be co-located"
else
  bad "no co-location warning for reviews below products: $(head -c 600 "$defined/qc.out")"
fi
rm -rf "$defined"
# The extension's members, entities and history distributed by profile on Citus; refused
# (55000, with a HINT) where Citus is not installed.
echo "citus: $(qc -c "SET client_min_messages = warning" -c "SELECT la_distribute()")"
refusal=$(qs -c "SELECT la_distribute()" 2>&1 >/dev/null | head -1)
case $refusal in
  *"la_distribute: Citus is not installed"*) echo "citus: la_distribute() on the single node refused as expected: ${refusal#*ERROR:  }" ;;
  *) bad "la_distribute() on the single node: expected a refusal, got: $refusal" ;;
esac
refusal=$(qs -c "\set VERBOSITY verbose" -c "SELECT la_distribute()" 2>&1)
grep -q "^ERROR:  55000" <<<"$refusal" ||
  bad "la_distribute() on the single node: not refused with SQLSTATE 55000"
[ "$(qc -c "SELECT count(*) FROM pg_dist_partition p JOIN pg_dist_partition pr ON pr.colocationid = p.colocationid
            WHERE pr.logicalrelid = 'profiles'::regclass AND p.logicalrelid::text LIKE 'linked_audiences.%'")" = 3 ] ||
  bad "la_distribute(): the three tables are not co-located with profiles"
[ "$(qc -c "SELECT la_distribute()")" = "already distributed" ] || bad "la_distribute() run twice"

# Helpers in each session: errors as values, so one refused audience does not stop the rest.
helpers=$(cat <<'SQL'
SET client_min_messages = error;
CREATE FUNCTION pg_temp.try_count(key text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN la_preview_audience(key, 3) ->> 'count';
EXCEPTION WHEN others THEN RETURN 'ERROR: ' || SQLERRM; END $$;
CREATE FUNCTION pg_temp.try_rows(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT count(*) || '' rows '' || coalesce(md5(string_agg(profile_id, '','' ORDER BY profile_id)), '''') FROM (%s) s', sql) INTO r;
  RETURN r;
EXCEPTION WHEN others THEN RETURN 'ERROR: ' || SQLERRM; END $$;
CREATE FUNCTION pg_temp.plan(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text := ''; l text;
BEGIN
  FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP r := r || l || E'\n'; END LOOP;
  RETURN r;
EXCEPTION WHEN others THEN RETURN 'ERROR: ' || SQLERRM; END $$;
SQL
)

work=$(mktemp -d)
[ $keep = 1 ] && trap 'rm -rf "$work"' EXIT || trap 'rm -rf "$work"; scripts/citus.sh stop' EXIT
secs() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

# --- 1. previews, compiled SQL and the rows it returns ------------------------------
compare() { # QUERY-FUNCTION OUT
  { echo "$helpers"; echo "SELECT a.key, coalesce(a.description, ''), pg_temp.try_count(a.key),
       md5(la_audience_sql(a.definition)), pg_temp.try_rows(la_audience_sql(a.definition))
     FROM linked_audiences.audiences a ORDER BY a.id;"; } | $1 -F'|' >"$2"
}
t0=$(date +%s.%N); compare qs "$work/single"; t1=$(date +%s.%N); compare qc "$work/citus"; t2=$(date +%s.%N)
audiences=0 same=0 refused=0
while IFS='|' read -r key desc count sqlmd5 rows; do
  audiences=$((audiences + 1))
  IFS='|' read -r ckey cdesc ccount csqlmd5 crows <<<"$(grep "^$key|" "$work/citus")"
  if [ -n "$desc" ]; then
    # Not co-located: Citus refuses it, with the error a user would see.
    case $ccount in
      "ERROR: complex joins are only supported when all distributed tables are co-located"*)
        refused=$((refused + 1)); echo "citus: $key refused as expected ($desc): ${ccount#ERROR: }" ;;
      *) bad "$key: expected Citus to refuse it ($desc), got: $ccount" ;;
    esac
  elif [ "$count" != "$ccount" ] || [ "$sqlmd5" != "$csqlmd5" ] || [ "$rows" != "$crows" ]; then
    bad "$key differs: single node count $count, rows $rows; Citus count $ccount, rows $crows$([ "$sqlmd5" = "$csqlmd5" ] || echo ', SQL differs')"
  else
    same=$((same + 1))
  fi
done <"$work/single"
printf 'citus: %s of %s audiences identical (preview count, la_audience_sql, its rows), %s refused as not co-located; previews and rows took %.2f s on one node, %.2f s on Citus\n' \
  "$same" "$audiences" "$refused" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")"

# --- 2. EXPLAIN of the members queries on Citus ------------------------------------
shards=$(qc -c "SELECT shardcount FROM pg_dist_colocation c JOIN pg_dist_partition p USING (colocationid) WHERE p.logicalrelid = 'profiles'::regclass")
{ echo "$helpers"; echo "SELECT a.key, pg_temp.plan(la_audience_sql(a.definition)) FROM linked_audiences.audiences a WHERE a.description IS NULL ORDER BY a.id;"; } |
  qc -F'|' -R $'\x1e' >"$work/plans"
pushed=0
while IFS='|' read -r -d $'\x1e' key plan; do
  key=${key#$'\n'}
  if grep -q "Task Count: $shards\$" <<<"$plan" && ! grep -Eq 'Distributed Subplan|MapMergeJob|[Rr]epartition|intermediate_result' <<<"$plan"; then
    pushed=$((pushed + 1))
  else
    bad "$key: the members query is not one task per shard group without intermediate results:"
    head -12 <<<"$plan" | sed 's/^/    /'
  fi
done < <(cat "$work/plans"; printf '\x1e')
echo "citus: $pushed members queries push down whole (Task Count: $shards, no subplan, no repartition)"
echo "citus: for example cart_two_products (a junction with the key, a count below an open cart):"
{ echo "$helpers"; echo "SELECT pg_temp.plan(la_audience_sql(definition)) FROM linked_audiences.audiences WHERE key = 'cart_two_products';"; } |
  qc | sed -n '1,3p;/->  Task/,$p' | head -14 | sed 's/^/    /'

# --- 3. computes, activations and the outbox, then again after changes -------------
activate=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT la_create_destination('braze', 'braze');
SELECT la_activate('toy_buyers', 'braze', 'Audience Entered',
       properties => '{"traits": ["email"], "relationships": {"products": ["sku", "category"]}}');
SELECT la_activate('cart_out_of_stock', 'braze', 'Entity Added', 'cart_products', properties => '{"traits": ["plan"]}');
SELECT la_activate('big_spenders', 'braze', 'Audience Membership Changed');
SELECT la_activate('frequent', 'braze', 'Audience Exited');
-- Entity events with relationships nested below the entity: the order's own columns flat,
-- the rows linked to that order as arrays: its line items (keyed, one hop), and its
-- products (two hops: through the keyed line items to a reference table).
SELECT la_activate('big_baskets', 'braze', e, 'orders', properties =>
       '{"traits": ["email"], "relationships": {"orders": ["status", "total"], "line_items": ["product_sku", "quantity"]}}')
FROM unnest(ARRAY['Entity Added', 'Entity Removed']) e;
SELECT la_activate('pricey_item', 'braze', 'Entity Added', 'orders', properties =>
       '{"traits": ["email"], "relationships": {"orders": ["status", "total"], "products": ["sku", "price"]}}');
SQL
)
# Created between the two rounds, on audiences that already have members: send_existing
# sends the current members (or entities) at the activation's first compute.
activate_existing=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT la_activate('premium', 'braze', 'Audience Entered', properties => '{"traits": ["email"]}', send_existing => true);
SELECT la_activate('in_europe', 'braze', 'Audience Membership Changed',
       properties => '{"relationships": {"country": ["name"]}}', send_existing => true);
SELECT la_activate('has_completed_order', 'braze', 'Entity Added', 'orders', send_existing => true,
       properties => '{"traits": ["plan"], "relationships": {"orders": ["status", "total"]}}');
SQL
)
changes=$(cat <<'SQL'
SET client_min_messages = warning;
UPDATE products SET in_stock = NOT in_stock WHERE sku IN ('sku-7', 'sku-8', 'sku-9', 'sku-10');
UPDATE orders SET status = 'cancelled' WHERE profile_id % 7 = 0 AND id = 1;
DELETE FROM line_items WHERE profile_id % 11 = 0;
DELETE FROM orders WHERE profile_id % 13 = 0 AND id > 1;
UPDATE profiles SET plan = 'premium' WHERE id % 17 = 0;
INSERT INTO events SELECT id, 5000, 'Order Completed', timestamptz '2026-09-15', '{"total": 999, "currency": "EUR"}'
FROM profiles WHERE id % 19 = 0;
SQL
)
# Per audience: the compute's status, its members, tracked entities and outbox events
# (payloads without their message ids, timestamps and run ids, in the order of what is
# left: several events of one profile differ only there), as digests.
# (The members, entities and outbox read into CTEs first: on Citus the first two are
# distributed, and a local table cannot be joined with them directly.)
state=$(cat <<'SQL'
WITH m AS MATERIALIZED (SELECT audience_id, profile_id FROM linked_audiences.audience_members),
e AS MATERIALIZED (SELECT audience_id, relationship, profile_id, entity_id FROM linked_audiences.audience_entities)
SELECT a.key,
  coalesce((SELECT r.status || CASE WHEN r.status = 'failed' THEN ': ' || r.error ELSE '' END
            FROM linked_audiences.runs r WHERE r.audience_id = a.id ORDER BY r.id DESC LIMIT 1), 'none'),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(m.profile_id, ',' ORDER BY m.profile_id)), '')
   FROM m WHERE m.audience_id = a.id),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(e.relationship || ':' || e.profile_id || ':' || e.entity_id, ',' ORDER BY e.relationship, e.profile_id, e.entity_id)), '')
   FROM e WHERE e.audience_id = a.id),
  (SELECT count(*) || ' ' || coalesce(md5(string_agg(o.type || o.p, ',' ORDER BY o.aggregateid, o.type, o.p)), '')
   FROM (SELECT o.aggregateid, o.type, (o.payload #- '{messageId}' #- '{timestamp}' #- '{context,personas,computation_run_id}')::text AS p
         FROM linked_audiences.outbox o WHERE o.audience = a.key) o)
FROM linked_audiences.audiences a ORDER BY a.id;
SQL
)
# Compares two states (the single node's, a Citus database's); sets ok and known.
compare_states() { # LABEL SINGLE-FILE CITUS-FILE
  ok=0 known=0
  while IFS='|' read -r key status members entities events; do
    IFS='|' read -r _ cstatus cmembers centities cevents <<<"$(grep "^$key|" "$3")"
    if [ "$status" != succeeded ]; then
      bad "$1: $key did not compute on the single node: $status"
    elif [ "$cstatus" = succeeded ]; then
      if [ "$members|$entities|$events" = "$cmembers|$centities|$cevents" ]; then
        ok=$((ok + 1))
        case " $KNOWN_COMPUTE_FAILURES " in *" $key "*) echo "citus: $1: $key now computes on Citus: take it out of KNOWN_COMPUTE_FAILURES" ;; esac
      else
        bad "$1: $key differs: members $members / $cmembers, entities $entities / $centities, events $events / $cevents"
      fi
    else
      case " $KNOWN_COMPUTE_FAILURES " in
        *" $key "*) known=$((known + 1)); echo "citus: $1: $key fails on Citus (known): ${cstatus#failed: }" ;;
        *) bad "$1: $key fails on Citus: $cstatus" ;;
      esac
    fi
  done <"$2"
}
compute_round() { # LABEL
  local t0 t1 t2
  t0=$(date +%s.%N); qs -c "SET client_min_messages = error" -c "SELECT count(*) FROM la_compute_all()" >/dev/null || exit 1
  t1=$(date +%s.%N); qc -c "SET client_min_messages = error" -c "SELECT count(*) FROM la_compute_all()" >/dev/null || exit 1
  t2=$(date +%s.%N)
  qs -F'|' -c "$state" >"$work/state-single"
  qc -F'|' -c "$state" >"$work/state-citus"
  compare_states "$1" "$work/state-single" "$work/state-citus"
  printf 'citus: %s: %s audiences computed identically (members, entities, events), %s known failures; la_compute_all took %.2f s on one node, %.2f s on Citus\n' \
    "$1" "$ok" "$known" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")"
}
qs -c "$activate" >/dev/null && qc -c "$activate" >/dev/null || exit 1
compute_round "first compute"
qs -c "$activate_existing" >/dev/null && qc -c "$activate_existing" >/dev/null || exit 1
qs -c "$changes" && qc -c "$changes" || exit 1
compute_round "after changes"
cp "$work/state-single" "$work/state-single-final"
# The new activations' events are there (and identical, above): entity events with nested
# arrays, and what send_existing sent.
events_of() { # QUERY-FUNCTION AUDIENCE...
  local f=$1; shift
  $f -c "SELECT au.key || ' ' || a.event || coalesce('/' || a.entity, '') || CASE WHEN a.send_existing THEN ' send_existing' ELSE '' END
                || ': ' || count(o.*)
                || CASE WHEN a.entity = 'orders' THEN ', with line_items ' || count(*) FILTER (WHERE jsonb_array_length(o.payload #> '{properties,orders__line_items}') > 0)
                        || ', with products ' || count(*) FILTER (WHERE jsonb_array_length(o.payload #> '{properties,orders__products}') > 0)
                   ELSE '' END
         FROM linked_audiences.activation a JOIN linked_audiences.audience au ON au.id = a.audience_id
         LEFT JOIN linked_audiences.outbox o ON o.activation_id = a.id
         WHERE au.key = ANY (string_to_array('$*', ' '))
         GROUP BY a.id, au.key, a.event, a.entity, a.send_existing ORDER BY a.id"
}
echo "citus: send_existing, events per activation (identical on both, above): $(events_of qc premium in_europe has_completed_order | paste -sd ';' | sed 's/;/; /g')"
[ "$(events_of qs premium in_europe has_completed_order)" = "$(events_of qc premium in_europe has_completed_order)" ] ||
  bad "the send_existing activations' event counts differ"
nested=$(events_of qc big_baskets pricey_item)
echo "citus: entity events with nested relationships, events per activation (identical on both, above): $(echo "$nested" | paste -sd ';' | sed 's/;/; /g')"
[ "$(events_of qs big_baskets pricey_item)" = "$nested" ] || bad "the nested entity events' counts differ"
echo "$nested" | grep -q 'with line_items [1-9]' && echo "$nested" | grep -q 'with products [1-9]' ||
  bad "no entity event carries its nested line items and products"

# Incremental computes are not offered on Citus: refused with the reason; auto is full.
inc=$(qc -c "SET client_min_messages = error" -c "SELECT la_compute_audience('premium', 'incremental') ->> 'error'")
case $inc in *"members table is distributed"*) ;; *) bad "an incremental compute on Citus: expected a refusal, got: $inc" ;; esac
[ "$(qc -c "SET client_min_messages = error" -c "SELECT la_compute_audience('premium') ->> 'mode'")" = full ] ||
  bad "an auto compute on Citus is not full"

# The single node is untouched: no profile_key, and it dumps as before.
[ "$(qs -c "SELECT count(*) FROM pg_attribute WHERE attname = 'profile_key' AND NOT attisdropped
            AND attrelid::regclass::text LIKE 'linked_audiences.%'")" = 0 ] ||
  bad "the single node's extension tables gained a profile_key column"
"$PGBIN/pg_dump" "$single" >"$work/single.dump" 2>"$work/single.dump.err" || bad "pg_dump of the single node failed: $(head -3 "$work/single.dump.err")"

# --- 4. the plans of a compute's statements on Citus (auto_explain, rolled back) -----
# Every statement that writes the members, entities or history must be one task per
# shard group with nothing pulled to the coordinator; the events are built by one
# pushed-down scan of the run's changes, and only they come to the coordinator.
for key in toy_buyers cart_out_of_stock; do
  plans=$(qc -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
             -c "SET auto_explain.log_nested_statements = on" -c "SET client_min_messages = log" \
             -c "BEGIN" -c "SELECT linked_audiences.compute_audience('$key', 'full')" -c "ROLLBACK" 2>&1 >/dev/null)
  checked=0
  while IFS= read -r -d $'\x1e' block; do
    text=$(grep -m1 -A1 'Query Text:' <<<"$block" | tr '\n' ' ' | sed 's/.*Query Text: *//' | cut -c1-90)
    case $text in
      *"INSERT INTO linked_audiences.membership_changes"*|*"INSERT INTO linked_audiences.audience_"*|*"DELETE FROM linked_audiences.audience_"*)
        checked=$((checked + 1))
        if ! grep -q "Task Count: $shards\$" <<<"$block" || grep -Eq 'Distributed Subplan|MapMergeJob|[Rr]epartition|intermediate_result|pull to coordinator' <<<"$block"; then
          bad "$key: a diff statement is not pushed down whole: $text"
          head -14 <<<"$block" | sed 's/^/    /'
        fi ;;
      *"INSERT INTO pg_temp.la_compute_events"*)
        checked=$((checked + 1))
        if ! grep -q "Task Count: $shards\$" <<<"$block" || grep -Eq 'Distributed Subplan|MapMergeJob|[Rr]epartition' <<<"$block"; then
          bad "$key: the events are not built by one pushed-down scan: $text"
          head -14 <<<"$block" | sed 's/^/    /'
        fi ;;
    esac
  done < <(sed 's/^LOG:  duration: .*plan:$/\x1e&/' <<<"$plans" | tail -c +2; printf '\x1e')
  [ "$checked" -ge 5 ] || bad "$key: only $checked compute statements explained (auto_explain)"
  echo "citus: $key: $checked compute statements explained, diff statements with Task Count: $shards and nothing pulled"
done

# --- 5. ALTER EXTENSION UPDATE on a distributed database ---------------------------
# A fresh database on every node (citus created, the workers registered), as a user
# would add one to the cluster.
host=$(sed -E 's|^postgresql://[^@]*@([^:/]+):.*|\1|' <<<"$uri")
cport=$(sed -E 's|^postgresql://[^@]*@[^:/]+:([0-9]+)/.*|\1|' <<<"$uri")
wports=$(qc -c "SELECT string_agg(nodeport::text, ' ' ORDER BY nodeport) FROM pg_dist_node WHERE groupid > 0 AND noderole = 'primary'")
fresh_db() { # DB
  local p
  for p in $cport $wports; do
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$p" -d postgres \
      -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" || return 1
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$p" -d "$1" \
      -c "SET client_min_messages = warning" -c "CREATE EXTENSION citus" || return 1
  done
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$cport" -d "$1" -c "SET client_min_messages = warning" \
    -c "SELECT citus_set_coordinator_host('$host', $cport)" \
    -c "SELECT citus_add_node('$host', p) FROM unnest('{${wports// /,}}'::int[]) p" >/dev/null
}
qu() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${uri%/*}/la_upgrade" "$@"; }
qr() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${uri%/*}/la_restore" "$@"; }
versions() { # DB: the extension's version on the coordinator and each worker
  local p
  for p in $cport $wports; do
    "$PGBIN/psql" -X -q -At -h "$host" -p "$p" -d "$1" -c "SELECT extversion FROM pg_extension WHERE extname = 'linked_audiences'"
  done | paste -sd ' '
}
t0=$(date +%s.%N)
fresh_db la_upgrade || { bad "could not create la_upgrade on the cluster"; exit 1; }
qu -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences VERSION '0.2.0'" || exit 1
[ "$(versions la_upgrade)" = "0.2.0 0.2.0 0.2.0" ] || bad "upgrade: CREATE EXTENSION VERSION '0.2.0' gave $(versions la_upgrade)"
qu -v n="$n" -v distribute=on -f tests/citus/warehouse.sql >/dev/null || exit 1
qu >/dev/null <<'SQL' || exit 1
\set graph `cat tests/citus/graph.json`
SELECT la_define_data_graph(:'graph');
\i tests/citus/audiences.sql
SQL
qu -c "$activate" >/dev/null || exit 1
# 0.2.0 has no la_distribute(): its computes run the single-node statements over the
# distributed warehouse, and Citus refuses some of them (those with activations).
old_failed=$(qu -c "SET client_min_messages = error" -c "SELECT count(*) FROM la_compute_all()" \
                -c "SELECT string_agg(a.key, ' ' ORDER BY a.id) FROM linked_audiences.audiences a
                    WHERE (SELECT r.status FROM linked_audiences.runs r WHERE r.audience_id = a.id ORDER BY r.id DESC LIMIT 1) = 'failed'" | tail -1)
qu -c "SET client_min_messages = warning" -c "ALTER EXTENSION linked_audiences UPDATE" || bad "upgrade: ALTER EXTENSION linked_audiences UPDATE failed"
[ "$(versions la_upgrade)" = "0.3.0 0.3.0 0.3.0" ] || bad "upgrade: after ALTER EXTENSION UPDATE: versions $(versions la_upgrade) (coordinator, workers)"
qu -c "SET client_min_messages = warning" -c "SELECT la_distribute()" >/dev/null || bad "upgrade: la_distribute() after the update failed"
qu -c "SET client_min_messages = error" -c "SELECT count(*) FROM la_compute_all()" >/dev/null || bad "upgrade: compute after the update failed"
qu -c "$activate_existing" >/dev/null && qu -c "$changes" || exit 1
qu -c "SET client_min_messages = error" -c "SELECT count(*) FROM la_compute_all()" >/dev/null || bad "upgrade: compute after the changes failed"
qu -F'|' -c "$state" >"$work/state-upgrade"
compare_states "upgrade" "$work/state-single-final" "$work/state-upgrade"
printf 'citus: upgrade: 0.2.0 on a distributed warehouse (failed there, before la_distribute(): %s), ALTER EXTENSION UPDATE to %s (coordinator, workers), la_distribute(), computed, changed, computed: %s audiences identical to the single node (members, entities, events), %s known failures (%.1f s)\n' \
  "${old_failed:-none}" "$(versions la_upgrade)" "$ok" "$known" "$(secs "$t0" "$(date +%s.%N)")"

# --- 6. pg_dump of a distributed database, and a restore into a fresh one ---------
t0=$(date +%s.%N)
if ! "$PGBIN/pg_dump" -Fc -f "$work/upgrade.dump" "${uri%/*}/la_upgrade" 2>"$work/dump.err"; then
  bad "pg_dump of the distributed database failed: $(head -3 "$work/dump.err")"
else
  # The extension's configuration tables' data, distributed ones included (pg_dump's COPY
  # goes through the coordinator), is in the dump, row for row.
  dumped=""
  for t in audience_members audience_entities membership_changes runs outbox outbox_state; do
    d=$("$PGBIN/pg_restore" -a -n linked_audiences -t "$t" -f - "$work/upgrade.dump" | awk '/^COPY /{c=1; next} /^\\\.$/{c=0} c' | wc -l)
    l=$(qu -c "SELECT count(*) FROM linked_audiences.$t")
    [ "$d" = "$l" ] && [ "$l" -gt 0 ] || bad "pg_dump: linked_audiences.$t has $l rows, the dump $d"
    dumped="$dumped $t $d,"
  done
  echo "citus: pg_dump of the distributed database: rows in the dump:${dumped%,}"
  # The restore, as the README's recipe: schema; the warehouse distributed as before; the
  # graph; la_distribute(); then the rest of the data, through the coordinator.
  fresh_db la_restore || { bad "could not create la_restore on the cluster"; exit 1; }
  "$PGBIN/pg_restore" --schema-only --exit-on-error -d "${uri%/*}/la_restore" "$work/upgrade.dump" ||
    bad "restore: the schema"
  qr -c "SET client_min_messages = warning" -c "SELECT create_distributed_table('profiles', 'id')" \
     -c "SELECT create_distributed_table(t, 'profile_id', colocate_with => 'profiles')
         FROM unnest(ARRAY['profile_identifiers', 'accounts', 'subscriptions', 'orders', 'line_items',
                           'carts', 'cart_items', 'reviews', 'events']) t" \
     -c "SELECT create_reference_table(t) FROM unnest(ARRAY['countries', 'products', 'tags', 'product_tags']) t" >/dev/null ||
    bad "restore: distributing the warehouse"
  "$PGBIN/pg_restore" --data-only --exit-on-error -n linked_audiences -t data_graph -d "${uri%/*}/la_restore" "$work/upgrade.dump" ||
    bad "restore: the graph"
  qr -c "SET client_min_messages = warning" -c "SELECT la_distribute()" >/dev/null || bad "restore: la_distribute()"
  "$PGBIN/pg_restore" -l "$work/upgrade.dump" | grep -v ' TABLE DATA linked_audiences data_graph ' >"$work/restore.list"
  "$PGBIN/pg_restore" --data-only --exit-on-error -L "$work/restore.list" -d "${uri%/*}/la_restore" "$work/upgrade.dump" ||
    bad "restore: the data"
  qr -F'|' -c "$state" >"$work/state-restore"
  cmp -s "$work/state-upgrade" "$work/state-restore" ||
    bad "restore: the state differs from the dumped database's: $(diff "$work/state-upgrade" "$work/state-restore" | head -4)"
  # The state survived: a compute there finds nothing to do.
  wrote=$(qr -c "SET client_min_messages = error" -c "SELECT count(*) || ' computed, ' ||
      count(*) FILTER (WHERE (c.result->>'entered')::int + (c.result->>'exited')::int + (c.result->>'entities_added')::int
                             + (c.result->>'entities_removed')::int + (c.result->>'events_written')::int > 0) || ' wrote changes, ' ||
      count(*) FILTER (WHERE c.result ? 'error' OR c.result->>'status' = 'failed') || ' failed'
    FROM la_compute_all() c WHERE c.audience <> ALL (string_to_array('$KNOWN_COMPUTE_FAILURES', ' '))")
  qr -F'|' -c "$state" >"$work/state-restore-computed"
  case $wrote in
    *" computed, 0 wrote changes, 0 failed") ;;
    *) bad "restore: a compute after the restore: $wrote" ;;
  esac
  cmp -s <(cut -d'|' -f1,3- "$work/state-restore") <(cut -d'|' -f1,3- "$work/state-restore-computed") ||
    bad "restore: a compute after the restore changed members, entities or events: $(diff "$work/state-restore" "$work/state-restore-computed" | head -4)"
  printf 'citus: restore into a fresh Citus database (schema, distribute, graph, la_distribute(), data): state identical; a compute there: %s (%.1f s)\n' \
    "$wrote" "$(secs "$t0" "$(date +%s.%N)")"
fi

# --- optional: the extension's state distributed by profile ------------------------
if [ $explore = 1 ]; then
  echo "citus: explore: a distributed form of the statements, by hand (tests/citus/proposal.sql):"
  "$PGBIN/psql" -X -q "$uri" -f tests/citus/proposal.sql 2>&1 | grep -v '^ *Node: ' | sed 's/^/    /'
fi

echo "citus: $([ $fail = 0 ] && echo passed || echo failed)"
exit $fail
