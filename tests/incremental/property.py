#!/usr/bin/env python3
"""Incremental computes equal full ones (tests/incremental/property.py HOST PORT [--seed S]).

Random definitions over the demo warehouse (every node kind: traits, relationships with
where/count/aggregate/nested, implied paths, junctions, external ids, events, audience
references, all/any/not), each defined twice: `i_<n>` computed with mode 'auto'
(incremental once it has a position) and `f_<n>` with mode 'full', both with the same
activations (Audience Entered, Audience Membership Changed and, when the definition
names one, Entity Added on a relationship). Then batches of random writes (inserts,
updates that move rows between parents or change join keys, deletes, a profile
deleted), each committed on its own, and after each batch: members, tracked entities,
this batch's history and this batch's outbox events of every i_ audience equal those of
its f_ twin. Prints the seed; a failure names it.
"""
import json
import os
import random
import subprocess
import sys

BIN = "/usr/lib/postgresql/15/bin"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def psql(host, port, db, sql, check=True):
    p = subprocess.run([BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
                        "-U", "postgres", "-d", db], input=sql, capture_output=True, text=True, cwd=ROOT)
    if check and p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-3000:])
    return p.stdout


def pred_trait(r):
    return r.choice([
        {"trait": "plan", "op": "equals", "value": r.choice(["premium", "free"])},
        {"trait": "plan", "op": "is_null"},
        {"trait": "plan", "op": "in", "value": ["premium", "basic"]},
        {"trait": "email", "op": "contains", "value": r.choice(["ann", "example", "o"])},
        {"trait": "household_id", "op": "gt", "value": r.choice([1, 2, 3])},
        {"trait": "created_at", "op": r.choice(["within_last", "not_within_last"]), "value": "300 days"},
    ])


def count(r):
    return r.choice([{"at_least": 1}, {"at_least": 2}, {"exactly": 0}, {"exactly": 2}, {"at_most": 1},
                     {"more_than": 3}, {"less_than": 2}])


def rel(r, depth):
    choice = r.randrange(8)
    if choice == 0:
        n = {"relationship": "pets", "where": {"column": "type", "op": r.choice(["equals", "not_equals"]),
                                              "value": r.choice(["cat", "dog", "fish"])}}
    elif choice == 1:
        n = {"relationship": "credit_cards", "where": {"column": "name", "op": "equals", "value": "Owly Card"}}
        if depth < 2 and r.random() < 0.7:
            n["relationships"] = [{"relationship": "transactions", "count": count(r)}]
    elif choice == 2:
        n = {"relationship": "subscriptions", "where": {"all": [
            {"column": "status", "op": "equals", "value": r.choice(["active", "canceled"])},
            {"column": "tier", "op": "in", "value": ["premium", "basic"]}]}}
    elif choice == 3:
        n = {"relationship": "carts", "relationships": [
            {"relationship": "cart_products", "where": {"column": "in_stock", "op": "equals", "value": r.choice([True, False])}}]}
    elif choice == 4:
        n = {"relationship": "transactions", "aggregate": {"fn": r.choice(["sum", "max", "count_distinct"]),
                                                           "column": "amount", "op": "gt", "value": r.choice([20, 60, 150])}}
    elif choice == 5:
        n = {"relationship": "accounts", "where": {"column": "status", "op": "equals", "value": "open"}}
    elif choice == 6:
        n = {"relationship": "household", "relationships": [{"relationship": "pets", "count": count(r)}]}
    else:
        n = {"relationship": "cart_products", "count": count(r)}
    if r.random() < 0.3:
        n["count"] = count(r)
    return n


def event(r):
    n = {"event": r.choice(["Order Completed", "Page Viewed"])}
    if r.random() < 0.5:
        n["count"] = count(r)
    if r.random() < 0.4:
        n["where"] = {"property": "total", "op": "gt", "value": r.choice([10, 50])}
    if r.random() < 0.3:
        n["within"] = {"last": r.choice(["30 days", "400 days"])}
    return n


def node(r, depth=0):
    k = r.randrange(10 if depth < 3 else 6)
    if k < 2:
        return pred_trait(r)
    if k < 4:
        return rel(r, depth)
    if k == 4:
        return event(r)
    if k == 5:
        return {"audience": "base", "member": r.random() < 0.7}
    if k == 6:
        return {"not": node(r, depth + 1)}
    return {r.choice(["all", "any"]): [node(r, depth + 1) for _ in range(r.randint(1, 3))]}


def names_relationship(d):
    s = json.dumps(d)
    for rel_slug in ["credit_cards", "pets", "subscriptions", "carts", "transactions", "accounts", "cart_products"]:
        if f'"relationship": "{rel_slug}"' in s and '"not"' not in s and '"audience"' not in s:
            return rel_slug
    return None


