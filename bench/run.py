#!/usr/bin/env python3
"""Benchmarks of linked_audiences side by side with hand-written SQL, in one run on one
cluster. Usage: bench/run.py SCALE [--runs N] [--no-build] [--dir DIR] [--port PORT]

Prints a Markdown table: each figure as an absolute time and as a ratio to its baseline
(median of N runs), rows written, events per second, and the backend's peak memory.
"""
import argparse
import getpass
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = "/usr/lib/postgresql/15/bin"
PG_CONFIG = BIN + "/pg_config"

# The benchmark audiences: the three seed use cases, a four-level path with a count, an
# aggregate, an event condition with a window, and an audience of audiences; each with
# the query an expert would write by hand for the same members.
IDS = "SELECT i.profile_id FROM profile_identifiers i JOIN accounts a ON a.email = i.value AND i.type = 'email'"
AUDIENCES = [
    ("cat_owners",
     {"relationship": "pets", "where": {"column": "type", "op": "equals", "value": "cat"}},
     "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM pets pe WHERE pe.household_id = p.household_id AND pe.type = 'cat')"),
    ("premium_subscribers",
     {"relationship": "subscriptions", "where": {"all": [{"column": "status", "op": "equals", "value": "active"},
                                                          {"column": "tier", "op": "equals", "value": "premium"}]}},
     "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value "
     "JOIN subscriptions s ON s.account_id = a.id WHERE i.profile_id = p.id AND i.type = 'email' "
     "AND s.status = 'active' AND s.tier = 'premium')"),
    ("owly_power_users",
     {"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"},
      "relationships": [{"relationship": "transactions", "count": {"more_than": 5}}]},
     "WITH busy AS (SELECT card_id FROM transactions GROUP BY card_id HAVING count(*) > 5) "
     "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value "
     "JOIN credit_cards c ON c.account_id = a.id JOIN busy b ON b.card_id = c.id "
     "WHERE i.profile_id = p.id AND i.type = 'email' AND c.name = 'Owly Card')"),
    ("big_ticket_buyers",
     {"relationship": "transactions", "where": {"column": "amount", "op": "gt", "value": 400}, "count": {"at_least": 3}},
     IDS + " JOIN credit_cards c ON c.account_id = a.id JOIN transactions t ON t.card_id = c.id "
     "WHERE t.amount > 400 GROUP BY i.profile_id HAVING count(DISTINCT t.id) >= 3"),
    ("high_spenders",
     {"relationship": "transactions", "aggregate": {"fn": "sum", "column": "amount", "op": "gt", "value": 20000}},
     IDS + " JOIN credit_cards c ON c.account_id = a.id JOIN transactions t ON t.card_id = c.id "
     "GROUP BY i.profile_id HAVING sum(t.amount) > 20000"),
    ("recent_buyers",
     {"event": "Order Completed", "within": {"last": "30 days"}, "count": {"at_least": 2}},
     "SELECT e.profile_id FROM events e WHERE e.event = 'Order Completed' AND e.\"timestamp\" >= now() - interval '30 days' "
     "GROUP BY e.profile_id HAVING count(*) >= 2"),
    ("premium_cat_owners",
     {"all": [{"audience": "cat_owners"}, {"audience": "premium_subscribers"}]},
     "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM pets pe WHERE pe.household_id = p.household_id AND pe.type = 'cat') "
     "AND EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value "
     "JOIN subscriptions s ON s.account_id = a.id WHERE i.profile_id = p.id AND i.type = 'email' "
     "AND s.status = 'active' AND s.tier = 'premium')"),
]

