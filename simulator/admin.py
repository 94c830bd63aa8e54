"""Admin API of the simulator (not part of any upstream API), under ``/_sim``.

=====================================  ===============================================
``GET  /_sim/info``                     profile, speed, concurrency, URL TTL
``GET  /_sim/stats``                    counters (see :class:`simulator.stats.Stats`)
``POST /_sim/reset``                    clear tasks and stats; ``{"faults": true}`` too
``GET  /_sim/faults``                   current fault knobs
``PUT  /_sim/faults``                   JSON merge into the knobs (400 on bad values)
``GET  /_sim/tasks/<id>``               the upstream task JSON (bypasses gateway views)
``GET  /_sim/tasks/<id>/timeline``      recorded state changes and callbacks
``POST /_sim/clock``                    ``{"advance_s": N}``: move the clock forward
=====================================  ===============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

if TYPE_CHECKING:
    from .models import Simulator


def admin_blueprint(sim: Simulator) -> Blueprint:
    """Routes that inspect and steer ``sim``."""
    bp = Blueprint("sim_admin", __name__, url_prefix="/_sim")

    def body() -> dict:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    @bp.get("/info")
    def info() -> Response:
        return jsonify(
            profile=sim.profile.name,
            summary=sim.profile.summary,
            speed=sim.speed,
            core_size=sim.core_size,
            queue_size=sim.queue_size,
            url_ttl_s=sim.signer.ttl_s,
            public_base=sim.public_base,
            auth=bool(sim.api_key),
        )

    @bp.get("/requests")
    def requests_seen() -> Response:
        """The submit bodies received (newest last), ``?endpoint=submit_video`` to filter."""
        return jsonify(sim.submitted_bodies(request.args.get("endpoint")))

    @bp.get("/stats")
    def stats() -> Response:
        return jsonify(sim.stats())

    @bp.post("/reset")
    def reset() -> Response:
        sim.reset(faults=body().get("faults") is True)
        return jsonify(ok=True)

    @bp.get("/faults")
    def get_faults() -> Response:
        return jsonify(sim.faults.model_dump())

    @bp.put("/faults")
    def put_faults() -> Response | tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify(error="body must be a JSON object"), 400
        try:
            return jsonify(sim.set_faults(data).model_dump())
        except ValidationError as exc:
            return jsonify(error=exc.errors(include_url=False, include_context=False)), 400

    @bp.get("/tasks/<task_id>")
    def task(task_id: str) -> Response | tuple[Response, int]:
        view = sim.upstream_task(task_id)
        return (jsonify(view), 200) if view is not None else (jsonify(error="not found"), 404)

    @bp.get("/tasks/<task_id>/timeline")
    def timeline(task_id: str) -> Response | tuple[Response, int]:
        tl = sim.timeline(task_id)
        return (jsonify(tl), 200) if tl is not None else (jsonify(error="not found"), 404)

    @bp.post("/clock")
    def clock() -> Response | tuple[Response, int]:
        advance = body().get("advance_s")
        if not isinstance(advance, (int, float)) or advance < 0:
            return jsonify(error="advance_s must be a number >= 0"), 400
        sim.advance_clock(float(advance))
        return jsonify(now_ms=sim.clock.now_ms())

    return bp
