"""Provider profiles, as data: how each midjourney-proxy-compatible API differs.

Nothing else in mjflow branches on a provider name; code reads a ``Profile`` field.
Sources: /work/shared/reference/upstream-midjourney-proxy.md, upstream-gateways.md and the
provider docs in /work/shared/seeds (000 一步API/new-api, 001 UniAPI, 002 DataEyes).

=================  ===============================================================
midjourney-proxy   novicezk / plus build (default). Callbacks, list-by-condition,
                   ``GET /mj/task/list`` (all tasks), /action and /modal, queue full =
                   23 (or 9), image = task imageUrl.
trueai             trueai-org fork: queue full = 9, ``GET /mj/task/list`` (latest 100),
                   cancel, missing parent = HTTP 404 + code 3. Its auth reads the raw
                   ``Authorization`` value as the token, so the key is sent unprefixed.
newapi             new-api reseller: strips notifyHook (no callbacks), refreshes from
                   upstream every 15 s, rewrites 21/22 to 1, serves images at
                   ``/mj/image/{id}``; seed 000 code table (21 param error, 23 system
                   error, 24 account unavailable, 25 balance), ``quota_not_enough``.
uniapi             mode via ``/mj-fast``, ``/mj-relax``, ``/mj-turbo`` path prefixes;
                   callbacks honoured; 23 with a result id is still queue full.
dataeyes           User-Agent mandatory (Cloudflare 403 "error code: 1010"); imageUrl host
                   is a placeholder, so images come from ``/mj/image/{id}``; no
                   list-by-condition, no callbacks; 21 "任务已存在" = accepted, use its id.
novicezk           the open-source novicezk build (v2.6.x): no ``buttons``, no
                   /action, /modal, upload, seed, cancel, video or edits; follow-ups
                   U1-U4/V1-V4/reroll through ``/mj/submit/change``.
=================  ===============================================================

What each can do beyond imagine (``upstream-video-edits.md`` §1, ``upstream-midjourney-
proxy.md`` §1.2): video (``/mj/submit/video``, extend) on trueai and new-api; edits on
trueai and new-api; retexture on trueai only (new-api does not route it); the Animate and
Extend buttons only on trueai (new-api refuses them as ``unknown_action``);
upload-discord-images on trueai, new-api (its filter is called ``filter``) and UniAPI.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from worker.upstream.codes import CodeRule, Outcome

USER_AGENT = "mjflow/0.1"
DEFAULT_PROFILE = "midjourney-proxy"
#: Discord attachment hosts that midjourney-proxy hands out as ``imageUrl``.
DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
MODES = frozenset({"FAST", "RELAX", "TURBO"})

#: The official Midjourney CDN (trueai's ``imageUrls``/``videoUrls``).
MIDJOURNEY_CDN_HOSTS = frozenset({"cdn.midjourney.com"})
MB = 1024 * 1024

ModeVia = Literal["account_filter", "path_prefix"]
ImageSource = Literal["task_url", "image_endpoint"]
FollowUps = Literal["buttons", "change"]
UploadFilter = Literal["accountFilter", "filter"]


def _rules(rules: dict[int, CodeRule]) -> Mapping[int, CodeRule]:
    return MappingProxyType(rules)


@dataclass(frozen=True)
class Profile:
    """What one provider does differently. Durations are seconds."""

    name: str
    #: How FAST/RELAX/TURBO is chosen: ``accountFilter.modes`` in the body, or a
    #: ``/mj-<mode>`` path prefix in front of ``/mj/...``.
    mode_via: ModeVia = "account_filter"
    #: Prefix of the ``Authorization`` value ("Bearer " for gateways, "" for trueai,
    #: which compares the raw header to the user token).
    authorization_prefix: str = "Bearer "
    user_agent: str = USER_AGENT
    #: True when the provider calls ``notifyHook``; False means poll only.
    callbacks_expected: bool = True
    #: How often to poll non-terminal tasks; never faster than the provider refreshes.
    poll_interval_s: float = 10.0
    #: The provider answers from a copy it refreshes every ``poll_interval_s`` (a reseller):
    #: polls are aligned to that grid, never closer, so one list call covers many tasks.
    refreshes: bool = False
    #: ``POST /mj/task/list-by-condition`` exists; otherwise fetch one by one.
    batch_query: bool = True
    batch_size: int = 100
    #: Where the final image comes from: the task's ``imageUrl`` or ``GET /mj/image/{id}``.
    image_source: ImageSource = "task_url"
    #: ``imageUrl`` hosts that are placeholders (use ``/mj/image/{id}`` instead).
    placeholder_hosts: frozenset[str] = frozenset()
    #: Hosts images may be downloaded from (plus the upstream's own host).
    allowed_image_hosts: frozenset[str] = DISCORD_CDN_HOSTS
    has_task_list: bool = False
    has_modal: bool = True
    has_cancel: bool = False
    has_image_seed: bool = True
    #: ``POST /mj/submit/upload-discord-images``, and the name of its account filter
    has_upload: bool = False
    upload_filter_field: UploadFilter = "accountFilter"
    #: newer trueai surface: ``/mj/submit/video`` (+ extend), ``/edits``, ``/retexture``
    has_video: bool = False
    has_edits: bool = False
    has_retexture: bool = False
    #: the Animate/Extend buttons can be clicked (new-api refuses them before the upstream)
    animate_buttons: bool = False
    #: face swap takes ``sourceUrl``/``targetUrl`` as well as base64
    swap_by_url: bool = False
    #: how follow-ups are sent: a button's customId to /action, or /change (no buttons)
    followups: FollowUps = "buttons"
    #: the model version of a prompt without ``--v`` (trueai defaults to 8.1)
    default_version: str | None = None
    #: largest image accepted in a request (None: ``MJFLOW_MAX_UPLOAD_BYTES``)
    max_image_bytes: int | None = None
    #: Codes that mean "queue full, retry later" whatever the result field holds.
    queue_full_codes: frozenset[int] = frozenset({23, 9})
    #: Per-code overrides of ``outcomes.BASE_CODE_RULES``.
    code_rules: Mapping[int, CodeRule] = field(default_factory=lambda: _rules({}),
                                               hash=False, compare=False)
    #: Read timeout for submits (a reseller may wait 60 s on its own upstream).
    submit_timeout_s: float = 30.0
    #: slots of one account when a fleet entry gives no ``maxInFlight`` (Midjourney runs
    #: 3 jobs at once per account and queues 10 more)
    max_in_flight: int = 13

    def headers(self, api_key: str) -> dict[str, str]:
        """Request headers: a real User-Agent always; the key as both ``Authorization``
        and ``mj-api-secret`` when set (covers midjourney-proxy, new-api and one-hub)."""
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"{self.authorization_prefix}{api_key}"
            headers["mj-api-secret"] = api_key
        return headers

    def mode_prefix(self, mode: str | None) -> str:
        """``/mj-relax`` etc. for path-prefix profiles, else ``""``."""
        if self.mode_via != "path_prefix" or not mode:
            return ""
        return f"/mj-{mode.lower()}"


PROFILES: Mapping[str, Profile] = MappingProxyType({
    # ``GET /mj/task/list``: every stored task, newest first (upstream-midjourney-proxy.md
    # §1.3 [J]); read only to find a submit whose answer was lost (bounded reply)
    "midjourney-proxy": Profile(name="midjourney-proxy", has_task_list=True),
    "trueai": Profile(
        name="trueai",
        authorization_prefix="",
        has_task_list=True,
        has_cancel=True,
        has_upload=True,
        has_video=True,
        has_edits=True,
        has_retexture=True,
        animate_buttons=True,
        swap_by_url=True,
        default_version="8.1",
        allowed_image_hosts=DISCORD_CDN_HOSTS | MIDJOURNEY_CDN_HOSTS,
    ),
    "newapi": Profile(
        name="newapi",
        callbacks_expected=False,
        poll_interval_s=15.0,
        refreshes=True,
        image_source="image_endpoint",
        placeholder_hosts=frozenset({"localhost"}),
        submit_timeout_s=75.0,
        has_upload=True,
        upload_filter_field="filter",        # seed 000 names it so
        has_video=True,
        has_edits=True,
        max_image_bytes=4 * MB,              # seed 000: "文件大小：最大 4MB"
        allowed_image_hosts=DISCORD_CDN_HOSTS | MIDJOURNEY_CDN_HOSTS,
        code_rules=_rules({
            21: CodeRule(Outcome.NEEDS_MODAL, "waiting for modal confirm",
                         when_no_id=(Outcome.REJECTED, "parameter error")),
            23: CodeRule(Outcome.RETRY_LATER, "system error or queue full"),
            24: CodeRule(Outcome.REJECTED, "banned prompt",
                         when_no_banned_word=(Outcome.RETRY_LATER, "account unavailable")),
            25: CodeRule(Outcome.OUT_OF_CREDIT, "balance insufficient"),
        }),
    ),
    "uniapi": Profile(
        name="uniapi",
        mode_via="path_prefix",
        submit_timeout_s=75.0,
        has_upload=True,                     # seed 001: 上传图片获得url
        # The doc example's image host, a Discord attachment mirror.
        allowed_image_hosts=DISCORD_CDN_HOSTS | {"img.innk.cc"},
        code_rules=_rules({
            23: CodeRule(Outcome.RETRY_LATER, "queue full"),  # even with a result id
        }),
    ),
    "dataeyes": Profile(
        name="dataeyes",
        callbacks_expected=False,
        batch_query=False,
        batch_size=1,
        image_source="image_endpoint",
        placeholder_hosts=frozenset({"www.yourdomain.com", "yourdomain.com"}),
        has_modal=False,
        has_image_seed=False,
        submit_timeout_s=60.0,
        code_rules=_rules({
            21: CodeRule(Outcome.ACCEPTED, "task already exists",
                         when_no_id=(Outcome.REJECTED, "task already exists, no id given")),
        }),
    ),
    "novicezk": Profile(
        name="novicezk",
        has_modal=False,
        has_image_seed=False,
        has_task_list=True,
        followups="change",
    ),
})


def get_profile(profile: Profile | str | None) -> Profile:
    """A profile by name (or the profile itself); ``None`` gives the default."""
    if isinstance(profile, Profile):
        return profile
    name = (profile or DEFAULT_PROFILE).strip().lower()
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown upstream profile {profile!r}; "
                         f"choose one of {', '.join(sorted(PROFILES))}") from None
