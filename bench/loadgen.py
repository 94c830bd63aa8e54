"""A small HTTP/1.1 load generator (asyncio, keep-alive), run as its own process.

    python -m bench.loadgen --port 8000 --requests reqs.json --connections 16 \
        (--duration 8 --warmup 1 | --count 20000) --out result.json

``reqs.json`` is a list of ``[path, body]``; the connections take them round-robin and
POST each as ``application/json``. ``--duration`` measures a fixed window after a warm-up
(throughput, latency); ``--count`` sends exactly that many requests as fast as the
connections allow (a burst). The result: requests, statuses, seconds, latency
percentiles, and this process's own CPU seconds (the generator shares the machine).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

READ_LIMIT = 1 << 20


def build(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run(host: str, port: int, reqs: list[bytes], connections: int, *,
              duration_s: float | None, warmup_s: float, count: int | None) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = 0
    issued = 0
    total = 0
    measuring = count is not None
    t_start = time.perf_counter()
    stop_at = None if duration_s is None else t_start + warmup_s + duration_s
    window: dict[str, float] = {}

    async def conn(idx: int) -> None:
        nonlocal issued, errors, total
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        try:
            while True:
                now = time.perf_counter()
                if stop_at is not None and now >= stop_at:
                    return
                if count is not None and issued >= count:
                    return
                i = issued
                issued += 1
                t0 = time.perf_counter()
                try:
                    writer.write(reqs[i % len(reqs)])
                    await writer.drain()
                    status = await read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
                    continue
                t1 = time.perf_counter()
                total += 1
                in_window = measuring or (t0 >= t_start + warmup_s)
                if in_window:
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(t1 - t0)
                    window.setdefault("first", t0)
                    window["last"] = t1
        finally:
            writer.close()

    await asyncio.gather(*(conn(i) for i in range(connections)))
    seconds = window.get("last", 0.0) - window.get("first", 0.0)
    latencies.sort()

    def q(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    done = sum(statuses.values())
    return {
        "requests": done, "total": total, "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors, "seconds": seconds, "rps": done / seconds if seconds else None,
        "p50_ms": (q(0.50) or 0) * 1000, "p90_ms": (q(0.90) or 0) * 1000,
        "p99_ms": (q(0.99) or 0) * 1000, "max_ms": (latencies[-1] if latencies else 0) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", required=True, help="JSON file: [[path, body], ...]")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--count", type=int)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if (args.duration is None) == (args.count is None):
        ap.error("give exactly one of --duration and --count")
    items = json.loads(Path(args.requests).read_text())
    reqs = [build(args.host, args.port, path, body.encode()) for path, body in items]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(run(args.host, args.port, reqs, args.connections,
                             duration_s=args.duration, warmup_s=args.warmup, count=args.count))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
