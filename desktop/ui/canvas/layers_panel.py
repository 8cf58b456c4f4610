"""The Layers panel: a thin Qt adapter over the document's layer list (row 0 is the topmost layer).

Visibility is the row's check box, a double-click renames, a drag reorders;
the buttons add, duplicate, delete, move, merge and lock; the slider sets
the active layer's opacity. Every action is an undo step of the document.
"Control" adds a control layer (desktop/core/control_layers.py), whose
settings show under the list while it is the active layer.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core.control_layers import ControlSpec, control_picture
from desktop.core.document import CanvasDocument, LayerNotEditable
from desktop.core.layers import Layer, MaskLayer

from ..flow_layout import FlowLayout
from ..qimage import to_qimage
from ..theme import CHECKED_BUTTON_STYLE, CheckEdgeDelegate
from .control_layers import ControlSettings, add_menu
from .view import checker_brush

MIME = "application/x-sfumato-layer-row"
THUMB = 36


class LayersModel(QAbstractListModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc: CanvasDocument | None = None
        self._thumbs: dict[int, QIcon] = {}
        self._thumb_timer = QTimer(self, singleShot=True, interval=300)
        self._thumb_timer.timeout.connect(self._refresh_thumbnails)

    def set_document(self, doc: CanvasDocument) -> None:
        if self.doc is not None:
            self.doc.layers_changed.disconnect(self._reset)
            self.doc.pixels_changed.disconnect(self._pixels_changed)
        self.beginResetModel()
        self.doc = doc
        self._thumbs.clear()
        self.endResetModel()
        doc.layers_changed.connect(self._reset)
        doc.pixels_changed.connect(self._pixels_changed)

    def _reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def _pixels_changed(self, _box) -> None:
        self._thumb_timer.start()

    def _refresh_thumbnails(self) -> None:
        self._thumbs.clear()
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1), [Qt.ItemDataRole.DecorationRole])

    def layer(self, row: int) -> Layer:
        return self.doc.layers[len(self.doc.layers) - 1 - row]

    def row(self, layer: Layer) -> int:
        return len(self.doc.layers) - 1 - self.doc.index(layer)

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() or self.doc is None else len(self.doc.layers)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        layer = self.layer(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            spec = layer.control
            extras = [spec.label] if spec is not None and not layer.name.startswith(spec.label) else []
            extras += [f"{round(layer.opacity * 100)}%"] if layer.opacity < 1 else []
            extras += ["locked"] if layer.locked else []
            name = layer.name if len(layer.name) <= 26 else layer.name[:25] + "…"  # the full name is in the tooltip
            return name + (f"  ({', '.join(extras)})" if extras else "")
        if role == Qt.ItemDataRole.EditRole:
            return layer.name
        if role == Qt.ItemDataRole.CheckStateRole:
            return Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DecorationRole:
            if layer.id not in self._thumbs:
                self._thumbs[layer.id] = _thumbnail(layer)
            return self._thumbs[layer.id]
        if role == Qt.ItemDataRole.FontRole and (isinstance(layer, MaskLayer) or layer.control is not None):
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            kind = "Mask: white is where the next generation repaints" if isinstance(layer, MaskLayer) else "Image layer"
            if layer.control is not None:
                kind = (f"Control layer: {layer.control.label}, {layer.control.model}, strength "
                        f"{layer.control.weight:g}; guides generations, not part of the picture")
            b = layer.bounds
            return f"{layer.name}\n{kind}\n{b.width} x {b.height} at {b.x}, {b.y}"
        return None

    def setData(self, index: QModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid():
            return False
        layer = self.layer(index.row())
        try:
            if role == Qt.ItemDataRole.EditRole:
                self.doc.set_property(layer, "name", value)
            elif role == Qt.ItemDataRole.CheckStateRole:
                self.doc.set_property(layer, "visible", Qt.CheckState(value) == Qt.CheckState.Checked)
            else:
                return False
        except ValueError:
            return False
        return True

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled
        return (Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsEditable
                | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes) -> QMimeData:
        data = QMimeData()
        data.setData(MIME, QByteArray(str(indexes[0].row()).encode()))
        return data

    def move_row(self, source: int, before: int) -> None:
        """Move the layer shown at row `source` so that it is shown just above row `before`."""
        if before > source:
            before -= 1
        self.doc.move_layer(self.layer(source), len(self.doc.layers) - 1 - before)


class LayerList(QListView):
    """The list: reordering by drag is done here, as one document edit (not Qt's remove-and-insert)."""

    def __init__(self, model: LayersModel):
        super().__init__()
        self.setModel(model)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setSpacing(1)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)  # only our own rows are accepted (MIME)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setToolTip("Drag to reorder; double-click to rename; the box shows or hides a layer")
        self.setItemDelegate(CheckEdgeDelegate(self))  # a hidden layer's empty box stays visible in the dark

    def dropEvent(self, event) -> None:
        data = event.mimeData()
        if not data.hasFormat(MIME):
            event.ignore()
            return
        source = int(bytes(data.data(MIME)).decode())
        index = self.indexAt(event.position().toPoint())
        if index.isValid():
            rect = self.visualRect(index)
            before = index.row() + (1 if event.position().y() > rect.center().y() else 0)
        else:
            before = self.model().rowCount()
        self.model().move_row(source, before)
        event.setDropAction(Qt.DropAction.CopyAction)  # the move is done: Qt must not remove the dragged row
        event.accept()


