#!/usr/bin/env python3
"""Benchmark of la-relay: events per second delivered to a local sink that answers at once
(tests/relay/mock_server.py on 127.0.0.1, Segment preset), with one relay and with four
relays on one destination, and the latency from the outbox commit to the request.

Usage: bench/relay.py [--events N] [--batch B ...] [--rounds R] [--no-build]

Starts its own cluster (/tmp/la-relay-bench, port 54337), makes N cat owners, computes
them into N outbox rows ("Audience Entered", email trait: about 700 bytes an event), then
times `la-relay --once` draining them, for each --batch (default 100 and 500), with one
relay and with four at once (the rows are set back to pending between runs).
Latency: a relay runs (LISTEN), R rounds each turn 20 cats into lizards and compute the
lizard owners; an event's latency is its first arrival at the sink minus the moment its
compute committed (server clock, same machine). Prints a Markdown table.
"""
import argparse
import getpass
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = "/usr/lib/postgresql/15/bin"
PORT = 54337
DB = "la_relay_bench"


def tmp_dir(name):
    return f"/tmp/{name}" if os.geteuid() == 0 else f"/tmp/{name}-{getpass.getuser()}"


DIR = tmp_dir("la-relay-bench")
ENV = dict(os.environ, PGUSER="postgres", LA_BENCH_WRITE_KEY="bench-key")


def psql(sql, db=DB):
    out = subprocess.run([f"{BIN}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", DIR, "-p", str(PORT),
                          "-d", db], input=sql, capture_output=True, text=True, env=ENV)
    if out.returncode:
        sys.exit(f"psql failed: {out.stderr}")
    return out.stdout.strip()


def relay(*args):
    url = f"postgresql://postgres@/{DB}?host={DIR}&port={PORT}"
    return subprocess.Popen([os.path.join(ROOT, "target/release/la-relay"), "--database-url", url,
                             "--destination", "sink", *args], env=ENV, stderr=subprocess.PIPE, text=True)


def reset():
    psql("""UPDATE linked_audiences.outbox_state SET status = 'pending', attempts = 0, visible_at = '-infinity',
                   acked_at = NULL, last_error = NULL WHERE destination = 'sink';
            VACUUM ANALYZE linked_audiences.outbox_state;""")


