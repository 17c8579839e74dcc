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

echo "== pg_regress (tests/pg_regress)"
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
dir=/tmp/la-regress
port=54329
scripts/cluster.sh stop "$dir"
rm -rf "$dir"
trap 'scripts/cluster.sh stop "$dir"' EXIT
scripts/cluster.sh start "$dir" "$port" contrib_regression
out=$dir/out
mkdir -p "$out" && chown postgres: "$out"
tests=$(grep -Eo '^test: .*' tests/pg_regress/schedule | sed 's/^test: //' | tr '\n' ' ')
set +e
runuser -u postgres -- "$PG_REGRESS" \
  --bindir=/usr/lib/postgresql/15/bin --host="$dir" --port="$port" --user=postgres \
  --inputdir="$root/tests/pg_regress" --outputdir="$out" --dbname=contrib_regression \
  --use-existing $tests
regress=$?
set -e
total=$(echo $tests | wc -w)
echo "== pg_isolation_regress (tests/isolation)"
PG_ISOLATION=$($PG_CONFIG --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress
iso_tests=$(grep -Eo '^test: .*' tests/isolation/schedule | sed 's/^test: //' | tr '\n' ' ')
iso_out=$dir/iso
mkdir -p "$iso_out" && chown postgres: "$iso_out"
set +e
runuser -u postgres -- "$PG_ISOLATION" \
  --bindir=/usr/lib/postgresql/15/bin --host="$dir" --port="$port" --user=postgres \
  --inputdir="$root/tests/isolation" --outputdir="$iso_out" --dbname=contrib_regression \
  --use-existing $iso_tests
iso=$?
set -e
iso_total=$(echo $iso_tests | wc -w)
if [ $iso -ne 0 ]; then
  cat "$iso_out/regression.diffs" 2>/dev/null | head -300
  echo "pg_isolation_regress: failed"
  exit 1
fi
total=$((total + iso_total))
echo "== pg_dump and restore (tests/dump)"
tests/dump/dump_restore.sh "$dir" "$port" 2>&1 | grep -v '^NOTICE' || { echo "dump/restore: failed"; exit 1; }
total=$((total + 1))
echo "== benchmark smoke run (bench/run.py at scale 0.01)"
smoke=/tmp/la-bench-smoke
python3 bench/run.py 0.01 --runs 1 --no-build --dir "$smoke" --port 54334 > "$dir/bench-smoke.log" 2>&1 \
  || { cat "$dir/bench-smoke.log"; scripts/cluster.sh stop "$smoke"; echo "benchmark smoke run: failed"; exit 1; }
scripts/cluster.sh stop "$smoke"
grep -E '^\| (cat_owners|recent_buyers) ' "$dir/bench-smoke.log" || true
total=$((total + 1))
if [ $regress -ne 0 ]; then
  cat "$out/regression.diffs" 2>/dev/null | head -300
  failed=$(grep -c '^not ok\|FAILED\|failed (ignored)' "$out/regression.out" 2>/dev/null || echo 1)
  echo "pg_regress: $((total - failed)) passed, $failed failed"
  exit 1
fi
echo "tests: $((cargo_passed + total)) passed, 0 failed"
