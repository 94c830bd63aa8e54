"""``python -m simulator`` / ``mjflow sim``: run the simulator in the foreground.

Only wires command-line options to :func:`simulator.server.build`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from .faults import load_faults
from .models import DEFAULT_CORE_SIZE, DEFAULT_QUEUE_SIZE
from .profiles import DEFAULT_PROFILE, PROFILES
from .server import DEFAULT_HOST, build

DEFAULT_CLI_PORT = 8090


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="mjflow sim", description="midjourney-proxy upstream simulator"
    )
    ap.add_argument("--port", type=int, default=DEFAULT_CLI_PORT, help="0 = any free port")
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    ap.add_argument("--speed", type=float, default=1.0, help="durations are divided by this")
    ap.add_argument("--faults", metavar="FILE", help="fault knobs, .json or .yaml")
    ap.add_argument("--api-key", default="", help="expected key (empty = no auth)")
    ap.add_argument("--core-size", type=int, default=DEFAULT_CORE_SIZE)
    ap.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE)
    ap.add_argument("--accounts", type=int, default=1)
    ap.add_argument(
        "--url-ttl-s", type=float, default=None, help="CDN URL lifetime (default 24h/speed)"
    )
    ap.add_argument("--public-base", default=None, help="base URL put into generated URLs")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    return ap.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C; prints the base URL and the profile."""
    args = parse_args(argv)
    faults = load_faults(args.faults) if args.faults else None
    srv = build(
        port=args.port,
        host=args.host,
        profile=args.profile,
        speed=args.speed,
        faults=faults,
        api_key=args.api_key,
        core_size=args.core_size,
        queue_size=args.queue_size,
        url_ttl_s=args.url_ttl_s,
        public_base=args.public_base,
        accounts=args.accounts,
        quiet=not args.verbose,
    )
    print(f"mjflow simulator: {srv.url}  profile={args.profile}  speed={args.speed}", flush=True)
    print(f"  admin: {srv.url}/_sim/stats  {srv.url}/_sim/faults", flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        srv.serve_forever()  # werkzeug returns quietly on KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        srv.sim.close()
    print("simulator stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
