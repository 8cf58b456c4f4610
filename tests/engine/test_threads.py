"""A run on the CPU uses one thread per physical core, or the number the settings give."""

import threading

import pytest
import torch

from desktop.core.progress import TaskState
from desktop.core.settings import Settings
from desktop.engine import devices
from desktop.engine.local import LocalBackend

# Two packages of two cores, each with a hyper-thread sibling: 8 processors, 4 physical cores.
CPUINFO = "".join(f"processor\t: {n}\nphysical id\t: {n // 4}\ncore id\t\t: {n % 2}\n\n" for n in range(8))


def test_physical_cores_count_cores_not_hyper_threads(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert devices._linux_cores(str(info)) == 4
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)  # taskset 0-2
    assert devices._linux_cores(str(info)) == 2


def test_physical_cores_fall_back_to_the_logical_count(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\n")  # an ARM board: no core ids
    assert devices._linux_cores(str(info)) == 0
    monkeypatch.setattr(devices, "_linux_cores", lambda: 0)
    assert devices.physical_cores() == devices._logical() >= 1


def run_on_a_thread(function):
    """What `function` returns on a new thread, and torch's thread count there afterwards (the worker's view)."""
    out = []
    thread = threading.Thread(target=lambda: out.append((function(), torch.get_num_threads())))
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.parametrize("setting, expected", [(0, "physical"), (1, 1), (3, 3)])
def test_the_backend_starts_with_the_threads_the_settings_give(monkeypatch, setting, expected):
    monkeypatch.setattr(devices, "physical_cores", lambda: 5)
    backend = LocalBackend.from_settings(Settings(device="cpu", cpu_runtime="pytorch", cpu_threads=setting))
    description, threads = run_on_a_thread(lambda: backend.start(TaskState()))
    wanted = 5 if expected == "physical" else expected
    assert threads == wanted and f"{wanted} threads" in description


def test_another_device_keeps_torch_threads(monkeypatch):
    monkeypatch.setattr(devices, "physical_cores", lambda: 5)
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices.torch.cuda, "get_device_name", lambda index: "Fake GPU")
    before = run_on_a_thread(lambda: None)[1]
    _choice, threads = run_on_a_thread(lambda: devices.choose("cuda", threads=0))
    assert threads == before


def test_a_job_runs_with_the_backends_threads_on_whatever_thread_runs_it(monkeypatch):
    """torch keeps a thread count per thread: a server runs jobs on its engine thread, not where start() ran, and
    that thread may hold another count (a picture then differs from the same one made here)."""
    from concurrent.futures import ThreadPoolExecutor

    from desktop.core.backend import GenerationJob
    from desktop.engine import generate
    from tests.support.requests import make_request

    monkeypatch.setattr(devices, "physical_cores", lambda: 2)
    backend = LocalBackend.from_settings(Settings(device="cpu", cpu_runtime="pytorch", cpu_threads=0))
    backend.start(TaskState())
    seen = []
    monkeypatch.setattr(generate, "run", lambda *args, **kwargs: seen.append(torch.get_num_threads()) or [])
    with ThreadPoolExecutor(1) as engine:  # a server's engine thread, which ran something with 3 threads before
        engine.submit(torch.set_num_threads, 3).result()
        engine.submit(backend.run, GenerationJob(make_request(model="demo")), TaskState()).result()
    assert seen == [2]


def test_a_ray_replicas_share_of_the_cpus_is_kept(monkeypatch):
    """Ray sets OMP_NUM_THREADS to the CPUs a replica was given: two replicas on two cores use one thread each."""
    monkeypatch.setattr(devices, "physical_cores", lambda: 5)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_on_a_thread(lambda: devices.use_threads(0)) == (1, 1)
    assert run_on_a_thread(lambda: devices.use_threads(3)) == (3, 3)  # the person's own setting still wins
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert run_on_a_thread(lambda: devices.use_threads(0)) == (5, 5)
