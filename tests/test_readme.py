"""The README's tour, sections 1 and 2, run literally: every ``sh`` block of those sections,
in order, in one bash in a temp dir, against real processes (the simulator, gunicorn, a
Celery worker and beat, the CLI). Only what the README itself reads from the environment
is set: the ports (``SIM_PORT``, ``PORT``), and the test's own Redis and key prefix."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL
from worker.dev.localnet import ROOT, free_port, stop_group

BIN = Path(sys.executable).parent
TOUR_SECTIONS = ("### 1.", "### 2.")


def tour_blocks(readme: str) -> list[str]:
    """The fenced ``sh`` blocks of the tour sections named in ``TOUR_SECTIONS``."""
    blocks: list[str] = []
    for part in re.split(r"(?m)^(?=### )", readme):
        if part.startswith(TOUR_SECTIONS):
            blocks += re.findall(r"(?ms)^```sh\n(.*?)^```", part)
    return blocks


def test_the_tour_blocks_are_found():
    blocks = tour_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 3
    assert blocks[0].startswith("export SIM_PORT=") and "mjflow submit" in blocks[2]


@pytest.mark.timeout(180)
def test_the_readme_tour_runs_as_written(rds, prefix, tmp_path):
    script = "set -euo pipefail\n" + "\n".join(tour_blocks((ROOT / "README.md").read_text()))
    sim_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJFLOW_")}
    env.update({"PATH": f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", "SIM_PORT": str(sim_port),
                "PORT": str(port), "MJFLOW_REDIS_URL": REDIS_URL, "MJFLOW_KEY_PREFIX": prefix,
                "PYTHONUNBUFFERED": "1"})
    out = tmp_path / "tour.log"
    started = time.monotonic()
    with out.open("wb") as log:
        proc = subprocess.Popen(["bash", "-c", script + "\necho TOUR-DONE\n"
                                 "while true; do sleep 1; done"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while "TOUR-DONE" not in out.read_text(errors="replace"):
            assert proc.poll() is None, f"the tour stopped (exit {proc.returncode}):\n" + out.read_text()[-4000:]
            assert time.monotonic() < deadline, "the tour did not finish:\n" + out.read_text()[-4000:]
            time.sleep(0.5)
    finally:
        stop_group(proc, signal.SIGTERM, timeout_s=20)
    text = out.read_text(errors="replace")
    tail = text[-4000:]
    # section 1: the task id and the U1 customId were carried over
    task = re.search(r"^imagine task (\d{10,})$", text, re.M)
    assert task, tail
    assert re.search(r'^\{"status":"SUCCESS","progress":"100%","buttons":\["U1","U2","U3","U4",', text, re.M), tail
    assert re.search(r'^\{"code":1,"result":"\d{10,}"\}$', text, re.M), tail
    # section 2: a job over HTTP, then one through the CLI to the end
    job = re.search(r"^job (job_\w+)$", text, re.M)
    assert job, tail
    assert re.search(r'^\{"status":"\w+","steps":\[\{"label":"IMAGINE"', text, re.M), tail
    done = re.search(r"^(job_\w+)\s+succeeded ", text, re.M)
    assert done, tail
    images = list((tmp_path / "data" / "images" / done.group(1)).glob("*.png"))
    assert len(images) == 3, sorted(p.name for p in images)       # the grid, U1 and U2
    assert '"logger": "gunicorn.error"' in text                     # the web app logs JSON lines
    assert "warning: MJFLOW_PUBLIC_URL" not in text                 # the receiver answered
    assert not list(tmp_path.glob("celerybeat-schedule*")) and not list(ROOT.glob("celerybeat-schedule*"))
    assert time.monotonic() - started < 120
