#!/usr/bin/env python3
"""Checks for tests/relay/relay.sh: what the mock server received against the outbox.

  check.py bodies LOG DEST EXPECTED [--update]   request bodies (normalized) = the pinned file
  check.py verify LOG OUTBOX_JSON [--dead=DEST,...] [--dead-at-once]
                                                 every row reached the server and is acked (or,
                                                 for the --dead destinations, dead with its HTTP
                                                 400), no unknown items, each user's events first
                                                 arrived in outbox order

LOG is the mock server's JSON lines; a destination's requests are those whose path starts
with /DEST/. OUTBOX_JSON is one JSON array of the outbox rows with their state.
"""
import base64
import json
import re
import sys
from collections import defaultdict

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def requests(log, dest):
    with open(log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["path"].startswith(f"/{dest}/") or r["path"] == f"/{dest}"]


def normalize(value, ids):
    """Ids become <id:N> (N: order of first appearance), times <time>."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("computation_id", "computation_run_id", "version") and isinstance(v, (str, int)):
                out[k] = f"<{k}>"
            elif k in ("timestamp", "createdAt") and isinstance(v, int):
                out[k] = "<unix time>"
            else:
                out[k] = normalize(v, ids)
        return out
    if isinstance(value, list):
        return [normalize(v, ids) for v in value]
    if isinstance(value, str) and (UUID.match(value) or ULID.match(value)):
        return ids.setdefault(value, f"<id:{len(ids) + 1}>")
    if isinstance(value, str) and ISO.match(value):
        return "<time>"
    return value


def bodies(log, dest, expected, update):
    ids = {}
    out = []
    for r in requests(log, dest):
        if r.get("rule"):
            continue  # injected faults are not part of the pinned shape
        headers = dict(r["headers"])
        if "x-signature" in headers:
            headers["x-signature"] = "sha256=<hex>" if re.match(r"^sha256=[0-9a-f]{64}$", headers["x-signature"]) else headers["x-signature"]
        out.append(f"POST {r['path']}")
        for k in sorted(headers):
            out.append(f"{k}: {headers[k]}")
        out.append(json.dumps(normalize(r["body"], ids), indent=2))
        out.append("")
    got = "\n".join(out)
    with open(expected) as f:
        text = f.read()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    pinned = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    if update:
        with open(expected, "w") as f:
            f.write(header + got)
        return 0
    if pinned.strip() != got.strip():
        import difflib
        sys.stdout.writelines(difflib.unified_diff(pinned.splitlines(True), (got + "\n").splitlines(True),
                                                   expected, "received"))
        return 1
    return 0


def ulid_to_uuid(ulid):
    n = 0
    for c in ulid:
        n = n * 32 + CROCKFORD.index(c)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def canonical(value):
    return json.dumps(value, sort_keys=True)


def items(preset, body):
    """The delivered items of one request body, each as (kind, item)."""
    if preset in ("segment",):
        return [("event", i) for i in body.get("batch", [])]
    if preset == "webhook":
        return [("event", i) for i in body]
    if preset == "braze":
        return [("trackEvent", i) for i in body.get("events", [])] + \
               [("updateUserProfile", i) for i in body.get("attributes", [])]
    if preset == "iterable":
        return [("trackEvent", i) for i in body.get("events", [])] + [("updateUser", i) for i in body.get("users", [])]
    if preset == "customerio":
        return [("entry", i) for i in body.get("batch", [])]
    raise ValueError(preset)


def key_of(preset, row):
    """How a row is recognized in a request: its id, or for identifies without one, its content."""
    m = row["mapped"]
    if preset in ("segment", "webhook"):
        return m["messageId"]
    if preset == "braze":
        if row["action"] == "trackEvent":
            return canonical(m)
        attrs = {"external_id": m["external_id"], **{k: v for k, v in m["custom_attributes"].items() if k != "external_id"}}
        return canonical(attrs)
    if preset == "iterable":
        return m["id"] if row["action"] == "trackEvent" else canonical(m)
    if preset == "customerio":
        if row["action"] == "trackEvent":
            return m["event_id"]
        return canonical({"type": "person", "identifiers": {"id": m["id"]}, "action": "identify",
                          "attributes": m["custom_attributes"]})
    raise ValueError(preset)


def item_key(preset, kind, item):
    if preset in ("segment", "webhook"):
        return item["messageId"]
    if preset == "braze":
        return canonical(item)
    if preset == "iterable":
        return item["id"] if kind == "trackEvent" else canonical(item)
    if preset == "customerio":
        if item["action"] == "event":
            return ulid_to_uuid(item["id"])
        return canonical(item)


def verify(log, outbox_json, expect_dead, dead_at_once):
    with open(outbox_json) as f:
        outbox = json.load(f)
    problems = []
    by_dest = defaultdict(list)
    for row in outbox:
        by_dest[row["destination"]].append(row)
    summary = []
    for dest, rows in sorted(by_dest.items()):
        preset = rows[0]["preset"]
        keys = {}
        for row in rows:
            k = key_of(preset, row)
            if k in keys:
                problems.append(f"{dest}: rows {keys[k]['seq']} and {row['seq']} look alike; cannot tell them apart")
            keys[k] = row
        received = defaultdict(list)  # key -> [(t, status)]
        unknown = 0
        for r in requests(log, dest):
            if r["status"] == "dropped" or not isinstance(r.get("body"), (dict, list)):
                continue
            if preset == "webhook" and r.get("signature_ok") is False:
                problems.append(f"{dest}: a request with a wrong X-Signature")
            for kind, item in items(preset, r["body"]):
                k = item_key(preset, kind, item)
                if k not in keys:
                    unknown += 1
                    continue
                received[k].append((r["t"], r["status"]))
        if unknown:
            problems.append(f"{dest}: {unknown} delivered items match no outbox row")
        deliveries = sum(len(v) for v in received.values())
        for k, row in keys.items():
            want = "dead" if dest in expect_dead else "acked"
            if row["status"] != want:
                problems.append(f"{dest}: row {row['seq']} ({row['aggregateid']} {row['type']}) is {row['status']}, expected {want} (last error: {row['last_error']})")
            if k not in received:
                problems.append(f"{dest}: row {row['seq']} ({row['aggregateid']} {row['type']}) never reached the server")
            if want == "dead":
                if not (row["last_error"] or "").startswith("HTTP 400"):
                    problems.append(f"{dest}: dead row {row['seq']} has reason {row['last_error']!r}, expected the HTTP 400 and its body")
                if dead_at_once and row["attempts"] != 1:
                    problems.append(f"{dest}: dead row {row['seq']} took {row['attempts']} attempts, expected 1 (dead at once)")
        # Each user's events first arrive in outbox order.
        first = defaultdict(list)
        for k, row in keys.items():
            if k in received:
                first[row["aggregateid"]].append((min(t for t, _ in received[k]), row["seq"]))
        for user, arrivals in first.items():
            seqs = [seq for _, seq in sorted(arrivals)]
            if seqs != sorted(seqs):
                problems.append(f"{dest}: {user}'s events arrived in the order {seqs}, not in outbox order")
        summary.append(f"{dest} {len(rows)} events/{deliveries} deliveries")
    for p in problems[:30]:
        print("relay check:", p)
    if problems:
        print(f"relay check: {len(problems)} problem(s)")
        return 1
    print("delivered: " + ", ".join(summary))
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "bodies":
        sys.exit(bodies(sys.argv[2], sys.argv[3], sys.argv[4], "--update" in sys.argv))
    if cmd == "verify":
        dead = {d for a in sys.argv if a.startswith("--dead=") for d in a.split("=", 1)[1].split(",")}
        sys.exit(verify(sys.argv[2], sys.argv[3], dead, "--dead-at-once" in sys.argv))
    if cmd == "basic":
        print("Basic " + base64.b64encode(sys.argv[2].encode()).decode())
        sys.exit(0)
    sys.exit(f"unknown command {cmd}")
