"""Images inside a job spec: data URLs checked at the door, and the image references of a
prompt (image prompts, ``--sref``, ``--oref``, ``--cref``) that may be local files.

A data URL must decode, be a PNG, JPEG, WEBP or *static* GIF (Midjourney takes no
animated GIF; seed 000 says "GIF (静态)"), and fit the limit (the profile's, e.g. 4 MB on
new-api, else ``MJFLOW_MAX_UPLOAD_BYTES``); the refusal names the limit.

A data URL given as a reference in a prompt is uploaded (upload-discord-images) before the
submit and its hosted URL put in its place (:func:`replace_references`), so a person can
pass a local file where Midjourney wants a URL.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable

from PIL import Image, UnidentifiedImageError

DATA_URL_RE = re.compile(r"^data:(image/[a-zA-Z0-9.+-]+);base64,(.+)$", re.DOTALL)
IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
#: a data URL anywhere in a prompt (base64 has no spaces: it ends at the first blank)
PROMPT_DATA_URL_RE = re.compile(r"data:image/[a-zA-Z0-9.+-]+;base64,[A-Za-z0-9+/=]+")
#: the prompt parameters that take image URLs
REFERENCE_FLAGS = ("--sref", "--oref", "--cref")


def megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def check_data_url(value: str, max_bytes: int, limit_owner: str = "") -> str:
    """Validate a ``data:image/...;base64,`` URL: decodable, a static image, within the
    size limit (``limit_owner`` names whose limit it is, e.g. "profile newapi")."""
    match = DATA_URL_RE.match(value.strip())
    if not match:
        raise ValueError("must be a data URL like 'data:image/png;base64,...'")
    payload = match.group(2)
    whose = f" of {limit_owner}" if limit_owner else ""
    too_large = f"image larger than the {megabytes(max_bytes)} limit{whose}"
    if len(payload) * 3 // 4 > max_bytes + 2:
        raise ValueError(too_large)
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("base64 data is not decodable") from None
    if len(raw) > max_bytes:
        raise ValueError(too_large)
    is_webp = raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
    if not is_webp and not any(raw.startswith(m) for m in IMAGE_MAGIC):
        raise ValueError("data is not a PNG, JPEG, GIF or WEBP image")
    if raw[:3] == b"GIF" and _animated(raw):
        raise ValueError("animated GIFs are not accepted (Midjourney takes static GIFs only)")
    return value.strip()


def _animated(raw: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            return bool(getattr(img, "is_animated", False))
    except (UnidentifiedImageError, OSError, ValueError, EOFError):
        return False


def prompt_data_urls(prompt: str | None) -> list[str]:
    """The data URLs written in a prompt (image prompts, ``--sref``/``--oref``/``--cref``)."""
    return PROMPT_DATA_URL_RE.findall(prompt or "")


def prompt_text(prompt: str | None) -> str:
    """The prompt with its data URLs taken out (what the length limit applies to)."""
    return PROMPT_DATA_URL_RE.sub("<image>", prompt or "")


def replace_references(prompt: str, upload: Callable[[list[str]], list[str]]) -> str:
    """The prompt with each data URL replaced by the URL ``upload`` hosted it at (one call
    for all of them, in order; the same data URL twice is uploaded once)."""
    found = list(dict.fromkeys(prompt_data_urls(prompt)))
    if not found:
        return prompt
    urls = upload(found)
    if len(urls) != len(found):
        raise ValueError(f"upload returned {len(urls)} URL(s) for {len(found)} image(s)")
    hosted = dict(zip(found, urls))
    return PROMPT_DATA_URL_RE.sub(lambda m: hosted[m.group(0)], prompt)
