"""Run the simulator on a threaded werkzeug server in a background thread.

>>> from simulator.server import start
>>> srv = start(profile="trueai", speed=200)
>>> srv.url          # e.g. "http://127.0.0.1:54321"
>>> srv.sim.stats()  # the state model, for assertions
>>> srv.stop()

Used by the tests, the benchmarks and :mod:`simulator.cli`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, make_server

from .app import create_app
from .faults import Faults
from .models import DEFAULT_CORE_SIZE, DEFAULT_QUEUE_SIZE, Simulator
from .profiles import DEFAULT_PROFILE

DEFAULT_HOST = "127.0.0.1"
SHUTDOWN_POLL_S = 0.05  # how often serve_forever checks for stop()


class SimServer:
    """A running simulator: ``url``, ``sim`` (the :class:`Simulator`), ``stop()``."""

    def __init__(self, sim: Simulator, server: BaseWSGIServer, url: str) -> None:
        self.sim = sim
        self.url = url
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="mjsim-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def _start(self) -> SimServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the CLI); returns after :meth:`stop`."""
        self._server.serve_forever(poll_interval=SHUTDOWN_POLL_S)

    def stop(self) -> None:
        """Stop serving and shut the simulator's threads down."""
        self._server.shutdown()
        self._server.server_close()
        self.sim.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build(
    port: int = 0,
    host: str = DEFAULT_HOST,
    profile: str = DEFAULT_PROFILE,
    speed: float = 1.0,
    faults: Faults | dict[str, Any] | None = None,
    api_key: str = "",
    core_size: int = DEFAULT_CORE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    url_ttl_s: float | None = None,
    public_base: str | None = None,
    accounts: int = 1,
    quiet: bool = True,
) -> SimServer:
    """Create the simulator and bind its server without serving yet."""
    sim = Simulator(
        profile,
        speed=speed,
        faults=faults,
        api_key=api_key,
        core_size=core_size,
        queue_size=queue_size,
        accounts=accounts,
        url_ttl_s=url_ttl_s,
    )
    app = create_app(sim)
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, app, threaded=True)
    url = f"http://{host}:{server.server_port}"
    sim.public_base = (public_base or url).rstrip("/")
    return SimServer(sim, server, url)


def start(
    port: int = 0,
    host: str = DEFAULT_HOST,
    profile: str = DEFAULT_PROFILE,
    speed: float = 1.0,
    faults: Faults | dict[str, Any] | None = None,
    api_key: str = "",
    core_size: int = DEFAULT_CORE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    url_ttl_s: float | None = None,
    public_base: str | None = None,
    accounts: int = 1,
) -> SimServer:
    """Start a simulator on ``host:port`` (0 = a free port) in a background thread."""
    return build(
        port,
        host,
        profile,
        speed,
        faults,
        api_key,
        core_size,
        queue_size,
        url_ttl_s,
        public_base,
        accounts,
    )._start()
