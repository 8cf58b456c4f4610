"""GenerationWorker drives any Backend: made on its thread, remade for a new device, failures said in a sentence."""

import dataclasses
import threading

import numpy as np
import pytest

from desktop.core import paths
from desktop.core import settings as settings_store
from desktop.core.backend import PreprocessJob
from desktop.core.errors import ModelLoadError, OutOfMemory, SfumatoError
from desktop.core.gallery.index import Query
from desktop.core.gallery.store import GalleryStore

from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import DEVICE, FakeBackend
from tests.support.requests import change, make_request

TIMEOUT = 10_000
REQUEST = make_request(prompt="a boat", model="some/model", width=64, height=64, steps=3, seed=5)


@pytest.fixture
def worker_on(qtbot):
    workers = []

    def make(backend: FakeBackend, made: list | None = None):
        def factory(settings):
            if made is not None:
                made.append((settings.device, settings.precision, threading.current_thread() is threading.main_thread()))
            return backend

        worker = GenerationWorker(settings_store.load(), factory)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        assert worker.shutdown(5000)


def test_the_backend_is_made_on_the_worker_thread_and_its_pictures_are_saved(worker_on, qtbot):
    made = []
    backend = FakeBackend()
    worker = worker_on(backend, made)
    devices = []
    worker.device_ready.connect(devices.append)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT) as finished:
        worker.submit(REQUEST)
    assert made == [("auto", "auto", False)], "made once, on the worker thread"
    assert devices == [DEVICE]
    (image, seed, path), = finished.args[1]
    assert image.shape == (64, 64, 3) and seed == 5 and path is not None and path.is_file()
    assert backend.loads == ["some/model"]


def test_a_new_precision_remakes_the_backend_and_new_previews_do_not(worker_on, qtbot):
    made = []
    backend = FakeBackend()
    worker = worker_on(backend, made)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(REQUEST)
    settings = settings_store.load()
    settings.preview_every = 2
    worker.update_settings(settings)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(REQUEST)
    assert (len(made), backend.closed) == (1, 0)
    assert backend.jobs[-1].preview_every == 2
    settings = settings_store.load()
    settings.precision = "fp32"
    worker.update_settings(settings)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(REQUEST)
    assert [m[1] for m in made] == ["auto", "fp32"] and backend.closed == 1
    settings = settings_store.load()
    settings.precision, settings.weight_storage = "fp32", "int8"  # the flow transformers in int8: loaded again
    worker.update_settings(settings)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(REQUEST)
    assert len(made) == 3 and backend.closed == 2


def test_failures_are_said_and_the_worker_keeps_working(worker_on, qtbot):
    backend = FakeBackend(load_error=ModelLoadError("broken.safetensors", "it is not a model."))
    worker = worker_on(backend)
    with qtbot.waitSignal(worker.model_failed, timeout=TIMEOUT) as failed:
        worker.preload("broken.safetensors")
    assert failed.args[1] == "Could not load the model broken.safetensors: it is not a model."
    backend.load_error = None
    backend.run_error = OutOfMemory("The device ran out of memory; lower the size.")
    with qtbot.waitSignal(worker.job_failed, timeout=TIMEOUT) as failed:
        worker.submit(REQUEST)
    assert failed.args[1] == "The device ran out of memory; lower the size."
    backend.run_error = None
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(REQUEST)


def test_cancel_stops_the_running_job_and_the_next_one_runs(worker_on, qtbot):
    backend = FakeBackend(step_delay=0.2)
    worker = worker_on(backend)
    steps = []
    worker.step.connect(lambda job, i, n, preview: steps.append((job, i)))
    with qtbot.waitSignal(worker.step, timeout=TIMEOUT):
        first = worker.submit(change(REQUEST, steps=50))
    second = worker.submit(REQUEST)
    with qtbot.waitSignal(worker.job_cancelled, timeout=TIMEOUT) as cancelled:
        worker.cancel()
    assert cancelled.args == [first]
    assert len([s for s in steps if s[0] == first]) < 50  # within a step: tests/core/test_fake_backend.py
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT) as finished:
        pass
    assert finished.args[0] == second


def test_the_closing_line_says_why_a_picture_of_the_batch_is_missing(worker_on, qtbot):
    class DropsOne(FakeBackend):
        def run(self, job, state):
            results = super().run(job, state)
            state.status("The model produced no picture for 1 of 2 images: its output was not a number (NaN).")
            return results[:1]

    worker = worker_on(DropsOne())
    statuses = []
    worker.status.connect(statuses.append)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(change(REQUEST, batch_size=2))
    qtbot.waitUntil(lambda: statuses and statuses[-1].startswith("Done"), timeout=TIMEOUT)
    assert "1 image(s) saved" in statuses[-1] and "no picture for 1 of 2" in statuses[-1]


