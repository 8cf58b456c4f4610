"""JobController: seed continuation across a batch count, progress and ETA, job states (no Qt)."""

import numpy as np

from desktop.core.geometry import Bounds
from desktop.core.jobs import JobController, JobState, plan
from desktop.core.request import GenerationRequest, Images, InpaintArea, InpaintSettings, Mode, Sampling


def test_a_fixed_seed_continues_where_the_last_run_ended():
    request = GenerationRequest(sampling=Sampling(seed=100, batch_size=4))
    assert [r.sampling.seed for r in plan(request, 3)] == [100, 104, 108]
    wrapping = GenerationRequest(sampling=Sampling(seed=2**32 - 2, batch_size=2))
    assert [r.sampling.seed for r in plan(wrapping, 3)] == [2**32 - 2, 0, 2]


def test_a_random_seed_stays_random_in_every_run():
    request = GenerationRequest(sampling=Sampling(seed=-1, batch_size=2))
    assert [r.sampling.seed for r in plan(request, 3)] == [-1, -1, -1]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_speed_leaves_out_the_first_step_and_gives_the_time_left():
    clock = Clock()
    jobs = JobController(clock)
    request = GenerationRequest()
    jobs.submitted(7, request, Bounds(0, 0, 512, 512))
    jobs.started(7, request)
    clock.now = 5.0  # the first step warms up: slow, and not counted
    assert jobs.step(7, 1, 20) == "Step 1/20"
    clock.now = 5.5
    assert jobs.step(7, 2, 20) == "Step 2/20 · 2.00 it/s · ETA 9 s"
    clock.now = 7.5
    assert jobs.step(7, 3, 20) == "Step 3/20 · 1.2 s/it · ETA 21 s"


def test_a_job_keeps_its_request_frame_state_and_results_until_it_ends():
    jobs = JobController(Clock())
    request = GenerationRequest(width=640)
    frame = Bounds(10, 20, 640, 512)
    job = jobs.submitted(1, request, frame)
    assert (job.request, job.frame, job.region, job.mask, job.state) == (request, frame, frame, None, JobState.QUEUED)
    assert jobs.started(1, request).state is JobState.RUNNING
    done = jobs.finished(1, [("image", 5, "a.png")])
    assert (done.state, done.results) == (JobState.DONE, [("image", 5, "a.png")])
    assert 1 not in jobs.jobs
    jobs.submitted(2, request, frame)
    jobs.submitted(3, request, frame)
    assert jobs.failed(2, "out of memory").error == "out of memory"
    assert jobs.cancelled(3).state is JobState.CANCELLED
    assert jobs.jobs == {} and jobs.cancelled(3) is None


def test_a_waiting_job_paints_where_its_picture_moved_when_the_canvas_grew_left_or_up():
    jobs = JobController(Clock())
    jobs.submitted(1, GenerationRequest(), Bounds(0, 0, 512, 512))
    jobs.started(1, GenerationRequest())
    jobs.moved(64, 32)  # the canvas grew 64 px to the left and 32 up
    job = jobs.jobs[1]
    assert (job.frame, job.region) == (Bounds(64, 32, 512, 512), Bounds(64, 32, 512, 512))
    assert jobs.finished(1, [("image", 5, "a.png")]).frame == Bounds(64, 32, 512, 512)


def test_the_preview_of_only_masked_inpainting_is_its_crop_and_moves_with_the_frame():
    mask = np.zeros((512, 512), np.uint8)
    mask[200:240, 300:340] = 255
    request = GenerationRequest(mode=Mode.INPAINT, images=Images(init=np.zeros((512, 512, 3), np.uint8), mask=mask),
                                inpaint=InpaintSettings(area=InpaintArea.ONLY_MASKED, mask_blur=0, padding=8))
    jobs = JobController(Clock())
    job = jobs.submitted(1, request, Bounds(100, 0, 512, 512))
    crop = job.region
    assert crop.width < 512 and crop.x > 100 and job.mask.shape == (crop.height, crop.width)
    jobs.moved(10, 20)
    assert job.region == crop.translated(10, 20) and job.frame == Bounds(110, 20, 512, 512)


def test_jobs_of_a_picture_that_was_replaced_paint_nowhere_but_still_finish():
    jobs = JobController(Clock())
    jobs.submitted(1, GenerationRequest(), Bounds(0, 0, 512, 512))
    jobs.drop_frames()
    jobs.moved(64, 0)
    done = jobs.finished(1, [("image", 5, "a.png")])
    assert (done.frame, done.region, done.state) == (None, None, JobState.DONE)
