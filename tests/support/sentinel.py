"""A real Redis Sentinel deployment on loopback for tests: a master, a replica and three
``redis-sentinel`` processes (Debian's package; ``redis-server --sentinel`` is the same
program), each on a free port, all in their own process groups and killed at the end."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from worker.dev.localnet import free_port, stop_group

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000
PAUSE_MS = 8000


def sentinel_argv(conf: Path) -> list[str] | None:
    """The command that runs a Sentinel on ``conf``, or None if Redis is not installed."""
    if shutil.which("redis-sentinel"):
        return ["redis-sentinel", str(conf)]
    if shutil.which("redis-server"):
        return ["redis-server", str(conf), "--sentinel"]
    return None


@dataclass
class SentinelCluster:
    workdir: Path
    master_name: str = MASTER_NAME
    password: str | None = None
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> SentinelCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_ports = [free_port(), free_port()]
        master, replica = self.redis_ports
        self._redis(master)
        self._redis(replica, "--replicaof", "127.0.0.1", str(master))
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            self._sentinel(port, master)
        self.wait_ready()
        return self

    # -- processes ---------------------------------------------------------------------
    def _spawn(self, port: int, argv: list[str]) -> None:
        log = (self.workdir / f"{port}.log").open("ab")
        self.procs[port] = subprocess.Popen(argv, cwd=self.workdir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def _redis(self, port: int, *extra: str) -> None:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename",
                f"dump-{port}.rdb", *extra]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        self._spawn(port, argv)

    def _sentinel(self, port: int, master_port: int) -> None:
        conf = self.workdir / f"sentinel-{port}.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {self.workdir}",
                 f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2",
                 f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {self.master_name} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {self.master_name} 1"]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        argv = sentinel_argv(conf)
        assert argv is not None, "redis-server is not installed"
        self._spawn(port, argv)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc, signal.SIGKILL)
        self.procs.clear()

    # -- state ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth if i == 0 else ''}127.0.0.1:{p}"
                        for i, p in enumerate(self.sentinel_ports))

    def sentinel(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(port=port or self.sentinel_ports[0], decode_responses=True,
                           socket_timeout=2, socket_connect_timeout=2)

    def master_port(self, port: int | None = None) -> int | None:
        try:
            addr = self.sentinel(port).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        except redis.RedisError:
            return None
        return int(addr[1]) if addr else None

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Every Sentinel knows the master, the replica (if alive) and the other two."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._knows_all(p) for p in self.sentinel_ports):
                return
            time.sleep(0.2)
        raise AssertionError("sentinels did not converge:\n" + self.tail())

    def _knows_all(self, port: int) -> bool:
        try:
            s = self.sentinel(port)
            others = s.execute_command("SENTINEL", "SENTINELS", self.master_name)
            replicas = s.execute_command("SENTINEL", "REPLICAS", self.master_name)
        except redis.RedisError:
            return False
        live = [p for p in self.redis_ports if p in self.procs]
        ok_replicas = [r for r in replicas if "s_down" not in str(r)]
        return len(others) == 2 and len(ok_replicas) >= len(live) - 1

    def wait_master(self, not_port: int, timeout_s: float = 30.0) -> int:
        """Wait until every Sentinel names a master other than ``not_port``; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ports = {self.master_port(p) for p in self.sentinel_ports}
            if len(ports) == 1 and None not in ports and not_port not in ports:
                new = ports.pop()
                role = redis.Redis(port=new, password=self.password, socket_timeout=2).role()
                if role[0] in (b"master", "master"):
                    return new  # type: ignore[return-value]
            time.sleep(0.2)
        raise AssertionError(f"no failover away from {not_port}:\n" + self.tail())

    def wait_in_sync(self, timeout_s: float = 30.0) -> None:
        """Wait until the master has an online replica at its replication offset.

        Replication is asynchronous: a master killed while its replica is still being
        reconfigured or resynced (as just after a failover) takes acknowledged writes with
        it (docs/operations.md). The test kills the master only once the replica has
        caught up, so what it measures is mjflow following the failover."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = self.master_port()
            try:
                info = self._client(port).info("replication")  # type: ignore[arg-type]
            except redis.RedisError:
                info = {}
            offset = info.get("master_repl_offset")
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if any(r.get("state") == "online" and r.get("offset", -1) >= (offset or 0)
                   for r in replicas):
                return
            time.sleep(0.1)
        raise AssertionError("the replica did not catch up:\n" + self.tail())

    def failover(self) -> int:
        """``SENTINEL FAILOVER``: the replica becomes master; returns its port."""
        old = self.master_port()
        assert old is not None
        # A planned switch, done as docs/operations.md says: pause writes on the master
        # first. Otherwise it keeps acknowledging writes after its replica is promoted and
        # until the Sentinels demote it, and those writes are dropped at the resync.
        self._client(old).execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        self.wait_in_sync()          # what it acknowledged before the pause is on the replica
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.master_name)
        new = self.wait_master(old)
        self._wait_role(old, "slave")
        self._client(old).execute_command("CLIENT", "UNPAUSE")
        return new

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=2,
                           decode_responses=True)

    def _wait_role(self, port: int, role: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self._client(port).role()[0] == role:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{port} is not a {role}:\n" + self.tail())

    def kill_master(self) -> tuple[int, int]:
        """SIGKILL the master (once its replica is in sync); returns (killed, new master)."""
        self.wait_in_sync()
        old = self.master_port()
        assert old is not None
        stop_group(self.procs.pop(old), signal.SIGKILL)
        return old, self.wait_master(old)

    def tail(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            out.append(f"--- {log.name} ---\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)
