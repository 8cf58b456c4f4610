"""One real Ray cluster for the tests of this folder, on 127.0.0.1 only, and `sfumato serve --address` on it.

What an operator does, in processes of its own: `ray start --head` (Ray's own command, with its own temp folder,
ports and no dashboard), then `sfumato serve --address HEAD --replicas 2 --token T`, which deploys two engines on
the tiny demo model through Ray Serve. Every address is the loopback one: Ray is started with
`--node-ip-address 127.0.0.1` and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for it and every driver, or it picks the
machine's routable address.

Stopping takes back exactly what these tests started (never `ray stop`, which stops every Ray process of the
machine): `sfumato serve` gets Ctrl+C (SIGINT) and must take its deployment back and exit 0, then every process
that carries this run's marker in its environment (the head's, and the workers and replicas it started) gets
SIGTERM, then SIGKILL. Every step has a time limit; a watchdog stops the cluster and the run when the whole
folder takes too long.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from desktop.core.progress import TaskState

MARKER = "SFUMATO_TEST_CLUSTER"
TOKEN = "cluster-test-token"
REPLICAS = 2
START_S = 120  # `ray start` on a busy two-core machine
DEPLOY_S = 240  # Serve, two replicas importing torch and diffusers, and their demo model
STOP_S = 60
RUN_LIMIT_S = 900  # the whole folder, cluster included
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
                 serve_log: Path):
        self.url, self.head, self.env, self.home, self.serve, self.serve_log = url, head, env, home, serve, serve_log

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

    def health(self, token: str | None = TOKEN) -> dict:
        request = urllib.request.Request(f"{self.url}/health",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    marker = uuid.uuid4().hex
    base = Path(tempfile.mkdtemp(prefix="sfr-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = tmp_path_factory.mktemp("cluster-home")
    env = {**os.environ, MARKER: marker, "SFUMATO_HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "QT_QPA_PLATFORM": "offscreen"}

    def watchdog() -> None:
        faulthandler.dump_traceback(file=sys.stderr)
        stop_marked(marker)
        os._exit(1)

    timer = threading.Timer(RUN_LIMIT_S, watchdog)
    timer.daemon = True
    timer.start()
    ray = str(Path(sys.executable).with_name("ray"))
    gcs_port, http_port = free_port(), free_port()
    head = f"127.0.0.1:{gcs_port}"
    serve = None
    try:
        subprocess.run(
            [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
             "--temp-dir", str(base / "ray"), "--include-dashboard=false", "--disable-usage-stats",
             "--num-cpus", str(REPLICAS + 2), "--num-gpus", "0",
             "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())],
            env=env, check=True, timeout=START_S, capture_output=True)
        log = base / "serve.log"
        with open(log, "wb") as out:
            serve = subprocess.Popen(
                [sys.executable, "-m", "desktop", "serve", "--address", head, "--replicas", str(REPLICAS),
                 "--host", "127.0.0.1", "--port", str(http_port), "--device", "cpu", "--precision", "fp32",
                 "--token", TOKEN],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        running = Cluster(f"http://127.0.0.1:{http_port}", head, env, home, serve, log)
        running.wait_for_replicas(REPLICAS)
        yield running
        serve.send_signal(signal.SIGINT)  # Ctrl+C: it takes its deployment back, and leaves the cluster running
        assert serve.wait(STOP_S) == 0, log.read_text()[-3000:]
        assert not running.replica_pids(), "sfumato serve left its replicas running"
        assert any(b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in marked_processes(marker)), "sfumato serve stopped the cluster it did not start"
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait(STOP_S)
        stop_marked(marker)
        timer.cancel()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def local(tmp_path_factory):
    """The same engine on this process: cpu, fp32, its own demo model (the same random weights, built here), on
    one thread as a replica that holds one CPU (Ray gives it one; on the CPU the sums, and so the last bits of a
    picture, depend on how many threads share them)."""
    import torch

    from desktop.engine.local import LocalBackend

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SFUMATO_HOME", str(tmp_path_factory.mktemp("local-home")))
        backend = LocalBackend("cpu", "fp32")
        backend.start(TaskState())
        loaded = backend.load("demo", TaskState())
    yield backend, loaded
    backend.close()
    torch.set_num_threads(threads)
