"""Small deterministic MP4 files for simulated VIDEO tasks.

An ISO-BMFF file as Midjourney's clips are: an ``ftyp`` box (brand ``isom``), a ``moov``
box with a movie header (``mvhd``: 5 s at 24 fps, the clip's duration), and an ``mdat`` box
of seeded bytes standing in for the encoded frames. It is not playable (there is no
encoder here), but it is a well-formed container: what a client's MP4 check looks at.
"""

from __future__ import annotations

import hashlib
import random
import struct
from functools import lru_cache

MDAT_BYTES = 4096
TIMESCALE = 1000
DURATION_MS = 5000


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mvhd() -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    payload = (
        struct.pack(">B3xIIII", 0, 0, 0, TIMESCALE, DURATION_MS)
        + struct.pack(">IH10x", 0x10000, 0x100)
        + matrix
        + bytes(24)
        + struct.pack(">I", 2)
    )
    return _box(b"mvhd", payload)


@lru_cache(maxsize=64)
def mp4_bytes(seed: str) -> bytes:
    """The same ``seed`` always gives the same file."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    moov = _box(b"moov", _mvhd())
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    mdat = _box(b"mdat", rng.randbytes(MDAT_BYTES))
    return ftyp + moov + mdat
