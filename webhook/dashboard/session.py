"""Signing in to the dashboard and what guards every request.

Auth is :func:`webhook.auth.authorized` (Bearer, or a session from :mod:`webhook.sessions`
in the HttpOnly ``mjflow_session`` cookie: the key itself is never stored in the browser);
``?key=`` on any page signs in once and redirects to the same URL without it. Every POST needs
the double-submit CSRF token (form field ``csrf`` equal to the ``mjflow_csrf`` cookie) and
a same-origin ``Origin`` when the browser sends one; Bearer requests need neither.
"""
from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Response, g, make_response, redirect, render_template, request, url_for

from webhook import sessions
from webhook.auth import authorized, key_ok
from webhook.dashboard.common import bp, engine, error_page, local_path, notice, plain_answer
from webhook.ids import check_view_ids

KEY_COOKIE = sessions.SESSION_COOKIE
CSRF_COOKIE = "mjflow_csrf"
COOKIE_MAX_AGE_S = sessions.SESSION_TTL_S
PUBLIC = {"dashboard.login", "dashboard.static"}
CSP = ("default-src 'self'; img-src 'self' data:{extra}; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _key_ok(candidate: str) -> bool:
    return key_ok(engine().settings.api_keys, candidate)


def _bearer() -> bool:
    return request.headers.get("Authorization", "").lower().startswith("bearer ")


def _here_without_key() -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "key"]
    query = urlencode(args)
    return request.path + (f"?{query}" if query else "")


def _sign_in(key: str, target: str) -> Response:
    settings = engine().settings
    if not settings.api_keys:
        return redirect(local_path(target))      # open local run (or closed: login says so)
    if not _key_ok(key):
        return _login_page(target, error="That key is not valid.", status=401)
    resp = redirect(local_path(target))
    resp.set_cookie(KEY_COOKIE, sessions.start(engine(), key), max_age=COOKIE_MAX_AGE_S,
                    httponly=True, samesite="Lax", secure=request.is_secure, path="/")
    return resp


def _login_page(target: str, *, error: str | None = None, status: int = 200) -> Response:
    settings = engine().settings
    closed = not settings.api_keys and not settings.local_run
    resp = make_response(render_template("login.html", next=local_path(target), error=error,
                                         closed=closed), status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mjflow"'
    return resp


def csrf_token() -> str:
    if "csrf" not in g:
        g.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    return g.csrf


def allow_images_from(origin: str) -> None:
    """Let this page show images from ``origin`` (where ``/media`` redirects, e.g. S3)."""
    if "img_origins" not in g:
        g.img_origins = set()
    g.img_origins.add(origin)


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True                                  # old browsers; the token still guards
    host = urlsplit(origin).netloc
    if host == request.host:
        return True
    public = engine().settings.public_url
    return bool(public) and host == urlsplit(public).netloc


def _csrf_ok() -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form.get("csrf", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode()) and _same_origin()


@bp.before_request
def _gate():  # type: ignore[no-untyped-def]
    if request.endpoint in PUBLIC:
        return None
    if request.method == "GET" and "key" in request.args:
        return _sign_in(request.args["key"], _here_without_key())
    if not authorized():
        if plain_answer():
            return Response("unauthorized\n", 401, mimetype="text/plain")
        return _login_page(request.full_path.rstrip("?"), status=401)
    check_view_ids()
    if request.method == "POST" and not _bearer() and not _csrf_ok():
        return error_page(403, "This form has expired or came from another site. "
                               "Reload the page and try again.")
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    if "csrf" in g and request.cookies.get(CSRF_COOKIE) != g.csrf:
        resp.set_cookie(CSRF_COOKIE, g.csrf, httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/")
    extra = "".join(f" {o}" for o in sorted(g.get("img_origins", ())))
    resp.headers.setdefault("Content-Security-Policy", CSP.format(extra=extra))
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "notice": notice(), "signed_in": bool(
        request.cookies.get(KEY_COOKIE)), "here": request.full_path.rstrip("?")}


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    target = request.values.get("next") or url_for("dashboard.index")
    key = request.values.get("key")
    if key is not None:
        return _sign_in(key.strip(), target)
    if authorized():
        return redirect(local_path(target))
    return _login_page(target)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    resp = redirect(url_for("dashboard.login", done="signed-out"))
    sessions.end(engine(), request.cookies.get(KEY_COOKIE))
    resp.delete_cookie(KEY_COOKIE, path="/")
    return resp
