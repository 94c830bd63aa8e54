"""A consumer of mjflow's job events on loopback, for local runs, tests and benchmarks:
it verifies each signature with the ``standardwebhooks`` library, as a real consumer
would, answers 204 (400 for a bad signature) and records what it got and when.

    python -m worker.dev.consumer --port 9100      # prints each verified event
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook


class Consumer:
    """Serves from construction until :meth:`close` (or the end of a ``with`` block).

    ``events``: one record per verified event, in arrival order:
    ``{"msg_id", "type", "data", "event", "at"}`` (``at``: unix seconds).
    ``bad``: one record per refused request, ``{"why", "headers"}``.
    """

    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.webhook = Webhook(secret)
        self.events: list[dict[str, Any]] = []
        self.bad: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = consumer.receive(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_port}/events"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="mjflow-consumer")
        self._thread.start()

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        now = time.time()
        try:
            event = self.webhook.verify(body, headers)
        except Exception as exc:  # noqa: BLE001 - any verification failure is recorded
            with self.lock:
                self.bad.append({"why": f"{type(exc).__name__}: {exc}", "headers": headers})
            return 400
        record = {"msg_id": headers.get("webhook-id"), "type": event.get("type"),
                  "data": event.get("data") or {}, "event": event, "at": now}
        with self.lock:
            self.events.append(record)
        return 204

    # -- reading what arrived ---------------------------------------------------------------
    @property
    def rejected(self) -> int:
        return len(self.bad)

    def events_by_job(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for e in self.events:
                out.setdefault(str(e["data"].get("jobId")), []).append(e)
        return out

    def by_job(self) -> dict[str, dict[str, Any]]:
        """The first event of each job."""
        return {job: got[0] for job, got in self.events_by_job().items()}

    @property
    def arrivals(self) -> dict[str, float]:
        """When each job's first event arrived (unix seconds)."""
        return {job: e["at"] for job, e in self.by_job().items()}

    @property
    def duplicates(self) -> int:
        """Events beyond the first of their job."""
        return sum(len(got) - 1 for got in self.events_by_job().values())

    def dump(self) -> str:
        return json.dumps(self.events, indent=2, ensure_ascii=False, default=str)

    def self_test(self) -> None:
        """Accepts a correctly signed event and refuses a tampered one (so a run that
        passes means the signatures really were checked); forgets both afterwards."""
        body = json.dumps({"type": "job.succeeded", "data": {"jobId": "selftest"}})
        now = datetime.now(UTC)
        headers = {"webhook-id": "msg_selftest", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self.webhook.sign("msg_selftest", now, body)}
        ok = requests.post(self.url, data=body, headers=headers, timeout=5).status_code
        bad = requests.post(self.url, data=body.replace("succeeded", "failed"), headers=headers,
                            timeout=5).status_code
        with self.lock:
            self.events = [e for e in self.events if e["data"].get("jobId") != "selftest"]
            self.bad.clear()
        if (ok, bad) != (204, 400):
            raise RuntimeError(f"consumer self-test failed: signed -> {ok}, tampered -> {bad}")

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m worker.dev.consumer --port 9100``: print each verified event."""
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
                    data = item["data"]
                    print(f"verified {item['type']} webhook-id={item['msg_id']} job={data['jobId']} "
                          f"images={len(data.get('images', []))}", flush=True)
                seen = len(consumer.events)
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
