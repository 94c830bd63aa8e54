"""Split a Midjourney 2×2 grid into its four images.

Quarters are numbered as Midjourney numbers its U/V buttons: q1 top-left, q2 top-right,
q3 bottom-left, q4 bottom-right. Each is saved as PNG (lossless, whatever the grid's
format) into its own ``SpooledTemporaryFile``, hashed on the way out. For an odd width or
height the right/bottom quarters get the extra pixel.

Unlike the download, this decodes pixels: a 2048×2048 RGB grid holds about 12 MB while
it is split. The pixel count is checked from the header before decoding
(:mod:`worker.storage.pixels`, ``MJFLOW_MAX_IMAGE_PIXELS``), whatever the caller checked.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import IO, NamedTuple

from PIL import Image

from worker.errors import ImageRejected
from worker.storage.pixels import DEFAULT_MAX_PIXELS, open_bounded

SPOOL_MAX_BYTES = 1024 * 1024
PNG_COMPRESS_LEVEL = 6
QUARTER_SUFFIXES = ("-q1", "-q2", "-q3", "-q4")


class GridPart(NamedTuple):
    """One quarter of a grid: ``(suffix, file, width, height, sha256)``; file at position 0."""

    suffix: str
    file: IO[bytes]
    width: int
    height: int
    sha256: str


class _HashingWriter:
    """A write-only file that hashes what passes through it into ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def split_grid(fileobj: IO[bytes], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[GridPart]:
    """The four quarters of the grid in ``fileobj`` (read from its start) as PNG files."""
    fileobj.seek(0)
    try:
        with open_bounded(fileobj, max_pixels) as grid:
            grid.load()
            return _quarters(grid)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected(f"cannot split the grid: {exc}") from exc
    finally:
        fileobj.seek(0)


def quarter_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes (left, top, right, bottom) of q1..q4."""
    mid_x, mid_y = width // 2, height // 2
    return [
        (0, 0, mid_x, mid_y),
        (mid_x, 0, width, mid_y),
        (0, mid_y, mid_x, height),
        (mid_x, mid_y, width, height),
    ]


def _quarters(grid: Image.Image) -> list[GridPart]:
    width, height = grid.size
    if width < 2 or height < 2:
        raise ImageRejected(f"cannot split a {width}×{height} image into a 2×2 grid")
    if grid.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        grid = grid.convert("RGBA" if "A" in grid.getbands() else "RGB")
    parts: list[GridPart] = []
    try:
        for suffix, box in zip(QUARTER_SUFFIXES, quarter_boxes(width, height), strict=True):
            quarter = grid.crop(box)
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)
            writer = _HashingWriter(spool)
            quarter.save(writer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)  # type: ignore[arg-type]
            spool.seek(0)
            parts.append(
                GridPart(suffix, spool, quarter.width, quarter.height, writer.digest.hexdigest())
            )
    except BaseException:
        for part in parts:
            part.file.close()
        raise
    return parts
