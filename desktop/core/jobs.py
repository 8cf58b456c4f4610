"""Jobs as the window sees them: what each one asked for, where, how far it got, what it made.

`JobController` keeps one `Job` per queued generation (its request, the
canvas frame it was asked for and where its preview shows, its state and
results) and does the sums the window shows: the seed continuation across a
batch count (`plan`) and the speed and time left while a job runs (`step`).
It is the one record of where a job paints: the canvas asks it for a job's
preview area and the frame its results are staged on, and tells it when the
canvas grew left or up (`moved`) or another picture came (`drop_frames`).
No Qt: the window connects the worker's signals to it and shows what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .geometry import Bounds, only_masked_area
from .postprocess import UpscaleRequest
from .request import MAX_SEED, RANDOM_SEED, GenerationRequest, InpaintArea, Mode


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Job:
    id: int
    request: GenerationRequest | UpscaleRequest
    frame: Bounds | None  # the canvas frame the results go to; None: not on the picture shown
    region: Bounds | None = None  # where the preview is drawn: the frame, or the crop of "only masked" inpainting
    mask: np.ndarray | None = field(default=None, repr=False)  # the preview shows only where this is not 0
    state: JobState = JobState.QUEUED
    results: list = field(default_factory=list)  # [(image, seed, path)] once done
    error: str = ""
    step_times: list[float] = field(default_factory=list, repr=False)  # the start, then the end of each step


def preview_area(request: GenerationRequest | UpscaleRequest, frame: Bounds) -> tuple[Bounds, np.ndarray | None]:
    """Where a job's preview is drawn, and its mask: inpainting and outpainting show only what they change."""
    if isinstance(request, UpscaleRequest):
        return frame, None
    mask, inpaint = request.images.mask, request.inpaint
    if request.mode is Mode.INPAINT:
        if inpaint.area is InpaintArea.ONLY_MASKED:
            box = only_masked_area(mask, inpaint.mask_blur + inpaint.padding, request.extent)
            return box.translated(frame.x, frame.y), mask[box.slices]
        return frame, mask
    if request.mode is Mode.OUTPAINT:
        empty = np.where(request.images.init[..., 3] < 255, 255, 0).astype(np.uint8)
        return frame, empty if mask is None else np.maximum(empty, mask)
    return frame, None


def plan(request: GenerationRequest, count: int) -> list[GenerationRequest]:
    """The requests of `count` runs: with a fixed seed, run 2 starts where run 1's batch ended (32-bit, wrapping)."""
    sampling = request.sampling
    if sampling.seed == RANDOM_SEED:
        return [request for _ in range(count)]
    return [request.replace(sampling=sampling.replace(seed=(sampling.seed + i * sampling.batch_size) % (MAX_SEED + 1)))
            for i in range(count)]


def progress_text(step_times: list[float], index: int, total: int, unit: str = "Step") -> str:
    """ "Step 3/20 · 1.52 it/s · ETA 11 s": the speed is the mean over the steps after the first (which warms up).
    An upscale counts tiles: "Tile 3/4 · ..."."""
    text = f"{unit} {index}/{total}"
    per_step = seconds_per_step(step_times)
    if per_step is not None and per_step > 0:
        rate = f"{1 / per_step:.2f} it/s" if per_step < 1 else f"{per_step:.1f} s/it"
        text += f" · {rate} · ETA {per_step * (total - index):.0f} s"
    return text


def seconds_per_step(step_times: list[float]) -> float | None:
    """The mean time of a step over the steps after the first (which warms up); None with too few steps."""
    if len(step_times) > 2:
        return (step_times[-1] - step_times[1]) / (len(step_times) - 2)
    return None


class JobController:
    """The jobs not yet ended, by id. Ending a job (done, failed, cancelled, removed) returns it and forgets it."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.jobs: dict[int, Job] = {}
        self.seconds_per_step: float | None = None  # measured on the last finished job with steps to measure

    plan = staticmethod(plan)

    def submitted(self, job_id: int, request: GenerationRequest | UpscaleRequest, frame: Bounds | None) -> Job:
        job = self.jobs[job_id] = Job(job_id, request, frame)
        if frame is not None:
            job.region, job.mask = preview_area(request, frame)
        return job

    def moved(self, dx: int, dy: int) -> None:
        """The canvas grew left or up: every waiting job's frame and preview move with the picture."""
        for job in self.jobs.values():
            if job.frame is not None:
                job.frame, job.region = job.frame.translated(dx, dy), job.region.translated(dx, dy)

    def drop_frames(self) -> None:
        """Another picture is shown: the jobs still run (their results reach the gallery) but paint nowhere."""
        for job in self.jobs.values():
            job.frame = job.region = job.mask = None

    def started(self, job_id: int, request: GenerationRequest | UpscaleRequest) -> Job:
        job = self.jobs.get(job_id) or self.submitted(job_id, request, None)
        job.request = request  # as it runs: the seed drawn, the wildcards chosen; what its results are staged with
        job.state = JobState.RUNNING
        job.step_times = [self.clock()]
        return job

    def step(self, job_id: int, index: int, total: int) -> str:
        """Note a finished step; returns what the progress bar says."""
        job = self.jobs.get(job_id)
        times = job.step_times if job is not None else []
        times.append(self.clock())
        unit = "Tile" if job is not None and isinstance(job.request, UpscaleRequest) else "Step"
        return progress_text(times, index, total, unit)

    def finished(self, job_id: int, results: list) -> Job | None:
        job = self._end(job_id, JobState.DONE, results=list(results))
        measured = seconds_per_step(job.step_times) if job is not None and not isinstance(job.request,
                                                                                        UpscaleRequest) else None
        if measured is not None and measured > 0:
            self.seconds_per_step = measured
        return job

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
