"""Object keys: where each stored image and manifest lives, built here and nowhere else.

Image keys come from ``MJFLOW_KEY_TEMPLATE`` (default
``{job_id}/{step_index:02d}-{label}{suffix}.{ext}``), a ``str.format`` template with
these variables:

==============  ==============================================================  ==============
variable        meaning                                                         example
==============  ==============================================================  ==============
``job_id``      the mjflow job id                                               ``j_7f3a…``
``step_index``  the step's position in the job (0 = the root task); an int, so  ``00``
                format specs such as ``:02d`` apply
``label``       the step's label, sanitized (see :func:`sanitize_label`)        ``U1``
``suffix``      ``""`` for the image itself, ``-q1``…``-q4`` for grid quarters  ``-q2``
``ext``         file extension from the image's real format                    ``png``
==============  ==============================================================  ==============

A template must use ``job_id``, ``step_index``, ``suffix`` and ``ext`` so that every image
of every step gets its own key (labels repeat: a job may upscale U1 of two grids). Keys
are deterministic: storing a step again writes the same keys. Rendered keys never start
with ``/``, never contain ``..`` segments, backslashes or control characters.

The manifest of a job lives at ``{job_id}/manifest.json`` (:func:`manifest_key`); each
image's thumbnail next to it (:func:`thumbnail_key`).
Keys are relative to the sink (an S3 sink adds its prefix).
"""

from __future__ import annotations

import re
import string
import unicodedata

TEMPLATE_VARIABLES = frozenset({"job_id", "step_index", "label", "suffix", "ext"})
REQUIRED_VARIABLES = frozenset({"job_id", "step_index", "suffix", "ext"})
LABEL_MAX_CHARS = 40
MANIFEST_NAME = "manifest.json"
THUMB_SUFFIX = ".thumb.jpg"

#: Words for the emoji Midjourney puts on its buttons (used when a label has no text).
EMOJI_WORDS: dict[str, str] = {
    "🔄": "reroll",
    "⬅": "pan-left",
    "➡": "pan-right",
    "⬆": "pan-up",
    "⬇": "pan-down",
    "🔍": "zoom",
    "🪄": "vary",
    "🖌": "vary-region",
    "↔": "make-square",
    "❤": "like",
    "🔀": "shuffle",
    "✅": "accept",
    "❌": "cancel",
}
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_]{1,40}")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_EXT = re.compile(r"[^a-z0-9]+")
_SAFE_SUFFIX = re.compile(r"[^A-Za-z0-9_-]+")


def validate_template(template: str) -> None:
    """Raise ``ValueError`` naming the problem if ``template`` cannot give unique, safe keys."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(
            f"MJFLOW_KEY_TEMPLATE {template!r} is not a valid template: {exc}"
        ) from None
    bare = {f for f in fields if not f or not f.isidentifier()}
    if bare:
        raise ValueError(f"MJFLOW_KEY_TEMPLATE {template!r}: use named fields only, not {bare}")
    unknown = fields - TEMPLATE_VARIABLES
    if unknown:
        raise ValueError(
            f"MJFLOW_KEY_TEMPLATE {template!r}: unknown variable(s) {sorted(unknown)}; "
            f"known: {sorted(TEMPLATE_VARIABLES)}"
        )
    missing = REQUIRED_VARIABLES - fields
    if missing:
        raise ValueError(
            f"MJFLOW_KEY_TEMPLATE {template!r} must use {sorted(missing)} so keys are unique"
        )


def image_key(
    template: str, *, job_id: str, step_index: int, label: str, ext: str, suffix: str = ""
) -> str:
    """Render the key of one image (see the module docstring for the variables)."""
    validate_template(template)
    rendered = template.format(
        job_id=_safe_id(job_id),
        step_index=int(step_index),
        label=sanitize_label(label),
        suffix=_SAFE_SUFFIX.sub("", suffix),
        ext=_SAFE_EXT.sub("", ext.lower()) or "bin",
    )
    return _normalize_key(rendered)


def manifest_key(job_id: str) -> str:
    """The key of a job's manifest: ``{job_id}/manifest.json``."""
    return f"{_safe_id(job_id)}/{MANIFEST_NAME}"


def thumbnail_key(key: str) -> str:
    """The key of an image's thumbnail, next to it: ``a/00-IMAGINE.png`` →
    ``a/00-IMAGINE.thumb.jpg`` (image templates never give ``.thumb.`` names)."""
    head, _, name = key.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{stem}{THUMB_SUFFIX}" if head else f"{stem}{THUMB_SUFFIX}"


def sanitize_label(label: str) -> str:
    """A label fit for a key: ``"U1"`` stays, ``"Upscale (Subtle)"`` → ``"upscale-subtle"``,
    ``"🔄"`` → ``"reroll"``, ``"⬅️"`` → ``"pan-left"``; empty or unreadable → ``"step"``."""
    label = label.strip()
    if _SAFE_TOKEN.fullmatch(label):
        return label
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", text.lower()).strip("-")
    if not slug:  # only emoji or symbols: name them
        words = [_emoji_word(ch) for ch in label if not _is_modifier(ch)]
        slug = _NOT_SLUG.sub("-", "-".join(w for w in words if w).lower()).strip("-")
    return slug[:LABEL_MAX_CHARS].strip("-") or "step"


def _emoji_word(ch: str) -> str:
    if ch in EMOJI_WORDS:
        return EMOJI_WORDS[ch]
    return unicodedata.name(ch, "")


def _is_modifier(ch: str) -> bool:
    """Variation selectors, zero-width joiners, skin tones: not meaningful on their own."""
    return ch in "\ufe0e\ufe0f\u200d" or "\U0001f3fb" <= ch <= "\U0001f3ff" or ch.isspace()


def _safe_id(value: str) -> str:
    cleaned = _SAFE_ID.sub("-", str(value)).strip(".-")
    if not cleaned:
        raise ValueError(f"id {value!r} has no characters usable in a key")
    return cleaned


def _normalize_key(key: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key) or "\\" in key:
        raise ValueError(f"key {key!r} contains control characters or backslashes")
    segments = [s for s in key.split("/") if s not in ("", ".")]
    if any(s == ".." for s in segments) or not segments:
        raise ValueError(f"key {key!r} is empty or climbs out of its prefix")
    return "/".join(segments)
