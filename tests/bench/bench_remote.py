"""The remote path against the local one, on the tiny demo model on the CPU, each figure against a baseline of the
same run.

- overhead per job: a 64x64, 5-step generation through RemoteBackend and `sfumato serve` on 127.0.0.1 (the
  protocol, HTTP, a JPEG preview per step, PNG both ways, the engine thread) against the same job on a
  LocalBackend called directly;
- throughput of a batch of jobs on a real Ray cluster of this computer (tests/support/ray_cluster.py) with two
  Serve replicas against one replica, the client sending as many jobs at once as the server has replicas, as the
  window does. Each replica holds one CPU (one thread), so on a two-core machine two replicas can at best double it.

    python -m tests.bench remote
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from .common import Figure, best_of, sfumato_home

JOBS = 8  # the batch of the throughput figure
SIDE = 256


def run() -> list[Figure]:
    os.environ["SFUMATO_HOME"] = sfumato_home("remote")  # the demo model is built there, not in the user's home
    return _overhead() + _throughput()


def _overhead() -> list[Figure]:
    """The server in a process of its own, as it runs for real (in one process, the client's and the engine's
    thread pools fight over the cores and the figure says more about that than about the remote path)."""
    import socket
    import subprocess
    import sys
    import urllib.request

    from desktop.core.backend import GenerationJob
    from desktop.core.progress import TaskState
    from desktop.engine.local import LocalBackend
    from desktop.remote.backend import RemoteBackend
    from tests.support.requests import make_request

    job = GenerationJob(make_request(model="demo", prompt="a lighthouse", width=64, height=64, steps=5, seed=3))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "desktop", "serve", "--port", str(port), "--device", "cpu",
                               "--precision", "fp32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("sfumato serve did not start") from None
                time.sleep(0.2)
        remote_backend = RemoteBackend(url)
        remote_backend.load("demo", TaskState())
        remote = best_of(lambda: remote_backend.run(job, TaskState()), repeat=7)
    finally:
        server.terminate()
        server.wait(30)
    backend = LocalBackend("cpu", "fp32")  # the same engine, this process, once the server has gone
    backend.start(TaskState())
    backend.load("demo", TaskState())
    try:
        local = best_of(lambda: backend.run(job, TaskState()), repeat=7)
    finally:
        backend.close()
    return [Figure("64x64 5-step job through RemoteBackend and sfumato serve on 127.0.0.1", remote, "s",
                   "the same job on a LocalBackend in this process", local),
            Figure("remote overhead per job (the difference)", remote - local, "s", "the local job", local)]


def _throughput() -> list[Figure]:
    from desktop.core.backend import GenerationJob
    from desktop.core.progress import TaskState
    from desktop.remote.backend import RemoteBackend
    from tests.support.ray_cluster import ray_head, sfumato_serve
    from tests.support.requests import make_request

    jobs = [GenerationJob(make_request(model="demo", prompt="a lighthouse", width=SIDE, height=SIDE, steps=8,
                                       seed=100 + k)) for k in range(JOBS)]
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="sfumato-bench-remote-") as home:
        with ray_head(4, Path(home)) as (head, env):
            for replicas in (1, 2):
                with sfumato_serve(head, env, replicas) as cluster:
                    remote = RemoteBackend(cluster.url, cluster.token, read_timeout=300)
                    remote.start(TaskState())
                    for warm in jobs[:replicas]:  # every replica has imported, built and loaded its model
                        _all_at_once(remote, [warm] * replicas)
                    started = time.perf_counter()
                    for first in range(0, JOBS, remote.slots):
                        _all_at_once(remote, jobs[first:first + remote.slots])
                    seconds[replicas] = time.perf_counter() - started
    name = f"{JOBS} jobs of {SIDE}x{SIDE}, 8 steps, through Ray Serve"
    return [Figure(f"{name}: 2 replicas, jobs per second", JOBS / seconds[2], "jobs/s", "1 replica",
                   JOBS / seconds[1])]


def _all_at_once(remote, jobs) -> None:
    from desktop.core.progress import TaskState

    failures = []

    def one(job) -> None:
        try:
            remote.run(job, TaskState())
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=one, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if failures:
        raise failures[0]