def test_the_closing_line_carries_the_notes_of_the_results(worker_on, qtbot):
    """A result that says something (a face fix that found no face) says it after "Done", not only in a status
    line the closing line replaces."""
    class Notes(FakeBackend):
        def run(self, job, state):
            return [dataclasses.replace(result, note="No face was found, so the picture is unchanged.")
                    for result in super().run(job, state)]

    worker = worker_on(Notes())
    statuses = []
    worker.status.connect(statuses.append)
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(change(REQUEST, batch_size=2))
    qtbot.waitUntil(lambda: statuses and statuses[-1].startswith("Done"), timeout=TIMEOUT)
    assert statuses[-1].endswith(". No face was found, so the picture is unchanged.")
    assert statuses[-1].count("No face") == 1, "said once, not once per picture"


def photo(w=48, h=32):
    """Left half dark, right half light."""
    pixels = np.full((h, w, 3), 30, np.uint8)
    pixels[:, w // 2:] = 220
    return pixels


def test_a_control_picture_waits_behind_a_generation_and_is_neither_saved_nor_in_the_gallery(worker_on, qtbot):
    settings = settings_store.load()
    store = GalleryStore(settings.output_path(), paths.cache_dir() / "thumbnails")
    backend = FakeBackend(step_delay=0.05)
    worker = worker_on(backend)
    worker.set_gallery(store)
    ended, said = [], []
    worker.job_finished.connect(lambda job, saved: ended.append((job, saved)))
    worker.save_failed.connect(lambda job, message: said.append(message))
    worker.status.connect(said.append)
    with qtbot.waitSignal(worker.job_started, timeout=TIMEOUT):
        generation = worker.submit(REQUEST)
    preprocess = worker.submit(PreprocessJob("canny", photo()))
    assert [(job, type(request).__name__) for job, request in worker.pending()] == [(preprocess, "PreprocessJob")]
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=TIMEOUT)
    assert [job for job, _ in ended] == [generation, preprocess], "it ran after the generation"
    (image, seed, path), = ended[1][1]
    expected = np.zeros((32, 48, 3), np.uint8)
    expected[:, 24:] = 255  # the fake's control picture: white where the picture is light
    np.testing.assert_array_equal(image, expected)
    assert (seed, path) == (-1, None)
    qtbot.waitUntil(lambda: said[-1].startswith("Canny edges from the picture: done in "), timeout=TIMEOUT)
    assert [line for line in said if "saved" in line and not line.startswith("Done")] == [], \
        "only the generation's pictures are saved, and no save failed"
    assert len(store.search(Query())) == 1, "only the generation is in the gallery"
    assert [p.name for p in settings.output_path().rglob("*.png")] == [ended[0][1][0][2].name], \
        "only the generation's picture is written"
    store.close()


def test_a_preprocessor_that_fails_or_a_wrong_type_is_said_in_a_sentence(worker_on, qtbot):
    backend = FakeBackend()
    backend.preprocess_error = SfumatoError("Depth needs the Depth Anything V2 Small weights, which are not on "
                                            "this computer.")
    worker = worker_on(backend)
    with qtbot.waitSignal(worker.job_failed, timeout=TIMEOUT) as failed:
        job = worker.submit(PreprocessJob("depth", photo()))
    assert failed.args == [job, "Depth from the picture did not work: Depth needs the Depth Anything V2 Small "
                                "weights, which are not on this computer."]
    backend.preprocess_error = None
    with qtbot.waitSignal(worker.job_failed, timeout=TIMEOUT) as failed:
        worker.submit(PreprocessJob("hed", photo()))
    assert failed.args[1].startswith("hed from the picture did not work: ") and "choose one of canny" in \
        failed.args[1]
    with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
        worker.submit(PreprocessJob("canny", photo()))


def test_after_choosing_a_server_that_cannot_be_reached_every_job_says_so_and_none_runs_on_this_computer(qtbot):
    local = FakeBackend()
    unreachable = "The Sfumato server at http://gpu-box:7862 cannot be reached; is it running?"
    server = FakeBackend(start_error=SfumatoError(unreachable))
    settings = settings_store.load()
    worker = GenerationWorker(settings, lambda chosen: server if chosen.server_url else local)
    try:
        with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT):
            worker.submit(REQUEST)
        worker.update_settings(dataclasses.replace(settings, server_url="http://gpu-box:7862"))
        for seed in (6, 7):
            with qtbot.waitSignal(worker.job_failed, timeout=TIMEOUT) as failed:
                job = worker.submit(change(REQUEST, seed=seed))
            assert failed.args == [job, unreachable]
        assert [job.request.sampling.seed for job in local.jobs] == [5], "a job ran here though a server is chosen"
        assert local.closed == 1
    finally:
        assert worker.shutdown(5000)
