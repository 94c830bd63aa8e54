"""README section 5 as a new user runs it: the ``mjflow`` commands against a whole stack on
the trueai profile (simulator, web, worker, beat): upload a local reference image, use it
as ``--sref``, make a video from it, and add U3 to a job an hour after it finished. Also
the CLI's door: what the profile lacks and bad options are exit 2 with nothing created."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.support.stack import Stack

MJFLOW = str(Path(sys.executable).parent / "mjflow")


@pytest.fixture(scope="module")
def stack():
    with Stack(profile="trueai", speed=100) as s:
        yield s


def mjflow(stack: Stack, *args: str, cwd: Path, stdin: str | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MJFLOW, *args], env=env or stack.env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, input=stdin)


def test_readme_upload_video_and_u3_an_hour_later(stack, tmp_path):
    Image.new("RGB", (512, 512), (30, 90, 160)).save(tmp_path / "ref.png")
    up = mjflow(stack, "submit", "--action", "UPLOAD", "--image", "ref.png", "--wait",
                cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().splitlines()[-1].split("UPLOAD: ", 1)[1]
    assert url.startswith(stack.sim.url) and requests.get(url, timeout=5).ok

    sref = mjflow(stack, "submit", "a lighthouse in a storm", "--sref", "ref.png", "--wait",
                  "--json", cwd=tmp_path)
    assert sref.returncode == 0, sref.stderr
    sent = json.loads(sref.stdout)["steps"][0]["finalPrompt"]
    assert "data:" not in sent and f"--sref {stack.sim.url}/cdn/attachments/u" in sent

    video = mjflow(stack, "submit", "the sea at night, slow waves", "--action", "VIDEO",
                   "--image", "ref.png", "--wait", cwd=tmp_path)
    assert video.returncode == 0, video.stderr
    lines = video.stdout.splitlines()
    assert sum(".mp4" in line for line in lines) == 4
    assert sum("-poster.png" in line for line in lines) == 4
    clip = Path(stack.workdir) / "images" / lines[1].split("VIDEO: ", 1)[1].split()[0]
    assert clip.read_bytes()[4:8] == b"ftyp"

    grid = mjflow(stack, "submit", "a lighthouse at dawn", "--wait", "--json", cwd=tmp_path)
    job = json.loads(grid.stdout)
    assert grid.returncode == 0 and len(job["steps"]) == 1
    requests.post(f"{stack.sim.url}/_sim/clock", json={"advance_s": 3600}, timeout=5)
    later = mjflow(stack, "act", job["id"], "IMAGINE", "U3", "--wait", "--json", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    steps = json.loads(later.stdout)["steps"]
    assert [(s["label"], s["status"]) for s in steps] == [("IMAGINE", "succeeded"),
                                                          ("U3", "succeeded")]
    assert steps[1]["images"][0]["key"].endswith("-U3.png")


def test_cli_door_refusals_and_spec_from_stdin(stack, tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    jobs_before = stack.r.zcard(f"{stack.prefix}:jobs")
    for args, words in [
        (["submit", "--action", "VIDEO", "--image", "a.png"], "prompt is required"),
        (["submit", "x", "--action", "SHORTEN", "--image", "a.png"], "takes no images"),
        (["submit", "x", "--action", "EDITS", "--image", "a.png", "--image", "a.png"],
         "at most 1 image"),
        (["submit", "x", "--image", "missing.png"], "cannot read"),
        (["submit", "--action", "ACTION", "--task-id", "17"], "button"),
        (["act", "job_nope", "root", "U1"], "no job"),
    ]:
        res = mjflow(stack, *args, cwd=tmp_path)
        assert res.returncode in (2, 4), (args, res.stderr)
        assert words in res.stderr, (args, res.stderr)
    assert stack.r.zcard(f"{stack.prefix}:jobs") == jobs_before
    spec = {"prompt": "from stdin", "accountFilter": {"remark": "night"}}
    res = mjflow(stack, "submit", "--spec", "-", "--bot-type", "NIJI_JOURNEY", "--seed",
                 "--json", cwd=tmp_path, stdin=json.dumps(spec))
    assert res.returncode == 0, res.stderr
    made = stack.job(json.loads(res.stdout)["id"])
    assert made["prompt"] == "from stdin"
    # the same options on an upstream without video or seed: exit 2, naming it
    env = {**stack.env, "MJFLOW_UPSTREAM_PROFILE": "midjourney-proxy"}
    res = mjflow(stack, "submit", "x", "--action", "VIDEO", "--image", "a.png", cwd=tmp_path,
                 env=env)
    assert res.returncode == 2 and "midjourney-proxy" in res.stderr
