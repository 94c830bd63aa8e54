"""What the API, the CLI and the dashboard show and do about the fleet's upstreams: plain
functions over the engine (views carry no key: only the name, profile and host)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from worker.errors import NotFound, SpecError
from worker.flow import budget
from worker.flow.engine import Engine
from worker.flow.fleet import Member
from worker.jobs.spec import UPSTREAM_NAME_RE

#: answers of the last minutes that say an upstream is struggling
ERROR_OUTCOMES = frozenset({"retry_later", "outcome_unknown", "out_of_credit", "auth_failed"})
HEALTH_SAMPLE = 20
MAX_REASON = 200


def _member(engine: Engine, name: str) -> Member:
    if not UPSTREAM_NAME_RE.match(name or ""):
        raise NotFound(f"no upstream {name!r}")
    return engine.member(name)


def health(state: dict[str, Any], answers: list[dict[str, Any]]) -> str:
    """``paused``, ``cooling-down``, ``degraded`` (most recent answers are errors) or ``ok``."""
    if state["paused"]:
        return "paused"
    if state.get("cooldownUntil") and state["cooldownUntil"] > time.time():
        return "cooling-down"
    recent = answers[:HEALTH_SAMPLE]
    errors = sum(1 for a in recent if a.get("outcome") in ERROR_OUTCOMES)
    return "degraded" if recent and errors * 2 > len(recent) else "ok"


def upstream_view(engine: Engine, member: Member, *, answers: int = HEALTH_SAMPLE
                  ) -> dict[str, Any]:
    c = member.config
    state = member.window.state()
    recent = member.window.recent_answers()
    return {
        "name": member.name, "profile": c.profile, "host": c.host, "enabled": c.enabled,
        "priority": c.priority, "weight": c.weight,
        "modes": sorted(c.served_modes), "actions": sorted(c.served_actions),
        "window": state, "health": health(state, recent),
        "answerCounts": dict(Counter(a.get("outcome", "?") for a in recent)),
        "recentAnswers": recent[:answers],
        "spendToday": budget.spent_today(engine.store, member.name),
    }


def list_upstreams(engine: Engine) -> dict[str, Any]:
    return {"upstreams": [upstream_view(engine, m) for m in engine.fleet],
            "routing": engine.settings.routing,
            "budgetPerDay": engine.settings.budget_per_day,
            "spendToday": budget.spent_today(engine.store)}


def get_upstream(engine: Engine, name: str) -> dict[str, Any]:
    return upstream_view(engine, _member(engine, name), answers=50)


def pause(engine: Engine, name: str, reason: str | None = None) -> dict[str, Any]:
    member = _member(engine, name)
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise SpecError([{"path": "reason", "message": f"a text of at most {MAX_REASON} "
                                                      "characters"}])
    member.window.pause(reason or "paused by an operator")
    return upstream_view(engine, member)


def resume(engine: Engine, name: str) -> dict[str, Any]:
    member = _member(engine, name)
    member.window.resume()
    return upstream_view(engine, member)


def resume_all(engine: Engine) -> list[dict[str, Any]]:
    """Resume every paused upstream (the one-upstream ``POST /v1/upstream/resume``)."""
    out = []
    for member in engine.fleet:
        if member.window.state()["paused"]:
            member.window.resume()
        out.append(upstream_view(engine, member))
    return out


def legacy_view(engine: Engine) -> dict[str, Any]:
    """``GET /v1/upstream``: the first upstream's window, as before the fleet."""
    member = next(iter(engine.fleet))
    return member.window.state() | {"profile": member.config.profile, "name": member.name,
                                    "recentAnswers": member.window.recent_answers()}
