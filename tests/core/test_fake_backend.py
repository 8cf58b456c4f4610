"""FakeBackend behaves like the engine wherever a caller can tell: sizes, masks, steps, previews, cancel, failures."""

import threading
import time

import numpy as np
import pytest

from desktop.core.backend import Backend, GenerationJob, PreprocessJob
from desktop.core.errors import Cancelled, InvalidRequest, ModelLoadError, OutOfMemory, SfumatoError
from desktop.core.geometry import Margins
from desktop.core.progress import TaskState
from desktop.core.request import InpaintArea, Mode
from tests.support.fake_backend import FakeBackend
from tests.support.requests import change, make_request


def run(backend, request, state=None, **job):
    return backend.run(GenerationJob(request, **job), state or TaskState())


def photo(width=96, height=64):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 2 % 256, y * 3 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def test_it_is_a_backend():
    assert isinstance(FakeBackend(), Backend)


def test_pictures_are_deterministic_sized_and_differ_by_seed_and_prompt():
    backend = FakeBackend()
    request = make_request(prompt="a lighthouse", seed=7, width=128, height=72, batch_size=2, steps=3)
    first, second = run(backend, request)
    assert first.image.shape == (72, 128, 3) and first.image.dtype == np.uint8
    assert (first.seed, second.seed) == (7, 8)
    assert not np.array_equal(first.image, second.image)
    again = run(FakeBackend(), request)[0]
    assert np.array_equal(first.image, again.image)
    other = run(backend, change(request, prompt="a forest"))[0]
    assert not np.array_equal(first.image, other.image)


def test_a_random_seed_is_resolved_and_recorded():
    result = run(FakeBackend(), make_request(seed=-1, steps=1, width=64, height=64))[0]
    assert result.seed >= 0 and result.request.sampling.seed == result.seed


def test_inpaint_keeps_every_pixel_outside_the_mask():
    image = photo()
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 20:50] = 255
    for area in InpaintArea:
        request = make_request(mode=Mode.INPAINT, init_image=image, mask=mask, width=96, height=64, steps=4,
                                    strength=1.0, inpaint_area=area)
        out = run(FakeBackend(), request)[0].image
        assert np.array_equal(out[mask == 0], image[mask == 0]), area
        assert not np.array_equal(out[mask > 0], image[mask > 0]), area


def test_outpaint_grows_by_the_margins_and_keeps_the_original():
    image = photo(64, 64)
    request = make_request(mode=Mode.OUTPAINT, init_image=image, expand=Margins(32, 0, 0, 16), steps=2)
    out = run(FakeBackend(), request)[0].image
    assert out.shape == (80, 96, 3)
    assert np.array_equal(out[0:64, 32:96], image)


def test_img2img_starts_from_the_picture_and_runs_steps_times_strength():
    image = photo(64, 64)
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append((i, n)))
    request = make_request(mode=Mode.IMG2IMG, init_image=image, width=64, height=64, steps=20, strength=0.5,
                                seed=3)
    out = run(FakeBackend(), request, state)[0].image
    assert steps == [(i, 10) for i in range(1, 11)]
    painted = run(FakeBackend(), change(request, mode=Mode.TXT2IMG, init_image=None))[0].image
    assert np.abs(out - (image * 0.5 + painted * 0.5)).max() <= 1


def test_every_step_reports_a_preview_growing_towards_the_result():
    previews = []
    state = TaskState(on_step=lambda i, n, preview: previews.append((i, n, preview)))
    result = run(FakeBackend(), make_request(width=128, height=64, steps=4), state)[0]
    assert [(i, n) for i, n, _ in previews] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p.shape == (8, 16, 3) for _, _, p in previews)
    assert np.array_equal(previews[-1][2], result.image[::8, ::8])
    assert not np.array_equal(previews[0][2], previews[-1][2])


def test_previews_follow_the_job_settings():
    previews = []
    state = TaskState(on_step=lambda i, n, preview: previews.append(preview is not None))
    run(FakeBackend(), make_request(width=64, height=64, steps=5), state, preview_every=2)
    assert previews == [False, True, False, True, True]
    previews.clear()
    run(FakeBackend(), make_request(width=64, height=64, steps=2), state, preview_method="off")
    assert previews == [False, False]


