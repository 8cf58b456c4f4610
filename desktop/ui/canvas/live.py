"""LiveMode: live mode on the canvas (Krita AI Diffusion's "live"): the frame drawn again as the person paints.

While the Live button is on, the end of a stroke (or any other edit), a change in the prompt panel, or a moved
or resized frame asks for a draft after a short pause (a burst of strokes makes one draft). The GUI thread only
takes the document's snapshot (copy-on-write); a plain thread composites the frame, scales it to the draft size and
builds the request (desktop/core/live.py), and the worker runs it as a draft (GenerationWorker.submit_draft): a
newer draft cancels the running one, a normal job is never interrupted. The draft's step previews and its picture
show over the frame, scaled to it: an overlay, never a layer or an undo step. The latest finished draft stays
shown while the next one runs, at half strength so what was painted since shows through it (and not at all while
a stroke is painted). "Make full quality" runs
the panel's normal request for the frame, whose result is staged as usual. Turning live off removes the overlay
and cancels the drafts.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from desktop.core import live
from desktop.core.document import CanvasDocument
from desktop.core.errors import SfumatoError
from desktop.core.geometry import Bounds, Extent, Point
from desktop.core.request import RANDOM_SEED, GenerationRequest

from ..background import Background
from ..qimage import to_qimage
from .view import CanvasView

STROKE_DELAY_MS = 300  # after the last stroke (or frame move): a burst of strokes makes one draft
PROMPT_DELAY_MS = 600  # after the last change in the panel (typing)
LIVE = "live"  # the view's picture kind of the overlay

#: What the plan needs to know of the chosen model: (reference, family, variant, model folders, few-step marks,
#: whether it takes the guidance as an embedding: a full LCM checkpoint).
PlanInputs = tuple[str, str, str, tuple[str, ...], tuple[tuple[str, str], ...], bool]


class LiveControls(QWidget):
    """The canvas strip's live group: the toggle, the draft size, "Make full quality" and what live mode does."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton(text="Live")
        self.toggle.setObjectName("liveToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Live mode: draw the frame again after each stroke or prompt change, fast and small, "
                               "with a few-step model or LoRA (drafts are not saved)")
        self.size = QComboBox()
        for size in live.DRAFT_SIZES:
            self.size.addItem(f"{size} px", size)
        self.size.setToolTip("The long side of a draft: 256 px is about 4x faster than 512 px on a CPU; the draft is "
                             "scaled to the frame")
        self.full = QToolButton(text="Make full quality")
        self.full.setObjectName("liveFullQuality")
        self.full.setAutoRaise(True)
        self.full.setToolTip("Generate the frame with the panel's settings, as Generate does: the result waits on "
                             "the canvas to be accepted and is saved to the gallery")
        self.state = QLabel()
        self.state.setMinimumWidth(90)
        for widget in (self.toggle, self.size, self.full, self.state):
            layout.addWidget(widget)
        self.show_state(False)

    def show_state(self, on: bool, text: str = "") -> None:
        self.toggle.setChecked(on)
        self.full.setEnabled(on)
        self.state.setText(text if on else "")


