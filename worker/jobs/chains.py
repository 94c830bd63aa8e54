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
#: a grid has four images: U1-U4 upscale one, V1-V4 vary one (customId kinds
#: ``upsample::n``, ``variation::n``); any other number is never offered
NUMBERED = re.compile(r"^(?:(?P<letter>[UV])|(?P<kind>upsample|variation)::)(?P<n>\d+)$",
                      re.IGNORECASE)
GRID_NUMBERS = range(1, 5)
VALID_LABELS = ("U1, U2, U3, U4, V1, V2, V3, V4, 🔄 (reroll), ⬅️ ➡️ ⬆️ ⬇️ (pan_left, pan_right, "
                "pan_up, pan_down), 'Upscale (Subtle)', 'Upscale (Creative)', 'Vary (Subtle)', "
                "'Vary (Strong)', 'Vary (Region)', 'Zoom Out 2x', 'Zoom Out 1.5x', 'Custom Zoom', "
                "or a customId kind (upsample::1, variation::2, Outpaint::50)")
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


def impossible_label(name: str) -> str | None:
    """Why no upstream can ever offer the button ``name`` (``U5``, ``V0``, ``upsample::7``),
    or None for a name that may be offered."""
    m = NUMBERED.match(name.strip())
    if not m or int(m.group("n")) in GRID_NUMBERS:
        return None
    span = (f"{m.group('letter').upper()}1 to {m.group('letter').upper()}4" if m.group("letter")
            else f"{m.group('kind').lower()}::1 to ::4")
    return (f"button '{name.strip()}' can never be offered: a grid has four images, so "
            f"{span} only; valid labels: {VALID_LABELS}")


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
