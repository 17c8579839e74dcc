#!/usr/bin/env python3
"""Incremental computes side by side with full ones and the hand-written query, in one
run on one cluster: bench/incremental.py SCALE [--dir DIR] [--port PORT].

For changes touching 0.01 %, 0.1 % and 1 % of profiles (their pets, subscriptions, cards
and transactions), each audience is computed incrementally, then in full, and its
hand-written query is counted, in that order on the same data; then the change is
undone. Also: an incremental compute when nothing changed, and what capture costs
writers (a bulk load of a million rows, and 5,000 single-row transactions with the
cluster's asynchronous commits and with durable ones, capture off and on in turns,
medians of five). Prints a Markdown table.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark harness: audiences, cluster, psql helpers)

AUDIENCES = [a for a in run.AUDIENCES if a[0] in ("cat_owners", "premium_subscribers", "owly_power_users", "high_spenders")]
# A change of the profiles whose id is r modulo m (1/m of them, the share named in the
# table): their households' pets change type, their accounts' subscriptions change status
# and cards change name, and the transactions of one card in ten of theirs (card id 0
# modulo 10) grow by 450. Every table these audiences read is written and no other
# profile is touched; most of these profiles' transactions are not written, so their
# pages are where the warehouse left them, not brought in by the writer. UNDO puts every
# value back. (A change spread over other profiles per table would touch more profiles
# than the share it is named by.)
CHOSEN = ("(SELECT a.id FROM accounts a JOIN profile_identifiers i ON i.type = 'email' AND i.value = a.email "
          "WHERE i.profile_id % {m} = {r})")
# The change and its undoing are the same statements: the toggles undo themselves, and
# the transactions' amounts go up by 450, then down.
WRITE = """
UPDATE pets SET type = CASE type WHEN 'cat' THEN 'dog' WHEN 'dog' THEN 'cat' ELSE type END
WHERE household_id IN (SELECT household_id FROM profiles WHERE id % {m} = {r});
UPDATE subscriptions SET status = CASE status WHEN 'active' THEN 'canceled' WHEN 'canceled' THEN 'active' ELSE status END
WHERE account_id IN {chosen};
UPDATE credit_cards SET name = CASE name WHEN 'Owly Card' THEN 'Other Card' ELSE 'Owly Card' END
WHERE account_id IN {chosen};
UPDATE transactions SET amount = amount {sign} 450
WHERE card_id % 10 = 0 AND card_id IN (SELECT c.id FROM credit_cards c WHERE c.account_id IN {chosen});
""".replace("{chosen}", CHOSEN)
CHANGE = WRITE.replace("{sign}", "+")
UNDO = WRITE.replace("{sign}", "-")


def fmt(ms):
    return run.fmt_ms(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scale", type=float)
    ap.add_argument("--dir", default="/tmp/la-bench" if os.geteuid() == 0 else "/tmp/la-bench-" + run.getpass.getuser())
    ap.add_argument("--port", type=int, default=54333)
    ap.add_argument("--writers-only", action="store_true", help="only what capture costs writers")
    ap.add_argument("--no-writers", action="store_true", help="leave out what capture costs writers")
    ap.add_argument("--warm", action="store_true",
                    help="time each compute in a session that validated the audience first (library loaded, "
                         "catalog cached), as the real-time worker's long-lived session is; default: a new session")
    ap.add_argument("--shared-buffers", default=None,
                    help="run with this shared_buffers instead of the harness's 1GB (restarts the cluster; the "
                         "harness puts 1GB back on its next run)")
    ap.add_argument("--prewarm", action="store_true",
                    help="first load the tables and indexes these audiences read into shared buffers (pg_prewarm), "
                         "as a warehouse's working set is once it has served reads for a while")
    ap.add_argument("--session", action="store_true",
                    help="compute every audience incrementally in one long-lived session, as the real-time worker "
                         "does: it computes them all after a small change, another connection writes the change, "
                         "then it computes each audience, timed")
    a = ap.parse_args()
    subprocess.run([sys.executable, os.path.join(run.ROOT, "bench/run.py"), str(a.scale), "--load-only", "--no-build",
                    "--dir", a.dir, "--port", str(a.port)], check=True)
    pg = run.Pg(a.dir, a.port, "bench")
    if a.shared_buffers:
        pg.psql(f"ALTER SYSTEM SET shared_buffers = '{a.shared_buffers}'")
        subprocess.run([run.ROOT + "/scripts/cluster.sh", "restart", a.dir], check=True, stdout=subprocess.DEVNULL)
    quiet = "SET client_min_messages = warning"
    graph = open(os.path.join(run.ROOT, "demo/graph.json")).read()
    pg.psql(quiet, "DROP EXTENSION IF EXISTS linked_audiences CASCADE", "CREATE EXTENSION linked_audiences",
            "SELECT la_define_data_graph($$" + graph + "$$)")
    for key, definition, _ in AUDIENCES:
        pg.psql(quiet, f"SELECT la_define_audience('{key}', '{json.dumps(definition)}')")
    pg.psql(quiet, "SELECT jsonb_array_length(la_capture_changes())")
    for key, _, _ in AUDIENCES:
        pg.psql(quiet, f"SELECT la_compute_audience('{key}', 'full')")
    profiles = int(pg.one("SELECT count(*) FROM profiles"))
    if a.prewarm:
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_prewarm",
                "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
                "AND c.relkind IN ('r', 'i') AND c.relname !~ '^events'")
    rows = []
    # Nothing changed.
    defs = {key: json.dumps(d).replace("'", "''") for key, d, _ in AUDIENCES}
    # (In a DO block: psql 15 prints every statement's result of a -c string.)
    setup = {key: (f"DO $$ BEGIN PERFORM la_validate_audience('{defs[key]}'); END $$; " if a.warm else "") + quiet
             for key in defs}
    for key, _, _ in ([] if a.writers_only else AUDIENCES):
        ms, out = pg.timed(f"SELECT la_compute_audience('{key}', 'incremental')", setup=setup[key])
        rows.append((key, "none", ms, None, None, json.loads(out.split("\n")[0])))
    for pct, m in (() if a.writers_only else ((0.01, 10000), (0.1, 1000), (1.0, 100))):
        r = 7
        change = CHANGE.format(m=m, r=r)
        incremental = {}
        if a.session:
            incremental = in_one_session(pg, a, change, defs)
        else:
            pg.psql(change)
            pg.psql(run.WARM_1PCT)
        for key, _, hand in AUDIENCES:
            if a.session:
                inc_ms, res = incremental[key]
            else:
                inc_ms, out = pg.timed(f"SELECT la_compute_audience('{key}', 'incremental')", setup=setup[key])
                res = json.loads(out.split("\n")[0])
            full_ms, _ = pg.timed(f"SELECT la_compute_audience('{key}', 'full')", setup=setup[key])
            hand_ms, _ = pg.timed(f"SELECT count(*) FROM ({hand}) h")
            rows.append((key, f"{pct} %", inc_ms, full_ms, hand_ms, res))
        pg.psql(UNDO.format(m=m, r=r))
        for key, _, _ in AUDIENCES:
            pg.psql(quiet, f"SELECT la_compute_audience('{key}', 'auto')")
    # What capture costs writers: capture off and on in turns, five times, medians; the
    # single-row transactions first (one session, 5,000 autocommitted updates), then a
    # bulk load, checkpointed after, so that one's cleanup does not land on the other.
    # The single-row transactions twice: as the benchmark's cluster commits (fsync off,
    # asynchronous commits: the writer's own cost is smallest there, so capture's share
    # is largest), and with durable commits as Postgres' defaults have them (fsync,
    # synchronous_commit and full_page_writes on, for these transactions only).
    times = {"off": {"bulk": [], "single": [], "durable": []}, "on": {"bulk": [], "single": [], "durable": []}}
    script = "\n".join(f"UPDATE pets SET name = name WHERE id = {i};" for i in range(1, 5001))
    durable = ("fsync", "synchronous_commit", "full_page_writes")

    def single_rows():
        t0 = time.time()
        subprocess.run([run.BIN + "/psql", "-X", "-q", "-U", "postgres", "-h", a.dir, "-p", str(a.port), "-d", "bench"],
                       input=script, text=True, check=True, capture_output=True)
        return (time.time() - t0) * 1000
    for _ in range(0 if a.no_writers else 5):
        for state in ("off", "on"):
            pg.psql(quiet, f"SELECT la_capture_changes({'false' if state == 'off' else 'true'})", "CHECKPOINT")
            times[state]["single"].append(single_rows())
            pg.psql(*[f"ALTER SYSTEM SET {g} = on" for g in durable], "SELECT pg_reload_conf()")
            time.sleep(0.2)
            times[state]["durable"].append(single_rows())
            pg.psql(*[f"ALTER SYSTEM RESET {g}" for g in durable], "SELECT pg_reload_conf()", "CHECKPOINT")
            bulk, _ = pg.timed("INSERT INTO transactions (id, card_id, amount, created_at) "
                               "SELECT 900000000 + g, 1 + g % 1000, 1, now() FROM generate_series(1, 1000000) g")
            times[state]["bulk"].append(bulk)
            pg.psql("DELETE FROM transactions WHERE id > 900000000", "VACUUM transactions", "CHECKPOINT")
    writer = {state: (run.median(t["bulk"]), run.median(t["single"]), run.median(t["durable"]) if t["durable"] else None)
              for state, t in times.items()}
    if a.no_writers:
        writer = None
    pg.psql(quiet, "SELECT la_capture_changes(false)")

    if a.session:
        how = ("the incremental computes in one long-lived session that computed every audience incrementally "
               "before (a change of a few profiles), the others each in a new session")
    elif a.warm:
        how = "each compute in a warm session (the audience validated first)"
    else:
        how = "each compute in a new session"
    how = f"shared_buffers {pg.one('SHOW shared_buffers')}; " + ("prewarmed; " if a.prewarm else "") + how
    print(f"Scale {a.scale} ({profiles} profiles); incremental, then full, then the hand-written query's count, on the same data; "
          f"{how}.\n")
    print("| audience | change | profiles evaluated | incremental | full compute | hand-written | full / incremental | rows written |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, change, inc, full, hand, res in rows:
        written = res["entered"] + res["exited"] + res["entities_added"] + res["entities_removed"]
        print(f"| {key} | {change} | {res['profiles_evaluated']} | {fmt(inc)} | {fmt(full) if full else '-'} | "
              f"{fmt(hand) if hand else '-'} | {run.ratio(full, inc) if full else '-'} | {written} |")
    if writer is None:
        return
    print()
    print("| writer | capture off | capture on | on / off |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| bulk load of 1,000,000 transactions | {fmt(writer['off'][0])} | {fmt(writer['on'][0])} | {run.ratio(writer['on'][0], writer['off'][0])} |")
    print(f"| 5,000 single-row transactions | {fmt(writer['off'][1])} | {fmt(writer['on'][1])} | {run.ratio(writer['on'][1], writer['off'][1])} |")
    print(f"| 5,000 single-row transactions, durable commits | {fmt(writer['off'][2])} | {fmt(writer['on'][2])} | {run.ratio(writer['on'][2], writer['off'][2])} |")


# The change the real-time worker's session has computed before the one timed (a few
# profiles: m = 100,000), undone after.
WARMUP = dict(m=100000, r=3)


def in_one_session(pg, a, change, defs):
    """The real-time worker's case: one session validates every audience, another
    connection writes a small change, the session computes every audience incrementally
    (so it has planned and run these statements before, as the worker has), another
    connection writes `change` (and reads the tables, as the other mode does), then the
    session computes each audience incrementally, timed. Returns {key: (milliseconds,
    result)}."""
    def writer(name, sql):
        path = os.path.join(a.dir, name)
        with open(path, "w") as f:
            f.write(sql)
        os.chmod(path, 0o644)
        return " ".join([run.BIN + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"] + pg.conn() + ["-f", path, ">/dev/null"])
    cmds = ["SET client_min_messages = warning"]
    cmds += [f"DO $$ BEGIN PERFORM la_validate_audience('{defs[key]}'); END $$" for key, _, _ in AUDIENCES]
    cmds += ["\\! " + writer("warmup.sql", CHANGE.format(**WARMUP))]
    cmds += [f"SELECT la_compute_audience('{key}', 'incremental') IS NOT NULL" for key, _, _ in AUDIENCES]
    cmds += ["\\! " + writer("change.sql", change + run.WARM_1PCT), "\\timing on"]
    cmds += [f"SELECT la_compute_audience('{key}', 'incremental')" for key, _, _ in AUDIENCES]
    out = pg.psql(*cmds)
    pg.psql(UNDO.format(**WARMUP))
    times = [float(t) for t in re.findall(r"^Time: ([0-9.]+) ms", out, re.M)]
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(times) == len(results) == len(AUDIENCES), out
    return {key: (ms, res) for (key, _, _), ms, res in zip(AUDIENCES, times, results)}


if __name__ == "__main__":
    main()
