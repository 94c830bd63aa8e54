"""``mjflow demo``: the whole system on one machine, on embedded defaults.

Starts (or reuses) Redis, a local S3 API (moto server) with a bucket, the simulator as the
upstream (with some callbacks dropped, so polling is seen to work), and the Procfile's
``web``, ``worker`` and ``beat`` under honcho; submits a small batch (six prompts with
U1–U4 and one V2 → U1 chain), shows progress and prints a summary with links. Run from a
terminal it then keeps everything up (so the links work) until Ctrl-C; otherwise it stops
at the end (``--keep-running`` keeps it up there too). Stopping signals honcho alone, which
stops each process (the Celery worker remaps SIGTERM so that its pool children are not
killed under running tasks: no ``WorkerLostError``).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.dev.consumer import Consumer
from worker.dev.localnet import ROOT, Procs, free_port, wait_http
from worker.dev.localredis import ensure
from worker.redis_conn import connect

BUCKET = "mjflow-demo"
PROMPTS = [
    "a lighthouse at dawn, oil painting --ar 3:2",
    "a red fox in fresh snow, telephoto",
    "isometric cozy library with plants",
    "a paper boat on a rainy street, cinematic",
    "portrait of an astronaut cat, studio light",
]
CHAIN = "a glass greenhouse on a cliff at sunset"
DEMO_FAULTS = {"drop_callbacks": 0.3, "duplicate_callbacks": 0.1, "reorder_callbacks": True,
               "seed": 42}
TERMINAL = ("succeeded", "failed", "cancelled", "skipped")


class JobsVanished(RuntimeError):
    """The demo's jobs are no longer in Redis (someone flushed it, or its prefix)."""


def _wait_bucket(endpoint: str, timeout_s: float = 60.0) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            s3.head_bucket(Bucket=BUCKET)
            return
        except (BotoCoreError, ClientError):
            time.sleep(0.3)
    raise RuntimeError(f"bucket {BUCKET} not ready at {endpoint}")


def demo_specs() -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {"prompt": p, "then": ["U1", "U2", "U3", "U4"], "metadata": {"demo": i}}
        for i, p in enumerate(PROMPTS, 1)
    ]
    specs.append({"prompt": CHAIN, "then": [{"button": "V2", "then": ["U1"]}], "splitGrid": True,
                  "metadata": {"demo": len(specs) + 1}})
    return specs


