"""Discord component buttons and ``customId`` parsing (reference §5).

``grid_buttons`` / ``upscale_buttons`` / ``describe_buttons`` / ``shorten_buttons``
build the ``buttons`` array a SUCCESS task carries. ``parse_custom_id`` maps a
clicked ``customId`` to an :class:`ActionSpec`: the action of the new task,
what it produces, and whether it opens a modal (answer code 21).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BUTTON_STYLE_SECONDARY = 2
BUTTON_STYLE_SUCCESS = 3
BUTTON_TYPE = 2

Produces = Literal["grid", "upscale", "upscale_hd", "describe", "prompt", "bookmark", "video",
                   "video_clip"]

DESCRIBE_EMOJIS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")
PAN_EMOJIS = {"left": "⬅️", "right": "➡️", "up": "⬆️", "down": "⬇️"}
SHORTEN_PROMPT_COUNT = 5
DESCRIBE_PROMPT_COUNT = 4
V8_PROMPT = re.compile(r"(?:^|\s)--(?:v|version)\s+8(?:\.\d+)?(?:\s|$)", re.IGNORECASE)


def _button(
    custom_id: str, label: str = "", emoji: str = "", style: int = BUTTON_STYLE_SECONDARY
) -> dict:
    return {
        "customId": custom_id,
        "emoji": emoji,
        "label": label,
        "style": style,
        "type": BUTTON_TYPE,
    }


def grid_buttons(job_hash: str) -> list[dict]:
    """U1-U4, 🔄 reroll, V1-V4 (after IMAGINE/VARIATION/REROLL/BLEND/ZOOM/PAN)."""
    out = [_button(f"MJ::JOB::upsample::{n}::{job_hash}", f"U{n}") for n in range(1, 5)]
    out.append(_button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", "", "🔄"))
    out += [_button(f"MJ::JOB::variation::{n}::{job_hash}", f"V{n}") for n in range(1, 5)]
    return out


def upscale_buttons(
    job_hash: str, *, include_2x: bool = True, v8: bool = False, animate: bool = False
) -> list[dict]:
    """Upscale message buttons in trueai's template order (reference §5.3). ``v8``: the V8
    set (no Upscale HD, Zoom or Pan; video-edits §6); ``animate``: the Animate pair and 🔄."""
    out: list[dict] = []
    if include_2x and not v8:
        out += [
            _button(
                f"MJ::JOB::upsample_v6_2x_subtle::1::{job_hash}::SOLO",
                "Upscale (Subtle)",
                "upscale_1",
            ),
            _button(
                f"MJ::JOB::upsample_v6_2x_creative::1::{job_hash}::SOLO",
                "Upscale (Creative)",
                "upscale_1",
            ),
        ]
    out += [
        _button(f"MJ::JOB::low_variation::1::{job_hash}::SOLO", "Vary (Subtle)", "🪄"),
        _button(f"MJ::JOB::high_variation::1::{job_hash}::SOLO", "Vary (Strong)", "🪄"),
        _button(f"MJ::Inpaint::1::{job_hash}::SOLO", "Vary (Region)", "🖌️"),
    ]
    if not v8:
        out += [
            _button(f"MJ::Outpaint::50::1::{job_hash}::SOLO", "Zoom Out 2x", "🔍"),
            _button(f"MJ::Outpaint::75::1::{job_hash}::SOLO", "Zoom Out 1.5x", "🔍"),
            _button(f"MJ::CustomZoom::{job_hash}", "Custom Zoom", "🔍"),
        ]
        out += [
            _button(f"MJ::JOB::pan_{d}::1::{job_hash}::SOLO", "", e) for d, e in PAN_EMOJIS.items()
        ]
    if animate or v8:
        if animate:
            out += [
                _button(f"MJ::JOB::animate_high::1::{job_hash}::SOLO", "Animate (High motion)", "🎞️"),
                _button(f"MJ::JOB::animate_low::1::{job_hash}::SOLO", "Animate (Low motion)", "🎞️"),
            ]
        out.append(_button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", "", "🔄"))
    else:
        out.append(_button(f"MJ::BOOKMARK::{job_hash}", "", "❤️"))
    return out


def video_buttons(job_hash: str, clips: int) -> list[dict]:
    """A finished VIDEO: U1..Un (``video_virtual_upscale``) then 🔄 (video-edits §4.1)."""
    out = [
        _button(f"MJ::JOB::video_virtual_upscale::{n}::{job_hash}", f"U{n}")
        for n in range(1, clips + 1)
    ]
    out.append(_button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", "", "🔄"))
    return out


def clip_buttons(job_hash: str) -> list[dict]:
    """An upscaled clip: Extend (High/Low motion)."""
    return [
        _button(f"MJ::JOB::animate_high_extend::1::{job_hash}", "Extend (High motion)", "🎞️"),
        _button(f"MJ::JOB::animate_low_extend::1::{job_hash}", "Extend (Low motion)", "🎞️"),
    ]


def is_v8_prompt(prompt: str) -> bool:
    """``--v 8`` / ``--v 8.1`` / ``--version 8``: the V8 button set."""
    return bool(V8_PROMPT.search(prompt or ""))


def is_video_button(custom_id: str) -> bool:
    """The buttons new-api refuses before the upstream (``unknown_action``)."""
    return bool(re.match(r"^MJ::JOB::(animate_|video_virtual_upscale)", custom_id))


def describe_buttons() -> list[dict]:
    """PicReader 1-4 and the 🔄 retry (reference §5.1)."""
    out = [
        _button(f"MJ::Job::PicReader::{n}", "", DESCRIBE_EMOJIS[n - 1])
        for n in range(1, DESCRIBE_PROMPT_COUNT + 1)
    ]
    out.append(_button("MJ::Picread::Retry", "", "🔄"))
    return out


def shorten_buttons(job_hash: str) -> list[dict]:
    """PromptAnalyzer 1-5 (each opens an IMAGINE modal with that shortened prompt)."""
    return [
        _button(f"MJ::Job::PromptAnalyzer::{job_hash}::{n}", "", DESCRIBE_EMOJIS[n - 1])
        for n in range(1, SHORTEN_PROMPT_COUNT + 1)
    ]


@dataclass(frozen=True)
class ActionSpec:
    """What clicking a ``customId`` does."""

    action: str  # the new task's ``action``
    produces: Produces
    index: int = 0  # quadrant (U/V) or prompt number (PicReader / PromptAnalyzer)
    modal: bool = False  # always opens a MODAL task (code 21)
    remixable: bool = False  # ``enableRemix: true`` turns it into a modal
    needs_mask: bool = False  # Inpaint: /modal must carry maskBase64
    gateway_keeps_21: bool = False  # new-api does not rewrite its 21 (Inpaint, CustomZoom)


_H = r"[0-9A-Za-z-]+"
_PATTERNS: tuple[tuple[re.Pattern[str], object], ...] = (
    (
        re.compile(rf"^MJ::JOB::upsample::([1-4])::{_H}$"),
        lambda m: ActionSpec("UPSCALE", "upscale", int(m[1])),
    ),
    (
        re.compile(rf"^MJ::JOB::variation::([1-4])::{_H}$"),
        lambda m: ActionSpec("VARIATION", "grid", int(m[1]), remixable=True),
    ),
    (
        re.compile(rf"^MJ::JOB::reroll::0::{_H}::SOLO$"),
        lambda m: ActionSpec("REROLL", "grid", remixable=True),
    ),
    (
        re.compile(rf"^MJ::JOB::(low|high)_variation::1::{_H}::SOLO$"),
        lambda m: ActionSpec("VARIATION", "grid", 1, remixable=True),
    ),
    (
        re.compile(rf"^MJ::Inpaint::1::{_H}::SOLO$"),
        lambda m: ActionSpec("INPAINT", "grid", modal=True, needs_mask=True, gateway_keeps_21=True),
    ),
    (re.compile(rf"^MJ::Outpaint::(50|75)::1::{_H}::SOLO$"), lambda m: ActionSpec("ZOOM", "grid")),
    (
        re.compile(rf"^MJ::CustomZoom::(?:1::)?{_H}$"),
        lambda m: ActionSpec("ZOOM", "grid", modal=True, gateway_keeps_21=True),
    ),
    (
        re.compile(rf"^MJ::JOB::pan_(left|right|up|down)::1::{_H}::SOLO$"),
        lambda m: ActionSpec("PAN", "grid", remixable=True),
    ),
    (
        re.compile(rf"^MJ::JOB::upsample_v\d+(?:r\d+)?_2x_(subtle|creative)::1::{_H}::SOLO$"),
        lambda m: ActionSpec("UPSCALE_HD", "upscale_hd", 1),
    ),
    (re.compile(rf"^MJ::BOOKMARK::{_H}$"), lambda m: ActionSpec("BOOKMARK", "bookmark")),
    (
        re.compile(rf"^MJ::JOB::animate_(high|low)(?:_extend)?::1::{_H}(?:::SOLO)?$"),
        lambda m: ActionSpec("VIDEO", "video", remixable=True),
    ),
    (
        re.compile(rf"^MJ::JOB::video_virtual_upscale::([1-4])::{_H}$"),
        lambda m: ActionSpec("UPSCALE", "video_clip", int(m[1])),
    ),
    (
        re.compile(r"^MJ::Job::PicReader::([1-4])$"),
        lambda m: ActionSpec("IMAGINE", "prompt", int(m[1]), modal=True),
    ),
    (re.compile(r"^MJ::Picread::Retry$"), lambda m: ActionSpec("DESCRIBE", "describe")),
    (
        re.compile(rf"^MJ::Job::PromptAnalyzer::{_H}::([1-5])$"),
        lambda m: ActionSpec("IMAGINE", "prompt", int(m[1]), modal=True),
    ),
)


def parse_custom_id(custom_id: str) -> ActionSpec | None:
    """Return the :class:`ActionSpec` for a known ``customId``, else ``None``."""
    for pattern, build in _PATTERNS:
        m = pattern.match(custom_id)
        if m:
            return build(m)  # type: ignore[operator]
    return None


CHANGE_ACTIONS = {"UPSCALE": "upsample", "VARIATION": "variation", "REROLL": "reroll"}


def change_custom_id(action: str, index: int, job_hash: str) -> str:
    """The button ``/submit/change`` stands for (``UPSCALE``/``VARIATION`` 1..4, ``REROLL``)."""
    if action == "REROLL":
        return f"MJ::JOB::reroll::0::{job_hash}::SOLO"
    return f"MJ::JOB::{CHANGE_ACTIONS[action]}::{index}::{job_hash}"