def drain(relays, batch, events, log):
    """Runs `relays` relays with --once on the pending rows; returns events per second."""
    reset()
    open(log, "w").close()
    started = time.monotonic()
    procs = [relay("--once", "--batch", str(batch)) for _ in range(relays)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"la-relay failed:\n{err}")
    seconds = time.monotonic() - started
    acked = int(psql("SELECT count(*) FROM linked_audiences.outbox_state WHERE destination = 'sink' AND status = 'acked'"))
    if acked != events:
        sys.exit(f"{acked} of {events} events acknowledged")
    return events / seconds, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--batch", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "-q", "-p", "la-relay", "--release"], cwd=ROOT, check=True)

    subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "start", DIR, str(PORT), DB], check=True, env=ENV)
    work = tempfile.mkdtemp(prefix="la-relay-bench-")
    log = os.path.join(work, "sink.jsonl")
    port_file = os.path.join(work, "port")
    sink = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/relay/mock_server.py"), "--port", "0",
                             "--port-file", port_file, "--log", log, "--no-bodies"])
    try:
        for _ in range(50):
            if os.path.exists(port_file):
                break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{open(port_file).read()}/seg"
        n = args.events
        rounds = min(args.rounds, n // 20)
        with open(os.path.join(ROOT, "demo/graph.json")) as f:
            graph = f.read().replace("'", "''")
        psql(f"""
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS linked_audiences CASCADE;
CREATE EXTENSION linked_audiences;
\\i {ROOT}/demo/warehouse.sql
INSERT INTO households SELECT 1000 + g, 'H' || g, 'Portland' FROM generate_series(1, {n}) g;
INSERT INTO profiles (id, user_id, email, first_name, plan, household_id)
SELECT 1000 + g, 'b-' || g, 'b' || g || '@example.com', 'B', 'free', 1000 + g FROM generate_series(1, {n}) g;
INSERT INTO pets SELECT 1000 + g, 1000 + g, 'Cat ' || g, 'cat' FROM generate_series(1, {n}) g;
ANALYZE;
SELECT la_define_data_graph('{graph}');
SELECT la_define_audience('cat_owners', '{{"relationship": "pets", "where": {{"column": "type", "op": "equals", "value": "cat"}}}}');
SELECT la_define_audience('bench_latency', '{{"relationship": "pets", "where": {{"column": "type", "op": "equals", "value": "lizard"}}}}');
SELECT la_create_destination('sink', 'segment', '{{"endpoint": "{url}", "write_key_env": "LA_BENCH_WRITE_KEY"}}');
SELECT la_activate('cat_owners', 'sink', 'Audience Entered', properties => '{{"traits": ["email", "first_name"]}}');
SELECT la_activate('bench_latency', 'sink', 'Audience Entered', properties => '{{"traits": ["email", "first_name"]}}');
SELECT la_compute_audience('bench_latency');
SELECT la_compute_audience('cat_owners');
""")
        events = int(psql("SELECT count(*) FROM linked_audiences.outbox WHERE destination = 'sink'"))
        size = int(psql("SELECT avg(length(mapped::text))::int FROM linked_audiences.outbox WHERE destination = 'sink'"))
        results = []
        for batch in args.batch:
            for relays in (1, 4):
                rate, seconds = drain(relays, batch, events, log)
                results.append((batch, relays, rate, seconds))
                print(f"--batch {batch}, {relays} relay(s): {events} events in {seconds:.2f} s = {rate:,.0f} events/s",
                      flush=True)

        # Latency: one relay following NOTIFY; rounds of 20 profiles entering a small audience.
        # (A run here also checks its compute wrote events: no ids, no latency.)
        open(log, "w").close()
        daemon = relay()
        time.sleep(1)
        committed = {}
        last = int(psql("SELECT coalesce(max(seq), 0) FROM linked_audiences.outbox"))
        for r in range(rounds):
            lo, hi = 1001 + r * 20, 1000 + (r + 1) * 20
            out = psql(f"""
SET client_min_messages = warning;
UPDATE pets SET type = 'lizard' WHERE id BETWEEN {lo} AND {hi};
SELECT la_compute_audience('bench_latency') IS NOT NULL;
SELECT extract(epoch FROM clock_timestamp());
SELECT id FROM linked_audiences.outbox WHERE seq > {last} ORDER BY seq;
SELECT max(seq) FROM linked_audiences.outbox;
""").splitlines()
            t, ids, last = float(out[1]), out[2:-1], int(out[-1])
            if not ids:
                sys.exit(f"round {r}: the compute wrote no events")
            for i in ids:
                committed[i] = t
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        arrived = {}
        while time.monotonic() < deadline:
            with open(log) as f:
                for line in f:
                    rec = json.loads(line)
                    for i in rec.get("ids") or []:
                        arrived.setdefault(i, rec["t"])
            if all(i in arrived for i in committed):
                break
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate()
        lat = sorted((arrived[i] - t) * 1000 for i, t in committed.items() if i in arrived)
        missing = len(committed) - len(lat)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        print(f"latency over {len(lat)} events in {rounds} commits: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
              + (f" ({missing} never arrived)" if missing else ""))

        print()
        print(f"la-relay on {os.cpu_count()} cores, {events} events of ~{size} bytes (Segment preset), "
              f"sink on 127.0.0.1 answering at once; `la-relay --once`, wall time from start to exit:")
        print()
        print("| --batch | relays | events/s | seconds |")
        print("|---|---|---|---|")
        for batch, relays, rate, seconds in results:
            print(f"| {batch} | {relays} | {rate:,.0f} | {seconds:.2f} |")
        print()
        print(f"Commit to request (LISTEN/NOTIFY, {len(lat)} events): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        if missing:
            sys.exit(1)
    finally:
        sink.terminate()
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "stop", DIR], env=ENV)


if __name__ == "__main__":
    main()