def test_cancel_during_a_slow_step_stops_within_that_step():
    backend = FakeBackend(step_delay=5.0)
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append(i))
    timer = threading.Timer(0.1, backend.cancel)  # from another thread, as the GUI cancels
    timer.start()
    started = time.perf_counter()
    with pytest.raises(Cancelled) as raised:
        run(backend, make_request(width=64, height=64, steps=50), state)
    timer.join()
    assert time.perf_counter() - started < 2.5, "the cancel waited for the step to end"
    assert steps == [] and raised.value.step == 1


def test_a_cancelled_state_stops_before_the_first_step():
    state = TaskState()
    state.cancel()
    with pytest.raises(Cancelled):
        run(FakeBackend(), make_request(width=64, height=64, steps=3), state)


def test_injected_failures_are_raised_where_the_engine_raises_them():
    error = ModelLoadError("broken.safetensors", "it is not a model.")
    backend = FakeBackend(load_error=error)
    with pytest.raises(ModelLoadError):
        backend.load("broken.safetensors", TaskState())
    with pytest.raises(ModelLoadError):
        run(backend, make_request(width=64, height=64, steps=1))

    steps = []
    backend = FakeBackend(run_error=OutOfMemory("The device ran out of memory."), fail_at_step=2)
    with pytest.raises(OutOfMemory):
        run(backend, make_request(width=64, height=64, steps=5), TaskState(on_step=lambda i, n, p: steps.append(i)))
    assert steps == [1, 2]

    with pytest.raises(ValueError):
        FakeBackend(start_error=ValueError("cuda was chosen but is not available")).start(TaskState())


def test_load_describes_the_model_and_records_what_was_asked():
    backend = FakeBackend(family="sdxl")
    assert backend.start(TaskState())
    model = backend.load("/models/dream.safetensors", TaskState())
    assert (model.ref, model.family, model.name) == ("/models/dream.safetensors", "sdxl", "dream.safetensors")
    assert len(model.hash) == 10 and "generation" in model.kinds
    assert backend.load("/models/dream.safetensors", TaskState()) is model
    assert backend.loads == ["/models/dream.safetensors"] * 2
    backend.close()
    assert backend.closed == 1 and backend.current is None
    assert [m.ref for m in backend.models()] == ["demo"]


def test_an_upscale_job_resizes_in_one_step_per_tile_with_the_postprocess_keys():
    from desktop.core.backend import UpscaleJob
    from desktop.core.postprocess import DEMO_UPSCALER_NAME, UpscaleRequest

    backend = FakeBackend()
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append((i, n, preview)))
    image = np.full((30, 40, 3), 99, np.uint8)
    result, = backend.run(UpscaleJob(UpscaleRequest(image, 2.0, parameters="a cat\nSteps: 3")), state)
    assert result.image.shape == (60, 80, 3) and steps == [(i, 4, None) for i in range(1, 5)]
    assert result.request.parameters == f"a cat\nSteps: 3, Postprocess upscale by: 2, Postprocess upscaler: {DEMO_UPSCALER_NAME}"


def test_a_preprocess_job_returns_a_control_picture_of_the_picture_s_size_without_the_engine():
    picture = np.full((40, 30, 3), 20, np.uint8)
    picture[:, 10:] = 230
    backend = FakeBackend()
    job = PreprocessJob("canny", picture)
    (result,) = backend.run(job, TaskState())
    assert result.image.shape == (40, 30, 3) and result.image.dtype == np.uint8
    assert result.image[:, :10].max() == 0 and result.image[:, 10:].min() == 255
    assert (result.seed, result.request) == (-1, job) and backend.jobs == [job]
    np.testing.assert_array_equal(backend.run(PreprocessJob("none", picture), TaskState())[0].image, picture)
    with pytest.raises(InvalidRequest, match="no preprocessor 'hed'"):
        backend.run(PreprocessJob("hed", picture), TaskState())
    state = TaskState()
    state.cancel()
    with pytest.raises(Cancelled):
        backend.run(job, state)
    backend.preprocess_error = SfumatoError("Depth needs its weights.")
    with pytest.raises(SfumatoError, match="Depth needs"):
        backend.run(PreprocessJob("depth", picture), TaskState())
