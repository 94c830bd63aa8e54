"""Follow-up buttons: find the parent's button that a ``then`` item names.

An item names a button by its label (``U1``, ``V2``, ``Upscale (Subtle)``, ``Zoom Out 2x``),
its emoji (``🔄``, ``⬅️``), an alias (``reroll``, ``pan_left``) or a customId kind
(``upsample::1``, ``upsample_v6_2x_subtle``, ``Outpaint::50``). The customId sent upstream
is always the parent's, verbatim; it is never built here.
"""
from __future__ import annotations

from typing import Any

ALIASES = {
    "reroll": "🔄", "r": "🔄", "pan_left": "⬅️", "pan left": "⬅️", "pan_right": "➡️",
    "pan right": "➡️", "pan_up": "⬆️", "pan up": "⬆️", "pan_down": "⬇️", "pan down": "⬇️",
}
EMOJI_VARIANTS = {"⬅": "⬅️", "➡": "➡️", "⬆": "⬆️", "⬇": "⬇️"}


def button_name(button: dict[str, Any]) -> str:
    return (button.get("label") or button.get("emoji") or button.get("customId") or "?").strip()


def offered(buttons: list[dict[str, Any]]) -> str:
    names = [button_name(b) for b in buttons if b.get("customId")]
    return ", ".join(names) if names else "none"


def _norm(text: str) -> str:
    text = text.strip()
    return EMOJI_VARIANTS.get(text, text).casefold()


def resolve_button(name: str, buttons: list[dict[str, Any]]) -> tuple[str | None, str]:
    """Return ``(customId, "")`` for the named button, or ``(None, reason)``."""
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
    return None, f"button '{name}' not offered; offered: {offered(buttons)}"
