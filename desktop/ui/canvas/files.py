"""CanvasFiles: the open document and everything that reads or writes it.

New, open (.ora, or a picture as a new document), save and save as (.ora),
import a picture as a layer, paste, drops, export of the flattened picture,
and the autosave. Decoding and encoding run off the GUI thread
(ui/background.py) on a snapshot, so the window never freezes and painting
can go on during a save. Every failure is reported as a sentence and loses
nothing: the document stays open, and files are written atomically.

The dialogs are methods (`ask_save_changes`, `choose_path`, `ask_restore`) so
tests can answer them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QPointF, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from desktop.core import atomic, autosave, ora
from desktop.core.control_layers import ControlSpec
from desktop.core.document import MAX_EXTENT, CanvasDocument, DocumentSnapshot
from desktop.core.errors import SfumatoError
from desktop.core.geometry import Extent, Point
from desktop.core.imageio import load_image
from desktop.core.layers import ImageLayer, rgba

from ..background import Background
from ..qimage import from_qimage

AUTOSAVE_MS = 60_000
PICTURES = "*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff"
OPEN_FILTER = f"Pictures and OpenRaster (*.ora {PICTURES});;OpenRaster (*.ora);;Pictures ({PICTURES})"
EXPORT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class CanvasFiles(QObject):
    """Signals:
    document_changed(object): another CanvasDocument is open.
    title_changed(str): the document's name, with * when it has unsaved changes.
    error(str): what went wrong and what to do, to show as it is.
    status(str): a short note for the status bar ("Saved ...").
    """

    document_changed = Signal(object)
    title_changed = Signal(str)
    error = Signal(str)
    status = Signal(str)

    def __init__(self, window: QWidget, preferred_size: Callable[[], Extent]):
        super().__init__(window)
        self.window = window
        self.preferred_size = preferred_size
        self.doc: CanvasDocument | None = None
        self.path: Path | None = None
        self.name = "Untitled"
        self.background = Background(self)  # reading
        self.writer = Background(self)  # saving, one file at a time: a later save never lands first
        self._autosaved: object = None  # history token of the last autosave
        self._autosaving = False
        self.autosave_timer = QTimer(self, interval=AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)
        self.autosave_timer.start()

    # -- the open document -------------------------------------------------------------------

    def set_document(self, doc: CanvasDocument, path: Path | None = None, name: str | None = None) -> None:
        if self.doc is not None:
            self.doc.history.changed.disconnect(self._emit_title)
        self.doc, self.path = doc, path
        self.name = name or (path.stem if path else "Untitled")
        self._autosaved = None
        doc.history.changed.connect(self._emit_title)
        self.document_changed.emit(doc)
        self._emit_title()

    def _emit_title(self) -> None:
        self.title_changed.emit(self.name + (" *" if self.doc.modified else ""))

    def new(self) -> bool:
        if not self.confirm_discard("start a new picture"):
            return False
        self.set_document(CanvasDocument.new(self.preferred_size()))
        return True

    def is_blank(self) -> bool:
        """Nothing painted, nothing undoable: a dropped picture may replace it."""
        return len(self.doc.history) == 0 and not self.doc.modified and not self.doc.composite().any()

    # -- opening -----------------------------------------------------------------------------

    def open(self, path: str | Path | None = None) -> None:
        path = path or self.choose_path("open")
        if not path or not self.confirm_discard("open another picture"):
            return
        path = Path(path)
        preferred = self.preferred_size()
        before, token = self.doc, self.doc.history.token() if self.doc else None

        def read() -> CanvasDocument:
            if path.suffix.lower() == ".ora":
                return CanvasDocument.from_snapshot(ora.read(path))
            return CanvasDocument.from_image(_checked(load_image(path), path.name), path.stem, preferred)

        def opened(doc: CanvasDocument) -> None:
            if self.doc is before and self.doc is not None and self.doc.history.token() != token:
                if not self.confirm_discard(f"open {path.name}"):  # painted on while it was loading
                    return
            self.set_document(doc, path if path.suffix.lower() == ".ora" else None, path.stem)
            self.status.emit(f"Opened {path.name}")

        self.status.emit(f"Opening {path.name}...")
        self.background.run(read, opened, lambda error: self._failed(f"{path.name} could not be opened", error))

    def import_layer(self, path: str | Path | None = None, at: QPointF | None = None) -> None:
        """Add a picture file as a new layer (or as the picture, on a blank canvas)."""
        path = path or self.choose_path("import")
        if not path:
            return
        path = Path(path)
        self.background.run(lambda: _checked(load_image(path), path.name),
                            lambda pixels: self.add_picture(pixels, path.stem, at),
                            lambda error: self._failed(f"{path.name} could not be imported", error))

    def add_picture(self, pixels: np.ndarray, name: str, at: QPointF | None = None) -> None:
        """A picture becomes a layer, centred on `at` or at the frame's corner; on a blank canvas, the document."""
        try:
            _checked(pixels, name)
        except SfumatoError as error:
            self.error.emit(str(error))
            return
        if self.is_blank():
            self.set_document(CanvasDocument.from_image(pixels, name, self.preferred_size()), None, name)
            return
        h, w = pixels.shape[:2]
        if at is not None:
            offset = Point(round(at.x() - w / 2), round(at.y() - h / 2))
        else:
            offset = Point(self.doc.frame.x, self.doc.frame.y)
        self.doc.add_layer(ImageLayer(rgba(pixels).copy(), name, offset=offset), label=f"Add {name}")

    def paste(self) -> None:
        data = QGuiApplication.clipboard().mimeData()
        if data is not None and data.hasImage():
            image = QImage(data.imageData())
            if not image.isNull():
                self.add_picture(from_qimage(image), "Pasted")
                return
        files = [url.toLocalFile() for url in data.urls() if url.isLocalFile()] if data and data.hasUrls() else []
        if files:
            self.import_layer(files[0])
        else:
            self.status.emit("The clipboard holds no picture to paste.")

    def drop_files(self, paths: list, at: QPointF) -> None:
        for path in paths:
            if Path(path).suffix.lower() == ".ora":
                self.open(path)
                return
        for path in paths:
            self.import_layer(path, at)

    def drop_image(self, image: QImage, at: QPointF) -> None:
        if not image.isNull():
            self.add_picture(from_qimage(image), "Dropped", at)

    def add_reference(self, dropped: str | QImage) -> None:
        """A picture (a file, or one dragged from another program) as a Reference control layer: it guides the
        next generation's content through an IP-Adapter and is not part of the picture (one undo step)."""
        if isinstance(dropped, QImage):
            if not dropped.isNull():
                self._add_reference(from_qimage(dropped), "Dropped")
            return
        path = Path(dropped)
        self.background.run(lambda: _checked(load_image(path), path.name),
                            lambda pixels: self._add_reference(pixels, path.stem),
                            lambda error: self._failed(f"{path.name} could not be used as a reference", error))

    def _add_reference(self, pixels: np.ndarray, name: str) -> None:
        try:
            _checked(pixels, name)
        except SfumatoError as error:
            self.error.emit(str(error))
            return
        layer = ImageLayer(rgba(pixels).copy(), f"Reference: {name}", offset=Point(self.doc.frame.x, self.doc.frame.y),
                           control=ControlSpec.default("reference"))
        self.doc.add_layer(layer, label="Add reference")

    # -- saving ------------------------------------------------------------------------------

    def save(self, wait: bool = False) -> None:
        """Save to the document's .ora file (asking for one the first time); `wait` finishes before returning."""
        if self.path is None:
            self.save_as(wait=wait)
        else:
            self._write(self.path, wait)

    def save_as(self, path: str | Path | None = None, wait: bool = False) -> None:
        path = path or self.choose_path("save")
        if path:
            path = Path(path)
            self._write(path if path.suffix.lower() == ".ora" else path.with_name(path.name + ".ora"), wait)

    def _write(self, path: Path, wait: bool) -> None:
        doc, snapshot, token = self.doc, self.doc.snapshot(), self.doc.history.token()

        def saved(_result) -> None:
            if doc is self.doc:
                self.path, self.name = path, path.stem
                doc.history.mark_clean(token)
                if not doc.modified:
                    autosave.discard()
            self.status.emit(f"Saved {path.name}")

        def failed(error: Exception) -> None:
            self._failed(f"{path.name} could not be saved; your picture is still open", error)

        self.status.emit(f"Saving {path.name}...")
        self.writer.wait()  # an earlier save (or autosave) finishes first
        if not wait:
            self.writer.run(lambda: ora.write(path, snapshot), saved, failed, name="save")
            return
        try:  # closing or replacing the document: nothing else to do until it is on disk
            ora.write(path, snapshot)
        except Exception as error:  # noqa: BLE001 - reported, and the document stays open
            failed(error)
        else:
            saved(None)

    def export(self, path: str | Path | None = None) -> None:
        """Save the flattened picture as PNG, JPEG or WebP."""
        path = path or self.choose_path("export")
        if not path:
            return
        path = Path(path)
        if path.suffix.lower() not in EXPORT_FORMATS:
            path = path.with_name(path.name + ".png")
        snapshot = self.doc.snapshot()
        self.writer.run(lambda: _export(path, snapshot), lambda _: self.status.emit(f"Exported {path.name}"),
                        lambda error: self._failed(f"{path.name} could not be written", error), name="export")

    # -- autosave and recovery -----------------------------------------------------------------

    def autosave_now(self) -> None:
        """Write the autosave when there are changes it does not have yet (in the background)."""
        doc = self.doc
        if doc is None or self._autosaving or not doc.modified or doc.history.token() == self._autosaved:
            return
        self._autosaving = True
        snapshot, token, name, path = doc.snapshot(), doc.history.token(), self.name, self.path

        def done(_result) -> None:
            self._autosaving = False
            if doc is self.doc:
                self._autosaved = token

        def failed(error: Exception) -> None:
            self._autosaving = False
            self._failed("The autosave could not be written", error)

        self.writer.run(lambda: autosave.save(snapshot, name, path), done, failed, name="autosave")

    def offer_restore(self) -> None:
        """After a crash: offer the autosaved picture back."""
        if not autosave.exists():
            return
        when = _dt.datetime.fromtimestamp(autosave.autosave_path().stat().st_mtime).strftime("%H:%M on %d %b")
        if not self.ask_restore(when):
            autosave.discard()
            return

        def restored(result: tuple[CanvasDocument, str | None, Path | None]) -> None:
            doc, name, path = result  # titled and saved as the picture that was open
            doc.history.mark_modified()
            self.set_document(doc, path, name or (path.stem if path else "Recovered"))
            self.status.emit(f"{self.name} was restored from the autosave. Save it to keep it.")

        self.background.run(lambda: (CanvasDocument.from_snapshot(autosave.load()), *autosave.origin()), restored,
                            lambda error: self._failed("The autosave could not be restored", error))

    def closing(self) -> None:
        """The window closes normally: let writes finish, and the autosave is no longer needed."""
        self.autosave_timer.stop()
        self.background.wait()
        self.writer.wait()
        autosave.discard()

    # -- questions ------------------------------------------------------------------------------

    def confirm_discard(self, action: str) -> bool:
        """True when the document may be replaced or closed (saved first if the user says so)."""
        if self.doc is None or not self.doc.modified or not (self.doc.composite().any() or self.doc.mask().any()
                                                             or _controls_painted(self.doc)):
            return True  # nothing unsaved, or nothing to lose (an empty canvas whose frame moved)
        answer = self.ask_save_changes(action)
        if answer == "cancel":
            return False
        if answer == "save":
            self.save(wait=True)
            return not self.doc.modified
        return True

    def ask_save_changes(self, action: str) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          f"{self.name} has changes that are not saved. Save them before you {action}?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.window)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save", QMessageBox.StandardButton.Discard: "discard"}.get(
            QMessageBox.StandardButton(answer), "cancel")

    def ask_restore(self, when: str) -> bool:
        answer = QMessageBox.question(
            self.window, "Restore your picture?",
            f"Sfumato did not close normally last time. Restore the picture autosaved at {when}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
        return answer == QMessageBox.StandardButton.Yes

    def choose_path(self, purpose: str) -> str | None:
        folder = str(self.path.parent) if self.path else ""
        if purpose == "open":
            path, _ = QFileDialog.getOpenFileName(self.window, "Open", folder, OPEN_FILTER)
        elif purpose == "import":
            path, _ = QFileDialog.getOpenFileName(self.window, "Import as layer", folder, f"Pictures ({PICTURES})")
        elif purpose == "save":
            path, _ = QFileDialog.getSaveFileName(self.window, "Save as", str(Path(folder) / f"{self.name}.ora"),
                                                  "OpenRaster (*.ora)")
        else:
            path, _ = QFileDialog.getSaveFileName(self.window, "Export picture", str(Path(folder) / f"{self.name}.png"),
                                                  "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)")
        return path or None

    def _failed(self, what: str, error: Exception) -> None:
        if isinstance(error, SfumatoError):
            reason = str(error)
        elif isinstance(error, OSError):
            reason = f"{error.strerror or error}. Check that the folder exists, is writable, and the disk is not full."
        elif isinstance(error, MemoryError):
            reason = "there is not enough memory. Close other programs, or use a smaller picture."
        else:
            reason = f"{type(error).__name__}: {error}"
        self.error.emit(f"{what}: {reason}")


def _checked(pixels: np.ndarray, name: str) -> np.ndarray:
    h, w = pixels.shape[:2]
    if max(h, w) > MAX_EXTENT:
        raise SfumatoError(f"{name} is {w}x{h}; the canvas holds pictures up to {MAX_EXTENT} pixels a side.")
    return pixels


def _export(path: Path, snapshot: DocumentSnapshot) -> None:
    image = Image.fromarray(np.ascontiguousarray(snapshot.composite()))
    fmt = EXPORT_FORMATS[path.suffix.lower()]
    options = {"PNG": {"compress_level": 6}, "JPEG": {"quality": 95}, "WEBP": {"quality": 95}}[fmt]
    if fmt == "JPEG":  # no alpha in JPEG: transparent parts become white, as on paper
        paper = Image.new("RGB", image.size, (255, 255, 255))
        paper.paste(image, mask=image.getchannel("A"))
        image = paper
    atomic.write_with(path, lambda handle: image.save(handle, format=fmt, **options))


def _controls_painted(doc: CanvasDocument) -> bool:
    """Something is on a control layer (not part of the composite, but work to lose all the same)."""
    return any(layer.control is not None and layer.pixels.any() for layer in doc.layers)
