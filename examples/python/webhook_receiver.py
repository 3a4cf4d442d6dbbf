#!/usr/bin/env python3
"""Receiving keyrail's webhooks, as an integrator would: check the signature, then act.

keyrail signs every delivery per Standard Webhooks (headers `webhook-id`, `webhook-timestamp`,
`webhook-signature`); this receiver checks them with the reference implementation,
`standardwebhooks` from PyPI, using the workspace's secret (`GET /api/v1/w/{id}/webhooks/secret`,
`whsec_...`). During the 24 hours after a secret rotation keyrail sends two signatures, so a
receiver still holding the old secret keeps accepting deliveries while it is updated.

    KEYRAIL_WEBHOOK_SECRET=whsec_... python3 webhook_receiver.py [--port 9000] [--fail-first N]

For every delivery whose signature holds, it prints one JSON line
{"webhook_id", "type", "timestamp", "data", "attempt"} on standard output and answers 204. A
delivery with a missing or wrong signature, or a timestamp more than 5 minutes away, is answered
400 and noted on standard error. The same `webhook-id` arriving again is a retry: handle it once
(here: `attempt` counts the arrivals).

`--fail-first N` answers 500 to the first N arrivals of each message, to watch keyrail retry
(first retry within 10 seconds, then backing off, for 24 hours).
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20


def make_handler(webhook, fail_first):
    arrivals = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = webhook.verify(body, headers)
            except WebhookVerificationError as e:
                print(f"refused a delivery: {e}", file=sys.stderr, flush=True)
                self.send_response(400)
                self.end_headers()
                return
            message_id = headers["webhook-id"]
            attempt = arrivals.get(message_id, 0) + 1
            arrivals[message_id] = attempt
            if attempt <= fail_first:
                print(f"{message_id}: answering 500 to arrival {attempt}", file=sys.stderr, flush=True)
                self.send_response(500)
                self.end_headers()
                return
            line = {
                "webhook_id": message_id,
                "type": payload.get("type"),
                "timestamp": payload.get("timestamp"),
                "data": payload.get("data"),
                "attempt": attempt,
            }
            print(json.dumps(line), flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    secret = os.environ.get("KEYRAIL_WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        print("set KEYRAIL_WEBHOOK_SECRET to the workspace's whsec_ secret", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Webhook(secret), args.fail_first))
    print(f"listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
