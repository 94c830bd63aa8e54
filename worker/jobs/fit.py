"""Does a job fit the configured upstream? What its profile lacks is refused at the door
(HTTP 422, CLI exit 2, a refused batch line), naming the field and the profile, before
anything is created or sent.

The rules follow ``worker.upstream.profiles``: upload, video, Animate/Extend buttons,
edits, retexture, the image seed, face swap by URL, and on profiles without buttons
(novicezk) only U1–U4, V1–V4 and reroll of a grid, through ``/mj/submit/change``.
"""
from __future__ import annotations

from collections.abc import Iterator

from worker.jobs.chains import change_of
from worker.jobs.spec import EXTEND, FollowUp, JobSpec, is_video_button, normalize_then
from worker.jobs.spec_images import prompt_data_urls
from worker.upstream.profiles import Profile

#: root actions that produce a grid (the parents /change can act on)
GRID_ROOTS = frozenset({"IMAGINE", "BLEND"})
Problem = tuple[str, str]


def profile_problems(spec: JobSpec, profile: Profile, max_image_bytes: int) -> list[Problem]:
    """What the upstream of ``profile`` cannot do in ``spec``, images larger than its own
    limit (when it has a smaller one than ``max_image_bytes``) included."""
    out: list[Problem] = []
    if profile.max_image_bytes and profile.max_image_bytes < max_image_bytes:
        try:
            spec.check_images(profile.max_image_bytes, f"profile {profile.name}")
        except ValueError as exc:
            path, _, msg = str(exc).partition(": ")
            out.append((path, msg))
    return out + fit_problems(spec, profile)


def fit_problems(spec: JobSpec, profile: Profile) -> list[Problem]:
    """Every part of ``spec`` the upstream of ``profile`` cannot do, as (path, message)."""
    name = f"upstream profile {profile.name!r}"
    out: list[Problem] = []
    action = spec.action
    needs = {
        "UPLOAD": (profile.has_upload, "has no upload-discord-images"),
        "VIDEO": (profile.has_video, "has no video (/mj/submit/video)"),
        "EDITS": (profile.has_edits, "has no edits (/mj/submit/edits)"),
        "RETEXTURE": (profile.has_retexture, "has no retexture (/mj/submit/retexture)"),
    }
    if action in needs and not needs[action][0]:
        out.append(("action", f"{name} {needs[action][1]}"))
    if prompt_data_urls(spec.prompt) and not profile.has_upload:
        out.append(("prompt", f"{name} has no upload-discord-images: give the references "
                              "(--sref, --oref, --cref, image prompts) as http(s) URLs"))
    if (spec.sourceUrl or spec.targetUrl) and not profile.swap_by_url:
        field = "sourceUrl" if spec.sourceUrl else "targetUrl"
        out.append((field, f"{name} takes face swaps as base64 only "
                           "(sourceBase64, targetBase64)"))
    if spec.seed and not profile.has_image_seed:
        out.append(("seed", f"{name} has no image seed (/mj/task/{{id}}/image-seed)"))
    if action == "ACTION" and profile.followups == "change" and spec.customId:
        out.append(("customId", f"{name} has no buttons: name the follow-up (U1–U4, V1–V4, "
                                "reroll) in 'button'"))
    if action == "ACTION" and profile.followups == "change" and spec.button \
            and change_of(spec.button) is None:
        out.append(("button", _change_only(name, spec.button)))
    if action == "ACTION" and spec.button and is_video_button(spec.button) \
            and not profile.animate_buttons:
        out.append(("button", f"{name} does not take the Animate/Extend buttons"))
    parent_grid = action in GRID_ROOTS or (action == "ACTION" and spec.button is not None
                                           and _is_grid_change(spec.button))
    for path, item, grid in _walk(normalize_then(spec.then), "then", parent_grid):
        out += _follow_up_problems(path, item, grid, profile, name)
    return out


def follow_up_problems(items: list[FollowUp], profile: Profile, *, parent_grid: bool,
                       path: str = "then") -> list[Problem]:
    """The same checks for follow-ups added later (``POST /v1/jobs/{id}/steps``)."""
    name = f"upstream profile {profile.name!r}"
    out: list[Problem] = []
    for p, item, grid in _walk(items, path, parent_grid):
        out += _follow_up_problems(p, item, grid, profile, name)
    return out


def _follow_up_problems(path: str, item: FollowUp, parent_grid: bool, profile: Profile,
                        name: str) -> list[Problem]:
    out: list[Problem] = []
    button = item.button.strip()
    if item.seed and not profile.has_image_seed:
        out.append((f"{path}.seed", f"{name} has no image seed"))
    if button.lower() == EXTEND:
        if not profile.has_video:
            out.append((f"{path}.button", f"{name} has no video: 'extend' is not possible"))
        return out
    if is_video_button(button) and not profile.animate_buttons:
        hint = (" (use action VIDEO with the upscale's image URL)" if profile.has_video
                else "")
        out.append((f"{path}.button", f"{name} does not take the Animate/Extend buttons{hint}"))
    if profile.followups == "change":
        if change_of(button) is None:
            out.append((f"{path}.button", _change_only(name, button)))
        elif not parent_grid:
            out.append((f"{path}.button", f"{name} has no buttons: '{button}' is possible on a "
                                          "grid (IMAGINE, BLEND, a variation or reroll) only"))
        extras = [f for f in ("prompt", "mask", "enableRemix", "chooseSameChannel")
                  if getattr(item, f) is not None]
        if extras:
            out.append((f"{path}.{extras[0]}", f"{name} sends follow-ups through "
                                               "/mj/submit/change, which takes no "
                                               f"{', '.join(extras)}"))
    return out


def _change_only(name: str, button: str) -> str:
    return (f"{name} has no buttons: only U1–U4, V1–V4 and reroll (🔄) are possible, "
            f"not '{button}'")


def _is_grid_change(button: str) -> bool:
    """A follow-up whose result is a grid again (a variation or a reroll)."""
    change = change_of(button)
    return change is not None and change[0] in ("VARIATION", "REROLL")


def _walk(items: list[FollowUp], path: str, parent_grid: bool
          ) -> Iterator[tuple[str, FollowUp, bool]]:
    for i, item in enumerate(items):
        yield f"{path}[{i}]", item, parent_grid
        yield from _walk(normalize_then(item.then), f"{path}[{i}].then",
                         _is_grid_change(item.button))
