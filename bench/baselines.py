"""The two baselines mjflow is measured against, small and honest.

Both use mjflow's own upstream client (:class:`worker.upstream.UpstreamClient`) and its
own storage code (``store_step_images`` into the same kind of sink), so each side pays
the same HTTP-client and storage costs and only the orchestration differs.

``naive``
    The loop most users write from the providers' docs, one job per thread
    (a ``ThreadPoolExecutor``): submit, then fetch the task every 5 s until it finishes,
    download, upload, click the next button, fetch every 5 s again... A queue-full
    answer makes the thread pause 5 s and submit again.
``reseller``
    What the common reseller gateways do inside: one poller asks for *all* unfinished
    tasks with one list-by-condition (chunks of the profile's 100) every 15 s. Finished
    tasks are stored by a pool of 4 threads, which then queue the next button click; one
    submitter sends queued submits while fewer than ``--window`` tasks are in flight.

Every interval is real-pace and divided by the simulator's speed factor
(:func:`bench.harness.scaled`), as mjflow's are. Run as a separate process so that it has
a core and a GIL of its own, like mjflow's processes:

    python -m bench.baselines naive --upstream URL --speed 20 --jobs 30 --then U1 \
        --concurrency 13 --storage /tmp/x --out result.json
"""
from __future__ import annotations

import argparse
import json
import queue
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.pace import NAIVE_FETCH_S, QUEUE_FULL_PAUSE_S, RESELLER_LIST_S, scaled

TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")
STORE_THREADS = 4


@dataclass
class StepRecord:
    job: int
    index: int
    label: str
    task_id: str | None = None
    status: str = "pending"
    submitted_at: float | None = None   # the upstream accepted the submit
    detected_at: float | None = None    # the baseline saw the task finished
    stored_at: float | None = None      # the image is in the sink
    error: str | None = None


class Runner:
    """What both baselines share: the client, the sink, counters, records."""

    def __init__(self, args: argparse.Namespace) -> None:
        from worker.settings import load_settings
        from worker.storage import sink_from_url
        from worker.upstream import UpstreamClient

        self.args = args
        self.client = UpstreamClient(args.upstream, profile="midjourney-proxy",
                                     allow_private_urls=True)
        self.settings = load_settings(allow_private_urls=True,
                                      storage_url=f"file://{args.storage}")
        self.sink = sink_from_url(self.settings.storage_url)
        self.pause_s = scaled(QUEUE_FULL_PAUSE_S, args.speed)
        self.deadline = time.monotonic() + args.deadline_s
        self.records: list[StepRecord] = []
        self.queue_full = 0
        self.submits = 0
        self.lock = threading.Lock()
        self.local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = requests.Session()
        return s

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def record(self, job: int, index: int, label: str) -> StepRecord:
        rec = StepRecord(job, index, label)
        with self.lock:
            self.records.append(rec)
        return rec

    def submit(self, send: Callable[[], Any]) -> str | None:
        """Send a submit; on queue full pause and send again. Returns the task id."""
        from worker.upstream import Outcome

        while not self.expired():
            answer = send()
            with self.lock:
                self.submits += 1
            if answer.outcome in (Outcome.ACCEPTED, Outcome.NEEDS_MODAL) and answer.task_id:
                return str(answer.task_id)
            if answer.outcome is Outcome.RETRY_LATER:
                with self.lock:
                    self.queue_full += 1
                time.sleep(self.pause_s)
                continue
            raise RuntimeError(f"submit refused: {answer.outcome.value} {answer.message}")
        return None

    def store(self, rec: StepRecord, task: Any) -> None:
        from worker.storage import StoreRequest, store_step_images

        req = StoreRequest(
            job_id=f"{self.args.kind}-{rec.job}", step_index=rec.index, label=rec.label,
            task_id=task.id, prompt=self.prompt(rec.job),
            image_url=self.client.image_url_for(task),
            headers={"User-Agent": self.client.profile.user_agent},
            allowed_hosts=tuple(self.client.allowed_image_hosts),
        )
        store_step_images(self.sink, self.session(), req, settings=self.settings)
        rec.stored_at = time.time()
        rec.status = "stored"

    def prompt(self, job: int) -> str:
        return f"{self.args.prompt} {job}"

    def next_button(self, task: Any, label: str) -> str:
        for button in task.buttons:
            if (button.label or "").strip() == label and button.customId:
                return button.customId
        raise RuntimeError(f"task {task.id} has no button {label}")


