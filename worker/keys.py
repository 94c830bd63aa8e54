"""Every Redis key mjflow uses, built here and nowhere else.

All keys live under one namespace (``MJFLOW_KEY_PREFIX``, default ``mjflow``); tests use a
prefix of their own. Layout (``{p}`` is the prefix):

    {p}:job:{job_id}                hash   job record (spec, status, batch, times, metadata)
    {p}:job:{job_id}:steps          list   the job's step ids, in creation order
    {p}:job:{job_id}:events         list   job timeline entries (JSON)
    {p}:step:{step_id}              hash   step record (status, progress, task id, buttons, images)
    {p}:step:{step_id}:seen         set    task ids seen in callbacks carrying the step's state
                                           before its task id was known (lost submit answers)
    {p}:task:{task_id}              string upstream task id -> step id
    {p}:jobs                        zset   all job ids by creation time (listing, cursor)
    {p}:jobs:live                   set    job ids not yet finished
    {p}:ready:{route}/{lane}        zset   queued steps of one lane (batch or "interactive") that one
                                           route can serve (worker.jobs.routes), by priority
    {p}:lanes                       zset   "{route}/{lane}" queues with steps, scored by last service (fairness)
    {p}:dispatch                    hash   served_seq: the counter behind those scores
    {p}:poll                        zset   in-flight step -> next check time (unix s)
    {p}:inbox                       hash   step -> the most advanced callback snapshot not yet
                                           reconciled (JSON; coalesced: one per step)
    {p}:inbox:rank                  hash   step -> rank of that snapshot (status rank, progress)
    {p}:inbox:dirty                 zset   steps with a reconcile message on its way -> when the
                                           tick sends it again (should it be lost)
    {p}:confirm                     zset   steps whose terminal callback waits for the upstream's
                                           confirmation -> next claim time (re-scored on claim)
    {p}:durations:{upstream}        hash   typical upstream run time per action/mode: sum, n
    {p}:callbacks:health:{upstream} hash   last_lost: when a poll last found what a callback
                                           should have told (the upstream is losing callbacks)
    {p}:deadline                    zset   in-flight step -> deadline (unix s)
    {p}:late                        zset   steps mjflow gave up on (deadline, lost task) whose
                                           task may still succeed -> next check (unix s)
    {p}:pending-submit              zset   steps whose submit answer was lost -> resubmit-after time
    {p}:storing                     zset   steps whose upstream task succeeded -> next store attempt
    {p}:finishing                   zset   finished jobs whose manifest/event are not yet written
    {p}:slots:{upstream}            zset   slot leases: step id -> lease expiry (unix s)
    {p}:window:{upstream}           hash   dispatch window: size, paused, reason, since, capacity, breaker (flow/window_rules)
    {p}:answers:{upstream}          list   recent upstream answers (capped, for the dashboard)
    {p}:job:{job_id}:spend          hash   cost of the job's accepted tasks: upstream -> amount, total
    {p}:batch:{batch_id}:spend      hash   the same for a batch
    {p}:spend:{YYYY-MM-DD}          hash   the same for a UTC day (kept 8 days)
    {p}:batch:{batch_id}            hash   batch record (name, created, updated, resumed, max_cost)
    {p}:batch:{batch_id}:jobs       zset   job ids of the batch by creation
    {p}:batch:{batch_id}:keys       hash   item key -> job id ("~" + job id while being created)
    {p}:batches                     zset   batch ids by creation time
    {p}:idem:{key}                  hash   Idempotency-Key -> job id + body hash
    {p}:retention                   zset   finished job -> purge time
    {p}:delivery:{delivery_id}      hash   one outgoing event: url, body, attempts, state
    {p}:job:{job_id}:deliveries     list   delivery ids of the job (the delivery log lives in each)
    {p}:delivery:{delivery_id}:log  list   attempts (JSON: at, status, latency_ms, error)
    {p}:deliveries:due              zset   delivery id -> next attempt time (or lease expiry while sending)
    {p}:deliveries:failed           zset   delivery id -> time it gave up (state failed; replay removes it)
    {p}:endpoints:disabled          set    consumer URLs disabled after HTTP 410
    {p}:lock:{name}                 string singleton locks (beat tick)
    {p}:session:{sha256}            string dashboard session (SHA-256 of its id) -> key fingerprint, expiring
    {p}:receiver                    hash   last probe of MJFLOW_PUBLIC_URL: up (1/0), at, error
    {p}:counter:{name}              hash   counters for metrics (by label)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "mjflow"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # jobs and steps
    def job(self, job_id: str) -> str:
        return self._k("job", job_id)

    def job_steps(self, job_id: str) -> str:
        return self._k("job", job_id, "steps")

    def job_events(self, job_id: str) -> str:
        return self._k("job", job_id, "events")

    def step(self, step_id: str) -> str:
        return self._k("step", step_id)

    def step_seen(self, step_id: str) -> str:
        return self._k("step", step_id, "seen")

    def task(self, task_id: str) -> str:
        return self._k("task", task_id)

    def jobs(self) -> str:
        return self._k("jobs")

    def jobs_live(self) -> str:
        return self._k("jobs", "live")

    # dispatch
    def ready(self, queue: str) -> str:
        return self._k("ready", queue)

    def lanes(self) -> str:
        return self._k("lanes")

    def dispatch(self) -> str:
        return self._k("dispatch")

    def poll(self) -> str:
        return self._k("poll")

    def inbox(self) -> str:
        return self._k("inbox")

    def inbox_rank(self) -> str:
        return self._k("inbox", "rank")

    def inbox_dirty(self) -> str:
        return self._k("inbox", "dirty")

    def confirm(self) -> str:
        return self._k("confirm")

    def durations(self, upstream: str) -> str:
        return self._k("durations", upstream)

    def callbacks_health(self, upstream: str) -> str:
        return self._k("callbacks", "health", upstream)

    def deadline(self) -> str:
        return self._k("deadline")

    def late(self) -> str:
        return self._k("late")

    def pending_submit(self) -> str:
        return self._k("pending-submit")

    def storing(self) -> str:
        return self._k("storing")

    def finishing(self) -> str:
        return self._k("finishing")

    def slots(self, upstream: str) -> str:
        return self._k("slots", upstream)

    def window(self, upstream: str) -> str:
        return self._k("window", upstream)

    def answers(self, upstream: str) -> str:
        return self._k("answers", upstream)

    # spend (worker.flow.budget): upstream name (and "total") -> amount
    def job_spend(self, job_id: str) -> str:
        return self._k("job", job_id, "spend")

    def batch_spend(self, batch_id: str) -> str:
        return self._k("batch", batch_id, "spend")

    def spend_day(self, day: str) -> str:
        return self._k("spend", day)

    # batches and idempotency
    def batch(self, batch_id: str) -> str:
        return self._k("batch", batch_id)

    def batch_jobs(self, batch_id: str) -> str:
        return self._k("batch", batch_id, "jobs")

    def batch_keys(self, batch_id: str) -> str:
        return self._k("batch", batch_id, "keys")

    def batches(self) -> str:
        return self._k("batches")

    def idem(self, key: str) -> str:
        return self._k("idem", key)

    def retention(self) -> str:
        return self._k("retention")

    # outgoing webhooks
    def delivery(self, delivery_id: str) -> str:
        return self._k("delivery", delivery_id)

    def delivery_log(self, delivery_id: str) -> str:
        return self._k("delivery", delivery_id, "log")

    def job_deliveries(self, job_id: str) -> str:
        return self._k("job", job_id, "deliveries")

    def deliveries_due(self) -> str:
        return self._k("deliveries", "due")

    def deliveries_failed(self) -> str:
        return self._k("deliveries", "failed")

    def endpoints_disabled(self) -> str:
        return self._k("endpoints", "disabled")

    # misc
    def session(self, digest: str) -> str:
        return self._k("session", digest)

    def lock(self, name: str) -> str:
        return self._k("lock", name)

    def receiver(self) -> str:
        return self._k("receiver")

    def counter(self, name: str) -> str:
        return self._k("counter", name)

    def pattern(self) -> str:
        """Glob matching every key of this namespace (tests use it to clean up)."""
        return self._k("*")
