"""Sfumato's engine on a real Ray cluster (two Serve replicas on 127.0.0.1), driven as the window and the CLI drive
it: through RemoteBackend. Run with `pytest -m cluster` (.ci/run does); see conftest.py for the cluster."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.__main__ import main
from desktop.core import remote_protocol as protocol
from desktop.core.backend import GenerationJob
from desktop.core.errors import Cancelled
from desktop.core.outputs import metadata_chunks
from desktop.core.progress import TaskState
from desktop.remote.backend import RETRY_STATUS, RemoteBackend
from tests.cluster.conftest import REPLICAS, TOKEN
from tests.support.requests import make_request

pytestmark = pytest.mark.cluster
JOB_S = 120  # the longest any one job here may take on a busy two-core machine


def _request(seed: int, steps: int = 4, side: int = 64, **fields):
    return make_request(model="demo", prompt="a lighthouse at dusk", width=side, height=side, steps=steps, seed=seed,
                        **fields)


def _events(url: str, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, list[dict]]:
    """POST body; the status and every NDJSON event of the answer."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=JOB_S)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, [json.loads(line) for line in answer.read().splitlines() if line.strip()]
    finally:
        connection.close()


def test_a_generation_on_the_cluster_equals_the_local_one_with_the_same_infotext(cluster, local):
    backend, loaded = local
    remote = RemoteBackend(cluster.url, TOKEN, read_timeout=JOB_S)
    assert remote.start(TaskState()) == f"server at {cluster.url} ({REPLICAS} replicas)" and remote.slots == REPLICAS
    assert {"demo"} <= {model.ref for model in remote.models()}
    remote_loaded = remote.load("demo", TaskState())
    job = GenerationJob(_request(seed=7, batch_size=2))
    previews: list[bool] = []
    got = remote.run(job, TaskState(on_step=lambda i, n, preview: previews.append(preview is not None)))
    want = backend.run(job, TaskState())

    assert remote_loaded == loaded
    assert previews == [True] * 4
    assert [r.seed for r in got] == [r.seed for r in want] == [7, 8]
    for mine, theirs in zip(got, want, strict=True):
        assert np.array_equal(mine.image, theirs.image)
        assert metadata_chunks(mine.request, mine.seed, remote_loaded.name, remote_loaded.hash, mine.params) == \
            metadata_chunks(theirs.request, theirs.seed, loaded.name, loaded.hash, theirs.params)


def test_four_jobs_at_once_use_both_replicas_and_each_equals_the_local_one(cluster, local):
    backend, _ = local
    bodies = {seed: protocol.encode_job(GenerationJob(_request(seed=seed, steps=12))) for seed in (21, 22, 23, 24)}
    answers: dict[int, tuple[int, list[dict]]] = {}
    threads = [threading.Thread(target=lambda s=seed, b=body: answers.__setitem__(s, _events(cluster.url, "/run", b)))
               for seed, body in bodies.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOB_S)

    replicas = set()
    for seed in bodies:
        status, events = answers[seed]
        assert status == 200 and events[0]["event"] == "accepted" and events[-1]["event"] == "done", events[-1]
        replicas.add(events[0]["replica"])
        job = GenerationJob(_request(seed=seed, steps=12))
        [result] = [protocol.decode_result(e, job) for e in events if e["event"] == "result"]
        assert np.array_equal(result.image, backend.run(job, TaskState())[0].image)
    assert len(replicas) == REPLICAS


