"""LocalBackend: the engine behind the Backend protocol, as the window and the CLI use it."""

import shutil
import threading

import numpy as np
import pytest

from desktop.core import modelfiles, paths
from desktop.core.backend import GENERATION, Backend, GenerationJob
from desktop.core.postprocess import UPSCALE
from desktop.core.errors import Cancelled, ModelLoadError
from desktop.core.progress import TaskState

from desktop.engine import devices, generate
from desktop.engine.local import LocalBackend
from desktop.engine.models import ModelManager
from tests.support.requests import make_request


def test_it_loads_describes_and_runs_as_the_engine_does(tiny_models):
    model = str(tiny_models["sd1"].folder)
    backend = LocalBackend("cpu", "fp32")
    assert isinstance(backend, Backend)
    assert backend.start(TaskState()) == devices.choose("cpu", "fp32").description

    described = backend.load(model, TaskState())
    assert (described.ref, described.family, described.name) == (model, "sd1", tiny_models["sd1"].folder.name)
    assert described.hash == modelfiles.model_hash(model) and "generation" in described.kinds
    assert (paths.cache_dir() / "model-hashes.json").is_file(), "hashed once, then read from the cache file"

    request = make_request(prompt="a boat", model=model, width=64, height=64, steps=3, seed=9, batch_size=2)
    steps = []
    results = backend.run(GenerationJob(request, preview_every=2), TaskState(on_step=lambda i, n, p: steps.append(
        p is not None)))
    assert steps == [False, True, True]
    direct = generate.run(request, TaskState(), ModelManager(devices.choose("cpu", "fp32")))
    assert [r.seed for r in results] == [9, 10]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(results, direct, strict=True))
    backend.close()


def test_cancel_from_another_thread_stops_the_run(tiny_models):
    backend = LocalBackend("cpu", "fp32")
    model = str(tiny_models["sd1"].folder)
    backend.load(model, TaskState())
    steps = []

    def step(index, total, preview):
        steps.append(index)
        if index == 2:
            threading.Thread(target=backend.cancel).start()
            threading.Event().wait(0.2)

    request = make_request(model=model, width=64, height=64, steps=20, seed=1)
    with pytest.raises(Cancelled):
        backend.run(GenerationJob(request), TaskState(on_step=step))
    assert steps == [1, 2]


def test_a_failed_load_says_why():
    with pytest.raises(ModelLoadError, match="no such file"):
        LocalBackend("cpu").load("/nowhere/model.safetensors", TaskState())


def test_models_lists_the_usable_models_in_its_folders_then_the_demo(tiny_models, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_models["sd1"].checkpoint, folder / "painter.safetensors")
    (folder / "notes.safetensors").write_bytes(b"not a model")
    (folder / "upscalers").mkdir()
    (folder / "upscalers" / "4x-Sharp.pth").write_bytes(b"x")
    catalogue = LocalBackend("cpu", models_folders=[folder]).models()
    generation = [(m.ref, m.family) for m in catalogue if GENERATION in m.kinds]
    assert generation == [(str(folder / "painter.safetensors"), "sd1"), ("demo", "sd1"), ("demo:sdxl", "sdxl"),
                          ("demo:zimage", "zimage"), ("demo:flux2-klein", "flux2-klein"), ("demo:flux1", "flux1"),
                          ("demo:sd3", "sd3")]
    upscalers = [(m.ref, m.name, m.family) for m in catalogue if m.kinds == {UPSCALE}]
    assert upscalers == [(str(folder / "upscalers" / "4x-Sharp.pth"), "4x-Sharp", "upscaler"),
                         ("demo", "Demo upscaler (random weights)", "upscaler"),
                         ("demo-restorer", "Demo restorer (random weights)", "restorer")]


def test_a_full_disk_while_building_the_demo_model_is_a_sentence(monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    from desktop.engine.local import DemoModelUnwritable

    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    with pytest.raises(DemoModelUnwritable) as raised:
        LocalBackend("cpu").load("demo", TaskState())
    assert str(raised.value) == (f"Could not build the demo model in {paths.demo_model_dir()}: the disk is full; "
                                 f"free some space there, or point {paths.HOME_ENV} at a folder on another disk.")


def test_models_lists_the_ip_adapter_files_so_a_server_can_name_them(tmp_path):
    from desktop.core import references
    from desktop.server.catalogue import Catalogue
    from desktop.core import remote_protocol as protocol

    references.own_folder().mkdir(parents=True, exist_ok=True)
    adapter = references.own_folder() / "ip-adapter_sd15.safetensors"
    adapter.write_bytes(b"x")  # listed by its name; read only when used
    catalogue = LocalBackend("cpu", models_folders=[tmp_path]).models()
    assert [(m.ref, m.name, m.family) for m in catalogue if "ipadapter" in m.kinds] == [
        (str(adapter), "ip-adapter_sd15", "ipadapter")]
    served = Catalogue()
    served.update(catalogue)
    assert served.resolve("ip-adapter_sd15", protocol.ADAPTER) == str(adapter)
