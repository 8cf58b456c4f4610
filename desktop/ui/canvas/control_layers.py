"""The control layer box of the Layers panel: the kind, model, strength and steps of the active control layer, and
"From picture", which fills it from the visible picture with the kind's preprocessor.

A thin adapter over the document (desktop/core/control_layers.py): every change is one undo step there. The
preprocessor runs on the backend, as a job the window queues on its worker (a PreprocessJob,
desktop/core/backend.py), so it waits behind a running generation and works with any backend; its result lands
in the layer it was asked for, as one undo step, unless that layer or the picture is gone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from desktop.core.control import DEMO_CONTROLNET
from desktop.core.control_layers import KINDS, LABELS, REFERENCE_KINDS, ControlSpec, layer_pixels
from desktop.core.document import CanvasDocument, LayerNotEditable
from desktop.core.layers import Layer

TIPS = {
    "canny": "Edges of the picture guide the layout (Canny ControlNet)",
    "lineart": "Line art guides the layout; paint lines on the layer",
    "scribble": "Rough strokes painted on the layer guide the layout",
    "depth": "A depth map (white is near) guides the layout",
    "none": "The layer's picture is given to the ControlNet as it is",
    "reference": "The layer's picture guides the content (IP-Adapter)",
    "style": "The layer's picture guides the style only (IP-Adapter)",
}


def add_menu(parent: QWidget, add: Callable[[str], None], convert: Callable[[str], None]) -> QMenu:
    """The "Control" button's menu: one entry per kind of control layer, then the active layer (a picture put on
    the canvas, say) used as a reference or a style."""
    menu = QMenu(parent)
    for kind in KINDS:
        if kind == "reference":
            menu.addSeparator()
        action = menu.addAction(LABELS[kind])
        action.setToolTip(TIPS[kind])
        action.setData(kind)
        action.triggered.connect(lambda _checked=False, k=kind: add(k))
    menu.addSeparator()
    for kind in REFERENCE_KINDS:
        action = menu.addAction(f"Active layer as {LABELS[kind].lower()}")
        action.setToolTip(f"The active layer's picture guides the {'style' if kind == 'style' else 'content'} "
                          "and leaves the picture (Ctrl+Z undoes it)")
        action.setData(f"active:{kind}")
        action.triggered.connect(lambda _checked=False, k=kind: convert(k))
    menu.setToolTipsVisible(True)
    return menu


class ControlSettings(QWidget):
    """Signals:
    message(str): why something could not be done, or what was done (a short note).
    failed(str): the preprocessor failed: what happened and what to do (depth's weights are missing...), to show
        where a long sentence can be read.

    `preprocess(type, image, done, failed)` queues the preprocessor of `type` on `image` (HxWx3 uint8) on the
    window's worker and later calls `done(control picture)` or `failed(sentence)` ("" when cancelled);
    `run_in_background(work, done, failed)` runs the model box's folder scans off the GUI thread (the window's
    Background.run); `models_folders()` says where to look for ControlNets and IP-Adapters on this computer;
    `use_models` gives a server's instead.
    """

    message = Signal(str)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc: CanvasDocument | None = None
        self.layer: Layer | None = None
        self.preprocess: Callable | None = None
        self.run_in_background: Callable | None = None
        self.models_folders: Callable[[], list[str]] = list
        self._models: dict[str, list[str]] | None = None  # "control" / "reference" -> file names found (None: not
        # looked for yet)
        self._server_models = False  # _models are a server's (use_models), not this computer's folders'
        self._busy: set[int] = set()  # ids of layers a preprocessor is filling

        self.kind = QComboBox()
        for kind in KINDS:
            self.kind.addItem(LABELS[kind], kind)
            self.kind.setItemData(self.kind.count() - 1, TIPS[kind], Qt.ItemDataRole.ToolTipRole)
        self.kind.setToolTip("What the layer holds, and so how it guides the generation")
        self.kind.activated.connect(self._kind_chosen)
        self.from_picture = QPushButton("From picture")
        self.from_picture.setToolTip("Fill this layer from the visible picture with the kind's preprocessor "
                                     "(Ctrl+Z undoes it)")
        self.from_picture.clicked.connect(self.fill_from_picture)
        self.model_label = QLabel("Model")
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(8)
        self.model.lineEdit().editingFinished.connect(self._model_set)
        self.model.activated.connect(lambda _index: self._model_set())
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 200)
        self.strength.setToolTip("How strongly the layer guides the generation (0 to 2)")
        self.strength_label = QLabel("1.00")
        self.strength_label.setMinimumWidth(30)
        self.strength.valueChanged.connect(self._strength_moved)
        self.strength.sliderReleased.connect(self._strength_set)
        self.start, self.end = QSpinBox(), QSpinBox()
        for box, tip in ((self.start, "The step (in % of the steps) where the guidance starts"),
                         (self.end, "The step (in % of the steps) where the guidance ends")):
            box.setRange(0, 100)
            box.setSuffix(" %")
            box.setToolTip(tip)
            box.setKeyboardTracking(False)
        self.start.valueChanged.connect(lambda _value: self._steps_set(self.end))
        self.end.valueChanged.connect(lambda _value: self._steps_set(self.start))
        self.steps_label = QLabel("Steps")

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 2, 0, 2)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(3)
        grid.addWidget(self.kind, 0, 0, 1, 3)
        grid.addWidget(self.from_picture, 0, 3, 1, 2)
        grid.addWidget(self.model_label, 1, 0)
        grid.addWidget(self.model, 1, 1, 1, 4)
        grid.addWidget(QLabel("Strength"), 2, 0)
        grid.addWidget(self.strength, 2, 1, 1, 3)
        grid.addWidget(self.strength_label, 2, 4)
        grid.addWidget(self.steps_label, 3, 0)
        grid.addWidget(self.start, 3, 1, 1, 2)
        grid.addWidget(QLabel("to"), 3, 3, Qt.AlignmentFlag.AlignCenter)
        grid.addWidget(self.end, 3, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self.hide()

    # -- showing the active layer --------------------------------------------------------------

    def set_document(self, doc: CanvasDocument) -> None:
        self.doc = doc
        self.show_layer(doc.active)

    def show_layer(self, layer: Layer | None) -> None:
        """Show the settings of `layer` when it is a control layer; else hide."""
        spec = getattr(layer, "control", None)
        self.layer = layer if spec is not None else None
        self.setVisible(spec is not None)
        if spec is None:
            return
        for widget in (self.kind, self.model, self.strength, self.start, self.end):
            widget.blockSignals(True)
        self.kind.setCurrentIndex(self.kind.findData(spec.kind))
        self._fill_models(spec)
        self.strength.setValue(round(spec.weight * 100))
        self.strength_label.setText(f"{spec.weight:.2f}")
        self.start.setValue(round(spec.start * 100))
        self.end.setValue(round(spec.end * 100))
        for widget in (self.kind, self.model, self.strength, self.start, self.end):
            widget.blockSignals(False)
        reference = spec.is_reference
        self.model_label.setText("Adapter" if reference else "Model")
        if self._server_models:
            self.model.setToolTip(f"The {'IP-Adapter' if reference else 'ControlNet'}: one of the server's, or demo")
        else:
            self.model.setToolTip("The IP-Adapter file (or demo)" if reference else
                                  "The ControlNet: a file in the ControlNet folders, a path, or demo")
        for widget in (self.start, self.end, self.steps_label):
            widget.setVisible(not reference)
        busy = layer.id in self._busy
        self.from_picture.setEnabled(not busy)
        self.from_picture.setText("Working…" if busy else "From picture")
        if self._models is None:
            self._look_for_models()

    def _fill_models(self, spec: ControlSpec) -> None:
        names = [DEMO_CONTROLNET, *(self._models or {}).get("reference" if spec.is_reference else "control", [])]
        if spec.model not in names:
            names.append(spec.model)
        self.model.clear()
        self.model.addItems(names)
        self.model.setCurrentIndex(names.index(spec.model))

    def use_models(self, controlnets: tuple[str, ...] | None, adapters: tuple[str, ...] | None) -> None:
        """List a server's ControlNets and IP-Adapters (by the names it lists them under) instead of this computer's
        folders'; None, None: this computer's again, looked for when a control layer is next shown."""
        if controlnets is None and adapters is None:
            if self._server_models:
                self._models, self._server_models = None, False
                if self.layer is not None:
                    self._look_for_models()
            return
        self._models = {"control": list(controlnets or ()), "reference": list(adapters or ())}
        self._server_models = True
        self._refill()

    def _refill(self) -> None:
        if self.layer is not None and self.layer.control is not None:
            self.model.blockSignals(True)
            self._fill_models(self.layer.control)
            self.model.blockSignals(False)

    def _look_for_models(self) -> None:
        """List the ControlNets and IP-Adapters of the model folders, off the GUI thread (folder scans)."""
        self._models = {}
        folders = list(self.models_folders())

        def scan() -> dict[str, list[str]]:
            return {"control": _controlnet_names(folders), "reference": _adapter_names(folders)}

        def found(models: dict[str, list[str]]) -> None:
            if self._server_models:
                return  # a server was chosen while the folders were read
            self._models = models
            self._refill()

        if self.run_in_background is not None:
            self.run_in_background(scan, found, lambda _error: None)

    # -- changes: each one undo step -------------------------------------------------------------

    def _change(self, **changes) -> None:
        if self.doc is None or self.layer is None or self.layer.control is None:
            return
        try:
            self.doc.set_control(self.layer, self.layer.control.replace(**changes))
        except (LayerNotEditable, ValueError) as error:
            self.message.emit(str(error))

    def _kind_chosen(self, _index: int) -> None:
        kind = self.kind.currentData()
        spec = self.layer.control if self.layer is not None else None
        if spec is None or kind == spec.kind:
            return
        changes = {"kind": kind}
        if (kind in REFERENCE_KINDS) != spec.is_reference:  # a ControlNet is no IP-Adapter: both start from demo
            changes.update(model=DEMO_CONTROLNET, weight=ControlSpec.default(kind).weight)
        self._change(**changes)

    def _model_set(self) -> None:
        text = self.model.currentText().strip() or DEMO_CONTROLNET
        if self.layer is not None and self.layer.control is not None and text != self.layer.control.model:
            self._change(model=text)

    def _strength_moved(self, value: int) -> None:
        self.strength_label.setText(f"{value / 100:.2f}")
        if not self.strength.isSliderDown():  # clicks and keys apply at once; a drag applies on release
            self._strength_set()

    def _strength_set(self) -> None:
        self._change(weight=self.strength.value() / 100)

    def _steps_set(self, other: QSpinBox) -> None:
        start, end = self.start.value(), self.end.value()
        if start > end:  # the box moved past the other pushes it along
            other.blockSignals(True)
            other.setValue(start if other is self.end else end)
            other.blockSignals(False)
            start, end = self.start.value(), self.end.value()
        self._change(start=start / 100, end=end / 100)

    # -- from picture ---------------------------------------------------------------------------

    def fill_from_picture(self) -> None:
        """Fill the active control layer from the visible picture: its preprocessor's output (a job on the
        worker), or for a reference and "picture as is" the picture itself. One undo step."""
        layer, doc = self.layer, self.doc
        if layer is None or doc is None or layer.id in self._busy:
            return
        picture = doc.composite()
        if not picture[..., 3].any():
            self.message.emit("The picture is empty: open or paint a picture first, or paint the control on "
                              "this layer with the brush.")
            return
        kind = layer.control.kind
        if kind in REFERENCE_KINDS:
            self._put(doc, layer, kind, picture.copy())
            return
        rgb = _over_white(picture)
        if kind == "none":
            self._put(doc, layer, kind, rgb)
            return
        if self.preprocess is None:
            self.message.emit("The preprocessor cannot run before the window has started.")
            return

        def done(out: np.ndarray) -> None:
            self._busy.discard(layer.id)
            self._put(doc, layer, kind, out)
            self.show_layer(self.doc.active if self.doc is not None else None)

        def failed(message: str) -> None:
            self._busy.discard(layer.id)
            self.show_layer(self.doc.active if self.doc is not None else None)
            if message:
                self.failed.emit(message)

        self._busy.add(layer.id)
        self.show_layer(layer)
        self.preprocess(kind, rgb, done, failed)

    def _put(self, doc: CanvasDocument, layer: Layer, kind: str, picture: np.ndarray) -> None:
        if doc is not self.doc or not any(candidate is layer for candidate in doc.layers):
            return  # the picture or the layer went meanwhile: nothing to fill
        if picture.shape[:2] != doc.extent[::-1]:
            self.failed.emit(f"{LABELS[kind]} from the picture did not work: the preprocessor made a "
                             f"{picture.shape[1]}x{picture.shape[0]} picture for a {doc.extent.width}x"
                             f"{doc.extent.height} canvas. Try again.")
            return
        try:
            doc.set_layer_pixels(layer, layer_pixels(kind, picture), label="Control from picture")
        except (LayerNotEditable, ValueError) as error:
            self.message.emit(str(error))
            return
        self.message.emit(f"{layer.name} now holds the {LABELS[kind].lower()} of the picture (Ctrl+Z to undo).")


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """The picture as it looks on paper: RGB over white."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)


def _is_adapter(name: str) -> bool:
    """IP-Adapter files share A1111's ControlNet folder; their names say what they are (ip-adapter_sd15...)."""
    return "adapter" in name.casefold()


def _controlnet_names(folders: list[str]) -> list[str]:
    try:
        from desktop.core.controlnets import list_controlnets
    except ImportError:  # an install without ControlNet support: demo and paths only
        return []
    return sorted(name for name in list_controlnets(folders) if not _is_adapter(name))


def _adapter_names(folders: list[str]) -> list[str]:
    try:
        from desktop.core.references import SUFFIX, adapter_folders
    except ImportError:
        return []
    names = set()
    for folder in adapter_folders(folders):
        try:
            names.update(p.stem for p in folder.iterdir() if p.suffix.lower() == SUFFIX and _is_adapter(p.stem))
        except OSError:
            continue
    return sorted(names)
