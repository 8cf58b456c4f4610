"""CanvasGeneration: generations as seen on the canvas.

Where each job paints is the JobController's (desktop/core/jobs.py): its
live preview is painted in the job's preview area, and its results are staged
on the job's frame (a strip to step through, accept or discard). Accepting
makes the result a new layer, growing the canvas when the frame reached past
it: one undo step. A model upscale's result waits the same way, shown over the
whole picture; accepting it makes the canvas its size, the layers scaled, with
the upscaled picture as a new layer on top (one undo step too). If the canvas grows to the left or top meanwhile, this
tells the controller, and the waiting frames move with the picture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from desktop.core.document import CanvasDocument
from desktop.core.frame import frame_request
from desktop.core.geometry import Bounds, Extent, Point
from desktop.core.jobs import Job, JobController
from desktop.core.layers import Layer
from desktop.core.postprocess import UpscaleRequest, describe
from desktop.core.request import GenerationRequest

from ..qimage import masked_qimage, to_qimage
from .staging import StagingBar
from .view import CanvasView


@dataclass(frozen=True)
class StagedResult:
    image: np.ndarray  # HxWx3 uint8, the frame's size (an upscale's: the size the canvas becomes)
    seed: int
    path: Path | None
    frame: Bounds  # where it shows (an upscale: over the whole picture, scaled down)
    prompt: str
    upscale: str = ""  # "Upscale x2" for a model upscale's result, "Denoise, 640x480" for a restore's, "" else
    restore: bool = False  # a restore: it keeps its frame's size and is placed over it like a generation's


class CanvasGeneration(QObject):
    """Signals:
    staging_changed(int): how many results wait on the canvas.
    accepted(object): the Layer a result became.
    """

    staging_changed = Signal(int)
    accepted = Signal(object)
    failed = Signal(str)

    def __init__(self, view: CanvasView, jobs: JobController, parent: QObject | None = None):
        super().__init__(parent)
        self.view = view
        self.jobs = jobs  # where each job paints: its preview area, the frame its results go to
        self.doc: CanvasDocument | None = None
        self.bar = StagingBar(view)
        self.staged: list[StagedResult] = []
        self.current = 0
        self._previewing: int | None = None
        self.bar.step_requested.connect(self.step)
        self.bar.accept_requested.connect(self.accept)
        self.bar.discard_requested.connect(self.discard)
        self.bar.discard_all_requested.connect(self.discard_all)
        self.bar.compare_toggled.connect(self.set_compare)
        view.view_changed.connect(self._place_bar)

    def set_document(self, doc: CanvasDocument) -> None:
        """Another picture: what waited on the old one is dropped (it is in the gallery)."""
        if self.doc is not None:
            self.doc.extent_changed.disconnect(self._extent_changed)
        self.doc = doc
        doc.extent_changed.connect(self._extent_changed)
        self.jobs.drop_frames()
        self._previewing = None
        self.view.set_picture("preview", None)
        self.staged.clear()
        self._show(0)

    # -- jobs ----------------------------------------------------------------------------------

    def request(self, base: GenerationRequest) -> GenerationRequest:
        """The request for what the frame holds now (see desktop/core/frame.py)."""
        return frame_request(self.doc, base)

    def preview(self, job_id: int, image: np.ndarray) -> None:
        """Paint a running job's preview in its area (and for a mask, only there)."""
        job = self.jobs.jobs.get(job_id)
        if job is None or job.frame is None:
            return
        self._previewing = job_id
        picture = to_qimage(image) if job.mask is None else masked_qimage(image, job.mask)
        self.view.set_picture("preview", picture, job.region)

    def ended(self, job_id: int) -> None:
        """The job failed, was cancelled or removed: its preview goes."""
        self._clear_preview(job_id)

    def _clear_preview(self, job_id: int) -> None:
        if self._previewing == job_id:
            self._previewing = None
            self.view.set_picture("preview", None)

    def finished(self, job: Job | None) -> None:
        """Stage a finished job's results on its frame (not if that picture was closed)."""
        if job is None:
            return
        self._clear_preview(job.id)
        if job.frame is None:
            return
        frame, saved = job.frame, job.results
        upscale = describe(job.request) if isinstance(job.request, UpscaleRequest) else ""
        restore = bool(upscale) and bool(job.request.restore)
        prompt = "" if upscale else job.request.conditioning.prompt
        first_new = len(self.staged)
        for image, seed, path in saved:
            if not upscale and image.shape[:2] != (frame.height, frame.width):
                frame = Bounds(frame.x, frame.y, image.shape[1], image.shape[0])
            self.staged.append(StagedResult(image, seed, Path(path) if path else None, frame, prompt, upscale,
                                            restore))
        if saved:
            self._show(first_new)

    # -- the staging strip -----------------------------------------------------------------------

    def step(self, direction: int) -> None:
        if self.staged:
            self._show(max(0, min(len(self.staged) - 1, self.current + direction)))

    def accept(self) -> Layer | None:
        """The shown result becomes a new layer (one undo step); the other waiting results are dropped."""
        if not self.staged:
            return None
        result = self.staged[self.current]
        words = " ".join(result.prompt.split())
        name = f"Seed {result.seed}" + (f": {words[:40]}" if words else "")
        if result.upscale and not result.restore and result.frame.extent != self.doc.extent:
            self.failed.emit(f"The canvas changed size since this upscale was asked for ({result.frame.width} × "
                             f"{result.frame.height} px, now {self.doc.extent.width} × {self.doc.extent.height} px); "
                             "discard it and upscale the picture again.")
            return None
        if result.restore and self.doc.bounds.union(result.frame) != self.doc.bounds:  # a restore never grows it
            self.failed.emit(f"The canvas changed since this restore was asked for: the area it restored "
                             f"({result.frame.width} × {result.frame.height} px) is no longer all inside the "
                             "picture. Discard it and restore again.")
            return None
        try:
            if result.restore:  # over the picture or the frame's area it was asked for, at its size
                layer = self.doc.accept_result(result.image, result.frame, result.upscale)
            elif result.upscale:
                layer = self.doc.accept_upscale(result.image, result.upscale.replace("Upscale", "Upscaled", 1))
            else:
                layer = self.doc.accept_result(result.image, result.frame, name)
        except ValueError as error:  # the canvas would grow past its largest size
            where = "Ask for a smaller size." if result.upscale else "Move the frame closer to the picture."
            self.failed.emit(f"This result cannot be placed there: {error}. {where}")
            return None
        self.staged.clear()
        self._show(0)
        if result.restore:  # the size stayed
            self.view.message.emit(f"{result.upscale.split(',')[0]}: the result is a new layer on top (Ctrl+Z to undo).")
        elif result.upscale:  # the whole picture changed size: show all of it, and say so
            self.view.fit()
            extent = self.doc.extent
            self.view.message.emit(f"The canvas is now {extent.width} × {extent.height} px (Ctrl+Z to undo).")
        self.accepted.emit(layer)
        return layer

    def set_compare(self, on: bool) -> None:
        """Compare the shown result with the picture under it (an upscale's: the picture, scaled to its size)."""
        on = on and bool(self.staged)
        self.view.set_compare(on)
        self.bar.compare.setChecked(on)

    def toggle_compare(self) -> None:
        self.set_compare(not self.view.comparing)

    def discard(self) -> None:
        if self.staged:
            del self.staged[self.current]
            self._show(min(self.current, len(self.staged) - 1))

    def discard_all(self) -> None:
        self.staged.clear()
        self._show(0)

    def _show(self, index: int) -> None:
        self.current = max(0, index)
        if self.staged:
            result = self.staged[self.current]
            self.view.set_picture("staged", to_qimage(result.image), result.frame)
            if result.upscale:
                size = f"{result.image.shape[1]}x{result.image.shape[0]}"
                note = result.upscale if result.upscale.endswith(size) else f"{result.upscale} to {size}"
                self.bar.show_state(self.current, len(self.staged), None, f"{note} px")
            else:
                self.bar.show_state(self.current, len(self.staged), result.seed)
        else:
            self.view.set_picture("staged", None)
            self.bar.show_state(0, 0, None)
            self.set_compare(False)  # the next results show whole
        self._place_bar()
        self.staging_changed.emit(len(self.staged))

    def _place_bar(self) -> None:
        if self.staged:
            self.bar.place_under(self.view.widget_rect(self.staged[self.current].frame))

    def _extent_changed(self, _extent: Extent, shift: Point) -> None:
        if shift == (0, 0):
            return
        self.staged = [replace(r, frame=r.frame.translated(*shift)) for r in self.staged]
        self.jobs.moved(*shift)
        preview = self.view.picture("preview")
        if preview is not None:
            self.view.set_picture("preview", preview[0], preview[1].translated(*shift))
        if self.staged:
            self._show(self.current)