class LayersPanel(QWidget):
    """Signals:
    message(str): why an action could not be done (a locked layer, nothing to merge onto...).
    """

    message = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc: CanvasDocument | None = None
        self.model = LayersModel(self)
        self.list = LayerList(self.model)
        self.list.selectionModel().currentChanged.connect(self._row_chosen)
        self.model.modelReset.connect(self._show_active)

        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Opacity of the active layer")
        self.opacity_label = QLabel("100%")
        self.opacity_label.setMinimumWidth(36)
        self.opacity.valueChanged.connect(self._opacity_moved)
        self.opacity.sliderReleased.connect(self._opacity_set)

        self.buttons: dict[str, QToolButton] = {}
        top_row = bottom_row = FlowLayout(stretch_lines=True)  # wraps in a narrow dock: every button stays shown
        for row, key, text, tip, slot in (
            (top_row, "new", "New", "New layer above the active one (Ctrl+Shift+N)", lambda: self.new_layer("image")),
            (top_row, "mask", "Mask", "New mask layer", lambda: self.new_layer("mask")),
            (top_row, "control", "Control", "New control layer: lines, depth or a reference picture that guide "
                                            "the generation", None),
            (top_row, "duplicate", "Copy", "Duplicate the active layer (Ctrl+J)", self.duplicate),
            (top_row, "delete", "Delete", "Delete the active layer", self.delete),
            (bottom_row, "up", "Up", "Move the active layer up", lambda: self._step(1)),
            (bottom_row, "down", "Down", "Move the active layer down", lambda: self._step(-1)),
            (bottom_row, "merge", "Merge", "Merge the active layer into the one below (Ctrl+E)", self.merge_down),
            (bottom_row, "clear", "Clear", "Erase everything on the active layer, e.g. the mask (Shift+Delete)",
             self.clear),
            (bottom_row, "lock", "Lock", "Lock the active layer against changes", self._toggle_lock),
        ):
            button = QToolButton(text=text)
            button.setToolTip(tip)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            if slot is not None:
                button.clicked.connect(slot)
            row.addWidget(button)
            self.buttons[key] = button
        self.buttons["control"].setMenu(add_menu(self, self.add_control, self.use_active_as))
        self.buttons["control"].setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.controls = ControlSettings()
        self.controls.message.connect(self.message)
        self.buttons["lock"].setCheckable(True)
        self.buttons["lock"].setStyleSheet(CHECKED_BUTTON_STYLE)

        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity, 1)
        opacity_row.addWidget(self.opacity_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.controls)
        layout.addLayout(opacity_row)
        layout.addLayout(top_row)

    def set_document(self, doc: CanvasDocument) -> None:
        if self.doc is not None:
            self.doc.active_changed.disconnect(self._show_active)
        self.doc = doc
        self.model.set_document(doc)
        doc.active_changed.connect(self._show_active)
        self.controls.set_document(doc)
        self._show_active()

    # -- actions ----------------------------------------------------------------------------

    def _run(self, action) -> None:
        try:
            action()
        except (LayerNotEditable, ValueError) as error:
            self.message.emit(str(error))

    def new_layer(self, kind: str) -> None:
        self._run(lambda: self.doc.new_layer(kind))

    def add_control(self, kind: str) -> None:
        """A new control layer of `kind` above the active layer; its settings show under the list."""
        self._run(lambda: self.doc.add_control_layer(ControlSpec.default(kind)))

    def use_active_as(self, kind: str) -> None:
        """Make the active picture layer a reference or style layer (one undo step)."""
        layer = self.doc.active if self.doc is not None else None
        if layer is None or layer.control is not None:
            self.message.emit("Choose a picture layer first: its picture becomes the reference." if layer is None else
                              f"{layer.name} is already a control layer; change its kind under the list.")
            return
        self._run(lambda: self.doc.set_control(layer, ControlSpec.default(kind)))

    def _on_active(self, edit) -> None:
        if self.doc.active is not None:
            self._run(lambda: edit(self.doc.active))

    def duplicate(self) -> None:
        self._on_active(self.doc.duplicate_layer)

    def delete(self) -> None:
        self._on_active(self.doc.remove_layer)

    def merge_down(self) -> None:
        self._on_active(self.doc.merge_down)

    def clear(self) -> None:
        self._on_active(self.doc.clear_layer)

    def _step(self, direction: int) -> None:
        if self.doc.active is not None:
            self.doc.move_layer(self.doc.active, self.doc.index(self.doc.active) + direction)

    def _toggle_lock(self) -> None:
        if self.doc.active is not None:
            self.doc.set_property(self.doc.active, "locked", self.buttons["lock"].isChecked())

    def _opacity_moved(self, value: int) -> None:
        self.opacity_label.setText(f"{value}%")
        if not self.opacity.isSliderDown():  # clicks and keys apply at once; a drag applies on release
            self._opacity_set()

    def _opacity_set(self) -> None:
        if self.doc is not None and self.doc.active is not None:
            self.doc.set_property(self.doc.active, "opacity", self.opacity.value() / 100)

    # -- keeping the widgets in step with the document --------------------------------------------

    def _row_chosen(self, current: QModelIndex, _previous=None) -> None:
        if current.isValid() and self.doc is not None:
            self.doc.set_active(self.model.layer(current.row()))

    def _show_active(self, *_args) -> None:
        layer = self.doc.active if self.doc is not None else None
        if layer is not None:
            index = self.model.index(self.model.row(layer))
            if self.list.currentIndex() != index:
                self.list.setCurrentIndex(index)
        self.opacity.blockSignals(True)
        self.opacity.setValue(round((layer.opacity if layer else 1.0) * 100))
        self.opacity.blockSignals(False)
        self.opacity_label.setText(f"{self.opacity.value()}%")
        self.opacity.setEnabled(layer is not None and not isinstance(layer, MaskLayer))
        locked = bool(layer and layer.locked)
        self.buttons["lock"].setChecked(locked)  # shows the active layer's state
        self.buttons["lock"].setText("Locked" if locked else "Lock")
        self.buttons["lock"].setToolTip(f"{layer.name} is locked: click to unlock it" if locked and layer else
                                        "Lock the active layer against changes")
        for key in ("duplicate", "delete", "up", "down", "merge", "clear", "lock"):
            self.buttons[key].setEnabled(layer is not None)
        self.controls.show_layer(layer)


def _thumbnail(layer: Layer) -> QIcon:
    """A small picture of the layer on a checkerboard (masks, and control layers as their ControlNet sees them)."""
    pixels = layer.pixels
    step = max(1, max(pixels.shape[:2]) // (THUMB * 2))
    small = np.ascontiguousarray(pixels[::step, ::step])
    if layer.control is not None and not layer.control.is_reference:
        small = control_picture(small, layer.control.kind)
    elif isinstance(layer, MaskLayer):
        small = np.dstack([small, small, small])
    image = to_qimage(small).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
    canvas = QPixmap(THUMB, THUMB)
    canvas.fill(QColor(0, 0, 0, 0))
    painter = QPainter(canvas)
    x, y = (THUMB - image.width()) // 2, (THUMB - image.height()) // 2
    painter.setBrushOrigin(x, y)
    painter.fillRect(x, y, image.width(), image.height(), checker_brush(4))
    painter.drawImage(x, y, image)
    painter.setPen(QColor(120, 120, 120))
    painter.drawRect(x, y, image.width() - 1, image.height() - 1)
    painter.end()
    return QIcon(canvas)
