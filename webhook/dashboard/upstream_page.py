"""The Upstreams page: every upstream of the fleet (window, slots in use, paused and why,
health, spend today, recent answers), with pause and resume."""
from __future__ import annotations

from flask import redirect, url_for

from webhook.dashboard.common import bp, engine, render
from worker import upstream_ops
from worker.errors import NotFound
from worker.flow.receiver import status as receiver_state


@bp.get("/upstream")
def upstream():  # type: ignore[no-untyped-def]
    e = engine()
    return render("upstream.html", "_upstream_live.html", refresh=True,
                  fleet=upstream_ops.list_upstreams(e), nav="upstream",
                  callbacks=receiver_state(e))


@bp.post("/upstream/resume")
def upstream_resume():  # type: ignore[no-untyped-def]
    upstream_ops.resume_all(engine())
    return redirect(url_for("dashboard.upstream", done="resumed"))


@bp.post("/upstream/<name>/<verb>")
def upstream_verb(name: str, verb: str):  # type: ignore[no-untyped-def]
    if verb not in ("pause", "resume"):
        raise NotFound(f"no action {verb!r}")
    e = engine()
    if verb == "pause":
        upstream_ops.pause(e, name)
    else:
        upstream_ops.resume(e, name)
    return redirect(url_for("dashboard.upstream", done=f"{verb}d"))
