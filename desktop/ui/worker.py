"""GenerationWorker: the one thread that owns the Backend (desktop/core/backend.py) and its models.

The GUI thread calls submit(), remove(), cancel() and shutdown(); they only
touch a locked queue and a threading.Event, so they return at once. The
worker thread makes its backend on first use with the factory it was given
(the window's factory imports torch there, never on the GUI thread), runs
one job at a time, saves each result to disk (PNG encoding stays off the GUI
thread) and reports through signals, delivered to slots on the GUI thread.
This module never imports the engine.

A backend that runs several jobs at once (a server with several replicas: its
`slots`, read once it has started) gets that many: each job taken from the
queue in order runs on a thread of its own, and what each one made (or why it
did not) is saved and reported in the order the jobs were submitted, so a
batch's pictures arrive in seed order even when a later one finishes first.
Cancel stops every running job; the queued ones stay, as with one at a time.

A job is a GenerationRequest, an UpscaleRequest or a PreprocessJob (a control
layer's "From picture"): the last waits its turn in the same queue, but its
control picture is not a result to keep, so it is neither saved nor added to
the gallery; it arrives through job_finished with no path. A draft (submit_draft: live mode's quick picture of the
canvas frame, desktop/ui/canvas/live.py) is not a queue job: it never shows in the queue, is never kept in the queue
store nor saved to the gallery, and says what it made through job_finished with no path. A newer draft replaces a
waiting one and cancels a running one; a normal job is never cancelled by a draft, which waits for a free slot (and
goes before the waiting normal jobs: it is a few steps). Drafts run while the queue is paused. A Run
(desktop/core/runs.py: an X/Y/Z plot, a folder batch) runs its parts itself on the backend, saving through what
the worker lends it, and its job_finished holds what it returns to show.

Signals:
    status(str): what the engine is doing ("Loading model...", "Ready: ...").
    device_ready(str): description of the device chosen.
    model_loaded(str, str): model reference and its family ("sd1", "sdxl", ...).
    model_failed(str, str): model reference and why it could not be loaded.
    queue_changed(list): pending jobs as [(job_id, GenerationRequest | UpscaleRequest | PreprocessJob)], oldest
        first.
    job_started(int, object): job id and its resolved GenerationRequest (or validated UpscaleRequest, or the
        PreprocessJob).
    step(int, int, int, object): job id, step (1-based), total steps, preview (HxWx3 uint8 or None); for an
        upscale, one step per tile and no preview.
    job_finished(int, list): job id and [(image HxWx3 uint8, seed, saved Path or None)]; a PreprocessJob's is
        [(its control picture, -1, None)].
    save_failed(int, str): job id and why its pictures could not be written (they are still shown).
    job_failed(int, str): job id and a message to show as it is.
    job_cancelled(int): job id.
    working(int, int): how many jobs run now, and how many the backend runs at once (its slots: a server's
        replicas; 1 on this computer); said as each job starts and ends.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from desktop.core import credentials, lineage, marking
from desktop.core.backend import Backend, BackendFactory, GenerationJob, ModelDescriptor, PreprocessJob, UpscaleJob
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.imageio import save_png
from desktop.core.outputs import save_result
from desktop.core.postprocess import UpscaleRequest, result_path
from desktop.core.preprocessors import describe as describe_preprocess
from desktop.core.progress import TaskState
from desktop.core.request import GenerationRequest
from desktop.core.runs import Run, RunContext, SaveFailed, nth
from desktop.core.settings import Settings
from desktop.core.wildcards import expand_batch

Queued = GenerationRequest | UpscaleRequest | PreprocessJob | Run  # what submit() takes
_FIRST_DRAFT = 2**30  # drafts are numbered from here (queue jobs from 1), so a job id tells what it is: is_draft()


def is_draft(job_id: int) -> bool:
    """Whether `job_id` is a draft's (GenerationWorker.submit_draft), without asking the worker."""
    return job_id > _FIRST_DRAFT


