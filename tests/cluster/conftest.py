"""One real Ray cluster for the tests of this folder (tests/support/ray_cluster.py: on 127.0.0.1 only, stopped
afterwards, only what it started), with `sfumato serve --address HEAD --replicas 2 --token T` on it. A watchdog
stops the cluster and the run when the whole folder takes too long."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from pathlib import Path

import pytest

from desktop.core.progress import TaskState
from tests.support.ray_cluster import TOKEN, marked_processes, ray_head, sfumato_serve, stop_marked

REPLICAS = 2
RUN_LIMIT_S = 900  # the whole folder, cluster included


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with ray_head(REPLICAS + 2, tmp_path_factory.mktemp("cluster-home")) as (head, env):
        def watchdog() -> None:
            faulthandler.dump_traceback(file=sys.stderr)
            stop_marked(env["SFUMATO_TEST_CLUSTER"])
            os._exit(1)

        timer = threading.Timer(RUN_LIMIT_S, watchdog)
        timer.daemon = True
        timer.start()
        try:
            with sfumato_serve(head, env, REPLICAS) as running:
                yield running
            assert running.stopped == 0, running.serve_log.read_text()[-3000:]
            assert not running.replica_pids(), "sfumato serve left its replicas running"
            assert any(b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
                       for pid in marked_processes(env["SFUMATO_TEST_CLUSTER"])), \
                "sfumato serve stopped the cluster it did not start"
        finally:
            timer.cancel()


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
        backend = LocalBackend("cpu", "fp32", cpu_threads=1)  # as a replica given one CPU runs
        backend.start(TaskState())
        loaded = backend.load("demo", TaskState())
    yield backend, loaded
    backend.close()
    torch.set_num_threads(threads)
