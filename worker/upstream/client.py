"""Typed HTTP client for midjourney-proxy-compatible APIs.

Two kinds of call, with different failure contracts:

- **Submits** (``imagine``, ``blend``, ``describe``, ``shorten``, ``action``, ``modal``,
  ``change``, ``simple_change``, ``swap_face``, ``upload_discord_images``, and the generic
  ``submit(name, payload)`` they all use) may create a billed task. They are sent exactly
  once, never retried here, and never raise for anything the upstream does: they return an
  ``Answer`` whose ``Outcome`` the job engine acts on (``outcomes.classify`` decides).
  A timeout after the request was sent is ``OUTCOME_UNKNOWN``.
- **Queries** (``fetch``, ``list_by_condition``, ``image_seed``, ``task_list``, ``image``,
  ``cancel``) are safe to repeat: connection errors, timeouts, 5xx and 429 are retried
  (``query_attempts``, capped jittered backoff), then ``UpstreamRetryLater``
  (an ``UpstreamUnavailable``) is raised. Unreadable answers raise ``BadUpstreamAnswer``,
  refused keys ``UpstreamAuthFailed``, exhausted balance ``UpstreamOutOfCredit``.
  An unknown task is ``None``.

Provider differences come from ``Profile`` data only. The key is sent in headers, never
logged, and not shown by ``repr``.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from worker.errors import BadUpstreamAnswer, ConfigError, InvalidSpec
from worker.upstream.errors import UpstreamAuthFailed, UpstreamOutOfCredit, UpstreamRetryLater
from worker.upstream.models import Task, as_text
from worker.upstream.outcomes import Answer, Outcome, classify
from worker.upstream.profiles import MODES, Profile, get_profile
from worker.upstream.submits import SubmitMethods
from worker.upstream.wire import (
    MAX_ANSWER_BYTES,
    UNHAPPY,
    Reply,
    looks_like_task,
    parse_task,
    parse_tasks,
    path_segment,
    read_reply,
)

log = logging.getLogger("mjflow.upstream")

#: Submit names (as the job engine calls ``submit``) → URL paths.
SUBMIT_PATHS: Mapping[str, str] = {
    "imagine": "/mj/submit/imagine",
    "blend": "/mj/submit/blend",
    "describe": "/mj/submit/describe",
    "shorten": "/mj/submit/shorten",
    "action": "/mj/submit/action",
    "modal": "/mj/submit/modal",
    "change": "/mj/submit/change",
    "simple-change": "/mj/submit/simple-change",
    "swap-face": "/mj/insight-face/swap",
    "upload-discord-images": "/mj/submit/upload-discord-images",
    "video": "/mj/submit/video",
    "edits": "/mj/submit/edits",
    "retexture": "/mj/submit/retexture",
}
_NAMES_BY_PATH = {path: name for name, path in SUBMIT_PATHS.items()}
#: Submits that start a new task on some account, so ``accountFilter.modes`` applies;
#: follow-ups (action, modal, change) run on the parent's account.
ACCOUNT_FILTER_SUBMITS = frozenset({"imagine", "blend", "describe", "shorten", "swap-face",
                                    "upload-discord-images", "edits", "retexture"})

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_QUERY_ATTEMPTS = 3
DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_CAP_S = 5.0
DEFAULT_POOL_SIZE = 32

_FALLBACK = object()  # list-by-condition is not served here: fetch one by one


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_unspecified or address.is_reserved)


class UpstreamClient(SubmitMethods):
    """A pooled client for one upstream (base URL, key, profile, speed mode)."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        profile: Profile | str = "midjourney-proxy",
        mode: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        submit_timeout_s: float | None = None,
        session: requests.Session | None = None,
        query_attempts: int = DEFAULT_QUERY_ATTEMPTS,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S,
        allow_private_urls: bool = False,
        extra_image_hosts: Iterable[str] = (),
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        if not base_url or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"upstream base URL must be http(s)://host[:port], got {base_url!r}")
        # a pasted ".../mj" base would give /mj/mj/submit/...
        self.base_url = base_url.rstrip("/").removesuffix("/mj")
        self.profile = get_profile(profile)
        self.mode = self._check_mode(mode)
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.submit_timeout_s = float(submit_timeout_s if submit_timeout_s is not None
                                      else self.profile.submit_timeout_s)
        self.query_attempts = max(1, int(query_attempts))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_cap_s = float(backoff_cap_s)
        self.allow_private_urls = allow_private_urls
        self._extra_image_hosts = frozenset(h.lower() for h in extra_image_hosts)
        self._headers = self.profile.headers(api_key)
        self._has_key = bool(api_key)
        self._batch_supported = self.profile.batch_query
        self._owns_session = session is None
        self._session = session or requests.Session()
        if self._owns_session:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)

    @classmethod
    def from_settings(cls, settings: Any, upstream: Any = None, *,
                      session: requests.Session | None = None) -> UpstreamClient:
        """Build the client of one upstream of the fleet (``worker.upstreams.UpstreamConfig``;
        default: the first) with the timeouts and address rules of ``worker.settings``."""
        if upstream is None:
            if not settings.fleet:
                raise ConfigError("MJFLOW_UPSTREAM_URL (or MJFLOW_UPSTREAMS) is required to "
                                  "talk to the upstream")
            upstream = settings.fleet[0]
        return cls(
            upstream.url, upstream.key, upstream.profile, upstream.mode,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s, session=session,
            submit_timeout_s=(settings.upstream_timeout_s
                              if "upstream_timeout_s" in settings.model_fields_set else None),
            allow_private_urls=settings.allow_private_urls,
            extra_image_hosts=settings.allowed_image_hosts,
        )

    def __repr__(self) -> str:
        return (f"UpstreamClient(base_url={self.base_url!r}, profile={self.profile.name!r}, "
                f"mode={self.mode!r}, key={'set' if self._has_key else 'unset'})")

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- submits (never retried) -------------------------------------------------------

    def submit(self, path: str, payload: Mapping[str, Any], *, state: str | None = None,
               notify_hook: str | None = None, modes: Sequence[str] | None = None) -> Answer:
        """Send one submit and classify the answer. ``path`` is a name from
        ``SUBMIT_PATHS`` ("imagine", "swap-face", ...) or a literal ``/mj/...`` path.
        ``None`` values in ``payload`` are omitted; ``state``/``notify_hook`` are added
        when given; the speed mode is added per profile (``modes`` overrides the
        client's mode for this call). Never raises for upstream behaviour."""
        name, url_path = self._resolve(path)
        body = {key: value for key, value in payload.items() if value is not None}
        if state is not None:
            body["state"] = state
        if notify_hook is not None:
            body["notifyHook"] = notify_hook
        wanted = [self._check_mode(m) for m in modes] if modes else \
            ([self.mode] if self.mode else [])
        wanted = [m for m in wanted if m]
        prefix = ""
        if wanted and self.profile.mode_via == "path_prefix":
            prefix = self.profile.mode_prefix(wanted[0])
        elif wanted and name in ACCOUNT_FILTER_SUBMITS:
            account_filter = dict(body.get("accountFilter") or {})
            account_filter.setdefault("modes", wanted)
            body["accountFilter"] = account_filter
        started = time.monotonic()
        try:
            response = self._send("POST", prefix + url_path, body, self.submit_timeout_s,
                                  stream=True)
            reply = read_reply(response)
        except requests.RequestException as exc:
            answer = classify(None, None, None, self.profile, endpoint=name, exc=exc)
        else:
            answer = classify(reply.status, reply.content, reply.content_type, self.profile,
                              endpoint=name, headers=reply.headers)
        # a request line: DEBUG when accepted (the step's transition says it at INFO)
        level = logging.DEBUG if answer.outcome is Outcome.ACCEPTED else logging.INFO
        log.log(level, "upstream submit %s -> %s task=%s code=%s http=%s in %.0f ms: %s",
                 name, answer.outcome.value, answer.task_id, answer.code, answer.http_status,
                 (time.monotonic() - started) * 1000, answer.message)
        return answer

    # --- queries (safe, retried) -------------------------------------------------------

    def fetch(self, task_id: str) -> Task | None:
        """The task, or ``None`` when the upstream does not know it (empty 200, 204,
        ``null``, ``task_no_found``, HTTP 404)."""
        def accept(reply: Reply) -> Any:
            if not 200 <= reply.status < 300:
                return UNHAPPY
            data = reply.json()
            if isinstance(data, dict) and looks_like_task(data):
                return parse_task(data, "fetch")
            return UNHAPPY

        return self._query("fetch", "GET", f"/mj/task/{path_segment(task_id)}/fetch", accept)

    def list_by_condition(self, ids: Iterable[str]) -> list[Task]:
        """The known tasks among ``ids`` (unknown ids are left out; order not kept).
        Chunks by the profile's batch size; fetches one by one where the profile (or the
        upstream, by answering 404) has no list-by-condition."""
        wanted = list(dict.fromkeys(str(i).strip() for i in ids if str(i).strip()))
        if not wanted:
            return []
        tasks: list[Task] = []
        size = max(1, self.profile.batch_size)
        for start in range(0, len(wanted), size):
            chunk = wanted[start:start + size]
            found = self._list_chunk(chunk) if self._batch_supported else None
            if found is None:
                found = [task for task in (self.fetch(i) for i in chunk) if task is not None]
            tasks.extend(found)
        return tasks

    def image_seed(self, task_id: str) -> str | None:
        """The seed of a finished task, or ``None`` (no seed, unknown task, unsupported)."""
        if not self.profile.has_image_seed:
            return None

        def accept(reply: Reply) -> Any:
            if reply.status >= 500 or reply.status in (401, 403, 408, 429):
                return UNHAPPY
            data = reply.json()
            if isinstance(data, dict) and isinstance(data.get("code"), (int, str)):
                if str(data["code"]).strip() == "1":
                    return as_text(data.get("result")).strip() or None
                return None
            return UNHAPPY

        return self._query("image-seed", "GET", f"/mj/task/{path_segment(task_id)}/image-seed", accept)

    def task_list(self) -> list[Task]:
        """Recent tasks (``GET /mj/task/list``) where the profile has it, else ``[]``."""
        if not self.profile.has_task_list:
            return []

        def accept(reply: Reply) -> Any:
            if not 200 <= reply.status < 300:
                return UNHAPPY
            data = reply.json()
            return parse_tasks(data, "task-list") if isinstance(data, list) else UNHAPPY

        return self._query("task-list", "GET", "/mj/task/list", accept) or []

    def cancel(self, task_id: str) -> bool:
        """Ask the upstream to cancel a task. True when acknowledged; False when the
        profile has no cancel or the upstream refused (unknown task, admin only)."""
        if not self.profile.has_cancel:
            return False

        def accept(reply: Reply) -> Any:
            if 200 <= reply.status < 300:
                return True
            if 400 <= reply.status < 500 and reply.status not in (401, 403, 408, 429):
                return False
            return UNHAPPY

        return bool(self._query("cancel", "POST", f"/mj/task/{path_segment(task_id)}/cancel", accept))

    def image(self, task_id: str, *, stream: bool = True) -> requests.Response:
        """``GET /mj/image/{id}``: the image bytes as an open response (close it, or use it
        as a context manager). Raises ``BadUpstreamAnswer`` when no image is served."""
        path = f"/mj/image/{path_segment(task_id)}"
        for attempt in range(1, self.query_attempts + 1):
            try:
                response = self._send("GET", path, None, self.timeout_s, stream=True)
            except requests.RequestException as exc:
                answer = classify(None, None, None, self.profile, endpoint="image", exc=exc)
            else:
                ctype = (response.headers.get("Content-Type") or "").lower()
                if 200 <= response.status_code < 300 and (
                        ctype.startswith(("image/", "application/octet"))):
                    if not stream:
                        _ = response.content
                    return response
                reply = read_reply(response)
                if 200 <= reply.status < 300:
                    raise BadUpstreamAnswer(
                        f"image for task {task_id}: expected an image, got "
                        f"{ctype or 'no content type'} (HTTP {reply.status})")
                answer = classify(reply.status, reply.content, reply.content_type,
                                  self.profile, endpoint="image", headers=reply.headers)
            if answer.outcome is Outcome.RETRY_LATER and attempt < self.query_attempts:
                delay = self._backoff_s(attempt, answer.retry_after_s)
                if delay is not None:
                    time.sleep(delay)
                    continue
            if answer.outcome is Outcome.NOT_FOUND:
                raise BadUpstreamAnswer(f"image for task {task_id}: {answer.message}")
            raise self._query_error("image", answer, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def image_url_for(self, task: Task) -> str:
        """Where to download the final image of ``task`` from: ``{base}/mj/image/{id}`` on
        image-endpoint profiles, or when ``imageUrl`` is missing a scheme, on a placeholder
        host, or on a private host the upstream leaked; else ``task.imageUrl``."""
        endpoint_url = f"{self.base_url}/mj/image/{path_segment(task.id)}"
        if self.profile.image_source == "image_endpoint":
            return endpoint_url
        url = (task.imageUrl or "").strip() or next(iter(task.image_urls), "")
        if not url:
            raise BadUpstreamAnswer(f"task {task.id} has no imageUrl")
        if url.startswith("/"):
            return f"{self.base_url}{url}"
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return endpoint_url
        if host in self.profile.placeholder_hosts:
            return endpoint_url
        base_host = (urlsplit(self.base_url).hostname or "").lower()
        if _is_local_host(host) and not self.allow_private_urls and not _is_local_host(base_host):
            return endpoint_url
        return url

    @property
    def allowed_image_hosts(self) -> frozenset[str]:
        """Hosts the final image may come from: the profile's CDN hosts, the operator's
        extra hosts and the upstream's own host with its port (entries are compared with
        the port too, see :func:`worker.storage.ssrf.host_allowed`)."""
        base = urlsplit(self.base_url).netloc.rsplit("@", 1)[-1].lower()  # host[:port]
        return self.profile.allowed_image_hosts | self._extra_image_hosts | {base}

    # --- plumbing ------------------------------------------------------------------------

    def _resolve(self, path: str) -> tuple[str, str]:
        if path in SUBMIT_PATHS:
            return path, SUBMIT_PATHS[path]
        if path.startswith("/mj/"):
            return _NAMES_BY_PATH.get(path, path.rsplit("/", 1)[-1] or "submit"), path
        raise InvalidSpec(f"unknown upstream submit {path!r}; "
                          f"expected one of {', '.join(sorted(SUBMIT_PATHS))}")

    @staticmethod
    def _check_mode(mode: str | None) -> str | None:
        if mode is None or mode == "":
            return None
        upper = str(mode).strip().upper()
        if upper not in MODES:
            raise ValueError(f"unknown speed mode {mode!r}; expected one of {sorted(MODES)}")
        return upper

    def _send(self, method: str, path: str, body: Any, read_timeout_s: float, *,
              stream: bool) -> requests.Response:
        """Send one request; redirects are never followed (the ``mj-api-secret`` header
        would go to the redirect target): a 3xx is classified as an error answer."""
        return self._session.request(
            method, f"{self.base_url}{path}", json=body, headers=self._headers,
            timeout=(self.connect_timeout_s, read_timeout_s), stream=stream,
            allow_redirects=False,
        )

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Jittered exponential delay before retry ``attempt + 1``; ``None`` when the
        upstream asks for a longer wait than we are willing to block for."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (attempt - 1)))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            if retry_after_s > self.backoff_cap_s:
                return None
            delay = max(delay, retry_after_s)
        return delay

    def _query(self, endpoint: str, method: str, path: str,
               accept: Callable[[Reply], Any], body: Any = None) -> Any:
        """Send a safe request, retrying RETRY_LATER answers; ``accept`` turns a reply it
        recognises into the result (``UNHAPPY`` otherwise, which is classified).
        NOT_FOUND gives ``None``; other outcomes raise."""
        for attempt in range(1, self.query_attempts + 1):
            started = time.monotonic()
            try:
                reply = read_reply(self._send(method, path, body, self.timeout_s, stream=True))
            except requests.RequestException as exc:
                answer = classify(None, None, None, self.profile, endpoint=endpoint, exc=exc)
            else:
                log.debug("upstream %s %s -> HTTP %s in %.0f ms", method, path, reply.status,
                          (time.monotonic() - started) * 1000)
                if reply.too_large:
                    raise BadUpstreamAnswer(f"{endpoint}: answer larger than "
                                            f"{MAX_ANSWER_BYTES} bytes")
                value = accept(reply)
                if value is not UNHAPPY:
                    return value
                answer = classify(reply.status, reply.content, reply.content_type,
                                  self.profile, endpoint=endpoint, headers=reply.headers)
            if answer.outcome is Outcome.RETRY_LATER and attempt < self.query_attempts:
                delay = self._backoff_s(attempt, answer.retry_after_s)
                if delay is not None:
                    log.info("upstream %s attempt %d/%d: %s; retrying in %.2f s", endpoint,
                             attempt, self.query_attempts, answer.message, delay)
                    time.sleep(delay)
                    continue
            if answer.outcome is Outcome.NOT_FOUND:
                return None
            raise self._query_error(endpoint, answer, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _query_error(endpoint: str, answer: Answer, attempts: int) -> Exception:
        """The one mapping of a query's outcome to an exception."""
        message = f"{endpoint}: {answer.message}"
        if answer.outcome is Outcome.RETRY_LATER:
            return UpstreamRetryLater(f"{message} (after {attempts} attempt(s))",
                                      retry_after_s=answer.retry_after_s, attempts=attempts)
        if answer.outcome is Outcome.AUTH_FAILED:
            return UpstreamAuthFailed(message)
        if answer.outcome is Outcome.OUT_OF_CREDIT:
            return UpstreamOutOfCredit(message)
        if answer.outcome in (Outcome.ACCEPTED, Outcome.NEEDS_MODAL):
            return BadUpstreamAnswer(f"{endpoint}: unexpected answer shape ({answer.message})")
        return BadUpstreamAnswer(message)

    def _list_chunk(self, chunk: list[str]) -> list[Task] | None:
        """One list-by-condition call; ``None`` when the upstream does not serve it."""
        def accept(reply: Reply) -> Any:
            if reply.status in (404, 405, 501):
                return _FALLBACK
            if not 200 <= reply.status < 300:
                return UNHAPPY
            if not reply.content.strip():
                return []
            data = reply.json()
            return parse_tasks(data, "list-by-condition") if isinstance(data, list) else UNHAPPY

        found = self._query("list-by-condition", "POST", "/mj/task/list-by-condition", accept,
                            body={"ids": chunk})
        if found is _FALLBACK or found is None:
            if self._batch_supported:
                log.warning("upstream has no list-by-condition; fetching tasks one by one")
            self._batch_supported = False
            return None
        return found
