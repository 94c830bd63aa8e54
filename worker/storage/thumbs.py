"""Thumbnails: a small JPEG of each stored image, made when the image is stored, so that
pages show many images without sending (or decoding) the full-size ones.

The thumbnail fits :data:`THUMB_BOX` (aspect kept; never enlarged); transparency is laid
over white. JPEG draft mode and Pillow's reducing gap keep the decode cheap (a 2048×2048
grid takes tens of milliseconds). An image Pillow cannot decode gets no thumbnail (the
image is stored all the same; pages then show the full size), and so does one larger than
:data:`THUMB_MAX_PIXELS` that is not a JPEG: other formats decode whole, and the store of
a 4096×4096 upscale would otherwise cost its 48 MB of pixels in the worker.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import IO, NamedTuple

from PIL import Image

log = logging.getLogger("mjflow.store")
THUMB_BOX = (320, 320)
THUMB_QUALITY = 82
CONTENT_TYPE = "image/jpeg"
#: Above this (8 MP: a 2048×2048 grid is 4 MP) only JPEGs, which decode reduced, get one.
THUMB_MAX_PIXELS = 4096 * 2048


class Thumbnail(NamedTuple):
    data: bytes
    width: int
    height: int
    sha256: str


def make_thumbnail(fileobj: IO[bytes], box: tuple[int, int] = THUMB_BOX) -> Thumbnail | None:
    """A JPEG thumbnail of the image in ``fileobj`` (read from its start, left at 0)."""
    fileobj.seek(0)
    try:
        with Image.open(fileobj) as im:
            if im.format != "JPEG" and im.width * im.height > THUMB_MAX_PIXELS:
                log.info("no thumbnail: %dx%d %s decodes whole", im.width, im.height, im.format)
                return None
            im.draft("RGB", box)
            im.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = im.convert("RGB")
            out = io.BytesIO()
            flat.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    except Exception as exc:  # noqa: BLE001 - any undecodable image: no thumbnail
        log.info("no thumbnail: %s", exc)
        return None
    finally:
        fileobj.seek(0)
    data = out.getvalue()
    return Thumbnail(data, flat.width, flat.height, hashlib.sha256(data).hexdigest())
