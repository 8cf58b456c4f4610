"""Upscaling from the window: Image > Upscale... for the canvas's picture, and the gallery's Upscale... for pictures.

Both ask with UpscaleDialog and queue an UpscaleRequest per picture on the worker, where it runs like a
generation (the queue, the progress bar one tile a step, Esc). The canvas's result is staged on the picture to
accept or discard (desktop/ui/canvas/generation.py); a gallery picture's is saved beside it as <name>-x2.png, its
parameters with A1111's Postprocess keys appended, and appears in the gallery, not on the canvas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QDialog

from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.faces import FaceSettings
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.geometry import Bounds, Extent
from desktop.core.imageio import load_image
from desktop.core.frame import restore_area, restore_request
from desktop.core.postprocess import (DEMO_RESTORER, DEMO_RESTORER_NAME, DEMO_UPSCALER, DEMO_UPSCALER_NAME,
                                      PIXEL_UPSCALERS, DetailSettings, UpscaleRequest, diffusion_restore)

from .canvas.restore_dialog import DIFFUSION, RestoreDialog
from .canvas.upscale_dialog import UpscaleDialog


class Upscaling:
    def __init__(self, window):
        self.window = window  # the MainWindow: its settings, document, worker, jobs, gallery and messages

    def upscalers(self) -> list[tuple[str, str]]:
        """(ref, name) of the upscalers, as the engine's models() lists them with kind "upscale" (this computer's
        files, or the server's by its names: window.model_lists), then the demo and the pixel resizers."""
        listed = self.window.model_lists.upscalers  # from the last model scan: no file is read here
        return [*((ref, name) for name, ref in listed.items()), (DEMO_UPSCALER, DEMO_UPSCALER_NAME),
                *((name, f"{name} (no model)") for name in PIXEL_UPSCALERS)]

    def restorers(self) -> list[tuple[str, str]]:
        """(ref, name) of the restorers the last model scan found, then the demo restorer."""
        listed = self.window.model_lists.restorers  # no file is read here
        return [*((ref, name) for name, ref in listed.items()), (DEMO_RESTORER, DEMO_RESTORER_NAME)]

    def ask(self, source: Extent, pictures: int = 0) -> UpscaleRequest | None:
        """What the person chose, as a request of a placeholder picture of `source`'s size; None when cancelled."""
        w = self.window
        dialog = UpscaleDialog(source, self.upscalers(), w, pictures, _detail_settings(w.panel.request()))
        try:
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            return dialog.request(np.zeros((1, 1, 3), np.uint8))  # the picture is put in by the caller
        finally:
            dialog.deleteLater()

    def canvas(self) -> int | None:
        """Queue the visible picture's upscale; its result is staged over the whole picture. Returns the job id."""
        w = self.window
        chosen = self.ask(w.doc.extent)
        if chosen is None:
            return None
        w.tabs.setCurrentIndex(0)
        return self._queue(chosen.replace(image=w.doc.composite()), w.doc.bounds)

    def pictures(self, records: list) -> None:
        """Queue the upscale of each gallery picture (read in the background), each saved beside its file."""
        w = self.window
        store = w.gallery_store
        if store is None or not records:
            return
        first = records[0]
        chosen = self.ask(Extent(max(1, first.width), max(1, first.height)), len(records))
        if chosen is None:
            return
        self._queue_pictures(store, records, chosen, "upscale")

    def restore_pictures(self, records: list) -> None:
        """The gallery's Restore...: queue the restore of each picture (read in the background) with a restorer
        model, or the diffusion restore with the panel's model and prompt, each saved beside its file as
        <name>-<kind>.png."""
        w = self.window
        store = w.gallery_store
        if store is None or not records:
            return
        first = records[0]
        asked = self.ask_restore(Extent(max(1, first.width), max(1, first.height)), pictures=len(records))
        if asked is None:
            return
        model, kind, settings, _area = asked
        chosen = UpscaleRequest(np.zeros((1, 1, 3), np.uint8), 1.0, upscaler=model, restore=kind)
        if settings is not None:  # Fix faces: the faces the detector finds in each picture
            chosen = chosen.replace(upscaler=DEMO_UPSCALER, faces=settings)
        elif model == DIFFUSION:
            chosen = diffusion_restore(chosen.image, _detail_settings(w.panel.request()), kind)
        self._queue_pictures(store, records, chosen, "restore")

    def _queue_pictures(self, store, records: list, chosen: UpscaleRequest, verb: str) -> None:
        """Read each picture in the background, then queue `chosen` on it, saved beside its file with its
        parameters; says how many were queued and which could not be read."""
        w = self.window
        paths = [store.path(record) for record in records]
        done = {"upscale": "upscaled", "restore": "restored"}[verb]

        def read() -> tuple[list[UpscaleRequest], list[str]]:
            requests, problems = [], []
            for path in paths:
                try:
                    image = load_image(path)
                except SfumatoError as error:  # says which file and why
                    problems.append(f"{error} It was not {done}.")
                    continue
                except (OSError, ValueError) as error:
                    problems.append(f"{path.name} could not be read ({error}); it was not {done}.")
                    continue
                requests.append(chosen.replace(image=image, parameters=_parameters(path), beside=str(path)))
            return requests, problems

        def queue(result: tuple[list[UpscaleRequest], list[str]]) -> None:
            requests, problems = result
            queued = sum(self._queue(request, None) is not None for request in requests)
            if queued:
                w.note(f"{queued} picture{'s' if queued != 1 else ''} queued to {verb}; the results are saved "
                       "beside them.")
            if problems:
                w.show_error(" ".join(problems))

        w.background.run(read, queue, lambda error: w.show_error(f"The pictures could not be read: {error}"),
                         name=f"{verb}-read")

    def restore(self) -> int | None:
        """Image > Restore: queue the restore of the visible picture, or of the frame's area when the person
        chooses it, with a restorer model (an upscale at scale 1), the face fix, or the diffusion restore; its
        result is staged over what was restored. Returns the job id."""
        w = self.window
        doc = w.doc
        frame = restore_area(doc)
        asked = self.ask_restore(doc.extent, doc.mask() if doc.masks() else None,
                                 frame_area=frame.extent if frame != doc.bounds else None)
        if asked is None:
            return None
        model, kind, settings, area = asked
        area = area or doc.bounds
        w.tabs.setCurrentIndex(0)
        if settings is not None:
            if settings.mask is not None:  # "Only the masked faces": the canvas's mask over the area
                settings = settings.replace(mask=np.ascontiguousarray(
                    settings.mask[area.y:area.y + area.height, area.x:area.x + area.width]))
            return self._queue(UpscaleRequest(doc.composite(area), 1.0, restore=kind, faces=settings), area)
        if model != DIFFUSION:
            return self._queue(UpscaleRequest(doc.composite(area), 1.0, upscaler=model, restore=kind), area)
        request = restore_request(doc, w.panel.request(), kind, area)
        if request is None:
            w.show_error("There is nothing to restore there. Open or paste a picture first.")
            return None
        return self._queue(request, area)

    def ask_restore(self, source: Extent, mask: np.ndarray | None = None, pictures: int = 0,
                    frame_area: Extent | None = None) -> tuple[str, str, FaceSettings | None, Bounds | None] | None:
        """What the person chose in the Restore dialog for a picture of `source`'s size: (model, kind, the face
        settings of "Fix faces" or None, the frame's area when chosen over the whole picture or None); None when
        cancelled. `mask`: the canvas's, for "Only the masked faces"; `frame_area`: offer the frame's area."""
        w = self.window
        faces = [(ref, name) for name, ref in w.model_lists.faces.items()]
        dialog = RestoreDialog(source, self.restorers(), w, has_files=bool(w.model_lists.restorers),
                               face_restorers=faces, detail=_detail_settings(w.panel.request()),
                               has_mask=mask is not None and bool(mask.any()), pictures=pictures,
                               frame_area=frame_area)
        try:
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            settings = dialog.faces()
            if settings is not None and dialog.only_masked():
                settings = settings.replace(mask=mask > 127)
            area = restore_area(self.window.doc) if dialog.frame_area() else None
            return dialog.model(), dialog.kind(), settings, area
        finally:
            dialog.deleteLater()

    def _queue(self, request: UpscaleRequest, frame) -> int | None:
        w = self.window
        try:
            request = request.validated()
        except InvalidRequest as error:
            w.show_error(f"Cannot {'restore' if request.restore else 'upscale'}: {error}")
            return None
        job_id = w.worker.submit(request)
        w.jobs.submitted(job_id, request, frame)  # no frame: the result goes to the gallery, not the canvas
        return job_id


def _detail_settings(request) -> DetailSettings:
    """The panel's model, prompt and sampling, for "Add detail" (one picture; the dialog sets the strength)."""
    return DetailSettings(request.model, request.conditioning, request.sampling.replace(batch_size=1))


def _parameters(path: Path) -> str:
    try:
        return read_image_meta(path)[0].parameters
    except (OSError, SfumatoError, ValueError, SyntaxError):
        return ""
