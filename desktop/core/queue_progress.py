"""The progress figure of the whole queue: "12 of 40, about 6 min left".

Counted since the queue last emptied: every job that joins the queue adds one to the total (a job queued when
all the earlier ones had ended starts a new count); one that ends (done, failed or cancelled) adds one to the
done; one removed before it ran leaves the total.

Time left: each job's work is counted in picture-steps (a generation: its steps, plus the hires fix's, times
its batch size; a Run: its total steps), or as one job for an upscale or a control picture. The seconds per unit
are the mean of the jobs of that kind that finished this session (from their start to their end), and what is
left (the waiting jobs and what the running ones have not done yet) is divided by the jobs that run at once (a
server's replicas). Until a job of each kind left has finished, the figure gives no time.
No Qt: the window feeds it the worker's signals and shows `text()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .postprocess import UpscaleRequest
from .request import GenerationRequest
from .runs import Run

STEPS, UPSCALE, OTHER = "steps", "upscale", "other"


def work(job: object) -> tuple[str, float]:
    """(kind of unit, how many) of a job."""
    if isinstance(job, GenerationRequest):
        steps = job.sampling.steps + (job.hires.steps or job.sampling.steps if job.hires.enabled else 0)
        return STEPS, float(max(1, steps) * max(1, job.sampling.batch_size))
    if isinstance(job, UpscaleRequest):
        return UPSCALE, 1.0
    if isinstance(job, Run):
        return STEPS, float(max(1, job.total_steps()))
    return OTHER, 1.0


@dataclass
class _Tracked:
    kind: str
    units: float
    started: float | None = None
    fraction: float = 0.0  # of its steps done while it runs


class QueueProgress:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.done = 0
        self.total = 0
        self._left: dict[int, _Tracked] = {}  # the jobs counted that have not ended
        self._measured: dict[str, list[float]] = {}  # kind -> seconds per unit of each job finished

    def queued(self, job_id: int, job: object) -> None:
        """A job joined the queue (again is nothing new)."""
        if job_id in self._left:
            return
        if not self._left:  # the queue had emptied: a new count
            self.done = self.total = 0
        self.total += 1
        self._left[job_id] = _Tracked(*work(job))

    def started(self, job_id: int) -> None:
        if job_id in self._left:
            self._left[job_id].started = self.clock()

    def stepped(self, job_id: int, index: int, total: int) -> None:
        if job_id in self._left and total > 0:
            self._left[job_id].fraction = min(1.0, index / total)

    def ended(self, job_id: int, finished: bool) -> None:
        """It finished (`finished`: its time counts for the estimate), failed or was cancelled."""
        job = self._left.pop(job_id, None)
        if job is None:
            return
        self.done += 1
        if finished and job.started is not None:
            self._measured.setdefault(job.kind, []).append((self.clock() - job.started) / job.units)

    def removed(self, job_id: int) -> None:
        """Dropped before it ran: it no longer counts."""
        if self._left.pop(job_id, None) is not None:
            self.total -= 1
            if not self._left:
                self.done = self.total = 0

    def seconds_left(self, at_once: int = 1) -> float | None:
        """None when a kind of job left has no finished one to measure by. `at_once` jobs run side by side, but
        never more than are left, and the queue takes at least as long as its longest job left."""
        each = []
        for job in self._left.values():
            measured = self._measured.get(job.kind)
            if not measured:
                return None
            each.append(job.units * (1.0 - job.fraction) * sum(measured) / len(measured))
        if not each:
            return 0.0
        return max(sum(each) / max(1, min(at_once, len(each))), max(each))

    def text(self, at_once: int = 1) -> str:
        """ "12 of 40, about 6 min left"; "12 of 40" until there is a time to give; "" with nothing counted."""
        if self.total == 0:
            return ""
        text = f"{self.done} of {self.total}"
        seconds = self.seconds_left(at_once) if self._left else None
        if seconds is not None:
            text += f", about {duration(seconds)} left"
        return text


def duration(seconds: float) -> str:
    """ "40 s", "6 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
