"""Serve a WSGI app on loopback in a background thread (real HTTP for tests)."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server


@contextmanager
def serve(app, host: str = "127.0.0.1") -> Iterator[str]:  # type: ignore[no-untyped-def]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
