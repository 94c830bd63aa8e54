"""Utilization under upstream faults: the same batch, clean and faulty, per upstream shape.

A :class:`Scenario` is a set of :class:`Upstream` s (each a simulator: accounts of 3
running + 10 queued tasks), all of one priority, each with a window ceiling
(``maxInFlight``) of its capacity, and a batch. Each scenario runs twice in the same
benchmark, clean and with :class:`Faults` on every upstream (HTTP 500 on a share of
submits, one burst of queue-full answers mid-run, a share of callbacks dropped), and the
table puts the faulty run's slot use beside the clean one's (× = faulty / clean).

The scenarios: one account; eight accounts behind one upstream of eight times the
capacity (the simulator spreads new tasks over its accounts; an action runs on its
parent's account); eight accounts as eight upstreams of one account each (mjflow spreads
the batch over the fleet; an action runs on its parent's upstream).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import harness as h
from bench import scenarios as sc

THEN = ["U1"]
IMAGINE_S, UPSCALE_S = 30.0, 10.0     # the simulator's durations at real pace


@dataclass(frozen=True)
class Upstream:
    """One simulated upstream: ``accounts`` accounts of ``core`` running + ``queued``."""

    accounts: int = 1
    core: int = 3
    queued: int = 10

    @property
    def running_slots(self) -> int:
        return self.accounts * self.core

    @property
    def capacity(self) -> int:
        return self.accounts * (self.core + self.queued)

    def sim_options(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "core_size": self.core, "queue_size": self.queued}


@dataclass(frozen=True)
class Faults:
    """What goes wrong in the faulty run: submits answering HTTP 500 (nothing created),
    one burst of queue-full answers at ``burst_at`` of the ideal makespan, dropped
    callbacks (the polls are the safety net)."""

    submit_500: float = 0.03
    queue_full_burst: int = 5
    burst_at: float = 0.3
    drop_callbacks: float = 0.20
    seed: int = 7

    def sim_faults(self, upstream: int = 0) -> dict[str, Any]:
        """The simulator faults of the ``upstream``-th upstream (each its own seed)."""
        return {"http_500_submits": self.submit_500, "drop_callbacks": self.drop_callbacks,
                "seed": self.seed + upstream}

    def describe(self) -> str:
        return (f"{self.submit_500:.0%} of submits answer HTTP 500, one burst of "
                f"{self.queue_full_burst} queue-full answers at {self.burst_at:.0%} of the "
                f"ideal makespan, {self.drop_callbacks:.0%} of callbacks dropped; on every "
                "upstream")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    jobs: int
    speed: float
    upstreams: tuple[Upstream, ...] = field(default=(Upstream(),))

    @property
    def running_slots(self) -> int:
        return sum(u.running_slots for u in self.upstreams)

    @property
    def max_in_flight(self) -> int:
        return sum(u.capacity for u in self.upstreams)

    def fleet(self, faults: Faults | None) -> list[dict[str, Any]]:
        """The upstreams as ``Stack.fleet`` items (one: named ``default``, as the
        single-upstream settings name it)."""
        names = ["default"] if len(self.upstreams) == 1 else [
            f"up{i + 1}" for i in range(len(self.upstreams))]
        return [{"name": name, "maxInFlight": u.capacity, "priority": 1,
                 "sim": u.sim_options() | ({"faults": faults.sim_faults(i)} if faults else {})}
                for i, (name, u) in enumerate(zip(names, self.upstreams))]

    @property
    def ideal_s(self) -> float:
        """The upstream work of the batch over its running slots (before duration spread)."""
        work = self.jobs * (IMAGINE_S + UPSCALE_S * len(THEN)) / self.speed
        return work / self.running_slots


#: name, title, jobs (quick, full), speed, upstreams
SCENARIOS = [
    ("one", "1 account (3 running + 10 queued)", (40, 120), 50.0, (Upstream(),)),
    ("eight", "8 accounts as one upstream (24 running + 80 queued)", (160, 480), 12.5,
     (Upstream(accounts=8),)),
    ("eight-up", "8 accounts as 8 upstreams (8 × 3 running + 10 queued)", (160, 480), 12.5,
     (Upstream(),) * 8),
]


def scenarios(quick: bool) -> list[Scenario]:
    return [Scenario(name, title, jobs[0] if quick else jobs[1], speed, ups)
            for name, title, jobs, speed, ups in SCENARIOS]


def run_scenario(s: Scenario, faults: Faults | None) -> dict[str, Any]:
    at = [(faults.burst_at * s.ideal_s, {"queue_full_burst": faults.queue_full_burst})] \
        if faults else []
    run = sc.run_mjflow(s.speed, s.jobs, THEN, callbacks=True, fast=True, events=False,
                        fleet=s.fleet(faults), at=at, timeout_s=900)
    return analyse(run, s)


def analyse(run: dict[str, Any], s: Scenario) -> dict[str, Any]:
    steps = [x for x in run["steps"] if x.get("started_s") and x.get("finish_s")]
    work = sum(x["finish_s"] - x["started_s"] for x in steps)
    last_finish = max((x["finish_s"] for x in steps), default=run["end_s"])
    span = last_finish - run["start_s"]
    sim_faults = run["sim"].get("faults", {})
    window = run["window"]
    states = window["final"].values()
    capacities = [w["capacity"] for w in states if w["capacity"]]
    tasks_by_upstream = Counter(x["upstream"] for x in steps)
    return {
        "busy_fraction": work / (s.running_slots * span) if steps and span > 0 else None,
        "ratio": run["makespan_s"] / (work / s.running_slots) if work else None,
        "makespan_s": run["makespan_s"], "work_s": work,
        "window_min": window["size_min"], "window_mean": window["size_mean"],
        "in_use_mean": window["in_use_mean"],
        "capacity": float(sum(capacities)) if capacities else None,
        "shrinks": sum(w["signals"]["shrinks"] for w in states),
        "breaker_trips": sum(w["signals"]["breakerOpened"] for w in states),
        "tasks_per_upstream": (min(tasks_by_upstream.values(), default=0),
                               max(tasks_by_upstream.values(), default=0)),
        "submit_500s": sim_faults.get("http_500_submits", 0),
        "dropped_callbacks": run["sim"].get("callbacks", {}).get("dropped", 0),
        "queue_full": run["queue_full"], "completed_tasks": sc.completed(run),
        "expected_tasks": s.jobs * (1 + len(THEN)),
        "run": sc.summary(run),
    }


def run(quick: bool = False, faults: Faults | None = None) -> dict[str, Any]:
    faults = faults or Faults()
    contention = h.Contention()
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    notes: list[str] = []
    ok = True
    for s in scenarios(quick):
        clean, faulty = run_scenario(s, None), run_scenario(s, faults)
        details[s.name] = {"clean": clean, "faulty": faulty, "speed": s.speed, "jobs": s.jobs,
                           "max_in_flight": s.max_in_flight}

        def r(metric: str, unit: str, key: str, lower: bool, ratios: bool = True,
              scale: float = 1.0, s: Scenario = s, c: dict = clean, f: dict = faulty
              ) -> dict[str, Any]:
            fv = None if f[key] is None else f[key] * scale
            cv = None if c[key] is None else c[key] * scale
            return h.row(f"{s.name}: {metric}", unit, fv, {"clean": cv},
                         lower_is_better=lower, ratios=ratios)

        rows += [
            r("upstream slots busy (work / running slots × span)", "%", "busy_fraction",
              False, scale=100),
            r("makespan / ideal makespan", "", "ratio", True),
            r("window size, lowest", "", "window_min", False),
            r("window size, mean", "", "window_mean", False),
            r("slots in use, mean", "", "in_use_mean", False),
            r("window shrinks", "", "shrinks", True, ratios=False),
            r("breaker openings", "", "breaker_trips", True, ratios=False),
            r("submits answered HTTP 500", "", "submit_500s", True, ratios=False),
            r("queue-full answers", "", "queue_full", True, ratios=False),
            r("callbacks dropped", "", "dropped_callbacks", True, ratios=False),
        ]
        ceilings = "+".join(str(u.capacity) for u in s.upstreams)
        notes.append(f"{s.name}: {s.title}, {s.jobs} jobs (imagine → U1) at speed "
                     f"{s.speed:g}, maxInFlight {ceilings}; learned capacity at the end "
                     f"(summed): clean {h.fmt(clean['capacity'])}, faulty "
                     f"{h.fmt(faulty['capacity'])}; tasks per upstream (fewest, most): "
                     f"clean {clean['tasks_per_upstream']}, faulty "
                     f"{faulty['tasks_per_upstream']}")
        for who, res in (("clean", clean), ("faulty", faulty)):
            if res["completed_tasks"] != res["expected_tasks"]:
                ok = False
                notes.append(f"INCOMPLETE: {s.name} {who} stored {res['completed_tasks']} of "
                             f"{res['expected_tasks']} tasks")
    notes.append(f"faulty: {faults.describe()}; × = faulty / clean")
    return {
        "name": "utilization-faults",
        "title": "4b. Utilization under faults: the same batch clean and faulty",
        "subject": "faulty", "baseline_names": ["clean"], "rows": rows, "notes": notes,
        "details": details, "ok": ok, "contention": contention.result(),
    }