class Demo:
    def __init__(self, console: Console, speed: float, workdir: Path, webhook_secret: str) -> None:
        self.webhook_secret = webhook_secret
        self.console = console
        self.speed = speed
        self.workdir = workdir
        self.procs = Procs(workdir)

    def start(self) -> dict[str, str]:
        self.console.print(f"[bold]redis[/]   {ensure()}")
        s3_port, sim_port, web_port = free_port(9000), free_port(8090), free_port(8000)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
        s3_url = f"http://127.0.0.1:{s3_port}"
        faults = self.workdir / "faults.json"
        faults.write_text(json.dumps(DEMO_FAULTS))
        web_url = f"http://127.0.0.1:{web_port}"
        sim_url = f"http://127.0.0.1:{sim_port}"
        env.update({
            "HOST": "127.0.0.1", "PORT": str(web_port), "SIM_PORT": str(sim_port), "SIM_SPEED": str(self.speed),
            "SIM_FAULTS": str(faults), "S3_PORT": str(s3_port), "S3_BUCKET": BUCKET,
            "AWS_ENDPOINT_URL": s3_url,
            "MJFLOW_UPSTREAM_URL": sim_url,
            "MJFLOW_UPSTREAM_PROFILE": "midjourney-proxy",
            "MJFLOW_STORAGE_URL": f"s3://{BUCKET}/images",
            "MJFLOW_PUBLIC_URL": web_url,
            "MJFLOW_HOOK_SECRET": os.environ.get("MJFLOW_HOOK_SECRET", "demo-hook-secret"),
            "MJFLOW_LOCAL_RUN": "true",
            "MJFLOW_WEBHOOK_SECRET": self.webhook_secret,
            "MJFLOW_ALLOW_PRIVATE_URLS": "true",
            "MJFLOW_KEY_PREFIX": os.environ.get("MJFLOW_KEY_PREFIX", "mjflow-demo"),
            "MJFLOW_POLL_INTERVAL_S": os.environ.get("MJFLOW_POLL_INTERVAL_S", "2"),
            "MJFLOW_HEARTBEAT_PUSH_S": "4",
            "MJFLOW_TICK_INTERVAL_S": "0.5",
            "MJFLOW_REDRIVE_S": "10",
            "WEB_CONCURRENCY": "2", "WORKER_CONCURRENCY": "4",
            "BEAT_SCHEDULE_FILE": str(self.workdir / "beat-schedule"),
        })
        procfile = self.workdir / "Procfile"
        procfile.write_text((ROOT / "Procfile").read_text() + (ROOT / "Procfile.local").read_text())
        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
        self.procs.spawn("honcho", [str(bin_dir / "honcho"), "-f", str(procfile), "-d", str(ROOT),
                                    "start"], env)
        wait_http(f"{sim_url}/_sim/stats")
        wait_http(f"{web_url}/healthz")
        _wait_bucket(s3_url)
        self.console.print(f"[bold]s3[/]      local S3 API (moto server) at {s3_url}, bucket {BUCKET}")
        self.console.print(f"[bold]sim[/]     simulated midjourney-proxy at {sim_url} "
                           f"(speed ×{self.speed:g}, 30% of callbacks dropped)")
        self.console.print(f"[bold]web[/]     {web_url}  (web, worker, beat from the Procfile under honcho; "
                           f"logs in {self.workdir})")
        return {"web": web_url, "sim": sim_url, "s3": s3_url, "prefix": env["MJFLOW_KEY_PREFIX"]}

    def stop(self) -> None:
        """SIGTERM to honcho alone: it stops each process itself (SIGKILL after 5 s)."""
        self.procs.kill("honcho", signal.SIGTERM, timeout_s=20, leader_only=True)


def _job(web: str, job_id: str) -> dict[str, Any]:
    resp = requests.get(f"{web}/v1/jobs/{job_id}", timeout=10)
    if resp.status_code == 404:
        raise JobsVanished(f"jobs vanished (the store was flushed?): job {job_id} is gone from Redis")
    resp.raise_for_status()
    return resp.json()


def run_jobs(console: Console, web: str, timeout_s: float, callback_url: str) -> list[dict[str, Any]]:
    ids = []
    for spec in demo_specs():
        resp = requests.post(f"{web}/v1/jobs", json=spec | {"callbackUrl": callback_url}, timeout=10)
        resp.raise_for_status()
        ids.append(resp.json()["id"])
    total_steps = sum(1 + len(s["then"]) + sum(len(t.get("then", [])) for t in s["then"] if isinstance(t, dict))
                      for s in demo_specs())
    views: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as bar:
        jobs_bar = bar.add_task("jobs", total=len(ids), detail="")
        steps_bar = bar.add_task("steps", total=total_steps, detail="")
        while time.monotonic() < deadline:
            views = [_job(web, j) for j in ids]
            steps = [s for v in views for s in v["steps"]]
            counts: dict[str, int] = {}
            for s in steps:
                counts[s["status"]] = counts.get(s["status"], 0) + 1
            bar.update(jobs_bar, completed=sum(1 for v in views if v["finishedAt"]),
                       detail=" ".join(f"{v['status']}" for v in views))
            bar.update(steps_bar, completed=sum(1 for s in steps if s["status"] in TERMINAL),
                       detail=" ".join(f"{k}:{n}" for k, n in sorted(counts.items())))
            if all(v["finishedAt"] for v in views):
                break
            time.sleep(0.5)
    return views