def test_a_cancel_frees_the_replica_within_a_step(cluster):
    remote = RemoteBackend(cluster.url, TOKEN, read_timeout=JOB_S)
    long_job = GenerationJob(_request(seed=3, steps=150, side=512))  # about 30 s on one thread, unless cancelled
    stepped = threading.Event()
    state = TaskState(on_step=lambda *_: stepped.set())
    outcome: list[object] = []

    def run() -> None:
        outcome.append(_caught(remote.run, long_job, state))
        stepped.set()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    assert stepped.wait(JOB_S) and not outcome, outcome
    cancelled_at = time.monotonic()
    state.cancel()
    runner.join(5)
    assert isinstance(outcome[0], Cancelled) and time.monotonic() - cancelled_at < 1
    # Every replica takes a new job at once, the cancelled job's too: short jobs, one after another, each ends in
    # seconds wherever Serve sends it (behind a job that went on, one would wait for its 150 steps).
    body = protocol.encode_job(GenerationJob(_request(seed=31, steps=2)))
    ran_on = set()
    for _ in range(8):
        started = time.monotonic()
        status, events = _events(cluster.url, "/run", body)
        assert status == 200 and events[-1]["event"] == "done", events[-1]
        assert time.monotonic() - started < 8, f"a replica was still busy: {events[0]}"
        ran_on.add(events[0]["replica"])
    assert len(ran_on) == REPLICAS


def test_a_wrong_token_is_401_and_an_oversized_request_413_with_their_sentences(cluster):
    status, events = _events(cluster.url, "/run", b"{}", token="guess")
    assert status == 401 and events[0]["message"].startswith("The server wants a token and this one is missing")
    status, events = _events(cluster.url, "/run", b" " * (protocol.MAX_BODY + 1))
    assert status == 413 and "64 MiB" in events[0]["message"], events


def test_sfumato_generate_on_the_cluster_writes_the_same_file_as_a_local_run(cluster, capsys, tmp_path):
    args = ["--model", "demo", "--prompt", "a lighthouse", "--seed", "5", "--steps", "3", "--width", "64",
            "--height", "64"]
    assert main(["generate", "--server", cluster.url, "--token", TOKEN, *args, "--out", str(tmp_path / "remote")]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert main(["generate", *args, "--device", "cpu", "--precision", "fp32", "--out", str(tmp_path / "local")]) == 0
    local = capsys.readouterr().out.splitlines()
    assert [Path(p).name for p in remote] == [Path(p).name for p in local]
    got, want = Image.open(remote[0]), Image.open(local[0])
    assert np.array_equal(np.asarray(got), np.asarray(want)) and got.text == want.text


def test_a_replica_killed_mid_job_the_job_is_tried_again_and_nothing_is_lost(cluster, local, monkeypatch):
    """Last: it takes a replica away (Serve starts another one)."""
    backend, _ = local
    jobs = [GenerationJob(_request(seed=seed, steps=40, side=512)) for seed in (41, 42)]  # seconds each
    said: list[list[str]] = [[], []]
    stepping = [threading.Event(), threading.Event()]
    results: list[object] = [None, None]
    replica_of: dict[str, str] = {}  # the client thread -> the replica its job was first accepted by
    decode = protocol.decode_event

    def noting(line):
        event = decode(line)
        if event.get("event") == "accepted":
            replica_of.setdefault(threading.current_thread().name, event["replica"])
        return event

    monkeypatch.setattr(protocol, "decode_event", noting)

    def run(k: int) -> None:
        state = TaskState(on_step=lambda *_: stepping[k].set(), on_status=said[k].append)
        results[k] = _caught(RemoteBackend(cluster.url, TOKEN, read_timeout=JOB_S).run, jobs[k], state)

    threads = [threading.Thread(target=run, args=(k,), name=f"job-{k}", daemon=True) for k in (0, 1)]
    for thread in threads:
        thread.start()
    assert stepping[0].wait(JOB_S) and stepping[1].wait(JOB_S)
    # Serve may have sent both jobs to one replica (the second waiting there for the first): kill the replica of
    # a job still running, mid-job
    victim = next(k for k in (1, 0) if results[k] is None)
    pid = int(replica_of[f"job-{victim}"].rsplit(":", 1)[1])
    assert pid in cluster.replica_pids()
    os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join(2 * JOB_S)

    assert RETRY_STATUS in said[victim]
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, list) and len(result) == 1, result
        assert np.array_equal(result[0].image, backend.run(job, TaskState())[0].image)
    cluster.wait_for_replicas(REPLICAS)  # Serve replaced it


def _caught(call, *args):
    try:
        return call(*args)
    except Exception as error:  # noqa: BLE001 - the test looks at what came back
        return error