def run_naive(r: Runner) -> None:
    every = scaled(NAIVE_FETCH_S, r.args.speed)

    def wait(task_id: str) -> Any:
        while not r.expired():
            time.sleep(every)
            task = r.client.fetch(task_id)
            if task is not None and (task.status or "") in TERMINAL:
                return task
        return None

    def job(i: int) -> None:
        labels = ["IMAGINE", *r.args.then]
        parent = None
        for index, label in enumerate(labels):
            rec = r.record(i, index, label)
            try:
                if parent is None:
                    task_id = r.submit(partial(r.client.imagine, r.prompt(i)))
                else:
                    custom_id = r.next_button(parent, label)
                    task_id = r.submit(partial(r.client.action, parent.id, custom_id))
                if task_id is None:
                    rec.status = "timeout"
                    return
                rec.task_id, rec.submitted_at = task_id, time.time()
                task = wait(task_id)
                if task is None:
                    rec.status = "timeout"
                    return
                rec.detected_at = time.time()
                if task.status != "SUCCESS":
                    rec.status = "failed"
                    return
                r.store(rec, task)
                parent = task
            except Exception as exc:  # noqa: BLE001 - a script just logs and moves on
                rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"
                return

    with ThreadPoolExecutor(r.args.concurrency) as pool:
        list(pool.map(job, range(r.args.jobs)))


def run_reseller(r: Runner) -> None:
    every = scaled(RESELLER_LIST_S, r.args.speed)
    todo: queue.Queue[tuple[StepRecord, Any]] = queue.Queue()
    in_flight: dict[str, tuple[StepRecord, Any]] = {}
    lock = threading.Lock()
    expected = r.args.jobs * (1 + len(r.args.then))
    finished = threading.Event()
    done_count = [0]

    def finish_one() -> None:
        with lock:
            done_count[0] += 1
            if done_count[0] >= expected:
                finished.set()

    def skip_rest(rec: StepRecord) -> None:
        for _ in r.args.then[rec.index:]:
            finish_one()

    for i in range(r.args.jobs):
        todo.put((r.record(i, 0, "IMAGINE"), None))

    def submitter() -> None:
        while not finished.is_set() and not r.expired():
            with lock:
                full = len(in_flight) >= r.args.window
            if full:
                time.sleep(0.002)
                continue
            try:
                rec, parent = todo.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                if parent is None:
                    task_id = r.submit(partial(r.client.imagine, r.prompt(rec.job)))
                else:
                    custom_id = r.next_button(parent, rec.label)
                    task_id = r.submit(partial(r.client.action, parent.id, custom_id))
            except Exception as exc:  # noqa: BLE001
                rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"
                finish_one()
                skip_rest(rec)
                continue
            if task_id is None:
                return
            rec.task_id, rec.submitted_at = task_id, time.time()
            with lock:
                in_flight[task_id] = (rec, parent)

    def store_and_next(rec: StepRecord, task: Any) -> None:
        try:
            if task.status != "SUCCESS":
                rec.status = "failed"
                skip_rest(rec)
                return
            r.store(rec, task)
            if rec.index < len(r.args.then):
                label = r.args.then[rec.index]
                todo.put((r.record(rec.job, rec.index + 1, label), task))
        except Exception as exc:  # noqa: BLE001
            rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"
            skip_rest(rec)
        finally:
            finish_one()

    pool = ThreadPoolExecutor(STORE_THREADS)
    threading.Thread(target=submitter, daemon=True).start()
    while not finished.is_set() and not r.expired():
        finished.wait(every)
        with lock:
            ids = list(in_flight)
        if not ids:
            continue
        try:
            tasks = r.client.list_by_condition(ids)
        except Exception:  # noqa: BLE001, S112 - the next round asks again
            continue
        now = time.time()
        for task in tasks:
            if (task.status or "") not in TERMINAL:
                continue
            with lock:
                entry = in_flight.pop(task.id, None)
            if entry is not None:
                entry[0].detected_at = now
                pool.submit(store_and_next, entry[0], task)
    pool.shutdown(wait=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("naive", "reseller"))
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--speed", type=float, required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--then", action="append", default=[])
    ap.add_argument("--concurrency", type=int, default=13, help="naive: threads")
    ap.add_argument("--window", type=int, default=13, help="reseller: tasks in flight")
    ap.add_argument("--prompt", default="baseline")
    ap.add_argument("--storage", required=True)
    ap.add_argument("--deadline-s", type=float, default=600.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runner = Runner(args)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    (run_naive if args.kind == "naive" else run_reseller)(runner)
    ended = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    Path(args.out).write_text(json.dumps({
        "kind": args.kind, "started_at": started, "ended_at": ended,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "max_rss_kb": cpu1.ru_maxrss, "queue_full": runner.queue_full,
        "submits": runner.submits, "timed_out": runner.expired(),
        "steps": [asdict(rec) for rec in runner.records],
    }))


if __name__ == "__main__":
    main()