# About 1% of profiles' data changes; round r touches a different 1%.
CHANGE_1PCT = """
UPDATE pets SET type = CASE type WHEN 'cat' THEN 'dog' WHEN 'dog' THEN 'cat' ELSE type END WHERE household_id % 100 = {r};
UPDATE subscriptions SET status = CASE status WHEN 'active' THEN 'canceled' WHEN 'canceled' THEN 'active' ELSE status END
WHERE account_id % 200 = {r};
UPDATE credit_cards SET name = CASE name WHEN 'Owly Card' THEN 'Other Card' ELSE 'Owly Card' END WHERE account_id % 200 = {r};
UPDATE transactions SET amount = amount + 450 WHERE card_id % 300 = {r};
INSERT INTO events (profile_id, event, "timestamp", properties)
SELECT id, 'Order Completed', now(), '{{"bench": true}}' FROM profiles WHERE id % 100 = {r};
"""
# The first reader of freshly updated rows sets their hint bits and prunes their pages,
# whichever statement it is; both sides are timed after one such pass.
WARM_1PCT = """
SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off;
SELECT count(*) FROM pets; SELECT count(*) FROM subscriptions; SELECT count(*) FROM credit_cards;
SELECT count(*) FROM transactions; SELECT count(*) FROM events;
"""
# Each change is undone after the run, so the warehouse stays as generated.
UNDO_1PCT = """
UPDATE pets SET type = CASE type WHEN 'cat' THEN 'dog' WHEN 'dog' THEN 'cat' ELSE type END WHERE household_id % 100 = {r};
UPDATE subscriptions SET status = CASE status WHEN 'active' THEN 'canceled' WHEN 'canceled' THEN 'active' ELSE status END
WHERE account_id % 200 = {r};
UPDATE credit_cards SET name = CASE name WHEN 'Owly Card' THEN 'Other Card' ELSE 'Owly Card' END WHERE account_id % 200 = {r};
UPDATE transactions SET amount = amount - 450 WHERE card_id % 300 = {r};
DELETE FROM events WHERE properties ? 'bench';
"""


