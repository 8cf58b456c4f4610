"""JobController: seed continuation across a batch count, progress and ETA, job states (no Qt)."""

from desktop.core.geometry import Bounds
from desktop.core.jobs import JobController, JobState, plan
from desktop.core.request import GenerationRequest, Sampling


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
    assert (job.request, job.frame, job.state) == (request, frame, JobState.QUEUED)
    assert jobs.started(1, request).state is JobState.RUNNING
    done = jobs.finished(1, [("image", 5, "a.png")])
    assert (done.state, done.results) == (JobState.DONE, [("image", 5, "a.png")])
    assert 1 not in jobs.jobs
    jobs.submitted(2, request, frame)
    jobs.submitted(3, request, frame)
    assert jobs.failed(2, "out of memory").error == "out of memory"
    assert jobs.cancelled(3).state is JobState.CANCELLED
    assert jobs.jobs == {} and jobs.cancelled(3) is None
