"""Request-field checks and generated texts (no HTTP, no state).

* data-URL and link validation as midjourney-proxy does it (``base64格式错误``);
* banned-word search for code 24;
* the four numbered DESCRIBE prompts and the SHORTEN analysis, derived
  deterministically from a seed text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from urllib.parse import urlsplit

DATA_URL_RE = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.+)$", re.DOTALL)
MAX_STATE_CHARS = 255
MAX_NOTIFY_HOOK_CHARS = 2000
NUMBER_EMOJIS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")

_ADJECTIVES = (
    "luminous",
    "weathered",
    "serene",
    "surreal",
    "cinematic",
    "misty",
    "vivid",
    "ornate",
)
_SUBJECTS = ("lighthouse", "fox", "city street", "mountain lake", "robot", "garden", "portrait")
_STYLES = ("oil painting", "watercolor", "35mm photograph", "digital illustration", "ukiyo-e print")
_LIGHTS = ("golden hour light", "soft overcast light", "neon glow", "dramatic rim lighting")


def decode_data_url(value: object) -> bytes | None:
    """Bytes of a ``data:<mime>;base64,<payload>`` string, or ``None`` if malformed."""
    if not isinstance(value, str):
        return None
    m = DATA_URL_RE.match(value.strip())
    if not m:
        return None
    try:
        return base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None


def is_http_url(value: object) -> bool:
    """True for an absolute ``http``/``https`` URL with a host."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def find_banned_word(prompt: str, banned: list[str]) -> str | None:
    """The first banned word found in ``prompt`` as a whole word (case-insensitive)."""
    for word in banned:
        if word and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt, re.IGNORECASE):
            return word
    return None


def _pick(seq: tuple[str, ...], seed: str, salt: str) -> str:
    d = hashlib.sha256(f"{seed}|{salt}".encode()).digest()
    return seq[d[0] % len(seq)]


def describe_prompts(seed: str, count: int = 4) -> list[str]:
    """``count`` plausible image descriptions for a DESCRIBE result."""
    out = []
    for n in range(1, count + 1):
        s = str(n)
        out.append(
            f"a {_pick(_ADJECTIVES, seed, 'a' + s)} {_pick(_SUBJECTS, seed, 's' + s)}, "
            f"{_pick(_STYLES, seed, 't' + s)}, {_pick(_LIGHTS, seed, 'l' + s)} --ar 1:1"
        )
    return out


def numbered(prompts: list[str]) -> str:
    """``"1️⃣ …\\n\\n2️⃣ …"`` as Midjourney prints describe/shorten options."""
    return "\n\n".join(f"{NUMBER_EMOJIS[i]} {p}" for i, p in enumerate(prompts))


def shorten_prompts(prompt: str, count: int = 5) -> list[str]:
    """Progressively shorter versions of ``prompt`` (keeping ``--`` parameters)."""
    words = [w for w in prompt.split(" --")[0].split() if w]
    params = prompt.split(" --", 1)[1:]
    suffix = f" --{params[0]}" if params else ""
    out = []
    for n in range(count):
        keep = max(1, round(len(words) * (count - n) / (count + 1))) if words else 0
        out.append((" ".join(words[:keep]) or "image") + suffix)
    return out


def shorten_analysis(prompt: str, options: list[str]) -> str:
    """The SHORTEN answer text: important tokens, then numbered shortened prompts."""
    tokens = ", ".join(w.strip(",.") for w in prompt.split()[:6] if not w.startswith("--"))
    return f"**IMPORTANT TOKENS**\n{tokens}\n\n**SHORTENED PROMPTS**\n\n{numbered(options)}"
