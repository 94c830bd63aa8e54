"""The verdicts of the chaos soak (:mod:`bench.chaos`), as pure functions over what it
collected at the end of a run: job views from ``/v1``, the simulator's stats and task
timelines, mjflow's Redis counters and queue depths, the S3 listing, the consumer's
record of signed events, the chaos that was applied.

Every check returns a :class:`Row` (shown in the final table) and adds the reasons of
any violation to ``Verdict.violations``; the soak exits 1 if there is one. Nothing here
does I/O, so the checks themselves are tested on synthetic data (``tests/test_chaos.py``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TERMINAL_JOB = frozenset({"succeeded", "partial", "failed", "cancelled"})
TERMINAL_STEP = frozenset({"succeeded", "failed", "cancelled", "skipped"})
EVENT_FOR_STATUS = {"succeeded": "job.succeeded", "partial": "job.partial",
                    "failed": "job.failed", "cancelled": "job.cancelled"}
#: worker/jobs/deadlines.py expiry: running too long, or queued upstream too long
DEADLINE_REASON = ("ran for ", "queued upstream for ")
UPSTREAM_FAILED_REASON = "upstream failed the task"  # worker/jobs/reconcile.py
UPSTREAM_TIMEOUT_REASON = "upstream timed out the task"  # the upstream's own 任务超时
IDLE_QUEUES = ("poll", "deadline", "slots:default", "storing", "finishing", "pending-submit",
               "deliveries:due", "ready:*", "jobs:live")
MAX_LISTED = 8


@dataclass
class Row:
    check: str
    ok: bool | None          # None: information only
    detail: str

    @property
    def mark(self) -> str:
        return "INFO" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class Verdict:
    rows: list[Row] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def add(self, check: str, problems: list[str], detail: str, *, info: bool = False) -> None:
        self.rows.append(Row(check, None if info else not problems, detail))
        self.violations.extend(f"{check}: {p}" for p in problems)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class Collected:
    """Everything the soak gathered after the run (see ``bench.chaos.collect``)."""

    n_jobs: int
    job_ids: list[str]
    submit_errors: list[str]
    views: dict[str, dict[str, Any] | None]
    listing_counts: dict[str, int]
    sim_stats: dict[str, Any]
    timelines: dict[str, dict[str, Any]]          # every upstream task of the simulator
    counters: dict[str, dict[str, int]]           # counter:{name} hashes
    queues: dict[str, int]                        # IDLE_QUEUES depths
    celery: dict[str, int]                        # Celery list keys -> length
    celery_unacked: int
    objects: dict[str, dict[str, Any]]            # S3 key (sink-relative) -> {size, versions}
    heads: dict[str, dict[str, Any]]              # key -> {size, sha256} (images only)
    byte_hashes: dict[str, str]                   # key -> sha256 of the bytes (a sample)
    events: dict[str, list[dict[str, Any]]]       # job id -> events the consumer accepted
    bad_events: list[dict[str, Any]]              # signature failures, unknown jobs
    ambiguous_steps: list[str]                    # steps the worker log says it resubmitted
    chaos: dict[str, Any]
    rss_mb: dict[str, float]
    max_rss_mb: float
    deadlines: dict[str, float]                   # "step" / "upscale" -> seconds
    resubmits: list[dict[str, Any]] = field(default_factory=list)   # {step, at, started}
    lost_answers: dict[str, list[float]] = field(default_factory=dict)  # step -> times
    submit_timeout_s: float = 3.0
    now: float = 0.0


def _few(items: list[Any]) -> str:
    items = list(items)
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(str(i) for i in items[:MAX_LISTED]) + more


def _steps(c: Collected) -> list[tuple[str, dict[str, Any]]]:
    return [(jid, s) for jid, v in c.views.items() if v for s in v["steps"]]


# -- 1. every job terminal ----------------------------------------------------------------
def check_terminal(c: Collected, v: Verdict) -> None:
    problems = []
    term = c.chaos.get("terminal") or {}
    if term and not term.get("in_time"):
        after = term.get("settled_after_chaos_s")
        problems.append(
            f"only {term.get('count_at_limit')} of {len(c.job_ids)} jobs terminal within "
            f"--duration-s {term.get('duration_s', 0):.0f} s; "
            + (f"the rest finished {after:.0f} s after the chaos stopped" if after is not None
               else "the rest did not finish even after the chaos stopped"))
    if len(c.job_ids) != c.n_jobs:
        problems.append(f"{c.n_jobs - len(c.job_ids)} of {c.n_jobs} jobs were never created: "
                        + _few(c.submit_errors))
    missing = [j for j, view in c.views.items() if view is None]
    if missing:
        problems.append(f"{len(missing)} job views unreadable: {_few(missing)}")
    open_jobs = [j for j, view in c.views.items() if view and view["status"] not in TERMINAL_JOB]
    if open_jobs:
        problems.append(f"{len(open_jobs)} jobs not terminal: {_few(open_jobs)}")
    open_steps = [s["id"] for _, s in _steps(c) if s["status"] not in TERMINAL_STEP]
    if open_steps:
        problems.append(f"{len(open_steps)} steps not terminal: {_few(open_steps)}")
    statuses = Counter(view["status"] for view in c.views.values() if view)
    listed = {k: n for k, n in c.listing_counts.items() if n}
    if listed != {k: n for k, n in statuses.items() if n}:
        problems.append(f"GET /v1/jobs?status= counts {listed} differ from the job views "
                        f"{dict(statuses)}")
    finished = c.counters.get("effects", {}).get("job_finished", 0)
    if finished != sum(1 for view in c.views.values() if view and view["finishedAt"]):
        problems.append(f"counter:effects job_finished={finished}, expected one per finished job")
    detail = (f"{sum(statuses.values())}/{c.n_jobs} terminal: "
              + ", ".join(f"{k} {n}" for k, n in sorted(statuses.items()))
              + f"; job_finished effects {finished}")
    v.add("every job terminal", problems, detail)


# -- 2. zero duplicate upstream submissions -------------------------------------------------
def check_duplicates(c: Collected, v: Verdict) -> None:
    dups = c.sim_stats.get("duplicate_submissions", {})
    items = dups.get("items", [])
    submits = c.counters.get("submits", {})
    ambiguous = int(submits.get("ambiguous_resubmits", 0))
    resubmitted = set(c.ambiguous_steps)
    by_click = _steps_by_click(c)
    explained, unexplained = [], []
    for item in items:
        steps = {_step_of_state(c.timelines.get(t, {}).get("state"))
                 for t in item.get("taskIds", [])}
        steps.discard(None)
        if not steps and item.get("kind") == "action":
            found = by_click.get((item.get("parentId"), item.get("customId")))
            steps = {found} if found else set()
        (explained if steps and steps <= resubmitted else unexplained).append(
            f"{item.get('kind')} of step {','.join(sorted(s for s in steps if s)) or '?'}: "
            f"tasks {item.get('taskIds')}")
    problems = []
    if unexplained:
        problems.append(f"{len(unexplained)} duplicate submissions without an ambiguous "
                        f"resubmit behind them: {_few(unexplained)}")
    groundless = [r["step"] for r in c.resubmits if not resubmit_cause(r, c)]
    if groundless:
        problems.append(f"{len(groundless)} resubmits of steps whose submit answer was neither "
                        f"lost (timeout) nor cut off by a kill or the Redis restart: "
                        f"{_few(groundless)}")
    if len(explained) > ambiguous:
        problems.append(f"{len(explained)} duplicates but only {ambiguous} ambiguous resubmits")
    submissions = sum(c.sim_stats.get("submissions", {}).values())
    detail = (f"{submissions} upstream tasks created, {len(items)} duplicates "
              f"({len(unexplained)} unexplained)")
    v.add("zero duplicate submissions", problems, detail)
    adopted = c.counters.get("effects", {}).get("task_adopted", 0)
    causes = Counter(resubmit_cause(r, c) or "no cause" for r in c.resubmits)
    v.add("ambiguous resubmits", [], (
        f"{ambiguous} resubmits after a lost submit answer (causes: "
        f"{dict(causes) or 'none'}), {len(explained)} of them made a duplicate task; "
        f"{submits.get('outcome_unknown', 0)} answers timed out (hung submits), "
        f"{adopted} tasks recovered by a callback carrying our state, "
        f"{submits.get('recovered_from_list', 0)} from the task list. A submit whose answer "
        "is lost is resubmitted when no callback with its state arrives within "
        "MJFLOW_SUBMIT_GRACE_S (all of the task's callbacks dropped, or it waited in the "
        "upstream queue, which sends none) and the profile has no task list to look in"),
        info=True)


def _interruptions(chaos: dict[str, Any]) -> list[tuple[float, float, str]]:
    """Wall-time windows in which a submit's answer could be cut off: worker kills, the
    Redis restart."""
    out = [(at, at + 2.0, "worker killed") for _, what, at in chaos.get("timeline", [])
           if what == "worker SIGKILL"]
    out += [(a, b, "Redis restart") for a, b in chaos.get("redis_down_wall", [])]
    return out


def resubmit_cause(r: dict[str, Any], c: Collected) -> str | None:
    """Why a step was resubmitted: its answer timed out, or the process applying it died
    (a kill or the Redis restart while the submit was in flight); None if neither."""
    if r["step"] in c.lost_answers:
        return "answer timed out"
    started = r.get("started")
    if started is None:
        return None
    lo, hi = started - 2.0, started + c.submit_timeout_s + 3.0
    for a, b, what in _interruptions(c.chaos):
        if a <= hi and b >= lo:
            return what
    return None


def _step_of_state(state: str | None) -> str | None:
    """The step id behind an upstream ``state`` (``stp_x`` or ``stp_x.rN`` for a retry)."""
    return state.split(".r", 1)[0] if state else None


def _steps_by_click(c: Collected) -> dict[tuple[str, str], str]:
    """(parent's upstream task id, customId) -> step id, for action duplicates."""
    out: dict[tuple[str, str], str] = {}
    for view in c.views.values():
        if not view:
            continue
        task_of = {s["id"]: s.get("taskId") for s in view["steps"]}
        for s in view["steps"]:
            if s.get("parent") and s.get("customId"):
                out[(task_of.get(s["parent"]) or "", s["customId"])] = s["id"]
    return out


# -- 3. every SUCCESS image stored exactly once, with the right checksum --------------------
def check_storage(c: Collected, v: Verdict) -> None:
    problems = []
    expected: dict[str, dict[str, Any]] = {}
    succeeded = 0
    no_image = []
    per_job_expected: Counter[str] = Counter()
    for jid, step in _steps(c):
        if step["status"] != "succeeded":
            if step["images"]:
                problems.append(f"step {step['id']} is {step['status']} but lists images")
            continue
        succeeded += 1
        if not step["images"]:
            no_image.append(step["id"])
        for img in step["images"]:
            if img["key"] in expected:
                problems.append(f"key {img['key']} listed by two steps")
            expected[img["key"]] = img
            per_job_expected[jid] += 1
    if no_image:
        problems.append(f"{len(no_image)} succeeded steps without an image: {_few(no_image)}")
    stored = c.counters.get("effects", {}).get("stored", 0)
    if stored != succeeded:
        problems.append(f"counter:effects stored={stored} but {succeeded} steps succeeded")
    manifests = {f"{j}/manifest.json" for j in c.job_ids}
    images_in_s3 = {k for k in c.objects if not k.endswith("/manifest.json")}
    missing = sorted(set(expected) - images_in_s3)
    extra = sorted(images_in_s3 - set(expected))
    if missing:
        problems.append(f"{len(missing)} images missing from S3: {_few(missing)}")
    if extra:
        problems.append(f"{len(extra)} objects in S3 that no job lists: {_few(extra)}")
    missing_manifests = sorted(manifests - set(c.objects))
    stray_manifests = sorted({k for k in c.objects if k.endswith("/manifest.json")} - manifests)
    if missing_manifests:
        problems.append(f"{len(missing_manifests)} job manifests missing: {_few(missing_manifests)}")
    if stray_manifests:
        problems.append(f"{len(stray_manifests)} manifests of unknown jobs")
    per_job_s3 = Counter(k.split("/", 1)[0] for k in images_in_s3)
    off = [j for j in set(per_job_s3) | set(per_job_expected) if per_job_s3[j] != per_job_expected[j]]
    if off:
        problems.append(f"{len(off)} jobs whose object count differs from their succeeded "
                        f"steps: {_few(off)}")
    bad_meta = []
    for key, img in expected.items():
        head = c.heads.get(key)
        if head is None:
            continue    # already reported as missing
        if head.get("sha256") != img["sha256"] or head.get("size") != img["bytes"]:
            bad_meta.append(f"{key} (S3 {head.get('sha256', '')[:12]}/{head.get('size')}, "
                            f"job {img['sha256'][:12]}/{img['bytes']})")
    if bad_meta:
        problems.append(f"{len(bad_meta)} objects whose sha256 metadata or size differs from "
                        f"the job view: {_few(bad_meta)}")
    bad_bytes = [k for k, h in c.byte_hashes.items() if k in expected and h != expected[k]["sha256"]]
    if bad_bytes:
        problems.append(f"{len(bad_bytes)} objects whose bytes do not hash to the recorded "
                        f"sha256: {_few(bad_bytes)}")
    rewritten = {k: o for k, o in c.objects.items() if o.get("versions", 1) > 1}
    rewritten_images = {k: o for k, o in rewritten.items() if not k.endswith("/manifest.json")}
    changed = [k for k, o in rewritten_images.items() if len(set(o.get("etags") or [])) > 1]
    if changed:
        problems.append(f"{len(changed)} images overwritten with different bytes (bucket "
                        f"versions): {_few(changed)}")
    causes = Counter(rewrite_cause(o, c.chaos) for k, o in rewritten_images.items()
                     if k not in changed)
    storage = c.counters.get("storage", {})
    detail = (f"{succeeded} steps succeeded = {stored} stored effects = {len(images_in_s3)} "
              f"images in S3; sha256 metadata and size checked on {len(c.heads)}, bytes "
              f"re-hashed on {len(c.byte_hashes)}; {len(manifests & set(c.objects))} manifests; "
              f"store retries {storage.get('retryable_failures', 0)}")
    v.add("images stored exactly once", problems, detail)
    v.add("identical rewrites", [], (
        f"{sum(causes.values())} of {len(images_in_s3)} image keys have more than one bucket "
        f"version, all with the same bytes ({dict(causes) or 'none'}); "
        f"{sum(1 for k in rewritten if k.endswith('/manifest.json'))} manifests rewritten "
        "(a finish re-run writes fresh presigned URLs). One object per image, so not a "
        "violation; see docs/benchmarks.md"), info=True)


def rewrite_cause(obj: dict[str, Any], chaos: dict[str, Any]) -> str:
    """Why a key got a second identical version: a PUT retried by botocore after the S3
    outage reset its connection, or a second store of the step racing the first."""
    window = chaos.get("s3_outage_wall") or [None, None]
    times = sorted(obj.get("times") or [])
    if window[0] is not None and any(window[0] - 5 <= t <= (window[1] or t) + 5 for t in times):
        return "around the S3 outage"
    if len(times) > 1 and times[-1] - times[0] < 2.0:
        return "two stores within 2 s"
    return "a store re-run later"



# -- 4. every job event delivered, signed --------------------------------------------------
def check_events(c: Collected, v: Verdict) -> None:
    problems = []
    if c.bad_events:
        problems.append(f"{len(c.bad_events)} events failed verification or named an unknown "
                        f"job: {_few([e.get('why') for e in c.bad_events])}")
    missing, multi, wrong, undelivered = [], [], [], []
    dup_copies = 0
    for jid, view in c.views.items():
        if not view:
            continue
        got = c.events.get(jid, [])
        ids = Counter(e["msg_id"] for e in got)
        if not ids:
            missing.append(jid)
            continue
        # a step that succeeded after mjflow gave up on it finishes its job once more
        again = sum(1 for s in view["steps"] if s.get("lateSucceeded"))
        if len(ids) > 1 + again:
            multi.append(f"{jid} ({len(ids)} webhook-ids)")
        dup_copies += sum(n - 1 for n in ids.values())
        event = got[-1]
        keys = [i["key"] for s in view["steps"] for i in s["images"]]
        if (event["type"] != EVENT_FOR_STATUS.get(view["status"])
                or event["data"].get("jobId") != jid
                or event["data"].get("status") != view["status"]
                or event["data"].get("images") != keys):
            wrong.append(f"{jid} ({event['type']} vs {view['status']})")
        logged = {d.get("webhook_id") for d in view.get("deliveries") or []}
        states = [d.get("state") for d in view.get("deliveries") or []]
        if set(ids) - logged or any(s != "delivered" for s in states):
            undelivered.append(f"{jid} ({states})")
    if missing:
        problems.append(f"{len(missing)} jobs without a signed event at the consumer: "
                        f"{_few(missing)}")
    if multi:
        problems.append(f"{len(multi)} jobs got more than one distinct event: {_few(multi)}")
    if wrong:
        problems.append(f"{len(wrong)} events disagree with the job view: {_few(wrong)}")
    if undelivered:
        problems.append(f"{len(undelivered)} jobs whose delivery log is not 'delivered' with "
                        f"the webhook-id the consumer saw: {_few(undelivered)}")
    received = sum(len(e) for e in c.events.values())
    attempts = c.counters.get("webhook_attempts", {})
    detail = (f"{received} signed events received for {len(c.events)} jobs, "
              f"{dup_copies} redelivered copies (same webhook-id, counted, tolerated); "
              f"attempts by result {dict(sorted(attempts.items()))}; "
              f"{len(c.bad_events)} bad signatures")
    v.add("every job event delivered, signed", problems, detail)


# -- 5. no step past its deadline ----------------------------------------------------------
def _state_times(tl: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(submitted, started running, terminal) in ms from a simulator timeline."""
    submitted = started = ended = None
    for e in tl.get("events", []):
        if e.get("event") == "submitted" and submitted is None:
            submitted = e["t_ms"]
        if e.get("event") == "state":
            if e.get("status") == "SUBMITTED" and started is None:
                started = e["t_ms"]
            if e.get("status") in ("SUCCESS", "FAILURE") and ended is None:
                ended = e["t_ms"]
    return submitted, started, ended


def blocked_by_stuck(task_id: str, timelines: dict[str, dict[str, Any]]) -> bool:
    """True if ``task_id`` waited in its account's queue while stuck tasks held a slot there
    (the upstream could not start it: a deadline failure is the upstream's, not mjflow's)."""
    tl = timelines.get(task_id)
    if not tl:
        return False
    submitted, started, _ = _state_times(tl)
    if submitted is None:
        return False
    wait_end = started if started is not None else 2**62
    for other in timelines.values():
        if not other.get("stuck") or other.get("account") != tl.get("account"):
            continue
        _, o_start, o_end = _state_times(other)
        if o_start is None:
            continue
        if o_start < wait_end and (o_end or 2**62) > submitted:
            return True
    return False


def check_deadlines(c: Collected, v: Verdict) -> None:
    problems = []
    stuck_ok = sim_failed = upstream_timeout = blocked = skipped = 0
    unexplained = []
    for jid, step in _steps(c):
        if step["status"] == "skipped":
            skipped += 1
            continue
        if step["status"] != "failed":
            continue
        reason = step.get("failReason") or ""
        tl = c.timelines.get(step.get("taskId") or "", {})
        if reason.startswith(DEADLINE_REASON):
            if tl.get("stuck"):
                stuck_ok += 1
            elif blocked_by_stuck(step["taskId"], c.timelines):
                blocked += 1
            else:
                unexplained.append(f"{step['id']} task {step.get('taskId')}: {reason}")
        elif reason.startswith(UPSTREAM_FAILED_REASON) and tl.get("willFail"):
            sim_failed += 1
        elif reason.startswith(UPSTREAM_TIMEOUT_REASON) and tl.get("stuck"):
            upstream_timeout += 1
        else:
            unexplained.append(f"{step['id']} ({step['label']}, task {step.get('taskId')}): "
                               f"{reason}")
    if unexplained:
        problems.append(f"{len(unexplained)} steps failed for a reason the injected faults do "
                        f"not explain: {_few(unexplained)}")
    late = [s["id"] for _, s in _steps(c) if s["status"] not in TERMINAL_STEP]
    if late:
        problems.append(f"{len(late)} steps still open at the end: {_few(late)}")
    if c.queues.get("deadline", 0):
        problems.append(f"{c.queues['deadline']} steps still in the deadline index")
    stuck_tasks = sum(1 for t in c.timelines.values() if t.get("stuck"))
    fail_tasks = sum(1 for t in c.timelines.values() if t.get("willFail"))
    detail = (f"failed by deadline: {stuck_ok} stuck tasks (of {stuck_tasks} stuck upstream), "
              f"{blocked} queued behind stuck tasks on their account; {sim_failed} injected "
              f"failures (of {fail_tasks}), {upstream_timeout} upstream timeouts; "
              f"{skipped} children skipped; deadlines {c.deadlines}")
    v.add("no step past its deadline", problems, detail)


# -- 6. back to idle ----------------------------------------------------------------------
def check_idle(c: Collected, v: Verdict) -> None:
    problems = []
    busy = {k: n for k, n in c.queues.items() if n}
    if busy:
        problems.append(f"not empty: {busy}")
    celery_busy = {k: n for k, n in c.celery.items() if n}
    if celery_busy:
        problems.append(f"Celery queues not empty: {celery_busy}")
    fat = {k: mb for k, mb in c.rss_mb.items() if k.startswith("worker") and mb > c.max_rss_mb}
    if fat:
        problems.append(f"RSS above {c.max_rss_mb:.0f} MB: {fat}")
    rss = ", ".join(f"{k} {mb:.0f} MB" for k, mb in c.rss_mb.items())
    detail = (f"{', '.join(IDLE_QUEUES)} all 0: {not busy}; Celery lists "
              f"{sum(c.celery.values())} messages; {c.celery_unacked} unacked messages of "
              f"killed workers (Celery restores them after its visibility timeout; every task "
              f"is idempotent); RSS {rss}")
    v.add("queues and memory back to idle", problems, detail)


# -- 7. the chaos really happened -----------------------------------------------------------
def check_chaos(c: Collected, v: Verdict, expect: dict[str, Any]) -> None:
    ch = c.chaos
    problems = []
    if ch.get("worker_kills", 0) < expect.get("worker_kills", 1):
        problems.append(f"only {ch.get('worker_kills', 0)} worker kills")
    for name in ("web_restarts", "redis_restarts", "s3_outages"):
        if ch.get(name, 0) < 1:
            problems.append(f"no {name.replace('_', ' ')[:-1]}")
    if ch.get("redis_restarts") and not ch.get("redis_aof_ok"):
        problems.append("Redis lost acknowledged writes across its restart (AOF)")
    faults = c.sim_stats.get("faults", {})
    cb = c.sim_stats.get("callbacks", {})
    if expect.get("burst") and c.sim_stats.get("queue_full_answers", 0) < expect["burst"]:
        problems.append(f"queue-full burst of {expect['burst']} not answered")
    detail = (f"worker SIGKILLs {ch.get('worker_kills', 0)}, web restarts "
              f"{ch.get('web_restarts', 0)}, Redis restarts {ch.get('redis_restarts', 0)} "
              f"(AOF kept writes: {ch.get('redis_aof_ok')}), S3 outages "
              f"{ch.get('s3_outages', 0)} ({ch.get('s3_outage_s', 0):.0f} s, connections "
              f"refused {ch.get('s3_refused', 0)}); callbacks dropped {cb.get('dropped', 0)}, "
              f"duplicated {cb.get('duplicated', 0)}, failed {cb.get('failed', 0)}; upstream "
              f"500s {faults.get('http_500', 0)}, hung submits {faults.get('hung_submit', 0)}, "
              f"stuck {faults.get('stuck', 0)}, failed {faults.get('fail', 0)}; queue-full "
              f"answers {c.sim_stats.get('queue_full_answers', 0)}")
    v.add("chaos applied", problems, detail)


def check_dispatch(c: Collected, v: Verdict) -> None:
    w = c.chaos.get("watch") or {}
    if not w:
        return
    answers = dict(sorted(c.counters.get("answers", {}).items()))
    v.add("dispatch health", [], (
        f"tick lock held longer than {w.get('stall_after_s', 0):.0f} s during "
        f"{w.get('lock_stall_s', 0):.0f} s of {w.get('seconds', 0):.0f} s "
        f"(longest {w.get('max_lock_age_s', 0):.0f} s; a tick interrupted by a kill or the "
        f"Redis restart leaves it until its TTL); dispatch window min "
        f"{w.get('window_min', 0):.1f} of {w.get('window_max', 0)}, below a quarter for "
        f"{w.get('window_low_s', 0):.0f} s (submit answers {answers or 'none'}; "
        f"retry_later answers shrink it); slots in use max {w.get('slots_max', 0)}"),
        info=True)


def check_machine(c: Collected, v: Verdict) -> None:
    cpu = c.chaos.get("cpu") or {}
    if not cpu:
        return
    v.add("machine load", [], (
        f"over the {cpu['seconds']:.0f} s of the run the soak's processes used "
        f"{cpu['soak_cores']:.2f} cores on average and other processes "
        f"{cpu['other_cores']:.2f}, of {cpu['cores']}"), info=True)


def evaluate(c: Collected, expect: dict[str, Any] | None = None) -> Verdict:
    v = Verdict()
    check_terminal(c, v)
    check_duplicates(c, v)
    check_storage(c, v)
    check_events(c, v)
    check_deadlines(c, v)
    check_idle(c, v)
    check_chaos(c, v, expect or {})
    check_dispatch(c, v)
    check_machine(c, v)
    return v


def render(verdict: Verdict, width: int = 100) -> str:
    """The table: one row per check, its mark, and the wrapped detail."""
    import textwrap

    name_w = max(len(r.check) for r in verdict.rows)
    lines = [f"{'check':<{name_w}}  result  detail", "-" * width]
    for r in verdict.rows:
        wrapped = textwrap.wrap(r.detail, width - name_w - 10) or [""]
        lines.append(f"{r.check:<{name_w}}  {r.mark:<6}  {wrapped[0]}")
        lines.extend(f"{'':<{name_w}}          {w}" for w in wrapped[1:])
    lines.append("-" * width)
    if verdict.violations:
        lines.append(f"{len(verdict.violations)} violation(s):")
        lines.extend(f"  - {p}" for p in verdict.violations)
    else:
        lines.append("no violations")
    return "\n".join(lines)
