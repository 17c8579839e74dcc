#!/usr/bin/env bash
# Runs every test: unit tests and #[pg_test]s (cargo pgrx test), then against a cluster
# of its own the pg_regress suite, the isolation specs, dump/restore, upgrades, faults,
# four concurrent consumers, incremental computes, the delivery relay, scheduled computes
# through pg_cron, the real-time worker, Citus (when it can be built) and a benchmark smoke
# run. A failing suite does not stop the others; the last line is
# `tests: N passed, M failed` followed by the failed suites' names.
# Works as root or as a user with sudo, from a checkout only its owner can read.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/env.sh
set -e
scripts/setup.sh
set +e
PG_REGRESS=$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress
PG_ISOLATION=$($PG_CONFIG --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress

passed=0
failed=()
skipped=()
record() { # NAME COUNT OK?
  if [ "$3" = 0 ]; then passed=$((passed + $2)); else failed+=("$1"); fi
}

log=$(mktemp)
pgdata=$(la_tmp pgrx-pgdata)
echo "== cargo pgrx test (unit tests and #[pg_test]s)"
rm -rf "$pgdata"
if [ "$(id -u)" = 0 ]; then
  cargo pgrx test pg15 --runas postgres --pgdata "$pgdata" 2>&1 | tee "$log"
else
  # pgrx installs the test build into the system's Postgres directories with sudo when
  # it runs the test server as a named user (--runas, here the caller itself).
  as_root true && cargo pgrx test pg15 --runas "$(id -un)" --pgdata "$pgdata" 2>&1 | tee "$log"
fi
rc=${PIPESTATUS[0]}
cargo_passed=$(grep -Eo 'test result: (ok|FAILED)\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
passed=$((passed + cargo_passed))
[ "$rc" = 0 ] || failed+=("cargo pgrx test")
rm -f "$log"

echo "== installing the extension"
if ! la_install >/dev/null; then
  echo "tests: $passed passed, 1 failed (cargo pgrx install; nothing else could run)"
  exit 1
fi
# Released versions' frozen install scripts, for the upgrade test (cargo pgrx installs
# the current version's script and the upgrade scripts only).
for release in sql/linked_audiences--*.sql; do
  case $release in sql/linked_audiences--*--*) ;; *) as_root install -m 644 "$release" "$($PG_CONFIG --sharedir)/extension/" ;; esac
done
dir=$(la_tmp la-regress)
port=54329
scripts/cluster.sh stop "$dir"
rm -rf "$dir"
trap 'scripts/cluster.sh stop "$dir"' EXIT
scripts/cluster.sh start "$dir" "$port" contrib_regression || { echo "tests: $passed passed, 1 failed (the test cluster did not start)"; exit 1; }

# One pg_regress or pg_isolation_regress suite against the cluster; on a failure prints
# the diffs. pg_regress runs as the caller: it reads the checkout, the server does not.
run_suite() { # NAME RUNNER INPUT_DIR
  local name=$1 runner=$2 input=$3 out=$dir/$1 list
  list=$(grep -Eo '^test: .*' "$input/schedule" | sed 's/^test: //' | tr '\n' ' ')
  mkdir -p "$out"
  echo "== $name ($input)"
  if "$runner" --bindir="$PGBIN" --host="$dir" --port="$port" --user=postgres \
    --inputdir="$root/$input" --outputdir="$out" --dbname=contrib_regression \
    --use-existing $list; then
    record "$name" "$(echo $list | wc -w)" 0
  else
    head -300 "$out/regression.diffs" 2>/dev/null
    echo "$name: $(grep -c ' ok ' "$out/regression.out" 2>/dev/null || echo 0) passed, $(grep -c 'FAILED' "$out/regression.out" 2>/dev/null || echo 1) failed"
    record "$name" 0 1
  fi
}
# One shell test; its output is shown, NOTICEs left out. Exit 77 means skipped.
run_test() { # NAME COMMAND...
  local name=$1 rc; shift
  "$@" 2>&1 | grep -v '^NOTICE'
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then record "$name" 1 0
  elif [ "$rc" = 77 ]; then skipped+=("$name")
  else echo "$name: failed"; record "$name" 0 1; fi
}

run_suite pg_regress "$PG_REGRESS" tests/pg_regress
run_suite pg_isolation_regress "$PG_ISOLATION" tests/isolation
echo "== pg_dump and restore (tests/dump)"
run_test dump/restore tests/dump/dump_restore.sh "$dir" "$port"
echo "== upgrades (tests/upgrade): every release under sql/ updated to the current version"
run_test upgrade tests/upgrade/upgrade.sh "$dir" "$port"
echo "== faults (tests/faults): terminate and SIGKILL mid-compute, restart before consumption"
run_test faults tests/faults/faults.sh "$dir" "$port"
echo "== four concurrent consumers (tests/concurrency)"
run_test "four consumers" tests/concurrency/four_consumers.sh "$dir" "$port"
echo "== incremental computes (tests/incremental): 200 random definitions x 5 batches of writes, incremental = full"
run_test incremental python3 tests/incremental/property.py "$dir" "$port"
echo "== the relay's unit tests (cargo test -p la-relay)"
relay_log=$(mktemp)
cargo test --release -p la-relay 2>&1 | tee "$relay_log" | grep -E '^test result|^error'
if [ "${PIPESTATUS[0]}" = 0 ]; then
  record "relay unit tests" "$(grep -Eo 'test result: ok\. [0-9]+ passed' "$relay_log" | awk '{s+=$4} END {print s+0}')" 0
else
  record "relay unit tests" 0 1
fi
rm -f "$relay_log"
echo "== the delivery relay (tests/relay): la-relay against a mock of the five APIs, faults and SIGTERM"
run_test relay tests/relay/relay.sh
echo "== schedules (tests/schedule): pg_cron runs the computes, here and from another database (waits up to 75 s)"
run_test schedules tests/schedule/schedule.sh
echo "== real time (tests/realtime): the background worker computes after each commit"
run_test realtime tests/realtime/realtime.sh
echo "== Citus (tests/citus): a coordinator and two workers, compared with a single node (skipped without Citus or its source)"
run_test citus tests/citus/citus.sh
echo "== benchmark smoke run (bench/run.py at scale 0.01)"
smoke=$(la_tmp la-bench-smoke)
if python3 bench/run.py 0.01 --runs 1 --no-build --dir "$smoke" --port 54334 > "$dir/bench-smoke.log" 2>&1; then
  grep -E '^\| (cat_owners|recent_buyers) ' "$dir/bench-smoke.log"
  record "benchmark smoke run" 1 0
else
  cat "$dir/bench-smoke.log"; echo "benchmark smoke run: failed"
  record "benchmark smoke run" 0 1
fi
scripts/cluster.sh stop "$smoke"

[ ${#skipped[@]} -eq 0 ] || echo "skipped suites: ${skipped[*]}"
if [ ${#failed[@]} -eq 0 ]; then
  echo "tests: $passed passed, 0 failed, ${#skipped[@]} skipped"
else
  echo "failed suites: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')"
  echo "tests: $passed passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
  exit 1
fi
