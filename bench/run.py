#!/usr/bin/env python3
"""Benchmarks of linked_audiences side by side with hand-written SQL, in one run on one
cluster. Usage: bench/run.py SCALE [--runs N] [--no-build] [--dir DIR] [--port PORT] [--citus]

Prints a Markdown table: each figure as an absolute time and as a ratio to its baseline
(median of N runs), rows written, events per second, and the backend's peak memory.

With --citus, the same warehouse and audiences run on the Citus cluster of
scripts/citus.sh (a coordinator and two workers), in a database of its own (--citus-db,
default la_bench): after generating, the tables owned by a profile get a profile_id
column and are distributed by it, co-located with profiles; the shared ones become
reference tables (CITUS_DISTRIBUTE); the graph names profile_key on the keyed entities,
la_distribute() distributes the extension's state, and the hand-written baselines equate
profile_id on each join (CITUS_BASELINES), as Citus requires.
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

# --citus: the tenant-id pattern a Citus user would follow with this warehouse. Accounts,
# subscriptions, credit cards and transactions reach their profile through the identifiers
# (by email): each gets that profile's id as a column `profile_id` (denormalized from the
# identifier join) and is distributed by it, co-located with profiles, as are the
# identifiers and the events. Primary keys become (profile_id, id): Citus requires a unique
# key to include the distribution column (SPEC section 1: the primary key may be unique only
# together with the profile key); the profile key leads, as in the README's recipe. Households (shared by profiles), pets, products, carts and
# cart items become reference tables. Foreign keys are dropped (between distributed tables
# Citus accepts only keys that include the distribution column), and so is the unique
# constraint on profiles.user_id (it does not include profiles.id).
KEYED = ["accounts", "subscriptions", "credit_cards", "transactions"]
REFERENCE = ["households", "pets", "products", "carts", "cart_items"]
CITUS_DISTRIBUTE = [
    """DO $$ DECLARE r record; BEGIN
         FOR r IN SELECT conrelid::regclass AS t, conname FROM pg_constraint
                  WHERE contype = 'f' AND connamespace = 'public'::regnamespace LOOP
           EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname);
         END LOOP; END $$""",
    "ALTER TABLE profiles DROP CONSTRAINT profiles_user_id_key",
    "ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (profile_id, id)",
    # The profile of each account (the graph's external_id: an email identifier) and card.
    "DROP TABLE IF EXISTS account_profile, card_profile",
    "CREATE TABLE account_profile AS SELECT a.id, i.profile_id FROM accounts a "
    "JOIN profile_identifiers i ON i.type = 'email' AND i.value = a.email",
    "CREATE TABLE card_profile AS SELECT c.id, m.profile_id FROM credit_cards c JOIN account_profile m ON m.id = c.account_id",
    "SELECT create_distributed_table('profiles', 'id')",
    "SELECT create_distributed_table(t, 'profile_id', colocate_with => 'profiles') "
    "FROM unnest(ARRAY['profile_identifiers', 'events']) t",
] + [
    stmt
    for t, src in [("accounts", "account_profile m ON m.id = x.id"),
                   ("subscriptions", "account_profile m ON m.id = x.account_id"),
                   ("credit_cards", "account_profile m ON m.id = x.account_id"),
                   ("transactions", "card_profile m ON m.id = x.card_id")]
    for stmt in [
        f"ALTER TABLE {t} RENAME TO {t}_local",
        f"CREATE TABLE {t} (LIKE {t}_local INCLUDING DEFAULTS INCLUDING CONSTRAINTS, profile_id bigint NOT NULL)",
        f"SELECT create_distributed_table('{t}', 'profile_id', colocate_with => 'profiles')",
        f"INSERT INTO {t} SELECT x.*, m.profile_id FROM {t}_local x JOIN {src}",
        f"DROP TABLE {t}_local",
        f"ALTER TABLE {t} ADD PRIMARY KEY (profile_id, id)",
    ]
] + [
    "CREATE INDEX ON accounts (email)",
    "CREATE INDEX ON subscriptions (account_id)",
    "CREATE INDEX ON credit_cards (account_id)",
    "CREATE INDEX ON transactions (card_id)",
    "SELECT create_reference_table(t) FROM unnest(ARRAY[" + ", ".join(f"'{t}'" for t in REFERENCE) + "]) t",
    "SELECT truncate_local_data_after_distributing_table(t) "
    "FROM unnest(ARRAY['profiles', 'profile_identifiers', 'events', " + ", ".join(f"'{t}'" for t in REFERENCE) + "]) t",
    "DROP TABLE account_profile, card_profile",
    "ANALYZE",
]
# The hand-written baselines on Citus: the same queries with profile_id equated on each join
# between distributed tables (without it Citus refuses them: "complex joins are only
# supported when all distributed tables are co-located and joined on their distribution
# columns"), and grouped by it where they aggregate.
CIDS = ("SELECT i.profile_id FROM profile_identifiers i JOIN accounts a ON a.email = i.value AND a.profile_id = i.profile_id "
        "AND i.type = 'email'")
CITUS_BASELINES = {
    "premium_subscribers":
        "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value "
        "AND a.profile_id = i.profile_id JOIN subscriptions s ON s.account_id = a.id AND s.profile_id = a.profile_id "
        "WHERE i.profile_id = p.id AND i.type = 'email' AND s.status = 'active' AND s.tier = 'premium')",
    "owly_power_users":
        "WITH busy AS (SELECT profile_id, card_id FROM transactions GROUP BY profile_id, card_id HAVING count(*) > 5) "
        "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value "
        "AND a.profile_id = i.profile_id JOIN credit_cards c ON c.account_id = a.id AND c.profile_id = a.profile_id "
        "JOIN busy b ON b.card_id = c.id AND b.profile_id = c.profile_id "
        "WHERE i.profile_id = p.id AND i.type = 'email' AND c.name = 'Owly Card')",
    # Wrapped in a subquery: Citus 13.2.2 deparses a HAVING over a join wrongly under CREATE
    # TABLE AS (sum(t.amount) is sent to the workers as sum(i.value): "function sum(text)
    # does not exist"); as a plain SELECT, and wrapped, it is right.
    "big_ticket_buyers":
        "SELECT profile_id FROM (" + CIDS + " JOIN credit_cards c ON c.account_id = a.id AND c.profile_id = a.profile_id "
        "JOIN transactions t ON t.card_id = c.id AND t.profile_id = c.profile_id "
        "WHERE t.amount > 400 GROUP BY i.profile_id HAVING count(DISTINCT t.id) >= 3) s",
    "high_spenders":
        "SELECT profile_id FROM (" + CIDS + " JOIN credit_cards c ON c.account_id = a.id AND c.profile_id = a.profile_id "
        "JOIN transactions t ON t.card_id = c.id AND t.profile_id = c.profile_id "
        "GROUP BY i.profile_id HAVING sum(t.amount) > 20000) s",
    "premium_cat_owners":
        "SELECT p.id FROM profiles p WHERE EXISTS (SELECT 1 FROM pets pe WHERE pe.household_id = p.household_id AND pe.type = 'cat') "
        "AND EXISTS (SELECT 1 FROM profile_identifiers i JOIN accounts a ON a.email = i.value AND a.profile_id = i.profile_id "
        "JOIN subscriptions s ON s.account_id = a.id AND s.profile_id = a.profile_id WHERE i.profile_id = p.id AND i.type = 'email' "
        "AND s.status = 'active' AND s.tier = 'premium')",
}
TUNING = [("shared_buffers", "1GB"), ("work_mem", "64MB"), ("maintenance_work_mem", "512MB"),
          ("max_wal_size", "8GB"), ("checkpoint_timeout", "30min"), ("jit", "off")]


class Pg:
    def __init__(self, host, port, db):
        self.host, self.port, self.db = host, port, db

    def conn(self, db=None):
        return ["-U", "postgres", "-h", self.host, "-p", str(self.port), "-d", db or self.db]

    def psql(self, *commands, db=None, check=True):
        args = [BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"] + self.conn(db)
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


def citus_start(db):
    """Starts the cluster of scripts/citus.sh (its last line of output is the coordinator's
    URI) and makes sure `db` exists on every node with citus, the workers registered."""
    out = subprocess.run([ROOT + "/scripts/citus.sh", "start"], check=True, capture_output=True, text=True).stdout
    m = re.match(r"postgresql://[^@]*@([^:/]+):(\d+)/(\w+)", out.strip().splitlines()[-1])
    host, port, default_db = m.group(1), int(m.group(2)), m.group(3)
    coord = Pg(host, port, default_db)
    workers = [int(x) for x in coord.one("SELECT string_agg(nodeport::text, ' ' ORDER BY nodeport) FROM pg_dist_node "
                                         "WHERE groupid > 0 AND noderole = 'primary'").split()]
    # pg_cron is not created in `db` (it lives in the database of cron.database_name).
    for p in [port] + workers:
        node = Pg(host, p, db)
        if not node.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'", db="postgres").strip():
            node.psql(f"CREATE DATABASE {db}", db="postgres")
        node.psql("SET client_min_messages = warning", "CREATE EXTENSION IF NOT EXISTS citus")
    pg = Pg(host, port, db)
    pg.psql("SET client_min_messages = warning", f"SELECT citus_set_coordinator_host('{host}', {port})")
    for w in workers:
        pg.psql("SET client_min_messages = warning",
                f"SELECT citus_add_node('{host}', {w}) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = {w})")
    return pg, workers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scale", type=float)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use the installed build")
    ap.add_argument("--dir", default="/tmp/la-bench" if os.geteuid() == 0 else "/tmp/la-bench-" + getpass.getuser())
    ap.add_argument("--port", type=int, default=54333)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--load-only", action="store_true", help="generate the warehouse and stop")
    ap.add_argument("--citus", action="store_true", help="run on the Citus cluster of scripts/citus.sh")
    ap.add_argument("--citus-db", default="la_bench", help="the database on the Citus cluster (--citus)")
    a = ap.parse_args()

    if not a.no_build:
        print("== building and installing linked_audiences (release)", flush=True)
        subprocess.run(["bash", "-c", "source scripts/env.sh && la_install --release"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    if a.citus:
        # Each node tuned as the single node is (1 GB of shared buffers each: 3 GB in all).
        pg, workers = citus_start(a.citus_db)
        nodes = [Pg(pg.host, p, a.citus_db) for p in [pg.port] + workers]
        if any(n.one("SELECT current_setting('shared_buffers')") != "1GB" for n in nodes):
            for n in nodes:
                for k, v in TUNING:
                    n.psql(f"ALTER SYSTEM SET {k} = '{v}'")
            subprocess.run([ROOT + "/scripts/citus.sh", "stop"], check=True, stdout=subprocess.DEVNULL)
            pg, workers = citus_start(a.citus_db)
        print(f"== Citus: coordinator {pg.host}:{pg.port}, workers {workers}, database {a.citus_db}, "
              f"{pg.one('SHOW citus.shard_count')} shards per distributed table", flush=True)
    else:
        subprocess.run([ROOT + "/scripts/cluster.sh", "start", a.dir, str(a.port), "bench"], check=True)
        pg = Pg(a.dir, a.port, "bench")
        tuned = pg.one("SELECT current_setting('shared_buffers')")
        if tuned != "1GB":
            for k, v in TUNING:
                pg.psql(f"ALTER SYSTEM SET {k} = '{v}'")
            subprocess.run([ROOT + "/scripts/cluster.sh", "restart", a.dir], check=True, stdout=subprocess.DEVNULL)

    loaded = pg.psql("SELECT scale FROM bench_meta", check=False).strip()
    if loaded != repr(a.scale) and loaded != str(a.scale):
        print(f"== generating the warehouse at scale {a.scale}", flush=True)
        pg.psql("DROP TABLE IF EXISTS bench_meta")
        t0 = time.time()
        out = pg.psql(f"\\set scale {a.scale}", "\\i bench/generate.sql")
        print(f"   loaded in {time.time() - t0:.0f} s: {out.strip().splitlines()[-1]}", flush=True)
        if a.citus:
            t0 = time.time()
            for stmt in CITUS_DISTRIBUTE:
                pg.psql("SET client_min_messages = warning", stmt)
            print(f"   distributed in {time.time() - t0:.0f} s: profiles, profile_identifiers, events, "
                  f"{', '.join(KEYED)} by profile (co-located); {', '.join(REFERENCE)} as reference tables", flush=True)
        pg.psql(f"CREATE TABLE bench_meta AS SELECT {a.scale!r}::text AS scale")
    counts = pg.one("SELECT format('%s profiles, %s pets, %s accounts, %s cards, %s transactions, %s events', "
                    "(SELECT count(*) FROM profiles), (SELECT count(*) FROM pets), (SELECT count(*) FROM accounts), "
                    "(SELECT count(*) FROM credit_cards), (SELECT count(*) FROM transactions), (SELECT count(*) FROM events))")
    print("   " + counts, flush=True)
    if a.load_only:
        return 0

    graph = open(os.path.join(ROOT, "demo/graph.json")).read()
    audiences = AUDIENCES
    if a.citus:
        g = json.loads(graph)
        for e in g["entities"]:
            if e["slug"] in KEYED:
                e["profile_key"] = "profile_id"
        graph = json.dumps(g)
        audiences = [(key, d, CITUS_BASELINES.get(key, base)) for key, d, base in AUDIENCES]
    pg.psql("SET client_min_messages = warning", "DROP EXTENSION IF EXISTS linked_audiences CASCADE",
            "CREATE EXTENSION linked_audiences", "SELECT la_define_data_graph($$" + graph + "$$)")
    if a.citus:
        print("   " + pg.one("SET client_min_messages = warning; SELECT la_distribute()"), flush=True)
    for key, d, _ in audiences:
        pg.psql(f"SELECT la_define_audience('{key}', $${json.dumps(d)}$$)")
    pg.psql("VACUUM ANALYZE")

    rows = []
    for key, d, base in audiences:
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
        base_count = int(pg.one(f"SELECT count(*) FROM ({base}) b"))
        if base_count != r["members"]:
            print(f"   warning: {key}: {r['members']} members, the hand-written query finds {base_count}", flush=True)
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
        for r, (key, d, base) in zip(rows, audiences):
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
        procs = [subprocess.Popen([BIN + "/psql", "-X", "-q"] + pg.conn() + ["-c", loop], cwd=ROOT)
                 for _ in range(consumers)]
        for p in procs:
            p.wait()
        elapsed = time.time() - t0
        acked = int(pg.one("SELECT count(*) FROM linked_audiences.outbox_state WHERE status = 'acked'"))
        outbox[f"read_eps_{consumers}"] = acked / elapsed

    machine = subprocess.run(["bash", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; "
                              "free -g | awk '/Mem:/{print $2\" GiB\"}'"], capture_output=True, text=True).stdout.split("\n")
    where = "PostgreSQL 15, shared_buffers 1GB, work_mem 64MB"
    if a.citus:
        citus = pg.one("SELECT split_part(citus_version(), ' ', 2)")
        where = (f"Citus {citus} on PostgreSQL 15: "
                 f"a coordinator and {len(workers)} workers on the same machine, {pg.one('SHOW citus.shard_count')} shards "
                 "per distributed table, each node shared_buffers 1GB, work_mem 64MB")
    lines = [
        f"Scale {a.scale} ({counts}); {a.runs} runs, medians; machine: {machine[0].strip()} cores,"
        f"{machine[1].rstrip()}, {machine[2].strip()} RAM; {where}.",
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
    if a.citus:
        key = "owly_power_users"
        plan = pg.psql("SELECT la_audience_sql(definition) FROM linked_audiences.audiences WHERE key = '" + key + "'").strip()
        plan = pg.psql("EXPLAIN (COSTS OFF) " + plan).rstrip()
        lines += [
            "",
            "On Citus the baselines equate profile_id on each join (Citus refuses them otherwise), and peak RSS is the "
            "coordinator's backend only: the work done by the workers' backends (one per task) is not in it.",
            "",
            f"EXPLAIN (COSTS OFF) of the members query of {key} (`la_audience_sql`) on Citus:",
            "",
            "```",
            plan,
            "```",
        ]
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
