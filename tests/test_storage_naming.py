"""Pure parts of storage: key naming, metadata encoding, manifest shape, sizes in messages."""

from __future__ import annotations

import string
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.settings import Settings
from worker.storage.download import format_bytes, sniff
from worker.storage.manifest import build_manifest
from worker.storage.naming import image_key, manifest_key, sanitize_label, validate_template
from worker.storage.s3sink import decode_metadata, encode_metadata_value
from worker.storage.ssrf import host_allowed

DEFAULT_TEMPLATE = Settings.model_fields["key_template"].default
KEY_CHARS = set(string.ascii_letters + string.digits + "._-/")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("U1", "U1"),
        ("V4", "V4"),
        ("IMAGINE", "IMAGINE"),
        ("Upscale (Subtle)", "upscale-subtle"),
        ("🔄", "reroll"),
        ("⬅️", "pan-left"),
        ("➡️", "pan-right"),
        ("⬆️", "pan-up"),
        ("⬇️", "pan-down"),
        ("🪄 Vary (Strong)", "vary-strong"),
        ("🔍 Zoom Out 2x", "zoom-out-2x"),
        ("Café ✨", "cafe"),
        ("", "step"),
        ("../../etc/passwd", "etc-passwd"),
        ("🎨", "artist-palette"),
    ],
)
def test_labels_are_sanitized(label: str, expected: str) -> None:
    assert sanitize_label(label) == expected


def test_default_template_keys() -> None:
    assert (
        image_key(DEFAULT_TEMPLATE, job_id="j1", step_index=0, label="IMAGINE", ext="png")
        == "j1/00-IMAGINE.png"
    )
    assert (
        image_key(
            DEFAULT_TEMPLATE,
            job_id="j1",
            step_index=12,
            label="Upscale (Subtle)",
            ext="PNG",
            suffix="-q3",
        )
        == "j1/12-upscale-subtle-q3.png"
    )
    assert manifest_key("j1") == "j1/manifest.json"


def test_custom_template_and_its_checks() -> None:
    template = "mj/{job_id}/{label}/{step_index:03d}{suffix}.{ext}"
    assert (
        image_key(template, job_id="j", step_index=7, label="U2", ext="webp") == "mj/j/U2/007.webp"
    )
    with pytest.raises(ValueError, match="suffix"):
        validate_template("{job_id}/{step_index}-{label}.{ext}")
    with pytest.raises(ValueError, match="unknown variable"):
        validate_template("{job_id}/{step_index}{suffix}-{prompt}.{ext}")
    with pytest.raises(ValueError, match="named fields"):
        validate_template("{job_id}/{}{step_index}{suffix}.{ext}")
    with pytest.raises(ValueError, match="climbs out"):
        image_key(
            "../{job_id}/{step_index}{suffix}.{ext}", job_id="j", step_index=0, label="x", ext="png"
        )
    assert (
        image_key(
            "/{job_id}//{step_index}{suffix}.{ext}", job_id="j", step_index=0, label="x", ext="png"
        )
        == "j/0.png"
    )


@given(
    label=st.text(max_size=60),
    job_id=st.text(alphabet=string.ascii_letters + "-_.", min_size=1, max_size=20).filter(
        lambda s: s.strip(".-")
    ),
    step=st.integers(min_value=0, max_value=999),
)
def test_keys_are_always_safe(label: str, job_id: str, step: int) -> None:
    key = image_key(DEFAULT_TEMPLATE, job_id=job_id, step_index=step, label=label, ext="png")
    assert not key.startswith("/") and ".." not in key.split("/")
    assert set(key) <= KEY_CHARS
    assert (
        image_key(DEFAULT_TEMPLATE, job_id=job_id, step_index=step, label=label, ext="png") == key
    )


@given(st.text(max_size=200))
def test_metadata_encoding_is_ascii_and_round_trips(value: str) -> None:
    encoded = encode_metadata_value(value)
    assert all(32 <= ord(ch) < 127 for ch in encoded)
    assert encoded == encoded.strip()  # HTTP would trim edge spaces
    assert decode_metadata({"k": encoded})["k"] == value == unquote(encoded)


def test_ascii_prompts_stay_readable_in_metadata() -> None:
    assert encode_metadata_value("a lighthouse at dawn --ar 3:2") == "a lighthouse at dawn --ar 3:2"
    assert encode_metadata_value("100% 灯台") == "100%25 %E7%81%AF%E5%8F%B0"


def test_host_matching() -> None:
    assert host_allowed("cdn.discordapp.com", ["cdn.discordapp.com"])
    assert host_allowed("media.discordapp.net", [".discordapp.net"])
    assert host_allowed("discordapp.net", [".discordapp.net"])
    assert not host_allowed("evildiscordapp.net", [".discordapp.net"])
    assert not host_allowed("discordapp.net.evil.com", ["discordapp.net"])


def test_manifest_shape() -> None:
    manifest = build_manifest(
        {"id": "j", "status": "partial", "spec": {"prompt": "p"}, "extra": "dropped"},
        [
            {"id": "s0", "label": "IMAGINE", "images": [{"key": "j/00-IMAGINE.png", "bytes": 3}]},
            {"id": "s1", "parent": "s0", "status": "failed", "failReason": "banned prompt"},
        ],
    )
    assert set(manifest) == {
        "manifestVersion",
        "id",
        "status",
        "batch",
        "metadata",
        "spec",
        "createdAt",
        "finishedAt",
        "steps",
    }
    assert manifest["steps"][0]["images"] == [
        {
            "key": "j/00-IMAGINE.png",
            "bucket": None,
            "uri": None,
            "path": None,
            "url": None,
            "sha256": None,
            "bytes": 3,
            "width": None,
            "height": None,
            "part": "",
        }
    ]
    assert manifest["steps"][1]["failReason"] == "banned prompt"
    assert manifest["steps"][1]["images"] == []


def test_sizes_and_magic() -> None:
    assert format_bytes(64 * 1024 * 1024) == "64 MB"
    assert format_bytes(1536) == "1.5 KB"
    assert format_bytes(10) == "10 bytes"
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff(b"GIF89a......") == "GIF"
    assert sniff(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff(b"<!DOCTYPE html>") is None
