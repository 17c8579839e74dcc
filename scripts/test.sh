#!/usr/bin/env bash
# Runs every test: unit tests and #[pg_test]s (cargo pgrx test), then the pg_regress
# suite under tests/pg_regress against a cluster of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG_REGRESS=$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress

log=$(mktemp)
echo "== cargo pgrx test (unit tests and #[pg_test]s)"
rm -rf /tmp/pgrx-pgdata
cargo pgrx test pg15 --runas postgres --pgdata /tmp/pgrx-pgdata 2>&1 | tee "$log"
cargo_passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')

cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
# Released versions' frozen install scripts, for the upgrade test (cargo pgrx installs
# the current version's script and the upgrade scripts only).
for release in sql/linked_audiences--*.sql; do
  case $release in sql/linked_audiences--*--*) ;; *) install -m 644 "$release" "$($PG_CONFIG --sharedir)/extension/" ;; esac
done
dir=/tmp/la-regress
port=54329
scripts/cluster.sh stop "$dir"
rm -rf "$dir"
trap 'scripts/cluster.sh stop "$dir"' EXIT
scripts/cluster.sh start "$dir" "$port" contrib_regression
total=0
# Runs one suite (pg_regress or pg_isolation_regress, same options) against the
# cluster; on a failure prints the diffs and stops.
run_suite() { # NAME RUNNER INPUT_DIR
  local name=$1 runner=$2 input=$3 out=$dir/$1 list
  list=$(grep -Eo '^test: .*' "$input/schedule" | sed 's/^test: //' | tr '\n' ' ')
  mkdir -p "$out" && chown postgres: "$out"
  echo "== $name ($input)"
  if ! runuser -u postgres -- "$runner" \
    --bindir=/usr/lib/postgresql/15/bin --host="$dir" --port="$port" --user=postgres \
    --inputdir="$root/$input" --outputdir="$out" --dbname=contrib_regression \
    --use-existing $list; then
    head -300 "$out/regression.diffs" 2>/dev/null
    echo "$name: $(grep -c ' ok ' "$out/regression.out" 2>/dev/null || echo 0) passed, $(grep -c 'FAILED' "$out/regression.out" 2>/dev/null || echo 1) failed"
    exit 1
  fi
  total=$((total + $(echo $list | wc -w)))
}
run_suite pg_regress "$PG_REGRESS" tests/pg_regress
run_suite pg_isolation_regress "$($PG_CONFIG --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" tests/isolation
echo "== pg_dump and restore (tests/dump)"
tests/dump/dump_restore.sh "$dir" "$port" 2>&1 | grep -v '^NOTICE' || { echo "dump/restore: failed"; exit 1; }
total=$((total + 1))
echo "== upgrades (tests/upgrade): every release under sql/ updated to the current version"
tests/upgrade/upgrade.sh "$dir" "$port" 2>&1 | grep -v '^NOTICE' || { echo "upgrade: failed"; exit 1; }
total=$((total + 1))
echo "== faults (tests/faults): terminate and SIGKILL mid-compute, restart before consumption"
tests/faults/faults.sh "$dir" "$port" || { echo "faults: failed"; exit 1; }
total=$((total + 1))
echo "== four concurrent consumers (tests/concurrency)"
tests/concurrency/four_consumers.sh "$dir" "$port" || { echo "four consumers: failed"; exit 1; }
total=$((total + 1))
echo "== benchmark smoke run (bench/run.py at scale 0.01)"
smoke=/tmp/la-bench-smoke
python3 bench/run.py 0.01 --runs 1 --no-build --dir "$smoke" --port 54334 > "$dir/bench-smoke.log" 2>&1 \
  || { cat "$dir/bench-smoke.log"; scripts/cluster.sh stop "$smoke"; echo "benchmark smoke run: failed"; exit 1; }
scripts/cluster.sh stop "$smoke"
grep -E '^\| (cat_owners|recent_buyers) ' "$dir/bench-smoke.log" || true
total=$((total + 1))
echo "tests: $((cargo_passed + total)) passed, 0 failed"
