"""Follow-up buttons: find the parent's button that a ``then`` item names.

An item names a button by its label (``U1``, ``V2``, ``Upscale (Subtle)``, ``Zoom Out 2x``),
its emoji (``🔄``, ``⬅️``), an alias (``reroll``, ``pan_left``) or a customId kind
(``upsample::1``, ``upsample_v6_2x_subtle``, ``Outpaint::50``). The customId sent upstream
is always the parent's, verbatim; it is never built here.
"""
from __future__ import annotations

import re
from typing import Any

ALIASES = {
    "reroll": "🔄", "r": "🔄", "pan_left": "⬅️", "pan left": "⬅️", "pan_right": "➡️",
    "pan right": "➡️", "pan_up": "⬆️", "pan up": "⬆️", "pan_down": "⬇️", "pan down": "⬇️",
}
EMOJI_VARIANTS = {"⬅": "⬅️", "➡": "➡️", "⬆": "⬆️", "⬇": "⬇️"}
_CHANGE_RE = re.compile(r"^([UV])([1-4])$", re.IGNORECASE)
_REROLL_NAMES = frozenset({"🔄", "reroll", "r"})
_VERSION_RE = re.compile(r"(?:^|\s)--(?:v|version)\s+(\d+(?:\.\d+)?)", re.IGNORECASE)
#: what V8 dropped from the buttons after an upscale (trueai ``CustomComponentModel``)
V8_DROPPED = re.compile(r"zoom|pan|⬅|➡|⬆|⬇|upscale \(|upsample_v|outpaint|customzoom",
                        re.IGNORECASE)


def button_name(button: dict[str, Any]) -> str:
    return (button.get("label") or button.get("emoji") or button.get("customId") or "?").strip()


def offered(buttons: list[dict[str, Any]]) -> str:
    names = [button_name(b) for b in buttons if b.get("customId")]
    return ", ".join(names) if names else "none"


def _norm(text: str) -> str:
    text = text.strip()
    return EMOJI_VARIANTS.get(text, text).casefold()


def change_of(name: str) -> tuple[str, int | None] | None:
    """``("UPSCALE", 3)`` for U3, ``("VARIATION", 1)`` for V1, ``("REROLL", None)`` for the
    reroll: the follow-ups ``/mj/submit/change`` takes (no buttons upstream); else None."""
    text = name.strip()
    match = _CHANGE_RE.match(text)
    if match:
        return ("UPSCALE" if match.group(1).upper() == "U" else "VARIATION"), int(match.group(2))
    return ("REROLL", None) if text.casefold() in _REROLL_NAMES else None


def model_version(prompt: str | None, default: str | None = None) -> str | None:
    """The Midjourney version a prompt asks for (``--v 8.1``), else ``default``."""
    found = _VERSION_RE.findall(prompt or "")
    return found[-1] if found else default


def is_v8(version: str | None) -> bool:
    try:
        return version is not None and float(version) >= 8
    except ValueError:
        return False


def resolve_button(name: str, buttons: list[dict[str, Any]], *,
                   version: str | None = None) -> tuple[str | None, str]:
    """Return ``(customId, "")`` for the named button, or ``(None, reason)``. ``version``
    is the parent's model version: on V8 the reason says what V8 no longer offers."""
    wanted = _norm(ALIASES.get(name.strip().casefold(), name))
    usable = [b for b in buttons if b.get("customId")]
    for b in usable:
        if _norm(b.get("label") or "") == wanted and wanted:
            return b["customId"], ""
    for b in usable:
        if not (b.get("label") or "").strip() and _norm(b.get("emoji") or "") == wanted:
            return b["customId"], ""
    kind = name.strip()
    for b in usable:
        cid = b["customId"]
        if f"::{kind}::" in cid or cid.startswith(f"MJ::{kind}::") or cid.endswith(f"::{kind}"):
            return cid, ""
    if is_v8(version) and V8_DROPPED.search(name):
        return None, (f"button '{name}' is not offered on V{version} tasks (V8 has no Zoom, Pan "
                      f"or Upscale HD after an upscale); offered: {offered(buttons)}")
    return None, f"button '{name}' not offered; offered: {offered(buttons)}"
