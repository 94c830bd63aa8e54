"""A tiny callback consumer for local runs: receives mjflow's job events on loopback and
verifies each signature with the ``standardwebhooks`` library, as a real consumer would."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Consumer:
    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.webhook = Webhook(secret)
        self.events: list[dict[str, Any]] = []
        self.rejected = 0
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = consumer.webhook.verify(body, dict(self.headers))
                except WebhookVerificationError:
                    consumer.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                consumer.events.append({"id": self.headers.get("webhook-id"), "event": event})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_port}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()

    def by_job(self) -> dict[str, dict[str, Any]]:
        return {e["event"]["data"]["jobId"]: e for e in self.events}

    def dump(self) -> str:
        return json.dumps(self.events, indent=2, ensure_ascii=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m worker.dev.consumer --port 9100``: print each verified event."""
    import argparse
    import os
    import time

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--secret", default=os.environ.get("MJFLOW_WEBHOOK_SECRET"),
                    help="whsec_ secret (default: MJFLOW_WEBHOOK_SECRET)")
    args = ap.parse_args(argv)
    if not args.secret:
        raise SystemExit("set MJFLOW_WEBHOOK_SECRET or pass --secret whsec_...")
    with Consumer(args.secret, port=args.port) as consumer:
        print(f"consumer listening at {consumer.url}", flush=True)
        seen = 0
        try:
            while True:
                for item in consumer.events[seen:]:
                    data = item["event"]["data"]
                    print(f"verified {item['event']['type']} webhook-id={item['id']} job={data['jobId']} "
                          f"images={len(data.get('images', []))}", flush=True)
                seen = len(consumer.events)
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
