"""A TCP forwarder to Redis that holds a client's commands from the first ``MULTI`` on
(the start of a transaction) until released, to stop a process at an exact point of its
conversation with Redis: tests SIGKILL a process held there, or let another request
overtake it."""
from __future__ import annotations

import socket
import threading

from tests.support.tcpproxy import shutdown_both

PATTERN = b"\r\nMULTI\r\n"


class RedisGate:
    def __init__(self, target_port: int = 6379, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.held = threading.Event()          # a transaction is being held
        self._open = threading.Event()
        self._server = socket.create_server((host, 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://{self.target[0]}:{self.port}/0"

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            threading.Thread(target=self._forward, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._forward, args=(upstream, client, False), daemon=True).start()

    def _forward(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if gated and not self._open.is_set():
                    at = (tail + data).find(PATTERN)
                    if at >= 0:
                        cut = max(at - len(tail), 0)
                        dst.sendall(data[:cut])
                        self.held.set()
                        self._open.wait()
                        data = data[cut:]
                    tail = (tail + data)[-len(PATTERN):]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            shutdown_both(src, dst)
