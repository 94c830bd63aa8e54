"""Decompression bombs: a 20 KB PNG declaring 13000×13000 pixels (169 Mpx) is refused by
its pixel count before any pixel is decoded, in the download check and the grid split
(the dashboard thumbnail is in ``test_dashboard.py``). Memory is measured: refusing must
cost kilobytes, not the ~170 MB a decode would."""
from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import requests
from PIL import Image

from tests.support.bombs import bomb_png
from tests.support.recorder import Recorder
from worker.errors import ImageRejected
from worker.settings import load_settings
from worker.storage.download import download_image
from worker.storage.grid import split_grid

MB = 1 << 20


def peak_of(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


@pytest.fixture
def host(bomb: bytes):  # type: ignore[no-untyped-def]
    server = Recorder(body=bomb, headers={"Content-Type": "image/png"})
    yield server
    server.stop()


def test_the_default_is_well_above_a_midjourney_upscale() -> None:
    assert load_settings().max_image_pixels == 64_000_000 > 4096 * 4096


def test_download_refuses_a_bomb_by_pixel_count(host: Recorder) -> None:
    def go() -> None:
        with requests.Session() as s, pytest.raises(ImageRejected, match="169.0 Mpx") as caught:
            s.trust_env = False
            download_image(s, host.url("/bomb.png"), max_bytes=64 * MB, timeout_s=5,
                           allow_private=True)
        assert "MJFLOW_MAX_IMAGE_PIXELS" in str(caught.value)

    assert peak_of(go) < 8 * MB


def test_the_limit_is_a_setting(host: Recorder) -> None:
    small = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(small, "PNG")
    host.body = small.getvalue()
    with requests.Session() as s:
        s.trust_env = False
        with pytest.raises(ImageRejected, match="1.2 Mpx is above the 1 Mpx limit"):
            download_image(s, host.url("/x.png"), max_bytes=64 * MB, timeout_s=5,
                           allow_private=True, max_pixels=1_000_000)
        with download_image(s, host.url("/x.png"), max_bytes=64 * MB, timeout_s=5,
                            allow_private=True, max_pixels=2_000_000) as image:
            assert (image.width, image.height) == (1200, 1000)


def test_grid_split_refuses_a_bomb_before_decoding(bomb: bytes) -> None:
    def go() -> None:
        with pytest.raises(ImageRejected, match="Mpx limit"):
            split_grid(io.BytesIO(bomb))

    assert peak_of(go) < 8 * MB