def summary(console: Console, urls: dict[str, str], views: list[dict[str, Any]],
            consumer: Consumer) -> int:
    table = Table(title="demo jobs")
    for col in ("job", "status", "steps", "images", "first image key"):
        table.add_column(col)
    images = 0
    for v in views:
        imgs = [i for s in v["steps"] for i in s["images"]]
        images += len(imgs)
        table.add_row(v["id"], v["status"], " ".join(f"{s['label']}:{s['status']}" for s in v["steps"]),
                      str(len(imgs)), imgs[0]["key"] if imgs else "-")
    console.print(table)
    stats = requests.get(f"{urls['sim']}/_sim/stats", timeout=5).json()
    r = connect(url=os.environ.get("MJFLOW_REDIS_URL", "redis://127.0.0.1:6379/0"))
    polls = r.hgetall(f"{urls['prefix']}:counter:polls")
    ok = sum(v["status"] == "succeeded" for v in views)
    console.print(f"[bold]{ok}/{len(views)} jobs succeeded[/], {images} images in "
                  f"s3://{BUCKET}/images/ (local S3 API at {urls['s3']})")
    console.print(f"callbacks sent {stats['callbacks']['sent']}, dropped by the simulator "
                  f"{stats['callbacks']['dropped']}; steps recovered by polling: "
                  f"{polls.get('recovered', 0)}; duplicate upstream submissions: "
                  f"{stats['duplicate_submissions']['count']}")
    deadline = time.monotonic() + 15
    while len(consumer.by_job()) < len(views) and time.monotonic() < deadline:
        time.sleep(0.2)
    events = consumer.by_job()
    console.print(f"consumer at {consumer.url}: {len(events)} signed job events received and "
                  f"verified ({', '.join(sorted({e['event']['type'] for e in events.values()}))}), "
                  f"{consumer.rejected} rejected")
    first = next((i for v in views for s in v["steps"] for i in s["images"]), None)
    if first:
        console.print(f"an image (presigned, 1 h): {first['url']}")
    console.print(f"dashboard: {urls['web']}/   API: {urls['web']}/v1/jobs   metrics: {urls['web']}/metrics")
    return 0 if ok == len(views) and len(events) == len(views) else 1


def run(*, speed: float = 20.0, keep_running: bool | None = None, timeout_s: float = 110.0) -> int:
    """``keep_running``: None keeps everything up after the summary when stdin is a
    terminal (someone can open the links), True always, False never."""
    console = Console()
    stay = sys.stdin.isatty() if keep_running is None else keep_running
    workdir = Path(tempfile.mkdtemp(prefix="mjflow-demo-"))
    secret = (os.environ.get("MJFLOW_WEBHOOK_SECRET")
              or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    demo = Demo(console, speed, workdir, secret)
    started = time.monotonic()
    code = 1
    finished = False
    for sig in (signal.SIGTERM, signal.SIGHUP):     # a stop from outside stops it all too
        signal.signal(sig, _interrupt)
    try:
        urls = demo.start()
        with Consumer(secret) as consumer:
            views = run_jobs(console, urls["web"], timeout_s, consumer.url)
            code = summary(console, urls, views, consumer)
        finished = True
        console.print(f"finished in {time.monotonic() - started:.0f}s")
        if stay:
            console.print("[bold]everything stays up[/] so that the links above work; "
                          "Ctrl-C stops it.")
            while True:
                time.sleep(1)
        console.print("(the links above stop working now: `mjflow demo --keep-running` "
                      "keeps everything up until Ctrl-C)")
    except JobsVanished as exc:
        console.print(f"[bold red]{exc}[/]; "
                      f"the demo uses the Redis key prefix {os.environ.get('MJFLOW_KEY_PREFIX', 'mjflow-demo')}")
        code = 1
    except KeyboardInterrupt:
        console.print("stopping…")
        code = code if finished else 130
    finally:
        demo.stop()
        console.print("stopped web, worker, beat, simulator and the local S3 API.")
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
