"""Decompression-bomb guard: refuse an image by its pixel count before decoding it.

A 164 KB PNG can declare 13000×13000 pixels (169 Mpx, ~500 MB once decoded); Pillow only
*warns* below twice its own ``Image.MAX_IMAGE_PIXELS``. :func:`open_bounded` opens the
image lazily (Pillow reads the header only), compares width × height with ``max_pixels``
(``MJFLOW_MAX_IMAGE_PIXELS``, default 64 Mpx: a 4096×4096 Midjourney upscale is 16.8 Mpx)
and refuses before any pixel is decoded. (Pillow's own bomb error, at twice its
``Image.MAX_IMAGE_PIXELS``, is mapped to the same refusal; no global warning filter is
touched, so this is safe in threads.)
Every place that decodes pixels (download checks, grid split, dashboard thumbnails) opens
images through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from PIL import Image

from worker.errors import ImageRejected

DEFAULT_MAX_PIXELS = 64_000_000


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`ImageRejected` when ``width × height`` is above ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageRejected(
            f"image of {width}×{height} = {width * height / 1e6:.1f} Mpx is above the "
            f"{max_pixels / 1e6:g} Mpx limit (MJFLOW_MAX_IMAGE_PIXELS)"
        )


@contextmanager
def open_bounded(fileobj: IO[bytes], max_pixels: int) -> Iterator[Image.Image]:
    """``Image.open(fileobj)`` that refuses more than ``max_pixels`` before decoding."""
    try:
        image = Image.open(fileobj)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image refused as a decompression bomb: {exc}") from None
    with image:
        check_pixels(image.width, image.height, max_pixels)
        yield image
