"""A real Ray cluster on this machine: a head node and more nodes, each its own `ray start`.

Used by tests/integration/test_ray_cluster.py and tools/bench_ray.py. Each node is a
``ray start --block`` process in its own process group, so it is stopped by its own id (its
group gets SIGTERM, then SIGKILL): ``ray stop --force`` would stop every Ray process of the
user on the machine, other people's instances included. Ray 2.52 and later authenticate with a
token when ``RAY_AUTH_MODE=token``: every node and every client needs the same token, given
here as ``RAY_AUTH_TOKEN`` in the environment of the nodes and of the build (``env``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    logs: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)  # the head first

    def add_node(self, cpus: int = 1) -> subprocess.Popen:
        """Start one more node and wait until the cluster counts it."""
        args = ["start", "--block", "--address", self.address, "--num-cpus", str(cpus)]
        node = self._start(args + ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"])
        self.wait_for(len(self.nodes))
        return node

    def _start(self, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"node{len(self.nodes)}.log", "w")  # noqa: SIM115 (the node's)
        node = subprocess.Popen(
            [RAY, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> int:
        got = subprocess.run(
            [RAY, "status", "--address", self.address], env=self.env, capture_output=True, text=True
        )
        if got.returncode:
            return 0
        active = got.stdout.split("Active:")[-1].split("Pending:")[0]
        return active.count("node_")

    def wait_for(self, nodes: int, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while self.alive_nodes() < nodes:
            if time.monotonic() > end or any(n.poll() is not None for n in self.nodes):
                raise RuntimeError(f"the Ray cluster did not reach {nodes} nodes: see {self.logs}")
            time.sleep(1)

    def kill(self, node: subprocess.Popen, sig=signal.SIGKILL) -> None:
        """Stop one node (its process group: the raylet and its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)

    def stop(self) -> None:
        """Every node, the other nodes before the head (a node stopped after its head waits
        for it in vain)."""
        for node in reversed(self.nodes):
            self.kill(node, signal.SIGTERM)
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                self.kill(node, signal.SIGKILL)
                node.wait(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_cluster(logs: Path, nodes: int = 2, cpus: int = 1):
    """A cluster of ``nodes`` nodes of ``cpus`` CPUs each, stopped on exit whatever happens."""
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    cluster = Cluster(address=f"127.0.0.1:{port}", env=env, logs=logs)
    try:
        head = ["start", "--head", "--block", "--port", str(port), "--num-cpus", str(cpus)]
        cluster._start(
            head
            + ["--node-ip-address", "127.0.0.1", "--include-dashboard", "false"]
            + ["--disable-usage-stats"]
        )
        cluster.wait_for(1)
        for _ in range(nodes - 1):
            cluster.add_node(cpus)
        yield cluster
    finally:
        cluster.stop()


def build(cluster: Cluster, recipe: Path, out: Path, workers: int, *extra: str):
    """`mixer build --engine ray --address` on the cluster, in its own process."""
    args = [sys.executable, "-m", "mixer.cli", "build", str(recipe), "-o", str(out)]
    args += ["--engine", "ray", "--address", cluster.address, "-w", str(workers), *extra]
    return subprocess.Popen(
        args, env=cluster.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
