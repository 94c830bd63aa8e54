"""The Upstream page: the dispatch window (slots in use, size, paused), recent answers."""
from __future__ import annotations

from flask import redirect, url_for

from webhook.dashboard.common import bp, engine, render
from worker.flow.receiver import status as receiver_state


@bp.get("/upstream")
def upstream():  # type: ignore[no-untyped-def]
    e = engine()
    return render("upstream.html", "_upstream_live.html", refresh=True, state=e.window.state(),
                  answers=e.window.recent_answers(), profile=e.settings.upstream_profile,
                  nav="upstream", callbacks=receiver_state(e))


@bp.post("/upstream/resume")
def upstream_resume():  # type: ignore[no-untyped-def]
    engine().window.resume()
    return redirect(url_for("dashboard.upstream", done="resumed"))
