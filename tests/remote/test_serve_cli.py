"""`sfumato serve` in its own process on 127.0.0.1, driven by `sfumato generate --server`: what the artist with one
rented GPU sees. The demo model is built in the server's SFUMATO_HOME (under tmp_path) on first use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from desktop.__main__ import main
from desktop.core import paths
from desktop.core.backend import GenerationJob
from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState
from desktop.remote.backend import RemoteBackend
from tests.support.requests import make_request

START_S = 60  # the server's imports and device on a busy machine
STOP_S = 20
ARGS = ["--model", "demo", "--prompt", "a lighthouse", "--seed", "5", "--steps", "3", "--width", "64", "--height", "64"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(tmp_path: Path, *options: str, env: dict[str, str] | None = None):
    """`python -m desktop serve` on a free port of 127.0.0.1; yields (process, url, its stderr file) once /health
    answers. The process is killed afterwards, whatever happened."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "desktop", "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
             "--precision", "fp32", *options],
            stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}, cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + START_S
        while not _answers(url):
            assert process.poll() is None, f"the server ended ({process.returncode}): {err.read_text()}"
            assert time.monotonic() < deadline, f"the server did not answer in {START_S} s: {err.read_text()}"
            time.sleep(0.2)
        assert out.read_text().splitlines() == [f"Serving Sfumato's engine at {url} (Ctrl+C stops it)"]
        yield process, url, err
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(STOP_S)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return True
    except urllib.error.HTTPError:  # 401 without the token: it answers
        return True
    except OSError:
        return False


def _generate(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["generate", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_a_generation_on_the_server_writes_the_same_file_as_a_local_one(capsys, tmp_path):
    server_home = {"SFUMATO_HOME": str(tmp_path / "server-home"), "SFUMATO_TOKEN": "s3cret"}
    with serving(tmp_path, env=server_home) as (_, url, _err):
        code, remote, err = _generate(capsys, "--server", url, "--token", "s3cret", *ARGS, "--out",
                                      str(tmp_path / "remote"))
        assert code == 0, err
        assert "step 3/3" in err
        assert not paths.demo_model_dir().exists()  # made by the server, in its own home
        code, wrong, err = _generate(capsys, "--server", url, "--token", "guess", *ARGS, "--out",
                                     str(tmp_path / "wrong"))
        assert (code, wrong) == (2, [])
        assert err.splitlines() == ["sfumato: The server wants a token and this one is missing or wrong: set the "
                                    "token the server was started with."]
    code, local, err = _generate(capsys, *ARGS, "--device", "cpu", "--precision", "fp32", "--out",
                                 str(tmp_path / "local"))
    assert code == 0, err
    assert [Path(p).relative_to(tmp_path / "remote") for p in remote] == \
           [Path(p).relative_to(tmp_path / "local") for p in local]
    got, want = Image.open(remote[0]), Image.open(local[0])
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert got.text == want.text and "Seed: 5" in got.text["parameters"]


def test_ctrl_c_stops_the_server_and_its_running_job_with_exit_code_0(tmp_path):
    with serving(tmp_path) as (process, url, err):
        stepped, outcome = threading.Event(), []
        job = GenerationJob(make_request(model="demo", width=512, height=512, steps=150, seed=3, batch_size=4))

        def generate() -> None:
            remote = RemoteBackend(url)
            try:
                remote.load("demo", TaskState())
                outcome.append(remote.run(job, TaskState(on_step=lambda *_: stepped.set())))
            except SfumatoError as error:
                outcome.append(error)
                stepped.set()

        client = threading.Thread(target=generate, daemon=True)
        client.start()
        assert stepped.wait(START_S) and not outcome, (outcome, err.read_text())
        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_S) == 0, err.read_text()
        client.join(STOP_S)
        assert not _answers(url)
        assert len(outcome) == 1 and isinstance(outcome[0], SfumatoError)  # not 4 pictures of 150 steps
        assert err.read_text().splitlines()[-1] == "sfumato: the server stopped."


def test_a_port_in_use_is_one_sentence_and_exit_2(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"sfumato: port {port} on 127.0.0.1 is in use (another sfumato serve?); stop that, "
                                "or choose another port with --port."]


def test_a_server_that_is_not_there_and_a_device_for_it_are_one_sentence_each(capsys):
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    code, paths_, err = _generate(capsys, "--server", url, *ARGS)
    assert (code, paths_) == (2, [])
    assert err.splitlines() == [f"sfumato: The Sfumato server at {url} cannot be reached (nothing answers there): "
                                "check that it is running and that the address, the port and the network between "
                                "are right."]
    code, paths_, err = _generate(capsys, "--server", url, "--device", "cpu", *ARGS)
    assert (code, paths_) == (2, [])
    assert err.splitlines() == ["sfumato: --device, --precision and --runtime are chosen where the server starts "
                                "(sfumato serve --device ...); leave them out with --server."]
