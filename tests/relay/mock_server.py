#!/usr/bin/env python3
"""A stand-in for the destinations' APIs, for tests/relay/relay.sh and bench/relay.py.

Listens on 127.0.0.1 only. Every request is appended to --log as one JSON line:
{"t", "path", "headers", "body", "status"} ("status" is "dropped" for a dropped
connection). Answers like the real APIs by path (Segment /v1/batch 200, Braze
/users/track 201 {"message": "success"}, Iterable bulk 200 with successCount/failCount,
Customer.io /api/v2/batch 200, anything else 200) unless a fault rule matches.

Fault rules: POST /__rules with a JSON list; each rule applies to the next `times`
requests (default 1, -1 for ever) whose path starts with `path` and whose body contains
`contains` (both optional):
  {"status": 429, "retry_after": "1"}       an error status (body: "body" or a message)
  {"delay": 3}                              answer late
  {"drop": true}                            close the connection without an answer
  {"fail_user": "u-3"}                      a 2xx naming that user's event as failed, in
                                            the API's own way (Braze errors[], Iterable
                                            invalidUserIds, Customer.io errors[].batch_index)
GET /__stats answers {"requests": n}. --port-file receives the port (use --port 0).
"""
import argparse
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
rules = []
count = 0


def default_answer(path, body):
    if path.endswith("/users/track"):
        return 201, {"message": "success"}
    if path.endswith("/api/events/trackBulk") or path.endswith("/api/users/bulkUpdate"):
        items = (body or {}).get("events") or (body or {}).get("users") or []
        return 200, {"successCount": len(items), "failCount": 0, "invalidEmails": [], "invalidUserIds": []}
    if path.endswith("/v1/batch"):
        return 200, {"success": True}
    return 200, {}


def partial_failure(path, body, user):
    """A 2xx that reports `user`'s event as failed, as each API does."""
    if path.endswith("/users/track"):
        errors = []
        for array in ("events", "attributes"):
            for i, item in enumerate(body.get(array, [])):
                if item.get("external_id") == user:
                    errors.append({"type": "injected failure", "input_array": array, "index": i})
        return 201, {"message": "success", "errors": errors}
    if path.endswith("/api/events/trackBulk") or path.endswith("/api/users/bulkUpdate"):
        items = body.get("events") or body.get("users") or []
        failed = [u for u in (i.get("userId") for i in items) if u == user]
        answer = {"successCount": len(items) - len(failed), "failCount": len(failed), "invalidUserIds": failed}
        if path.endswith("bulkUpdate"):
            answer = {"successCount": answer["successCount"], "failCount": len(failed),
                      "failedUpdates": {"notFoundUserIds": failed}}
        return 200, answer
    if path.endswith("/api/v2/batch"):
        errors = [{"batch_index": i, "reason": "injected failure", "field": "identifiers", "message": "injected"}
                  for i, e in enumerate(body.get("batch", [])) if e.get("identifiers", {}).get("id") == user]
        return 207, {"errors": errors}
    return 200, {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer and no Nagle: headers and body in separate small packets
    # would wait on the client's delayed ACK (40 ms a request).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/__stats":
            with lock:
                return self.reply(200, {"requests": count})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        global count
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/__rules":
            with lock:
                rules[:] = json.loads(raw)
            return self.reply(200, {"rules": len(rules)})
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        text = raw.decode("utf-8", "replace")
        with lock:
            count += 1
            rule = None
            for r in rules:
                if r.get("times", 1) != 0 and self.path.startswith(r.get("path", "")) \
                        and r.get("contains", "") in text:
                    rule = r
                    if r.get("times", 1) > 0:
                        r["times"] = r.get("times", 1) - 1
                    break
        record = {"t": time.time(), "path": self.path, "status": None,
                  "headers": {k.lower(): v for k, v in self.headers.items()
                              if k.lower() in ("authorization", "api-key", "x-signature", "content-type")}}
        if args.secret and "x-signature" in record["headers"]:
            want = "sha256=" + hmac.new(args.secret.encode(), raw, hashlib.sha256).hexdigest()
            record["signature_ok"] = hmac.compare_digest(want, record["headers"]["x-signature"])
        if not args.no_bodies:
            record["body"] = body if body is not None else text
        else:
            record["ids"] = message_ids(body)
        record["rule"] = dict(rule) if rule else None
        rule = rule or {}
        if rule.get("delay"):
            time.sleep(rule["delay"])
        if rule.get("drop"):
            record["status"] = "dropped"
            write(record)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        headers = []
        if "fail_user" in rule:
            status, answer = partial_failure(self.path, body or {}, rule["fail_user"])
        elif "status" in rule:
            status = rule["status"]
            answer = rule.get("body", {"message": f"injected {status}"})
            if "retry_after" in rule:
                headers.append(("Retry-After", str(rule["retry_after"])))
        else:
            status, answer = default_answer(self.path, body)
        record["status"] = status
        write(record)
        try:
            self.reply(status, answer, headers)
        except OSError:
            pass  # the client gave up (a timeout): it retries


def message_ids(body):
    """The idempotency keys of a request (the bench sink keeps only these)."""
    items = body if isinstance(body, list) else (body or {}).get("batch") or (body or {}).get("events") or []
    return [i.get("messageId") or i.get("id") for i in items if isinstance(i, dict)]


def write(record):
    line = json.dumps(record) + "\n"
    with lock:
        log.write(line)
        log.flush()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log", required=True)
    p.add_argument("--secret", help="check X-Signature with this webhook secret")
    p.add_argument("--no-bodies", action="store_true", help="log only message ids (benchmarks)")
    args = p.parse_args()
    log = open(args.log, "a")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()