def writes(r, batch):
    """One batch of random writes, each statement its own transaction."""
    out = []
    for _ in range(r.randint(3, 8)):
        k = r.randrange(14)
        pet = r.randint(1, 7)
        if k == 0:
            out.append(f"UPDATE pets SET type = '{r.choice(['cat', 'dog', 'fish'])}' WHERE id = {pet}")
        elif k == 1:
            out.append(f"UPDATE pets SET household_id = {r.randint(1, 4)} WHERE id = {pet}")
        elif k == 2:
            out.append(f"INSERT INTO pets VALUES ({1000 + batch * 100 + r.randint(0, 99)}, {r.randint(1, 4)}, 'New', 'cat') ON CONFLICT DO NOTHING")
        elif k == 3:
            out.append(f"DELETE FROM pets WHERE id = {pet}")
        elif k == 4:
            out.append(f"UPDATE credit_cards SET account_id = {r.randint(10, 15)} WHERE id = {r.randint(1000, 1005)}")
        elif k == 5:
            out.append(f"INSERT INTO transactions VALUES ({5000 + batch * 100 + r.randint(0, 99)}, {r.randint(1000, 1005)}, {r.randint(1, 200)}, now()) ON CONFLICT DO NOTHING")
        elif k == 6:
            out.append(f"DELETE FROM transactions WHERE id IN (SELECT id FROM transactions ORDER BY random() LIMIT 2)")
        elif k == 7:
            out.append(f"UPDATE subscriptions SET status = '{r.choice(['active', 'canceled'])}' WHERE id = {r.randint(100, 104)}")
        elif k == 8:
            out.append(f"INSERT INTO events (profile_id, event, \"timestamp\", properties) SELECT id, 'Order Completed', now() - interval '1 day', '{{\"total\": {r.randint(1, 99)}}}' FROM profiles WHERE id = {r.randint(1, 6)}")
        elif k == 9:
            plan = r.choice(["'premium'", "'free'", "NULL"])
            out.append(f"UPDATE profiles SET plan = {plan} WHERE id = {r.randint(1, 6)}")
        elif k == 10:
            out.append(f"UPDATE accounts a SET email = p.email FROM profiles p WHERE p.id = {r.randint(1, 6)} AND a.id = {r.randint(10, 15)}")
        elif k == 11:
            out.append(f"UPDATE products SET in_stock = NOT in_stock WHERE sku = '{r.choice(['SKU-CATFOOD', 'SKU-LEASH', 'SKU-TANK'])}'")
        elif k == 12:
            out.append(f"INSERT INTO cart_items SELECT {100 + batch * 10 + r.randint(0, 9)}, c.id, '{r.choice(['SKU-CATFOOD', 'SKU-LEASH', 'SKU-TANK'])}', 1 FROM carts c WHERE c.id = {r.choice([500, 501, 502])} ON CONFLICT DO NOTHING")
        else:
            victim = r.randint(1, 6)
            out.append(f"DELETE FROM cart_items WHERE cart_id IN (SELECT id FROM carts WHERE profile_id = {victim}); "
                       f"DELETE FROM carts WHERE profile_id = {victim}; DELETE FROM events WHERE profile_id = {victim}; "
                       f"DELETE FROM profile_identifiers WHERE profile_id = {victim}; DELETE FROM profiles WHERE id = {victim}")
    return out


