"""Peak memory of storing one large image: mjflow's streaming store vs the naive way.

    python bench/bench_memory.py [--size-mb 50] [--repeat 1]

Serves a PNG of random noise (incompressible, ~50 MB) from a loopback HTTP server, starts
moto's S3 server as a subprocess, then stores the image once per variant, each in a fresh
Python process so nothing is shared:

* ``naive``        ``requests.get(url).content`` then ``put_object(Body=bytes)``
* ``mjflow-s3``    ``store_step_images`` into an ``S3Sink`` (the production path)
* ``mjflow-file``  ``store_step_images`` into a ``FileSink``
* ``s3-multipart`` the mjflow path with an 8 MiB multipart threshold (boto3's default),
                   for comparison: s3transfer buffers whole parts in memory

Each child warms up first (imports, clients, a tiny store), records VmRSS, resets the
kernel's peak (``/proc/self/clear_refs`` = 5, so VmHWM restarts from the current RSS),
stores the big image, and reports VmHWM − VmRSS-before: the memory the store itself
needed. The stored object's SHA-256 is checked against the source. Target: mjflow's
growth stays under 32 MB for a 50 MB image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "mjflow-bench"
VARIANTS = ("naive", "mjflow-s3", "mjflow-file", "s3-multipart")
#: Variants held to the target (``s3-multipart`` shows why the sink avoids multipart).
MJFLOW_VARIANTS = ("mjflow-s3", "mjflow-file")
MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024
TARGET_GROWTH_MB = 32.0
COPY_CHUNK_BYTES = 256 * 1024


def proc_status_kb() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {
        name: int(re.search(rf"{name}:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        for name in ("VmRSS", "VmHWM")
    }


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- the child: one variant in a fresh process -------------------------------------------


def run_child(variant: str, base_url: str, endpoint: str, work_dir: str) -> dict[str, Any]:
    import requests

    from tests.support.s3 import s3_client
    from worker.settings import load_settings
    from worker.storage import FileSink, S3Sink, StoreRequest, store_step_images

    settings = load_settings(
        allow_private_urls=True, download_timeout_s=120.0, storage_url=f"file://{work_dir}/files"
    )
    client = s3_client(endpoint, max_attempts=3, timeout_s=60.0)
    session = requests.Session()
    sink: Any
    if variant == "mjflow-file":
        sink = FileSink(Path(work_dir) / "files")
    elif variant == "s3-multipart":
        sink = S3Sink(
            BUCKET, variant, client=client, multipart_threshold_bytes=MULTIPART_THRESHOLD_BYTES
        )
    else:
        sink = S3Sink(BUCKET, variant, client=client)

    def store(path: str, job_id: str) -> str:
        """Store the image at ``path``; return its key."""
        url = base_url + path
        if variant == "naive":
            body = requests.get(url, timeout=120).content
            key = f"naive/{job_id}.png"
            client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/png")
            return key
        req = StoreRequest(
            job_id=job_id, step_index=0, label="IMAGINE", task_id="1", prompt="bench", image_url=url
        )
        [stored] = store_step_images(sink, session, req, settings=settings)
        return stored.key

    store("/tiny.png", "warmup")  # imports, connection pools, transfer threads
    before = proc_status_kb()
    peak_reset = reset_peak()
    if not peak_reset:
        before["VmRSS"] = before["VmHWM"]  # fall back: growth above the earlier peak
    started = time.perf_counter()
    key = store("/big.png", "big")
    elapsed_s = time.perf_counter() - started
    after = proc_status_kb()
    if variant == "naive":
        sha = _sha_of_s3(client, key)
    else:
        sha = _stored_sha(sink, key)
    return {
        "variant": variant,
        "growth_kb": after["VmHWM"] - before["VmRSS"],
        "rss_before_kb": before["VmRSS"],
        "peak_kb": after["VmHWM"],
        "seconds": elapsed_s,
        "sha256": sha,
        "peak_reset": peak_reset,
    }


def _sha_of_s3(client: Any, key: str) -> str:
    """SHA-256 of a stored object, streamed (so checking does not inflate the peak)."""
    digest = hashlib.sha256()
    for chunk in client.get_object(Bucket=BUCKET, Key=key)["Body"].iter_chunks(COPY_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _stored_sha(sink: Any, key: str) -> str:
    if hasattr(sink, "bucket"):
        return _sha_of_s3(sink.client, sink._full(key))
    digest = hashlib.sha256()
    with open(sink.location(key), "rb") as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the parent: image server, moto, children, table --------------------------------------


def make_noise_png(path: Path, size_mb: float) -> str:
    """A PNG of random RGB noise about ``size_mb`` MB; return its SHA-256."""
    from PIL import Image

    side = int((size_mb * 1_000_000 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        path, format="PNG", compress_level=1
    )
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def serve_files(files: dict[str, Path]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = files.get(self.path)
            if path is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile, COPY_CHUNK_BYTES)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (worst is shown)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.url, args.endpoint, args.work_dir)))
        return 0

    from tests.support.s3 import TEST_AWS_ENV, MotoServer, make_bucket

    with tempfile.TemporaryDirectory(prefix="mjflow-bench-") as tmp, MotoServer() as moto:
        work = Path(tmp)
        print(f"generating a {args.size_mb:g} MB noise PNG ...", file=sys.stderr, flush=True)
        big_sha = make_noise_png(work / "big.png", args.size_mb)
        make_noise_png(work / "tiny.png", 0.01)
        big_mb = (work / "big.png").stat().st_size / 1e6
        server = serve_files({"/big.png": work / "big.png", "/tiny.png": work / "tiny.png"})
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        make_bucket(moto.url, BUCKET)
        env = {**os.environ, **TEST_AWS_ENV, "PYTHONPATH": str(ROOT)}
        results: dict[str, dict[str, Any]] = {}
        for variant in VARIANTS:
            for _ in range(args.repeat):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        variant,
                        "--url",
                        base_url,
                        "--endpoint",
                        moto.url,
                        "--work-dir",
                        str(work),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=False,
                    timeout=600,
                )
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    raise SystemExit(f"variant {variant} failed")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if variant not in results or result["growth_kb"] > results[variant]["growth_kb"]:
                    results[variant] = result
        server.shutdown()

    print_table(results, big_mb, big_sha)
    ok = all(results[v]["growth_kb"] / 1024 < TARGET_GROWTH_MB for v in MJFLOW_VARIANTS)
    return 0 if ok else 1


def print_table(results: dict[str, dict[str, Any]], big_mb: float, big_sha: str) -> None:
    baseline_mb = results["naive"]["growth_kb"] / 1024
    print(
        f"\nimage: {big_mb:.1f} MB PNG of noise; peak RSS growth of one store "
        f"(VmHWM after − VmRSS before, fresh process per variant)\n"
    )
    print(f"{'variant':<12} {'peak RSS growth MB':>19} {'ratio':>7} {'seconds':>8}  stored sha256")
    for variant in VARIANTS:
        r = results[variant]
        growth_mb = r["growth_kb"] / 1024
        ratio = growth_mb / baseline_mb if baseline_mb > 0 else float("nan")
        verdict = "ok" if r["sha256"] == big_sha else "MISMATCH"
        print(f"{variant:<12} {growth_mb:>19.1f} {ratio:>7.2f} {r['seconds']:>8.2f}  {verdict}")
    if not all(r["peak_reset"] for r in results.values()):
        print("\n(/proc/self/clear_refs not writable: growth measured above the warm-up peak)")
    print(f"\ntarget: mjflow under {TARGET_GROWTH_MB:g} MB of growth")


if __name__ == "__main__":
    raise SystemExit(main())