class _WorkerSignals(QObject):
    """The signals both sides share (see the module docstring)."""

    status = Signal(str)
    device_ready = Signal(str)
    model_loaded = Signal(str, str)
    model_failed = Signal(str, str)
    queue_changed = Signal(list)
    job_started = Signal(int, object)
    step = Signal(int, int, int, object)
    job_finished = Signal(int, list)
    job_failed = Signal(int, str)
    job_cancelled = Signal(int)
    save_failed = Signal(int, str)
    working = Signal(int, int)

    NAMES = ("status", "device_ready", "model_loaded", "model_failed", "queue_changed", "job_started", "step",
             "job_finished", "job_failed", "job_cancelled", "save_failed", "working")


class _Runner(_WorkerSignals):
    """Lives on the worker thread: the queue, the backend, and the runs. See GenerationWorker."""

    _wake = Signal()
    _preload = Signal(str)
    _job_thread_ended = Signal()  # from a job's own thread, as its last act

    def __init__(self, settings: Settings, backend_factory: BackendFactory):
        super().__init__()
        self._settings = settings
        self._make_backend = backend_factory
        self._thread = QThread()
        self._thread.setObjectName("generation-worker")
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, Queued]] = deque()
        self._ids = itertools.count(1)
        self._draft_ids = itertools.count(_FIRST_DRAFT + 1)
        self._draft: tuple[int, GenerationRequest] | None = None  # the draft waiting to run (at most one)
        self._current: TaskState | None = None  # a preload's
        self._changed = threading.Condition(self._lock)  # a job ended, or the worker is stopping
        self._running: dict[int, TaskState] = {}  # the jobs running now, by id
        self._draft_said: set[str] = set()  # the status lines drafts said (said once)
        self._stepped: set[int] = set()  # the running drafts that made a step (past loading and converting)
        self._order: deque[int] = deque()  # the jobs taken and not yet reported, oldest first
        self._reports: dict[int, Callable[[], None]] = {}  # what an ended job says, until the earlier ones said theirs
        self._reporting = threading.Lock()  # one thread reports at a time, so the order holds
        self._job_threads = 0  # the jobs' own threads (several at once) that have not ended
        self._job_threads_made = 0  # and all there were: the GUI thread counts the ends it heard against it
        self._stopping = False
        self._backend: Backend | None = None  # made in the worker thread
        self._engine_stale = False
        self._preload_target: str | None = None
        self._current_is_preload = False
        self._gallery = None  # GalleryStore: results are saved through it, so the gallery indexes them
        self._paused = False  # no job starts while paused; the running ones finish
        self._store = None  # a QueueStore (desktop/core/queue_store.py): told what joins, moves and ends
        self.moveToThread(self._thread)
        self._wake.connect(self._run_pending)
        self._preload.connect(self._load_model)

    # -- called from the GUI thread ---------------------------------------------

    def submit(self, request: Queued) -> int:
        """Queue a request (a generation, a model upscale, or a control picture to make); returns its job id."""
        with self._lock:
            job_id = next(self._ids)
            if self._store is not None:  # a cheap put, said before the job can be taken (and end)
                self._store.queued(job_id, request)
            self._pending.append((job_id, request))
            pending = list(self._pending)
        self.queue_changed.emit(pending)
        self._wake.emit()
        return job_id

    def submit_draft(self, request: GenerationRequest) -> int:
        """Run `request` as a draft (see the module docstring): the waiting draft is dropped (said as cancelled),
        the running drafts are cancelled; returns its job id."""
        with self._lock:
            job_id = next(self._draft_ids)
            dropped, self._draft = self._draft, (job_id, request)
            self._cancel_drafts()
        if dropped is not None:
            self.job_cancelled.emit(dropped[0])
        self._wake.emit()
        return job_id

    def cancel_drafts(self) -> None:
        """Drop the waiting draft and cancel the running ones (live mode was turned off)."""
        with self._lock:
            dropped, self._draft = self._draft, None
            self._cancel_drafts(stepped_only=False)
        if dropped is not None:
            self.job_cancelled.emit(dropped[0])

    def _cancel_drafts(self, stepped_only: bool = True) -> None:
        """Under the lock. A draft that has not made its first step is still loading or converting the model (work
        that a cancel would throw away, so the next draft would start it again): it runs on, and the newer draft
        waits for it, unless `stepped_only` is False (live mode was turned off)."""
        for job_id, state in self._running.items():
            if is_draft(job_id) and (job_id in self._stepped or not stepped_only):
                state.cancel()

    def remove(self, job_id: int) -> bool:
        """Drop a job that has not started. Returns False when it is not pending."""
        with self._lock:
            kept = deque(item for item in self._pending if item[0] != job_id)
            removed = len(kept) != len(self._pending)
            self._pending = kept
            pending, store = list(kept), self._store
        if removed:
            if store is not None:
                store.ended(job_id)
            self.queue_changed.emit(pending)
        return removed

    def move(self, job_id: int, by: int) -> bool:
        """Move a waiting job `by` places (-1: one earlier). Returns False when it is not pending or cannot move."""
        with self._lock:
            ids = [job for job, _ in self._pending]
            if job_id not in ids:
                return False
            index = ids.index(job_id)
            to = max(0, min(len(ids) - 1, index + by))
            if to == index:
                return False
            items = list(self._pending)
            items.insert(to, items.pop(index))
            self._pending = deque(items)
        self._reordered()
        return True

    def duplicate(self, job_id: int) -> int | None:
        """Queue a copy of a waiting job right after it; returns the copy's id (None when it is not pending, or a
        control picture, which belongs to its layer)."""
        with self._lock:
            items = list(self._pending)
            index = next((i for i, (job, _) in enumerate(items) if job == job_id), None)
            if index is None or isinstance(items[index][1], PreprocessJob):
                return None
            copy_id, request = next(self._ids), items[index][1]
            items.insert(index + 1, (copy_id, request))
            self._pending = deque(items)
            if self._store is not None:  # before the copy can be taken, as submit() does
                self._store.queued(copy_id, request)
        self._reordered()
        return copy_id

    def _reordered(self) -> None:
        """Say the new order (to the queue view and the store)."""
        with self._lock:
            pending, store = list(self._pending), self._store
            order = [job for job in self._order if not is_draft(job)] + [job for job, _ in pending]
        if store is not None:
            store.ordered(order)
        self.queue_changed.emit(pending)

    def pause(self) -> None:
        """Start no new job until resume(); the running ones finish."""
        with self._lock:
            self._paused = True
            self._changed.notify_all()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
        self._wake.emit()

    def is_paused(self) -> bool:
        with self._lock:
            return self._paused

    def set_store(self, store) -> None:
        """Tell this QueueStore what joins, moves and ends from now on (None: nothing is kept)."""
        with self._lock:
            self._store = store

    def cancel(self) -> None:
        """Stop the running jobs within one step; the next pending job then starts."""
        with self._lock:
            if self._current is not None:
                self._current.cancel()
            for state in self._running.values():
                state.cancel()

    def preload(self, model: str) -> None:
        """Start the engine and load `model` in the background; only the latest request counts."""
        with self._lock:
            self._preload_target = model
            if self._current is not None and self._current_is_preload:
                self._current.cancel()  # a download for a model no longer wanted
        self._preload.emit(model)

    def pending(self) -> list[tuple[int, Queued]]:
        with self._lock:
            return list(self._pending)

    def is_busy(self) -> bool:
        with self._lock:
            return self._current is not None or bool(self._order) or bool(self._pending) or bool(self._running) \
                or self._draft is not None

    def set_gallery(self, store) -> None:
        with self._lock:
            self._gallery = store

    def update_settings(self, settings: Settings) -> None:
        with self._lock:
            old = self._settings
            self._settings = settings
            if (old.device, old.precision, old.weight_storage, old.cpu_runtime, old.cpu_threads, old.server_url,
                    old.server_token) != (settings.device, settings.precision, settings.weight_storage,
                                          settings.cpu_runtime, settings.cpu_threads, settings.server_url,
                                          settings.server_token):
                self._engine_stale = True  # picked up by the worker thread before its next job

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._draft = None
            if self._current is not None:
                self._current.cancel()
            for state in self._running.values():
                state.cancel()
            self._changed.notify_all()
            backend = self._backend
        if backend is not None:
            backend.cancel()  # thread-safe: a backend with work elsewhere (a server) stops it too

    def job_threads_made(self) -> int:
        with self._lock:
            return self._job_threads_made

    def join_jobs(self, timeout_s: float) -> bool:
        """Wait for the jobs' own threads (after stop()); True when they all ended in time."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._job_threads and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return not self._job_threads

    # -- the worker thread ------------------------------------------------------------

    def _started(self, state: TaskState) -> Backend:
        """The backend, made and started on first use, and again after the device or precision changed."""
        with self._lock:
            stale, self._engine_stale = self._engine_stale, False
            backend, settings = self._backend, self._settings
        if stale and backend is not None:
            with self._lock:  # gone before it closes: if the new one cannot start, the next job tries it again
                self._backend = None
            backend.close()  # start over on the new device
            backend = None
        if backend is None:
            self.status.emit("Starting the engine...")
            backend = self._make_backend(settings)
            try:
                description = backend.start(state)
            except BaseException:
                backend.close()
                raise
            with self._lock:
                self._backend = backend
            self.device_ready.emit(description)
        return backend

    @Slot(str)
    def _load_model(self, model: str) -> None:
        with self._lock:
            if self._stopping or self._preload_target != model:
                return  # superseded by a later choice, or closing
            self._preload_target = None
            state = TaskState(on_status=self.status.emit)
            self._current, self._current_is_preload = state, True
        try:
            loaded = self._started(state).load(model, state)
        except Cancelled:
            return
        except Exception as error:  # noqa: BLE001 - say why, whatever it was; the app keeps working
            self.model_failed.emit(model, _message(error))
            return
        finally:
            with self._lock:
                self._current, self._current_is_preload = None, False
        self.model_loaded.emit(loaded.ref, loaded.family)

    @Slot()
    def _run_pending(self) -> None:
        while True:
            with self._lock:
                # A free slot (all of them busy: wait for one to end); a device or precision change waits for
                # every running job to end before the backend is made again.
                while self._waiting() and not self._stopping and \
                        len(self._running) >= (1 if self._engine_stale else self._slots()):
                    self._changed.wait()
                if self._stopping or not self._waiting():
                    return
                if self._draft is not None:  # a few steps: before the waiting jobs, never in their place
                    (job_id, request), self._draft = self._draft, None
                else:
                    job_id, request = self._pending.popleft()
                pending = list(self._pending)
                said: list[str] = []  # the engine's status lines of this job, for the closing line
                state = TaskState(on_step=lambda i, n, preview, job=job_id: self._stepped_one(job, i, n, preview),
                                  on_status=self._draft_status(said) if is_draft(job_id)
                                  else lambda text, said=said: (said.append(text), self.status.emit(text)))
                self._running[job_id] = state
                if not is_draft(job_id):  # a draft says what it made at once, never after the jobs taken before it
                    self._order.append(job_id)
                settings = self._settings
            self.queue_changed.emit(pending)
            self._take(job_id, request, state, settings, said)

    def _stepped_one(self, job_id: int, index: int, total: int, preview) -> None:
        if is_draft(job_id):
            with self._lock:
                self._stepped.add(job_id)
        self.step.emit(job_id, index, total, preview)

    def _draft_status(self, said: list[str]) -> Callable[[str], None]:
        """A draft's status lines: its per-run "Generating ..." line and what a draft before it said are kept from
        the status bar (a draft every stroke would cover what the person's jobs said); one-time work (loading or
        converting the model) is said, so the person knows why the first draft is slow."""
        def status(text: str) -> None:
            said.append(text)
            with self._lock:
                new = not text.startswith("Generating ") and text not in self._draft_said
                self._draft_said.add(text)
            if new:
                self.status.emit(text)
        return status

    def _waiting(self) -> bool:
        """Whether a job may start once a slot is free: a draft, or a queued job when the queue is not paused.
        Under the lock."""
        return self._draft is not None or (bool(self._pending) and not self._paused)

    def _slots(self) -> int:
        """How many jobs the backend runs at once (a server's replicas); 1 before it started. Under the lock."""
        slots = getattr(self._backend, "slots", 1) if self._backend is not None else 1
        return slots if isinstance(slots, int) and slots > 1 else 1

    def _take(self, job_id: int, request: Queued, state: TaskState, settings: Settings, said: list[str]) -> None:
        """Check the job, start the backend and say the job started (here, so in the queue's order); then run it
        here, or on a thread of its own when the backend runs several at once."""
        seeds = None  # a batch whose seeds choose different prompts: run a seed at a time
        try:
            if isinstance(request, UpscaleRequest):
                request = request.validated()
            elif not isinstance(request, (PreprocessJob, Run)):  # a Run checks its own parts as it runs them
                seeds = expand_batch(request.resolved(), settings.models_folders)  # this computer's wildcards
                request = seeds[0].replace(sampling=seeds[0].sampling.replace(batch_size=len(seeds))) \
                    if len(seeds) > 1 else seeds[0]
            backend = self._started(state)
            backend.use_folders(list(settings.models_folders))  # ones added since it started count too
            self.job_started.emit(job_id, request)
        except Exception as error:  # noqa: BLE001 - the worker must survive anything and say what happened
            self._ended(job_id, self._failure(job_id, request, error), error)
            return
        with self._lock:  # said under the lock, so the counts arrive in the order they changed
            slots = self._slots()
            self.working.emit(len(self._running), slots)
            if slots > 1:
                thread = threading.Thread(target=self._job_thread,
                                          args=(job_id, request, backend, state, settings, said, seeds),
                                          name=f"generation-job-{job_id}", daemon=True)
                self._job_threads += 1
                self._job_threads_made += 1
        if slots > 1:
            thread.start()
        else:
            self._run_one(job_id, request, backend, state, settings, said, seeds)

    def _job_thread(self, *job) -> None:
        """A job's own thread: runs it, then says it ended (the worker is stopped once the last one has)."""
        try:
            self._run_one(*job)
        finally:
            with self._lock:
                self._job_threads -= 1
                self._changed.notify_all()
            self._job_thread_ended.emit()

    def _run_one(self, job_id: int, request: Queued, backend: Backend, state: TaskState, settings: Settings,
                 said: list[str], seeds: list[GenerationRequest] | None = None) -> None:
        upscale = isinstance(request, UpscaleRequest)
        preprocess = isinstance(request, PreprocessJob)
        loaded: ModelDescriptor | None = None  # an upscale loads its upscaler inside run()
        try:
            started = time.perf_counter()
            if isinstance(request, Run):
                outcome = request.run(backend, state, self._lend(settings, state))
                self._ended(job_id, lambda: self._report_run(job_id, outcome))
                return
            if preprocess:
                results = backend.run(request, state)
            elif upscale:
                results = backend.run(UpscaleJob(request), state)
            else:
                loaded = backend.load(request.model, state)
                parts = seeds or [request]
                results = []
                for k, one in enumerate(parts):  # a batch run a seed at a time: one bar, the pictures in seed order
                    results += backend.run(GenerationJob(one, settings.preview_method, settings.preview_every),
                                           state if len(parts) == 1 else nth(state, k, len(parts)))
            if not results:  # e.g. a server's `done` without a result: nothing to save or show
                raise SfumatoError("The server finished the job without a picture; look at the server's log, then "
                                   "try again." if getattr(backend, "url", None) else
                                   "The engine finished the job without a picture; try again, or another model.")
        except Exception as error:  # noqa: BLE001 - the worker must survive anything and say what happened
            self._ended(job_id, self._failure(job_id, request, error), error)
            return
        self._ended(job_id, lambda: self._report(job_id, request, results, loaded, settings, said, started))

    def _ended(self, job_id: int, report: Callable[[], None], error: Exception | None = None) -> None:
        """The job has run; `report` (saving and saying what it made, or why it did not) is called once every
        earlier job's has been. A job cancelled because the app closes stays in the store, to run next time."""
        with self._lock:
            self._running.pop(job_id, None)
            self._stepped.discard(job_id)
            store = None if self._stopping and isinstance(error, Cancelled) else self._store
            # its row goes once its report has run, so what it made is saved by then (a crash before: it comes back)
            if not is_draft(job_id):  # a draft is not in the order, nor in the store: it says its end at once
                self._reports[job_id] = report if store is None else partial(self._report_then_end, report, store,
                                                                              job_id)
            self._changed.notify_all()
            self.working.emit(len(self._running), self._slots())
        if is_draft(job_id):
            try:
                report()
            except Exception as error:  # noqa: BLE001 - said as the draft's failure
                self.job_failed.emit(job_id, _message(error))
            return
        with self._reporting:
            while True:
                with self._lock:
                    if not self._order or self._order[0] not in self._reports:
                        return
                    first = self._order[0]
                    report = self._reports.pop(first)
                try:
                    report()
                except Exception as error:  # noqa: BLE001 - said as the job's failure; the later jobs get their turn
                    self.job_failed.emit(first, _message(error))
                finally:  # whatever it raised, the later jobs still get their turn
                    with self._lock:
                        self._order.popleft()

    @staticmethod
    def _report_then_end(report: Callable[[], None], store, job_id: int) -> None:
        try:
            report()
        finally:
            store.ended(job_id)

    def _failure(self, job_id: int, request: Queued, error: Exception) -> Callable[[], None]:
        """What a job that did not finish says: that it was cancelled, or why it failed, in a sentence."""
        if isinstance(error, Cancelled) and is_draft(job_id):  # a newer one replaced it: nothing to say
            return lambda: self.job_cancelled.emit(job_id)
        if isinstance(error, Cancelled):
            return lambda: (self.job_cancelled.emit(job_id), self.status.emit("Cancelled."))
        if isinstance(request, PreprocessJob):
            message = f"{describe_preprocess(request.type)} did not work: {_message(error, 'The preprocessor')}"
        elif isinstance(request, UpscaleRequest):
            message = _message(error, "The restore" if request.restore else "The upscale")
        elif isinstance(request, Run):
            message = _message(error, request.describe())
        else:
            message = _message(error)
        return lambda: self.job_failed.emit(job_id, message)

    def _report(self, job_id: int, request: Queued, results, loaded: ModelDescriptor | None, settings: Settings,
                said: list[str], started: float) -> None:
        """Save what a job made and say so."""
        upscale = isinstance(request, UpscaleRequest)
        if is_draft(job_id):  # shown on the canvas for a moment, never kept
            if loaded is not None:
                self.model_loaded.emit(loaded.ref, loaded.family)
            self.job_finished.emit(job_id, [(r.image, r.seed, None) for r in results])
            return
        if isinstance(request, PreprocessJob):  # a control picture for the canvas: nothing to save; said first, so
            # what the canvas says of it (the layer it filled) comes last
            self.status.emit(f"{describe_preprocess(request.type)}: done in {time.perf_counter() - started:.1f} s.")
            self.job_finished.emit(job_id, [(r.image, r.seed, None) for r in results])
            return
        if loaded is not None:
            self.model_loaded.emit(loaded.ref, loaded.family)
        signing = credentials.Signing.from_settings(settings)
        saved, problem = self._save(results, loaded, settings, signing)
        seconds = time.perf_counter() - started
        self.job_finished.emit(job_id, saved)
        if problem:
            self.save_failed.emit(job_id, problem)
        else:
            done = f"Done in {seconds:.1f} s: {len(saved)} image(s) saved to {Path(saved[0][2]).parent}"
            if not upscale and len(saved) < request.sampling.batch_size and said:  # the engine said why the others are missing
                done = f"{done}. {said[-1]}"
            notes = list(dict.fromkeys(r.note for r in results if r.note))
            if signing is not None and signing.problems:  # the pictures are saved; only their credentials are not
                notes.append(signing.summary())
            if notes:  # what the person should know about the result, e.g. that no face was found
                done = " ".join([f"{done}.", *notes])
            self.status.emit(done)

    def _lend(self, settings: Settings, state: TaskState) -> RunContext:
        """What a Run saves its pictures with: a lone job's way, and the output folder's gallery for the others."""
        signing = credentials.Signing.from_settings(settings)  # one for the run: the key is read once

        def save(results, loaded):
            saved, problem = self._save(results, loaded, settings, signing)
            if problem:
                raise SaveFailed(problem)
            if signing is not None and signing.problems:
                state.status(signing.summary())
            return saved

        def add_picture(name: str, image, parameters: str, extra: dict[str, str]) -> Path:
            gallery = self._gallery_for(settings)
            try:
                path = save_png(settings.output_path() / name, image, {"parameters": parameters, **extra})
            except OSError as error:
                raise SaveFailed(_unsaved(settings, error)) from None
            if signing is not None:  # a plot's grid: made from prompts, marked with its first cell's source type
                source = marking.source_type_in(extra.get(marking.XMP_KEY)) or marking.TRAINED
                if not signing.sign(path, credentials.Provenance(source)):
                    state.status(signing.summary())
            if gallery is not None:
                try:
                    gallery.index_files([path])
                except Exception:  # noqa: BLE001 - it is saved; the gallery finds it when it next reads the folder
                    pass
            return path

        return RunContext(settings, save, add_picture, state.status)

    def _report_run(self, job_id: int, outcome) -> None:
        self.job_finished.emit(job_id, list(outcome.shown))
        if outcome.summary:
            self.status.emit(outcome.summary)

    def _gallery_for(self, settings: Settings):
        """The gallery of the output folder, or None (none yet, or the folder changed since it opened)."""
        with self._lock:
            gallery = self._gallery
        return gallery if gallery is not None and gallery.folder == settings.output_path() else None

    def _save(self, results, loaded: ModelDescriptor | None, settings: Settings,
              signing: credentials.Signing | None = None) -> tuple[list, str]:
        """Write each result, then sign it (content credentials) with `signing`; a failure is reported, never a
        reason to drop the pictures (one that cannot be signed is kept unsigned, and `signing` says why)."""
        saved, problem = [], ""
        gallery = self._gallery_for(settings)  # after a change of folder, that gallery opens later and finds these
        for r in results:
            try:
                if isinstance(r.request, UpscaleRequest):  # A1111 Extras' keys appended to the source's parameters
                    target = result_path(settings.output_path(), r.request)
                    marks = {**marking.chunks(r.request, settings.mark_ai), **lineage.chunks(r.image, r.request)}
                    if gallery is not None:
                        path = gallery.add_picture(target, r.image, r.request.parameters, marks, signing, r.request)
                    else:
                        path = save_png(target, r.image, {"parameters": r.request.parameters, **marks})
                        if signing is not None:
                            signing.sign(path, credentials.provenance(r.request))
                elif gallery is not None:
                    path = gallery.add_result(r.image, r.request, r.seed, loaded.name, loaded.hash, r.params,
                                              settings.mark_ai, signing)
                else:
                    path = save_result(settings.output_path(), r.image, r.request, r.seed, loaded.name, loaded.hash,
                                       r.params, settings.mark_ai)
                    if signing is not None:
                        signing.sign(path, credentials.provenance(r.request))
            except OSError as error:
                path = None
                problem = _unsaved(settings, error)
            except Exception as error:  # noqa: BLE001 - a bug in the metadata must not lose the pictures
                path = None
                problem = f"The pictures could not be saved ({type(error).__name__}: {error}); they are still shown."
            saved.append((r.image, r.seed, path))
        return saved, problem


def _unsaved(settings: Settings, error: OSError) -> str:
    return (f"The pictures could not be saved to {settings.output_path()}: {error.strerror or error}. Check that the "
            "folder exists and the disk is not full (File > Settings sets the folder).")


def _message(error: Exception, what: str = "Generation") -> str:
    if isinstance(error, SfumatoError):
        return str(error)
    if isinstance(error, ValueError) and "chosen but" in str(error):
        return f"{error}. Set Device to Automatic in File > Settings, or install a PyTorch build for that device."
    if isinstance(error, OSError):
        return f"A file could not be read or written: {error}. Check the disk and the folder permissions."
    return f"{what} failed ({type(error).__name__}: {error}). The app keeps working; try again or another model."


class GenerationWorker(_WorkerSignals):
    """The GUI thread's handle on the one thread that owns the backend (torch, diffusers and the model).

    `backend_factory(settings)` is called on that thread to make the Backend,
    and again when the device or precision changes.

    Its methods return at once. Its signals (listed in the module docstring)
    are emitted on the GUI thread, so any slot or plain function may receive
    them; `stopped()` is emitted once, when the thread and every job's own thread have ended after shutdown().
    """

    stopped = Signal()
    paused_changed = Signal(bool)  # from pause() / resume()

    def __init__(self, settings: Settings, backend_factory: BackendFactory, parent: QObject | None = None):
        super().__init__(parent)
        self._runner = _Runner(settings, backend_factory)
        for name in self.NAMES:
            if name != "queue_changed":
                getattr(self._runner, name).connect(getattr(self, name))  # queued onto this (GUI) thread
        # The worker thread's list of pending jobs arrives queued, after lists the GUI thread sent directly
        # since (submits): say the queue as it is on arrival, never a stale copy ("empty" with jobs waiting).
        self._runner.queue_changed.connect(self._say_queue)
        self._thread = self._runner._thread
        self._thread_ended = self._said_stopped = False
        self._job_ends_heard = 0  # each after what that job's thread said before it ended
        self._thread.finished.connect(self._thread_finished)
        self._runner._job_thread_ended.connect(self._job_thread_ended)  # queued from the job's thread
        self._thread.start()

    @Slot()
    def _thread_finished(self) -> None:
        self._thread_ended = True  # isFinished() may not say so yet: `finished` comes just before
        self._say_stopped()

    @Slot()
    def _job_thread_ended(self) -> None:
        self._job_ends_heard += 1
        self._say_stopped()

    @Slot()
    def _say_stopped(self) -> None:
        """Say `stopped` once the worker thread and the last job's own thread (a replica's) have ended."""
        if self._thread_ended and not self._said_stopped and self._job_ends_heard == self._runner.job_threads_made():
            self._said_stopped = True
            self.stopped.emit()

    @Slot(list)
    def _say_queue(self, _snapshot: list) -> None:
        self.queue_changed.emit(self._runner.pending())

    def submit(self, request: Queued) -> int:
        """Queue a request (a generation, a model upscale, or a PreprocessJob: a control picture to make, which
        is not saved); returns its job id."""
        return self._runner.submit(request)

    def submit_draft(self, request: GenerationRequest) -> int:
        """Run a draft of the canvas frame for live mode: not in the queue, never saved; it replaces the waiting
        draft and cancels the running one (never a normal job, which it waits behind). Returns its job id, which
        is_draft() tells from a queue job's; it ends through the usual signals (job_finished with path None)."""
        return self._runner.submit_draft(request)

    def cancel_drafts(self) -> None:
        """Drop the waiting draft and cancel the running one."""
        self._runner.cancel_drafts()

    @staticmethod
    def is_draft(job_id: int) -> bool:
        return is_draft(job_id)

    def remove(self, job_id: int) -> bool:
        """Drop a job that has not started. Returns False when it is not pending."""
        return self._runner.remove(job_id)

    def move(self, job_id: int, by: int) -> bool:
        """Move a waiting job `by` places (-1: one earlier, +1: one later)."""
        return self._runner.move(job_id, by)

    def duplicate(self, job_id: int) -> int | None:
        """Queue a copy of a waiting job right after it; returns its id (None: not pending, or a control picture)."""
        return self._runner.duplicate(job_id)

    def pause(self) -> None:
        """Start no new job until resume(); the running ones finish."""
        self._runner.pause()
        self.paused_changed.emit(True)

    def resume(self) -> None:
        self._runner.resume()
        self.paused_changed.emit(False)

    def is_paused(self) -> bool:
        return self._runner.is_paused()

    def set_store(self, store) -> None:
        """Keep the queue in this QueueStore (desktop/core/queue_store.py) from now on, so it survives a restart."""
        self._runner.set_store(store)

    def cancel(self) -> None:
        """Stop the running job (all of them, on a server's replicas) within one step; the next pending job then
        starts."""
        self._runner.cancel()

    def preload(self, model: str) -> None:
        """Start the engine and load `model` in the background (after the window shows)."""
        self._runner.preload(model)

    def pending(self) -> list[tuple[int, Queued]]:
        return self._runner.pending()

    def is_busy(self) -> bool:
        return self._runner.is_busy()

    def update_settings(self, settings: Settings) -> None:
        self._runner.update_settings(settings)

    def set_gallery(self, store) -> None:
        """Save results through this GalleryStore (None: as plain files), from the next one on."""
        self._runner.set_gallery(store)

    def shutdown(self, timeout_ms: int = 30_000, wait_for_jobs: bool = True) -> bool:
        """Cancel everything and stop the thread, waiting up to `timeout_ms` for it (a lone job runs there and ends
        within a step) and, with `wait_for_jobs`, for the jobs' own threads (a server's replicas; one stuck in the
        network notices the cancel late). True when all ended in time, and then what they said has been emitted
        (a picture finished as the window closes is shown before its gallery closes); else `stopped` comes once they
        have."""
        deadline = time.monotonic() + timeout_ms / 1000
        self._runner.stop()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            return False
        if not self._runner.join_jobs(max(0.0, deadline - time.monotonic()) if wait_for_jobs else 0):
            return False
        QCoreApplication.sendPostedEvents(self)  # the signals still queued to this thread
        return True
