"""A real Ray cluster on this computer's loopback, and `sfumato serve --address` on it, for tests and benchmarks.

What an operator does, in processes of its own: `ray start --head` (Ray's own command, with its own temp folder,
ports and no dashboard), then `sfumato serve --address HEAD --replicas N`, which deploys N engines on the tiny demo
model through Ray Serve. Every address is the loopback one: Ray is started with `--node-ip-address 127.0.0.1`
and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for it and every driver, or it picks the machine's routable address.

Stopping takes back exactly what was started here (never `ray stop`, which stops every Ray process of the
machine): `sfumato serve` gets Ctrl+C (SIGINT), then every process that carries this cluster's marker in its
environment (the head's, and the workers and replicas it started), and their children, get SIGTERM, then
SIGKILL. Every step has a time limit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

MARKER = "SFUMATO_TEST_CLUSTER"
TOKEN = "cluster-test-token"
START_S = 120  # `ray start` on a busy two-core machine
DEPLOY_S = 240  # Serve, two replicas importing torch and diffusers, and their demo model
STOP_S = 60
ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked_processes(marker: str) -> list[int]:
    """The processes this run started: the ones whose environment carries MARKER=marker, and their children (Ray
    renames some of its processes over their environment)."""
    wanted = f"{MARKER}={marker}".encode()
    found, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            pass
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grown = bool(children)
    return sorted(found)


def stop_marked(marker: str) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        pids = marked_processes(marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = marked_processes(marker)
        if not pids:
            return


class Cluster:
    def __init__(self, url: str, head: str, env: dict[str, str], home: Path, serve: subprocess.Popen,
                 serve_log: Path, token: str | None):
        self.url, self.head, self.env, self.home, self.serve, self.serve_log = url, head, env, home, serve, serve_log
        self.token = token
        self.stopped: int | None = None

    def replica_pids(self) -> list[int]:
        """The replicas' processes (Ray names them ray::ServeReplica:<app>:<deployment>)."""
        pids = []
        for pid in marked_processes(self.env[MARKER]):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::ServeReplica:sfumato:"):
                pids.append(pid)
        return pids

    def health(self) -> dict:
        request = urllib.request.Request(f"{self.url}/health",
                                         headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def wait_for_replicas(self, count: int, limit_s: float = DEPLOY_S) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if self.health().get("replicas") == count and len(self.replica_pids()) == count:
                    return
            except (OSError, ValueError):
                pass
            assert self.serve.poll() is None, f"sfumato serve ended: {self.serve_log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{count} replicas were not running after {limit_s} s"
            time.sleep(0.5)



@contextmanager
def ray_head(cpus: int, home: Path):
    """`ray start --head` on 127.0.0.1 with `cpus` CPUs and no GPU; yields (head address, environment for the
    processes that use it); stops every process it started afterwards."""
    marker = uuid.uuid4().hex
    base = Path(tempfile.mkdtemp(prefix="sfr-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, MARKER: marker, "SFUMATO_HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "QT_QPA_PLATFORM": "offscreen", "SFUMATO_TEST_BASE": str(base)}
    gcs_port = free_port()
    try:
        subprocess.run(
            [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
             "--port", str(gcs_port), "--temp-dir", str(base / "ray"), "--include-dashboard=false",
             "--disable-usage-stats", "--num-cpus", str(cpus), "--num-gpus", "0",
             "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())],
            env=env, check=True, timeout=START_S, capture_output=True)
        yield f"127.0.0.1:{gcs_port}", env
    finally:
        stop_marked(marker)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def sfumato_serve(head: str, env: dict[str, str], replicas: int, token: str | None = TOKEN):
    """`sfumato serve --address head --replicas N` in a process of its own; yields the Cluster once N replicas
    answer. Afterwards it gets Ctrl+C; `cluster.stopped` holds its exit code (or None if it had to be killed)."""
    log = Path(env["SFUMATO_TEST_BASE"]) / f"serve-{uuid.uuid4().hex[:8]}.log"
    http_port = free_port()
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "desktop", "serve", "--address", head, "--replicas", str(replicas),
             "--host", "127.0.0.1", "--port", str(http_port), "--device", "cpu", "--precision", "fp32",
             *(["--token", token] if token else [])],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    running = Cluster(f"http://127.0.0.1:{http_port}", head, env, Path(env["SFUMATO_HOME"]), serve, log, token)
    try:
        running.wait_for_replicas(replicas)
        yield running
        serve.send_signal(signal.SIGINT)  # Ctrl+C: it takes its deployment back, and leaves the cluster running
        running.stopped = serve.wait(STOP_S)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(STOP_S)
