"""Real, deterministic PNGs for simulated tasks (Pillow).

* ``grid``: a 2×2 grid (1024×1024 for SQUARE), each quadrant a different colour
  derived from a hash of the seed text (prompt + task id), numbered 1-4.
* ``upscale``: one quadrant of the parent grid, scaled to the full size, labelled.
* ``single``: one picture (describe input, face swap result).
* previews: a coarse, darkened version of the final image with the percentage.
* large images: random-noise PNGs of about a requested byte size (they do not
  compress), generated lazily into a temp dir, cached, and streamed from disk.

The same :class:`ImageSpec` always renders the same bytes.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFilter, ImageFont

GRID_SIZE_PX = 1024
BLEND_SIZES_PX = {"SQUARE": (1024, 1024), "PORTRAIT": (896, 1344), "LANDSCAPE": (1344, 896)}
PREVIEW_SIZE_PX = 256
IMAGE_CACHE_ITEMS = 64
PNG_MAX_NOISE_SIDE_PX = 20000

ImageKind = Literal["grid", "upscale", "single"]


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines an image's pixels."""

    kind: ImageKind
    seed: str
    width: int = GRID_SIZE_PX
    height: int = GRID_SIZE_PX
    index: int = 0  # quadrant of ``parent`` for upscales
    parent: ImageSpec | None = None
    label: str = ""


def _colour(seed: str, salt: str) -> tuple[int, int, int]:
    d = hashlib.sha256(f"{seed}|{salt}".encode()).digest()
    return d[0], d[1], d[2]


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _panel(seed: str, salt: str, w: int, h: int, text: str) -> Image.Image:
    """One picture: a two-colour gradient, a few shapes, a big label."""
    c1, c2 = _colour(seed, salt + "a"), _colour(seed, salt + "b")
    img = Image.linear_gradient("L").resize((w, h))
    img = Image.composite(Image.new("RGB", (w, h), c1), Image.new("RGB", (w, h), c2), img)
    draw = ImageDraw.Draw(img)
    rng = random.Random(f"{seed}|{salt}")
    for _ in range(6):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(max(4, min(w, h) // 12), max(8, min(w, h) // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=_colour(seed, f"{salt}{x}"), width=6)
    if text:
        font = _font(max(12, min(w, h) // 3))
        box = draw.textbbox((0, 0), text, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
        pos = ((w - tw) // 2 - box[0], (h - th) // 2 - box[1])
        draw.text(pos, text, fill=(255, 255, 255), font=font, stroke_width=4, stroke_fill=(0, 0, 0))
    return img


def _compose(spec: ImageSpec) -> Image.Image:
    w, h = spec.width, spec.height
    if spec.kind == "grid":
        img = Image.new("RGB", (w, h))
        hw, hh = w // 2, h // 2
        for n, (x, y) in enumerate(((0, 0), (hw, 0), (0, hh), (hw, hh)), start=1):
            img.paste(_panel(spec.seed, f"q{n}", hw, hh, str(n)), (x, y))
        return img
    if spec.kind == "upscale" and spec.parent is not None:
        parent = _compose(spec.parent)
        pw, ph = parent.size
        q = max(1, min(4, spec.index)) - 1
        box = ((q % 2) * pw // 2, (q // 2) * ph // 2, (q % 2 + 1) * pw // 2, (q // 2 + 1) * ph // 2)
        img = parent.crop(box).resize((w, h), Image.Resampling.BICUBIC)
        if spec.label:
            draw = ImageDraw.Draw(img)
            draw.text(
                (16, 16),
                spec.label,
                fill=(255, 255, 255),
                font=_font(48),
                stroke_width=3,
                stroke_fill=(0, 0, 0),
            )
        return img
    return _panel(spec.seed, "single", w, h, spec.label)


def _png(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


@lru_cache(maxsize=IMAGE_CACHE_ITEMS)
def render(spec: ImageSpec) -> bytes:
    """Final PNG bytes of ``spec`` (cached)."""
    return _png(_compose(spec))


@lru_cache(maxsize=IMAGE_CACHE_ITEMS)
def render_preview(spec: ImageSpec, progress: str) -> bytes:
    """A coarse in-progress preview of ``spec`` showing ``progress``."""
    small = (
        _compose(spec)
        .resize((PREVIEW_SIZE_PX, PREVIEW_SIZE_PX))
        .filter(ImageFilter.GaussianBlur(6))
    )
    img = small.point(lambda v: v // 2)
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), progress, fill=(255, 255, 255), font=_font(32))
    return _png(img)


_large_lock = threading.Lock()
_large_dir: Path | None = None


def large_png_path(spec: ImageSpec, n_bytes: int) -> Path:
    """Path of a noise PNG of about ``n_bytes`` for ``spec`` (made once, then reused)."""
    global _large_dir
    with _large_lock:
        if _large_dir is None or not _large_dir.exists():
            _large_dir = Path(tempfile.mkdtemp(prefix="mjsim-large-"))
        digest = hashlib.sha256(f"{spec!r}|{n_bytes}".encode()).hexdigest()[:24]
        path = _large_dir / f"{digest}.png"
        if path.exists():
            return path
        side = max(16, min(PNG_MAX_NOISE_SIDE_PX, int((n_bytes / 3) ** 0.5)))
        noise = random.Random(digest).randbytes(side * side * 3)
        img = Image.frombytes("RGB", (side, side), noise)
        tmp = path.with_suffix(".tmp")
        img.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
        return path


@atexit.register
def clear_large_cache() -> None:
    """Delete generated large images (also run at interpreter exit)."""
    with _large_lock:
        if _large_dir is not None and _large_dir.exists():
            for p in _large_dir.iterdir():
                p.unlink(missing_ok=True)
            _large_dir.rmdir()


@dataclass(frozen=True)
class ImageRecipe:
    """What to serve, decided under the simulator lock; rendered later, outside it."""

    spec: ImageSpec | None = None
    preview: str | None = None  # progress text for a preview, None for the final image
    large_bytes: int = 0
    data: bytes | None = None  # stored bytes (uploads, video clips)
    content_type: str = "image/png"

    def materialize(self) -> tuple[bytes | None, Path | None]:
        """``(png_bytes, None)`` or ``(None, path_to_stream)``."""
        if self.data is not None or self.spec is None:
            return self.data or b"", None
        if self.preview is not None:
            return render_preview(self.spec, self.preview), None
        if self.large_bytes > 0:
            return None, large_png_path(self.spec, self.large_bytes)
        return render(self.spec), None
