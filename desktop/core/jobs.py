"""Jobs as the window sees them: what each one asked for, where, how far it got, what it made.

`JobController` keeps one `Job` per queued generation (its request, the
canvas frame it was asked for, its state and results) and does the sums the
window shows: the seed continuation across a batch count (`plan`) and the
speed and time left while a job runs (`step`). No Qt: the window connects
the worker's signals to it and shows what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .geometry import Bounds
from .request import MAX_SEED, RANDOM_SEED, GenerationRequest


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Job:
    id: int
    request: GenerationRequest
    frame: Bounds | None  # the canvas frame the results go to
    state: JobState = JobState.QUEUED
    results: list = field(default_factory=list)  # [(image, seed, path)] once done
    error: str = ""
    step_times: list[float] = field(default_factory=list, repr=False)  # the start, then the end of each step


def plan(request: GenerationRequest, count: int) -> list[GenerationRequest]:
    """The requests of `count` runs: with a fixed seed, run 2 starts where run 1's batch ended (32-bit, wrapping)."""
    sampling = request.sampling
    if sampling.seed == RANDOM_SEED:
        return [request for _ in range(count)]
    return [request.replace(sampling=sampling.replace(seed=(sampling.seed + i * sampling.batch_size) % (MAX_SEED + 1)))
            for i in range(count)]


def progress_text(step_times: list[float], index: int, total: int) -> str:
    """ "Step 3/20 · 1.52 it/s · ETA 11 s": the speed is the mean over the steps after the first (which warms up)."""
    text = f"Step {index}/{total}"
    if len(step_times) > 2:
        per_step = (step_times[-1] - step_times[1]) / (len(step_times) - 2)
        if per_step > 0:
            rate = f"{1 / per_step:.2f} it/s" if per_step < 1 else f"{per_step:.1f} s/it"
            text += f" · {rate} · ETA {per_step * (total - index):.0f} s"
    return text


class JobController:
    """The jobs not yet ended, by id. Ending a job (done, failed, cancelled, removed) returns it and forgets it."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.jobs: dict[int, Job] = {}

    plan = staticmethod(plan)

    def submitted(self, job_id: int, request: GenerationRequest, frame: Bounds | None) -> Job:
        job = self.jobs[job_id] = Job(job_id, request, frame)
        return job

    def started(self, job_id: int, request: GenerationRequest) -> Job:
        job = self.jobs.get(job_id) or self.submitted(job_id, request, None)
        job.state = JobState.RUNNING
        job.step_times = [self.clock()]
        return job

    def step(self, job_id: int, index: int, total: int) -> str:
        """Note a finished step; returns what the progress bar says."""
        job = self.jobs.get(job_id)
        times = job.step_times if job is not None else []
        times.append(self.clock())
        return progress_text(times, index, total)

    def finished(self, job_id: int, results: list) -> Job | None:
        return self._end(job_id, JobState.DONE, results=list(results))

    def failed(self, job_id: int, message: str) -> Job | None:
        return self._end(job_id, JobState.FAILED, error=message)

    def cancelled(self, job_id: int) -> Job | None:
        return self._end(job_id, JobState.CANCELLED)

    def _end(self, job_id: int, state: JobState, **values) -> Job | None:
        job = self.jobs.pop(job_id, None)
        if job is not None:
            job.state = state
            for name, value in values.items():
                setattr(job, name, value)
        return job
