"""Prometheus metrics computed from Redis at scrape time.

Why a custom collector (and why that is multi-process safe)
-----------------------------------------------------------
mjflow runs as many processes: gunicorn workers for the web app, Celery workers (prefork
children) and beat. The usual ``prometheus_client`` objects (``Counter``, ``Gauge``...) keep
their values in the memory of the process that increments them, so every process would
export its own partial numbers and a scrape would hit one of them at random
(``prometheus_client``'s ``multiprocess`` mode works around that with mmap files and only
for one host).

mjflow keeps all of its state in Redis already, and every counter the workers need is a
Redis hash (``{p}:counter:{name}``, incremented with ``HINCRBY`` by whichever process did
the work). So the exporter holds **no** state of its own: :class:`RedisCollector` reads
Redis when ``/metrics`` is scraped and yields metric families built from what it read.
Any process that can reach Redis (any gunicorn worker) gives the same, complete answer;
workers need no HTTP endpoint; restarts lose nothing. The web app registers the collector
in a fresh ``CollectorRegistry`` of its own (never the global ``REGISTRY``), so several
apps in one process (tests) do not clash and no per-process default metrics leak in.

Everything here costs a bounded number of Redis calls (``SCARD``/``ZCARD``/``HGETALL`` on
small hashes, pipelined), independent of the number of jobs. The one exception-free
guarantee: if Redis does not answer, the scrape still succeeds with ``mjflow_redis_up 0``.

Step durations are histograms kept in Redis too: :func:`~worker.jobs.durations.observe_step_duration` adds one
observation (bucket counter + sum + count, in one ``MULTI``) to the hash
``{p}:counter:step_duration:{action}`` and counts the action in ``{p}:counter:step_duration``
(the index the collector reads to find the actions). Call it with ``tx.pipe`` from inside
``JobStore.mutate`` to count a step exactly once, together with its transition.

Metrics (all prefixed ``mjflow_``)
----------------------------------
Gauges: ``jobs_live`` (SCARD jobs:live), ``jobs_stored`` (ZCARD jobs, i.e. not yet purged
by retention), ``jobs_finishing``, ``steps{state=queued|submitting|in_flight|storing}``,
``lanes``, ``slots_in_use``, ``window_size``, ``window_max``, ``dispatch_paused``,
``dispatch_cooldown_seconds``, ``window_capacity`` (learned from queue-full answers; the
max until one came), ``dispatch_breaker_open`` (1 while the submit breaker is open or
probing), ``submit_consecutive_failures``, ``deliveries_pending``, ``deliveries_failed``,
``oldest_in_flight_step_age_seconds``, ``redis_up``, ``scrape_duration_seconds``,
``callbacks_reachable`` (1 unless the last probe of ``MJFLOW_PUBLIC_URL`` failed, see
:mod:`worker.flow.receiver`; only where callbacks are configured).

Counters: ``effects_total{effect}``, ``callbacks_received_total``,
``callbacks_accepted_total``, ``callbacks_rejected_total{reason}``,
``callbacks_reconciled_total{result}``, ``poll_rounds_total``, ``polled_tasks_total``,
``steps_recovered_total``, ``steps_lost_total``, ``poll_failures_total``,
``submit_outcome_unknown_total``, ``ambiguous_resubmits_total``,
``submits_recovered_from_list_total``, ``upstream_answers_total{outcome}``,
``storage_bytes_total``, ``storage_images_total``, ``storage_failures_total{kind}``,
``webhook_attempts_total{result}``; fields of these hashes that are not mapped to a name
above appear in a catch-all family (``poll_events_total{event}``,
``submit_events_total{event}``, ``storage_events_total{event}``).

Histogram: ``step_duration_seconds{action}``.

Oldest in-flight step age: ``{p}:deadline`` scores are ``accepted time + deadline_s`` and
``deadline_s`` is either ``step_deadline_s`` or ``upscale_deadline_s``. The step accepted
first therefore has a score at most ``|step_deadline_s - upscale_deadline_s|`` above the
lowest score, so the collector reads only that window (capped at
``OLDEST_SCAN_LIMIT`` members), takes ``min(times.submitting, times.submitted)`` of each and
reports ``now - oldest``. Steps still submitting (``{p}:pending-submit``) are included from
the head of that zset (also capped). 0 when nothing is in flight.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from worker.delivery import failed_count, pending_count
from worker.flow import budget, receiver
from worker.jobs.durations import STEP_DURATION, STEP_DURATION_BUCKETS
from worker.jobs.model import DEFAULT_UPSTREAM
from worker.keys import Keys

PREFIX = "mjflow_"

OLDEST_SCAN_LIMIT = 200
PENDING_SCAN_LIMIT = 25

# counter hash -> ({field: (metric name, help)}, catch-all (name, label, help) or None)
_SIMPLE_COUNTERS: dict[str, tuple[dict[str, tuple[str, str]], tuple[str, str, str] | None]] = {
    "polls": (
        {
            "rounds": ("poll_rounds", "Poll rounds run by the beat tick."),
            "tasks": ("polled_tasks", "Upstream tasks fetched by polling."),
            "recovered": ("steps_recovered",
                          "Steps whose state polling recovered (e.g. a missed callback)."),
            "lost": ("steps_lost", "Steps whose upstream task went missing."),
            "failed": ("poll_failures", "Poll requests that failed."),
        },
        ("poll_events", "event", "Other polling events."),
    ),
    "submits": (
        {
            "outcome_unknown": ("submit_outcome_unknown", "Submits whose answer was lost."),
            "ambiguous_resubmits": ("ambiguous_resubmits",
                                    "Steps resubmitted after an unknown submit outcome."),
            "recovered_from_list": ("submits_recovered_from_list",
                                    "Lost submits found again in the upstream task list."),
            "recovered_from_callbacks": ("submits_recovered_from_callbacks",
                                         "Lost submits found by a task id seen in a callback."),
        },
        ("submit_events", "event", "Other submit events."),
    ),
    "storage": (
        {
            "bytes": ("storage_bytes", "Bytes of images written to storage (S3 or files)."),
            "images": ("storage_images", "Images written to storage."),
        },
        ("storage_events", "event", "Other storage events."),
    ),
}
_STORAGE_FAILURES = {"retryable_failures": "retryable", "permanent_failures": "permanent"}


def _int(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _histogram_buckets(h: dict[str, str], defaults: Iterable[float] = STEP_DURATION_BUCKETS
                       ) -> tuple[list[tuple[str, float]], float, int]:
    """Non-cumulative ``le:<bound>`` fields -> cumulative Prometheus buckets.

    Every default bound is exposed (so all series share the same ``le`` values, as
    ``histogram_quantile`` over aggregated series needs), plus any other bound found.
    """
    counts: dict[float, int] = {float(b): 0 for b in defaults}
    for f, v in h.items():
        if f.startswith("le:"):
            try:
                bound = float(f[3:])
            except ValueError:
                continue
            counts[bound] = counts.get(bound, 0) + _int(v)
    count = _int(h.get("count"))
    out: list[tuple[str, float]] = []
    acc = 0
    for bound in sorted(counts):
        if math.isinf(bound) or math.isnan(bound):
            continue
        acc += counts[bound]
        out.append((floatToGoString(bound), acc))
    out.append(("+Inf", max(count, acc)))
    return out, _float(h.get("sum")), max(count, acc)


class RedisCollector(Collector):
    """Yields mjflow's metric families, computed from Redis on every ``collect()``."""

    COUNTER_HASHES = ("effects", "callbacks", "polls", "submits", "answers", "storage",
                      "webhook_attempts", STEP_DURATION)

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    # prometheus_client calls describe() at registration when present; returning nothing
    # keeps registration free of Redis calls (and the metric names unchecked, which is
    # fine: the registry is ours alone).
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        try:
            families = self._families(time.time())
            up = 1
        except (redis.RedisError, OSError):
            families, up = [], 0
        yield from families
        yield GaugeMetricFamily(PREFIX + "redis_up",
                                "1 if Redis answered this scrape, else 0.", value=up)
        yield GaugeMetricFamily(PREFIX + "scrape_duration_seconds",
                                "Time spent reading Redis for this scrape.",
                                value=time.perf_counter() - start)

    # -- reading ----------------------------------------------------------------------
    def _families(self, now: float) -> list[Metric]:
        e = self.engine
        r: redis.Redis = e.r
        k: Keys = e.keys
        p = r.pipeline(transaction=False)
        p.scard(k.jobs_live())
        p.zcard(k.jobs())
        p.zcard(k.finishing())
        p.zrange(k.lanes(), 0, -1)
        p.zcard(k.poll())
        p.zcard(k.storing())
        p.zcard(k.pending_submit())
        p.zrange(k.deadline(), 0, 0, withscores=True)
        p.zrange(k.pending_submit(), 0, PENDING_SCAN_LIMIT - 1)
        for name in self.COUNTER_HASHES:
            p.hgetall(k.counter(name))
        res = p.execute()
        live, stored, finishing, lanes, polling, storing, pending, head, pend_head = res[:9]
        counters = dict(zip(self.COUNTER_HASHES, res[9:]))

        # second round: per-lane queue sizes, per-action histograms, the deadline window
        actions = sorted(counters[STEP_DURATION])
        p = r.pipeline(transaction=False)
        for lane in lanes:
            p.zcard(k.ready(lane))
        for action in actions:
            p.hgetall(k.counter(f"{STEP_DURATION}:{action}"))
        if head:
            s = e.settings
            spread = abs(float(s.step_deadline_s) - float(s.upscale_deadline_s))
            p.zrangebyscore(k.deadline(), "-inf", head[0][1] + spread,
                            start=0, num=OLDEST_SCAN_LIMIT)
        res = p.execute()
        queued = sum(int(n) for n in res[:len(lanes)])
        hists = dict(zip(actions, res[len(lanes):len(lanes) + len(actions)]))
        candidates = list(res[-1]) if head else []
        candidates += [sid for sid in pend_head if sid not in candidates]
        oldest_age = self._oldest_age(candidates, now)

        out: list[Metric] = []
        g = GaugeMetricFamily
        out.append(g(PREFIX + "jobs_live", "Jobs not yet finished (SCARD jobs:live).",
                     value=int(live)))
        out.append(g(PREFIX + "jobs_stored", "Jobs kept in Redis, finished or not "
                     "(ZCARD jobs; shrinks when retention purges).", value=int(stored)))
        out.append(g(PREFIX + "jobs_finishing", "Finished jobs whose manifest/event is not "
                     "written yet.", value=int(finishing)))
        steps = g(PREFIX + "steps", "Steps by dispatch state: queued (waiting for a slot), "
                  "submitting, in_flight (accepted upstream, polled), storing.",
                  labels=["state"])
        steps.add_metric(["queued"], queued)
        steps.add_metric(["submitting"], int(pending))
        steps.add_metric(["in_flight"], int(polling))
        steps.add_metric(["storing"], int(storing))
        out.append(steps)
        out.append(g(PREFIX + "lanes", "Lanes (batches, interactive) with queued steps.",
                     value=len(lanes)))
        out.append(g(PREFIX + "oldest_in_flight_step_age_seconds",
                     "Seconds since the oldest in-flight step was submitted (0 if none).",
                     value=oldest_age))

        out += self._window(now)
        if e.callbacks_configured:
            out.append(g(PREFIX + "callbacks_reachable", "1 unless the last probe of "
                         "MJFLOW_PUBLIC_URL (the callback receiver) failed; 0 while callbacks "
                         "cannot arrive and steps are polled at the no-callback pace.",
                         value=1 if receiver.answers(r, k) else 0))
        out += self._deliveries()
        out += self._counters(counters)
        out.append(self._histogram(hists))
        return out

    def _oldest_age(self, step_ids: list[str], now: float) -> float:
        if not step_ids:
            return 0.0
        oldest: float | None = None
        for times in self.engine.store.step_times(step_ids):
            started = [float(times[n]) for n in ("submitting", "submitted") if times.get(n)]
            if started and (oldest is None or min(started) < oldest):
                oldest = min(started)
        return max(0.0, now - oldest) if oldest is not None else 0.0

    def _window(self, now: float) -> list[Metric]:
        """The dispatch window of every upstream of the fleet, labelled ``upstream``."""
        g = GaugeMetricFamily
        fams = {
            "slots_in_use": g(PREFIX + "slots_in_use", "Dispatch slots leased (steps at the "
                              "upstream).", labels=["upstream"]),
            "window_size": g(PREFIX + "window_size", "Current adaptive (AIMD) dispatch window "
                             "size.", labels=["upstream"]),
            "window_max": g(PREFIX + "window_max", "Maximum dispatch window (maxInFlight, "
                            "MJFLOW_MAX_IN_FLIGHT).", labels=["upstream"]),
            "dispatch_paused": g(PREFIX + "dispatch_paused", "1 while dispatch to the upstream "
                                 "is paused (out of credit, auth failure) until an operator "
                                 "resumes it.", labels=["upstream"]),
            "dispatch_cooldown_seconds": g(PREFIX + "dispatch_cooldown_seconds", "Seconds left "
                                           "in the queue-full cool-down (0 if none).",
                                           labels=["upstream"]),
            "spend_today": g(PREFIX + "spend_today", "Cost of the tasks the upstream accepted "
                             "today (UTC), in the unit of its costs.", labels=["upstream"]),
            "window_capacity": g(PREFIX + "window_capacity", "Upstream capacity learned from "
                                 "queue-full answers (the window maximum until one came).",
                                 labels=["upstream"]),
            "dispatch_breaker_open": g(PREFIX + "dispatch_breaker_open", "1 while the submit "
                                       "breaker holds dispatch (a run of 5xx/timeouts), or "
                                       "lets one probe through.", labels=["upstream"]),
            "submit_consecutive_failures": g(PREFIX + "submit_consecutive_failures", "Submits "
                                             "failed in a row (5xx, timeouts) since the last "
                                             "accepted one.", labels=["upstream"]),
        }
        for member in self.engine.fleet:
            st = member.window.state()
            values = {"slots_in_use": int(st["inUse"]), "window_size": float(st["size"]),
                      "window_max": float(st["max"]), "dispatch_paused": 1 if st["paused"] else 0,
                      "dispatch_cooldown_seconds": max(0.0, (st.get("cooldownUntil") or 0.0) - now),
                      "spend_today": budget.spent_today(self.engine.store, member.name, now),
                      "window_capacity": float(st["capacity"] or st["max"]),
                      "dispatch_breaker_open": 0 if st["breaker"] == "closed" else 1,
                      "submit_consecutive_failures": st["consecutiveFailures"]}
            for name, value in values.items():
                fams[name].add_metric([member.name], value)
        return list(fams.values())

    def _deliveries(self) -> list[Metric]:
        e = self.engine
        g = GaugeMetricFamily
        return [
            g(PREFIX + "deliveries_pending", "Outgoing webhooks scheduled or being sent.",
              value=pending_count(e.r, e.keys)),
            g(PREFIX + "deliveries_failed", "Outgoing webhooks that gave up (replayable).",
              value=failed_count(e.r, e.keys)),
        ]

    @staticmethod
    def _labelled(name: str, help_: str, label: str, items: Iterable[tuple[str, Any]]
                  ) -> CounterMetricFamily:
        fam = CounterMetricFamily(PREFIX + name, help_, labels=[label])
        for value, n in sorted(items):
            fam.add_metric([value], _int(n))
        return fam

    def _counters(self, c: dict[str, dict[str, str]]) -> list[Metric]:
        out: list[Metric] = []
        C = CounterMetricFamily
        out.append(self._labelled("effects", "Side effects done by the job state machine.",
                                  "effect", c["effects"].items()))

        cb = c["callbacks"]
        accepted = _int(cb.get("accepted"))
        rejected = {f[len("rejected_"):]: v for f, v in cb.items() if f.startswith("rejected_")}
        reconciled = {f[len("reconciled_"):]: v for f, v in cb.items()
                      if f.startswith("reconciled_")}
        out.append(C(PREFIX + "callbacks_received", "Upstream callbacks received "
                     "(accepted + rejected).",
                     value=accepted + sum(_int(v) for v in rejected.values())))
        out.append(C(PREFIX + "callbacks_accepted", "Upstream callbacks accepted and "
                     "enqueued.", value=accepted))
        out.append(self._labelled("callbacks_rejected", "Upstream callbacks rejected, by "
                                  "reason.", "reason", rejected.items()))
        out.append(self._labelled("callbacks_reconciled", "Callback snapshots reconciled, "
                                  "by result.", "result", reconciled.items()))

        for hash_name, (named, catch_all) in _SIMPLE_COUNTERS.items():
            h = dict(c[hash_name])
            if hash_name == "storage":
                fails = C(PREFIX + "storage_failures", "Image storage failures, by kind.",
                          labels=["kind"])
                for field_, kind in _STORAGE_FAILURES.items():
                    fails.add_metric([kind], _int(h.pop(field_, 0)))
                out.append(fails)
            for field_, (name, help_) in named.items():
                out.append(C(PREFIX + name, help_, value=_int(h.pop(field_, 0))))
            if catch_all:
                name, label, help_ = catch_all
                out.append(self._labelled(name, help_, label, h.items()))

        answers = CounterMetricFamily(PREFIX + "upstream_answers", "Upstream submit answers, "
                                      "by upstream and outcome.", labels=["upstream", "outcome"])
        for field_, n in sorted(c["answers"].items()):
            upstream, _, outcome = field_.rpartition("|")
            answers.add_metric([upstream or DEFAULT_UPSTREAM, outcome], _int(n))
        out.append(answers)
        out.append(self._labelled("webhook_attempts", "Outgoing webhook attempts, by "
                                  "result (2xx/4xx/5xx/timeout/error...).", "result",
                                  c["webhook_attempts"].items()))
        return out

    @staticmethod
    def _histogram(hists: dict[str, dict[str, str]]) -> Metric:
        fam = HistogramMetricFamily(PREFIX + "step_duration_seconds",
                                    "Step duration by action (observe_step_duration).",
                                    labels=["action"])
        for action, h in sorted(hists.items()):
            if not h:
                continue
            buckets, total, _ = _histogram_buckets(h)
            fam.add_metric([action], buckets, sum_value=total)
        return fam


def make_registry(engine: Any) -> CollectorRegistry:
    """A fresh registry holding only a :class:`RedisCollector` for ``engine``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(engine))
    return registry