class Pg:
    def __init__(self, host, port, db):
        self.host, self.port, self.db = host, port, db

    def psql(self, *commands, db=None, check=True):
        args = [BIN + "/psql", "-U", "postgres", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port), "-d", db or self.db]
        for c in commands:
            args += ["-c", c]
        p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr.strip()}\n{commands}")
        return p.stdout

    def one(self, sql):
        return self.psql(sql).strip()

    def timed(self, sql, setup=None):
        """Milliseconds the statement took, as psql's \\timing measures it."""
        cmds = ([setup] if setup else []) + ["\\timing on", sql]
        out = self.psql(*cmds)
        times = re.findall(r"^Time: ([0-9.]+) ms", out, re.M)
        return float(times[-1]), out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_ms(ms):
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def ratio(a, b):
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scale", type=float)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use the installed build")
    ap.add_argument("--dir", default="/tmp/la-bench" if os.geteuid() == 0 else "/tmp/la-bench-" + getpass.getuser())
    ap.add_argument("--port", type=int, default=54333)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--load-only", action="store_true", help="generate the warehouse and stop")
    a = ap.parse_args()

    if not a.no_build:
        print("== building and installing linked_audiences (release)", flush=True)
        subprocess.run(["bash", "-c", "source scripts/env.sh && la_install --release"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run([ROOT + "/scripts/cluster.sh", "start", a.dir, str(a.port), "bench"], check=True)
    pg = Pg(a.dir, a.port, "bench")
    tuned = pg.one("SELECT current_setting('shared_buffers')")
    if tuned != "1GB":
        for k, v in [("shared_buffers", "1GB"), ("work_mem", "64MB"), ("maintenance_work_mem", "512MB"),
                     ("max_wal_size", "8GB"), ("checkpoint_timeout", "30min"), ("jit", "off")]:
            pg.psql(f"ALTER SYSTEM SET {k} = '{v}'")
        subprocess.run([ROOT + "/scripts/cluster.sh", "restart", a.dir], check=True, stdout=subprocess.DEVNULL)

    loaded = pg.psql("SELECT scale FROM bench_meta", check=False).strip()
    if loaded != repr(a.scale) and loaded != str(a.scale):
        print(f"== generating the warehouse at scale {a.scale}", flush=True)
        t0 = time.time()
        out = pg.psql(f"\\set scale {a.scale}", "\\i bench/generate.sql")
        pg.psql("DROP TABLE IF EXISTS bench_meta", f"CREATE TABLE bench_meta AS SELECT {a.scale!r}::text AS scale")
        print(f"   loaded in {time.time() - t0:.0f} s: {out.strip().splitlines()[-1]}", flush=True)
    counts = pg.one("SELECT format('%s profiles, %s pets, %s accounts, %s cards, %s transactions, %s events', "
                    "(SELECT count(*) FROM profiles), (SELECT count(*) FROM pets), (SELECT count(*) FROM accounts), "
                    "(SELECT count(*) FROM credit_cards), (SELECT count(*) FROM transactions), (SELECT count(*) FROM events))")
    print("   " + counts, flush=True)
    if a.load_only:
        return 0

    graph = open(os.path.join(ROOT, "demo/graph.json")).read()
    pg.psql("DROP EXTENSION IF EXISTS linked_audiences CASCADE", "CREATE EXTENSION linked_audiences",
            "SELECT la_define_data_graph($$" + graph + "$$)")
    for key, d, _ in AUDIENCES:
        pg.psql(f"SELECT la_define_audience('{key}', $${json.dumps(d)}$$)")
    pg.psql("VACUUM ANALYZE")

    rows = []
    for key, d, base in AUDIENCES:
        dj = json.dumps(d)
        r = {"key": key}
        r["compile_us"] = float(pg.one(f"SELECT linked_audiences.bench_compile($${dj}$$, 2000)"))
        prev, pbase = [], []
        for _ in range(a.runs):
            prev.append(pg.timed(f"SELECT la_preview_audience($${dj}$$::jsonb, 0) -> 'count'")[0])
            pbase.append(pg.timed(f"SELECT count(*) FROM ({base}) b")[0])
        r["preview"], r["preview_base"] = median(prev), median(pbase)

        first, fbase, mem, memb = [], [], [], []
        for _ in range(a.runs):
            pg.psql(f"DELETE FROM linked_audiences.audience_members WHERE audience_id = (SELECT id FROM linked_audiences.audiences WHERE key = '{key}')")
            ms, out = pg.timed(f"SELECT la_compute_audience('{key}') ->> 'members'", setup="SET client_min_messages = warning")
            first.append(ms)
            r["members"] = int(out.split("\n")[0])
            mem.append(int(re.search(r"VmHWM:\s+(\d+)", pg.psql(
                "SET client_min_messages = warning",
                f"SELECT la_compute_audience('{key}') IS NOT NULL",
                "SELECT pg_read_file('/proc/self/status')")).group(1)))
            fbase.append(pg.timed(f"CREATE TEMP TABLE b AS {base}")[0])
            memb.append(int(re.search(r"VmHWM:\s+(\d+)", pg.psql(
                f"CREATE TEMP TABLE b AS {base}", "SELECT pg_read_file('/proc/self/status')")).group(1)))
        r["first"], r["first_base"] = median(first), median(fbase)
        r["mem_mb"], r["mem_base_mb"] = median(mem) / 1024, median(memb) / 1024

        again, abase, written = [], [], []
        for _ in range(a.runs):
            ms, out = pg.timed(f"SELECT la_compute_audience('{key}')", setup="SET client_min_messages = warning")
            res = json.loads(out.split("\n")[0])
            again.append(ms)
            written.append(res["entered"] + res["exited"] + res["entities_added"] + res["entities_removed"])
            abase.append(pg.timed(f"SELECT count(*) FROM ({base}) b")[0])
        r["nochange"], r["nochange_base"], r["nochange_rows"] = median(again), median(abase), max(written)
        rows.append(r)

    # 1% of profiles' data changes; every audience recomputes.
    for rnd in range(1, a.runs + 1):
        pg.psql(CHANGE_1PCT.format(r=rnd))
        pg.psql(WARM_1PCT)
        for r, (key, d, base) in zip(rows, AUDIENCES):
            ms, out = pg.timed(f"SELECT la_compute_audience('{key}')", setup="SET client_min_messages = warning")
            res = json.loads(out.split("\n")[0])
            r.setdefault("change", []).append(ms)
            r.setdefault("change_rows", []).append(res["entered"] + res["exited"])
            r.setdefault("change_base", []).append(pg.timed(f"SELECT count(*) FROM ({base}) b")[0])

    for rnd in range(1, a.runs + 1):
        pg.psql(UNDO_1PCT.format(r=rnd))

    # Outbox: events written per second by a compute, read and acknowledged by consumers.
    pg.psql("SELECT la_create_destination('braze', 'braze')",
            "SELECT la_activate('cat_owners', 'braze', 'Audience Entered', properties => '{\"traits\": [\"email\", \"first_name\"]}')",
            "DELETE FROM linked_audiences.audience_members WHERE audience_id = (SELECT id FROM linked_audiences.audiences WHERE key = 'cat_owners')")
    ms, out = pg.timed("SELECT la_compute_audience('cat_owners')", setup="SET client_min_messages = warning")
    events = json.loads(out.split("\n")[0])["events_written"]
    outbox = {"written": events, "write_eps": events / (ms / 1000)}
    for consumers in (1, 4):
        pg.psql("UPDATE linked_audiences.outbox_state SET status = 'pending', attempts = 0, visible_at = '-infinity'")
        loop = ("DO $$ DECLARE n int; BEGIN LOOP "
                "SELECT la_outbox_ack(array_agg(id)) INTO n FROM la_outbox_read('braze', 1000); "
                "EXIT WHEN coalesce(n, 0) = 0; COMMIT; END LOOP; END $$")
        t0 = time.time()
        procs = [subprocess.Popen([BIN + "/psql", "-U", "postgres", "-X", "-q", "-h", a.dir, "-p",
                                   str(a.port), "-d", "bench", "-c", loop], cwd=ROOT) for _ in range(consumers)]
        for p in procs:
            p.wait()
        elapsed = time.time() - t0
        acked = int(pg.one("SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'acked'"))
        outbox[f"read_eps_{consumers}"] = acked / elapsed

    machine = subprocess.run(["bash", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; "
                              "free -g | awk '/Mem:/{print $2\" GiB\"}'"], capture_output=True, text=True).stdout.split("\n")
    lines = [
        f"Scale {a.scale} ({counts}); {a.runs} runs, medians; machine: {machine[0].strip()} cores,"
        f"{machine[1].rstrip()}, {machine[2].strip()} RAM; PostgreSQL 15, shared_buffers 1GB, work_mem 64MB.",
        "",
        "| audience | members | compile | preview (count) | vs SQL | first compute | vs CTAS | no-change recompute | vs SQL | rows written | 1% change recompute | vs SQL | rows written | peak RSS (vs CTAS) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['key']} | {r['members']} | {r['compile_us']:.0f} µs | {fmt_ms(r['preview'])} | {ratio(r['preview'], r['preview_base'])} "
            f"| {fmt_ms(r['first'])} | {ratio(r['first'], r['first_base'])} | {fmt_ms(r['nochange'])} | {ratio(r['nochange'], r['nochange_base'])} "
            f"| {r['nochange_rows']} | {fmt_ms(median(r['change']))} | {ratio(median(r['change']), median(r['change_base']))} "
            f"| {int(median(r['change_rows']))} | {r['mem_mb']:.0f} MB ({r['mem_base_mb']:.0f} MB) |")
    lines += [
        "",
        f"Outbox: a compute wrote {outbox['written']} events at {outbox['write_eps']:,.0f} events/s; "
        f"consumers read and acknowledged {outbox['read_eps_1']:,.0f} events/s with 1 consumer and "
        f"{outbox['read_eps_4']:,.0f} events/s with 4 (batches of 1000).",
        "",
        "Baselines: preview and recomputes are compared with `SELECT count(*)` over the hand-written query; the first "
        "compute with `CREATE TEMP TABLE AS` of it. Peak RSS is the backend's VmHWM, which includes the shared buffers it touched.",
    ]
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