class LiveMode(QObject):
    """Signals:
    failed(str): a sentence to show (why live mode turned off, or why a draft could not be made).
    full_quality_requested(): "Make full quality": the window generates the frame as Generate does.
    shown(float): a finished draft is on the canvas, this many seconds after the edit that asked for it.
    """

    failed = Signal(str)
    full_quality_requested = Signal()
    shown = Signal(float)

    def __init__(self, view: CanvasView, worker, base_request: Callable[[], GenerationRequest],
                 plan_inputs: Callable[[], PlanInputs], parent: QObject | None = None):
        super().__init__(parent)
        self.view, self.worker = view, worker
        self.base_request, self.plan_inputs = base_request, plan_inputs
        self.controls = LiveControls()
        self.doc: CanvasDocument | None = None
        self.on = False
        self.seed = RANDOM_SEED  # fixed for a live session, so drafts do not flicker between strokes
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._build)
        self._asked = 0.0  # when the edit that the coming draft shows was made (perf_counter)
        self._builds = itertools.count(1)
        self._build_id = 0  # the latest draft being built off the GUI thread; older ones are dropped
        self._plans: dict[PlanInputs, live.FastPlan] = {}
        self._jobs: dict[int, tuple[Bounds, float]] = {}  # draft job id -> its frame, when it was asked for
        self._shown: int | None = None  # the job id of the finished draft on the canvas
        self.latencies: list[float] = []  # seconds from an edit to its draft on the canvas, newest last
        self._background = Background(self)
        self.controls.toggle.toggled.connect(self.set_on)
        self.controls.full.clicked.connect(self.full_quality_requested)
        self.controls.size.currentIndexChanged.connect(lambda _index: self.schedule(0))
        worker.job_started.connect(self._started)
        worker.step.connect(self._step)
        worker.job_finished.connect(self._finished)
        worker.job_failed.connect(self._failed)
        worker.job_cancelled.connect(self._cancelled)

    # -- what the window tells it -------------------------------------------------------------------

    def set_document(self, doc: CanvasDocument) -> None:
        if self.doc is not None:
            self.doc.history.changed.disconnect(self.edited)
            self.doc.frame_changed.disconnect(self._frame_changed)
            self.doc.extent_changed.disconnect(self._extent_changed)
        self.doc = doc
        doc.history.changed.connect(self.edited)
        doc.frame_changed.connect(self._frame_changed)
        doc.extent_changed.connect(self._extent_changed)
        self._clear()
        self.schedule(0)

    def set_on_gpu(self, on_gpu: bool) -> None:
        """The engine's device is known: 512 px drafts on a GPU, 256 px on a CPU (the person may choose again)."""
        self.controls.size.setCurrentIndex(live.DRAFT_SIZES.index(live.default_draft_size(on_gpu)))

    @Slot(bool)
    def set_on(self, on: bool) -> None:
        if on == self.on:
            self.controls.show_state(on, self.controls.state.text())
            return
        self.on = on
        self._plans = {}  # planned again when turned on (a draft failed: it turned off): the LoRAs may have changed
        if on:
            seed = self.base_request().sampling.seed
            self.seed = seed if seed != RANDOM_SEED else random.randint(0, 2**32 - 1)
            self.controls.show_state(True, "Starting...")
            self.schedule(0)
        else:
            self._timer.stop()
            self._build_id = 0
            self.worker.cancel_drafts()
            self._clear()
            self.controls.show_state(False)

    def edited(self, *_args) -> None:
        """A stroke ended (or another edit, an undo): a draft after the pause."""
        self.schedule(STROKE_DELAY_MS)

    def settings_changed(self, *_args) -> None:
        """The prompt or another value in the panel changed."""
        self.schedule(PROMPT_DELAY_MS)

    def schedule(self, delay_ms: int) -> None:
        """Ask for a draft in `delay_ms` (again from now when one was asked for already)."""
        if not self.on or self.doc is None:
            return
        self._asked = time.perf_counter()
        self.view.set_live_faded(True)
        self._timer.start(delay_ms)

    # -- building a draft, off the GUI thread ------------------------------------------------------

    def _build(self) -> None:
        if not self.on or self.doc is None:
            return
        build = self._build_id = next(self._builds)
        snapshot, base, asked = self.doc.snapshot(), self.base_request(), self._asked
        inputs = self.plan_inputs()
        plan, size, seed = self._plans.get(inputs), self.controls.size.currentData(), self.seed

        def work():
            made = plan or live.model_plan(*inputs[:4], dict(inputs[4]), guidance_embedded=inputs[5])
            return made, live.frame_draft(snapshot, base, made, size, seed).resolved()

        self._background.run(work, lambda result: self._built(build, inputs, snapshot.frame, asked, *result),
                             lambda error: self._not_built(build, error), name="live-draft")

    def _built(self, build: int, inputs: PlanInputs, frame: Bounds, asked: float, plan, draft) -> None:
        if build != self._build_id or not self.on:
            return  # a newer one is being built, or live mode is off
        self._plans = {inputs: plan}
        self._jobs[self.worker.submit_draft(draft)] = (frame, asked)

    def _not_built(self, build: int, error: BaseException) -> None:
        if build != self._build_id or not self.on:
            return
        if isinstance(error, live.NoFastPath):  # nothing to draft with: say what to add, and stay off
            self.set_on(False)
            self.failed.emit(f"Live mode needs a few-step model or LoRA. {error}")
        elif isinstance(error, SfumatoError):  # e.g. a prompt too long: said, and live mode waits for the next edit
            self.controls.show_state(True, "Not drawn")
            self.failed.emit(f"Live mode cannot draw this frame: {error}")
        else:  # a bug: said, and live mode stops rather than fail at every stroke
            self.set_on(False)
            self.failed.emit(f"Live mode stopped: the draft could not be made ({type(error).__name__}: {error}).")

    # -- the worker's drafts --------------------------------------------------------------------

    @Slot(int, object)
    def _started(self, job_id: int, _request) -> None:
        if job_id in self._jobs:
            self.controls.show_state(self.on, "Drafting...")

    @Slot(int, int, int, object)
    def _step(self, job_id: int, index: int, total: int, preview) -> None:
        if job_id not in self._jobs:
            return
        self.controls.show_state(self.on, f"Drafting {index}/{total}")
        frame = self._jobs[job_id][0]
        # the step previews show until a finished draft of this frame is there; then it stays until the next
        if preview is not None and (self._shown is None or self._jobs.get(self._shown, (None,))[0] != frame):
            self.view.set_picture(LIVE, to_qimage(preview), frame)

    @Slot(int, list)
    def _finished(self, job_id: int, saved: list) -> None:
        if job_id not in self._jobs:
            return
        frame, asked = self._jobs[job_id]
        for older in [job for job in self._jobs if job < job_id]:  # a later draft's picture is never replaced
            del self._jobs[older]
        if self._shown is not None and self._shown != job_id:
            self._jobs.pop(self._shown, None)
        if not self.on or not saved:
            return
        self._shown = job_id
        self.view.set_picture(LIVE, to_qimage(saved[0][0]), frame)
        self.view.set_live_faded(False)
        seconds = time.perf_counter() - asked
        self.latencies.append(seconds)
        self.controls.show_state(True, f"Draft in {seconds:.1f} s")
        self.shown.emit(seconds)

    @Slot(int, str)
    def _failed(self, job_id: int, message: str) -> None:
        if self._jobs.pop(job_id, None) is None:
            return
        if self.on:  # the next stroke would fail the same way: say why, and stop
            self.set_on(False)
            self.failed.emit(f"Live mode stopped: {message}")

    @Slot(int)
    def _cancelled(self, job_id: int) -> None:
        if job_id != self._shown:
            self._jobs.pop(job_id, None)

    # -- the overlay ----------------------------------------------------------------------------

    def _frame_changed(self, _frame: Bounds) -> None:
        """The frame moved or changed size: the draft of the old one goes, and a new one is asked for."""
        if self.on:
            self.view.set_picture(LIVE, None)
            self._shown = None
            self.schedule(STROKE_DELAY_MS)

    def _extent_changed(self, _extent: Extent, shift: Point) -> None:
        """The canvas grew to the left or top: the draft moves with the picture."""
        self._jobs = {job: (frame.translated(*shift), asked) for job, (frame, asked) in self._jobs.items()}
        shown = self.view.picture(LIVE)
        if shown is not None:
            self.view.set_picture(LIVE, shown[0], shown[1].translated(*shift))

    def _clear(self) -> None:
        self._shown = None
        self._jobs.clear()
        self.view.set_picture(LIVE, None)
        self.view.set_live_faded(False)