STATE = """SELECT jsonb_build_object(
  'members', (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
      SELECT substr(a.key, 3) AS k, jsonb_agg(m.profile_id ORDER BY m.profile_id) AS v
      FROM linked_audiences.audience_members m JOIN linked_audiences.audience a ON a.id = m.audience_id
      WHERE a.key LIKE '%\\_%' GROUP BY a.key) x),
  'entities', (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
      SELECT a.key AS k, jsonb_agg(jsonb_build_array(e.relationship, e.profile_id, e.entity_id) ORDER BY 1) AS v
      FROM linked_audiences.audience_entities e JOIN linked_audiences.audience a ON a.id = e.audience_id
      GROUP BY a.key) x),
  'changes', (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
      SELECT a.key AS k, jsonb_agg(jsonb_build_array(c.change, c.profile_id, c.relationship, c.entity_id) ORDER BY 1) AS v
      FROM linked_audiences.membership_changes c JOIN linked_audiences.audience a ON a.id = c.audience_id
      WHERE c.run_id > :last_run GROUP BY a.key) x),
  'events', (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
      SELECT o.audience AS k, jsonb_agg(jsonb_build_array(o.type, o.aggregateid, (o.payload->'properties') - 'audience_key' - o.audience,
                                                         (o.payload->'traits') - o.audience) ORDER BY 1) AS v
      FROM linked_audiences.outbox o WHERE o.run_id > :last_run GROUP BY o.audience) x),
  'modes', (SELECT coalesce(jsonb_object_agg(mode, n), '{}') FROM (
      SELECT r.status AS mode, count(*) AS n FROM linked_audiences.runs r WHERE r.id > :last_run GROUP BY 1) x),
  'last_run', (SELECT coalesce(max(id), 0) FROM linked_audiences.runs))"""


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else random.randrange(1 << 30)
    n_defs = int(sys.argv[sys.argv.index("--definitions") + 1]) if "--definitions" in sys.argv else 200
    batches = 5
    r = random.Random(seed)
    db = "la_incremental"
    psql(host, port, "postgres", f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};")
    setup = ["SET client_min_messages = warning;", "CREATE EXTENSION linked_audiences;", "\\i demo/warehouse.sql",
             "\\set graph `cat demo/graph.json`", "SELECT la_define_data_graph(:'graph') IS NOT NULL;",
             "SELECT la_define_audience('base', '{\"relationship\": \"pets\", \"where\": {\"column\": \"type\", \"op\": \"equals\", \"value\": \"cat\"}}') IS NOT NULL;",
             "SELECT la_create_destination('d', 'segment') IS NOT NULL;",
             "SELECT jsonb_array_length(la_capture_changes());"]
    computes = []
    for i in range(n_defs):
        d = node(r)
        j = json.dumps(d).replace("'", "''")
        for twin, mode in (("i", "auto"), ("f", "full")):
            k = f"{twin}_{i}"
            setup.append(f"SELECT la_define_audience('{k}', '{j}') IS NOT NULL;")
            setup.append(f"SELECT la_activate('{k}', 'd', 'Audience Entered', properties => '{{\"traits\": [\"plan\"]}}') > 0;")
            setup.append(f"SELECT la_activate('{k}', 'd', 'Audience Membership Changed') > 0;")
            rs = names_relationship(d)
            if rs:
                setup.append(f"SELECT la_activate('{k}', 'd', 'Entity Added', '{rs}') > 0;")
            computes.append(f"SELECT la_compute_audience('{k}', '{mode}') IS NOT NULL;")
    psql(host, port, db, "\n".join(setup))
    compute_sql = "SET client_min_messages = warning;\n" + "\n".join(computes)
    psql(host, port, db, compute_sql)
    last_run = json.loads(psql(host, port, db, STATE.replace(":last_run", "0")))["last_run"]
    incremental = 0
    for b in range(1, batches + 1):
        for w in writes(r, b):
            psql(host, port, db, w)
        out = psql(host, port, db, compute_sql.replace(" IS NOT NULL;", "->>'mode';").replace("SELECT la_compute", "SELECT la_compute"))
        incremental += out.split().count("incremental")
        state = json.loads(psql(host, port, db, STATE.replace(":last_run", str(last_run))))
        failed = [r2 for r2 in json.loads(psql(host, port, db,
                  f"SELECT coalesce(jsonb_agg(error), '[]') FROM linked_audiences.runs WHERE id > {last_run} AND status = 'failed'"))]
        if failed:
            sys.exit(f"incremental: seed {seed}, batch {b}: failed computes: {failed[:3]}")
        for i in range(n_defs):
            for part in ("members", "entities", "changes", "events"):
                key = str(i) if part == "members" else None
                got = state[part].get(key or f"i_{i}")
                want = state[part].get(key or f"f_{i}") if part != "members" else None
                if part == "members":
                    continue
                norm = lambda v: sorted(v or [], key=json.dumps)
                if norm(got) != norm(want):
                    sys.exit(f"incremental: seed {seed}, batch {b}, definition {i} ({part}): incremental {got} != full {want}")
        # Members: compared by audience key.
        mem = json.loads(psql(host, port, db, """SELECT coalesce(jsonb_object_agg(a.key, coalesce(
            (SELECT jsonb_agg(m.profile_id ORDER BY m.profile_id) FROM linked_audiences.audience_members m WHERE m.audience_id = a.id), '[]')), '{}')
            FROM linked_audiences.audience a"""))
        for i in range(n_defs):
            if mem[f"i_{i}"] != mem[f"f_{i}"]:
                sys.exit(f"incremental: seed {seed}, batch {b}, definition {i} (members): incremental {mem[f'i_{i}']} != full {mem[f'f_{i}']}")
        # Every run reports the members it leaves (incremental: counted from the changes).
        wrong = psql(host, port, db, """SELECT coalesce(string_agg(a.key || ': ' || r.members || ' != ' || m.n, ', '), '')
            FROM linked_audiences.audience a JOIN linked_audiences.runs r ON r.id = a.last_run_id
            CROSS JOIN LATERAL (SELECT count(*) AS n FROM linked_audiences.audience_members x WHERE x.audience_id = a.id) m
            WHERE r.members <> m.n""").strip()
        if wrong:
            sys.exit(f"incremental: seed {seed}, batch {b}: run member counts differ from the stored members: {wrong}")
        last_run = state["last_run"]
    if incremental < n_defs:
        sys.exit(f"incremental: seed {seed}: only {incremental} incremental computes ran; the comparison would be empty")
    psql(host, port, "postgres", f"DROP DATABASE {db}")
    print(f"incremental: ok ({n_defs} definitions x {batches} batches, seed {seed}: {incremental} incremental computes "
          f"equal full ones in members, entities, history and events)")


if __name__ == "__main__":
    main()
