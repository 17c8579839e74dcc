#!/usr/bin/env python3
"""Commit-to-outbox latency with the real-time worker, under a steady stream of small
transactions: bench/latency.py [--scale S] [--rate R] [--seconds T] [--intervals 1000,200]

A cluster of its own (port 54339) preloads linked_audiences with the real-time worker on
(scripts/cluster.sh ... realtime). The warehouse is bench/generate.sql at scale S
(default 0.1 = 10,000 profiles), with the demo graph, the audience cat_owners activated
for a webhook, and change capture on. For each worker interval:

- a writer commits R transactions a second for T seconds (default 20/s for 60 s), each
  turning one pet of a different non-member household into a cat (one profile enters,
  one event), and records clock_timestamp() just before its COMMIT;
- a consumer polls the outbox every 20 ms, each poll its own transaction, and records
  when it first sees each event (clock_timestamp() of that poll).

Latency = first seen - commit, per event; prints p50, p90, p99 and the maximum, with the
worker's computes (how many, how many profiles each evaluated). Both sides read the same
clock (the server's). Everything is undone afterwards; the cluster is left running
(scripts/cluster.sh stop DIR stops it).
"""
import argparse
import getpass
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark harness: cluster, psql helpers)

PORT = 54339
SETUP = """
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_commits, bench_seen;
CREATE TABLE bench_commits (user_id text PRIMARY KEY, committed_at timestamptz NOT NULL);
CREATE TABLE bench_seen (user_id text PRIMARY KEY, seen_at timestamptz NOT NULL);
"""
# One pet per household whose profile is not a cat owner, in a fixed order.
CANDIDATES = """
CREATE TABLE bench_candidates AS
SELECT DISTINCT ON (pe.household_id) pe.id AS pet_id, pe.type AS old_type, p.user_id, false AS used
FROM pets pe JOIN profiles p ON p.household_id = pe.household_id
WHERE NOT EXISTS (SELECT 1 FROM pets c WHERE c.household_id = pe.household_id AND c.type = 'cat')
ORDER BY pe.household_id, pe.id;
"""
WRITER = """
DO $$
DECLARE c record; n int := 0;
BEGIN
  FOR c IN SELECT * FROM bench_candidates WHERE NOT used ORDER BY pet_id LIMIT {count} LOOP
    UPDATE pets SET type = 'cat' WHERE id = c.pet_id;
    UPDATE bench_candidates SET used = true WHERE pet_id = c.pet_id;
    INSERT INTO bench_commits VALUES (c.user_id, clock_timestamp());
    COMMIT;
    PERFORM pg_sleep({pause});
  END LOOP;
END $$;
"""
CONSUMER = """
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '{seconds} seconds';
BEGIN
  WHILE clock_timestamp() < deadline LOOP
    INSERT INTO bench_seen
    SELECT o.aggregateid, clock_timestamp() FROM linked_audiences.outbox o
    WHERE o.audience = 'cat_owners' AND o.type = 'Audience Entered'
    ON CONFLICT DO NOTHING;
    COMMIT;
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
"""
UNDO = """
UPDATE pets SET type = c.old_type FROM bench_candidates c WHERE pets.id = c.pet_id AND c.used;
"""


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--intervals", default="1000,200", help="worker intervals (ms) to measure")
    ap.add_argument("--dir", default="/tmp/la-latency" if os.geteuid() == 0 else "/tmp/la-latency-" + getpass.getuser())
    a = ap.parse_args()
    db = "latency"
    subprocess.run([run.ROOT + "/scripts/cluster.sh", "start", a.dir, str(PORT), db, "realtime"], check=True)
    pg = run.Pg(a.dir, PORT, db)
    quiet = "SET client_min_messages = warning"
    loaded = pg.psql("SELECT scale FROM bench_meta", check=False).strip()
    if loaded != str(a.scale):
        print(f"== generating the warehouse at scale {a.scale}", flush=True)
        pg.psql(f"\\set scale {a.scale}", "\\i bench/generate.sql")
        pg.psql("DROP TABLE IF EXISTS bench_meta",
                f"CREATE TABLE bench_meta AS SELECT {str(a.scale)!r}::text AS scale")
    graph = open(os.path.join(run.ROOT, "demo/graph.json")).read()
    cat_owners = next(d for k, d, _ in run.AUDIENCES if k == "cat_owners")
    pg.psql(quiet, "DROP EXTENSION IF EXISTS linked_audiences CASCADE", "CREATE EXTENSION linked_audiences",
            "SELECT la_define_data_graph($$" + graph + "$$)",
            f"SELECT la_define_audience('cat_owners', $${json.dumps(cat_owners)}$$)",
            "SELECT la_create_destination('hook', 'webhook')",
            "SELECT la_activate('cat_owners', 'hook', 'Audience Entered')",
            "SELECT jsonb_array_length(la_capture_changes())",
            "SELECT la_compute_audience('cat_owners', 'full') IS NOT NULL")
    pg.psql("DROP TABLE IF EXISTS bench_candidates", CANDIDATES)
    count = int(a.rate * a.seconds)
    available = int(pg.one("SELECT count(*) FROM bench_candidates"))
    if available < count * len(a.intervals.split(",")):
        sys.exit(f"only {available} candidate households; lower --rate or --seconds, or raise --scale")
    profiles = int(pg.one("SELECT count(*) FROM profiles"))
    print(f"Scale {a.scale} ({profiles} profiles); {a.rate:g} transactions/s for {a.seconds} s, "
          f"each one profile entering cat_owners; consumer polls every 20 ms.\n")
    print("| worker interval | events | p50 | p90 | p99 | max | incremental computes | profiles evaluated per compute (median) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for interval in [int(x) for x in a.intervals.split(",")]:
        pg.psql(f"ALTER SYSTEM SET linked_audiences.realtime_interval = '{interval}ms'")
        subprocess.run([run.ROOT + "/scripts/cluster.sh", "restart", a.dir], check=True, stdout=subprocess.DEVNULL)
        time.sleep(2)
        pg.psql(SETUP)
        before = int(pg.one("SELECT coalesce(max(id), 0) FROM linked_audiences.runs"))
        args = [run.BIN + "/psql", "-X", "-q", "-U", "postgres", "-h", a.dir, "-p", str(PORT), "-d", db, "-v", "ON_ERROR_STOP=1"]
        consumer = subprocess.Popen(args + ["-c", CONSUMER.format(seconds=a.seconds + 15)])
        writer = subprocess.Popen(args + ["-c", WRITER.format(count=count, pause=1.0 / a.rate)])
        writer.wait()
        consumer.wait()
        if writer.returncode or consumer.returncode:
            sys.exit("writer or consumer failed")
        lat = [float(x) for x in pg.psql(
            "SELECT extract(epoch FROM s.seen_at - c.committed_at) * 1000 "
            "FROM bench_commits c JOIN bench_seen s USING (user_id)").split()]
        missing = int(pg.one("SELECT count(*) FROM bench_commits c WHERE NOT EXISTS "
                             "(SELECT 1 FROM bench_seen s WHERE s.user_id = c.user_id)"))
        computes = pg.psql(
            "SELECT profiles_evaluated FROM linked_audiences.runs "
            f"WHERE id > {before} AND status = 'succeeded' AND mode = 'incremental'").split()
        evaluated = statistics.median([int(x) for x in computes]) if computes else 0
        note = f" ({missing} never seen)" if missing else ""
        print(f"| {interval} ms | {len(lat)}{note} | {run.fmt_ms(percentile(lat, 0.5))} | {run.fmt_ms(percentile(lat, 0.9))} "
              f"| {run.fmt_ms(percentile(lat, 0.99))} | {run.fmt_ms(max(lat))} | {len(computes)} | {evaluated:g} |", flush=True)
    pg.psql(UNDO, "DROP TABLE bench_candidates, bench_commits, bench_seen",
            "ALTER SYSTEM RESET linked_audiences.realtime_interval")
    subprocess.run([run.ROOT + "/scripts/cluster.sh", "restart", a.dir], check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
