"""CanvasView: draws a CanvasDocument and turns mouse, pen, wheel and keys into edits.

The composite, the control layers' tints and the mask overlay are kept as
three QImages the size of the document and updated rectangle by rectangle from the document's
pixels_changed event, so a brush dab repaints only what it touched. Zoom
and pan are a plain transform: widget = document x zoom + pan.
"""

from __future__ import annotations

import math
from dataclasses import replace

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QCursor, QImage, QPainter, QPen, QPixmap, QPointingDevice, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop.core.control_layers import overlay as control_overlay
from desktop.core.document import MIN_FRAME, CanvasDocument, LayerNotEditable, snap_frame
from desktop.core.geometry import Bounds, Extent

from ..qimage import overlay_qimage, to_qimage
from .tools import Tool, ToolState

MIN_ZOOM, MAX_ZOOM = 1 / 32, 32.0
MASK_COLOUR = (255, 40, 120)
MASK_OPACITY = 0.5
HANDLE = 7  # pixels around the frame's edges that resize it


class CanvasView(QWidget):
    """Signals:
    zoom_changed(float): the zoom factor (1.0 = 100%).
    message(str): something the user should read (a locked layer, ...), for the status bar.
    files_dropped(list, QPointF): local files dropped here, and where (document coordinates).
    image_dropped(QImage, QPointF): image data dropped here (from a browser), and where.
    view_changed(): zoom, pan or size changed (overlays placed on the canvas follow).
    """

    zoom_changed = Signal(float)
    message = Signal(str)
    files_dropped = Signal(list, QPointF)
    image_dropped = Signal(QImage, QPointF)
    view_changed = Signal()

    def __init__(self, tools: ToolState, parent: QWidget | None = None):
        super().__init__(parent)
        self.tools = tools
        self.doc: CanvasDocument | None = None
        self._image = QImage()
        self._overlay = QImage()
        self._controls = QImage()  # the control layers, each a tint of its kind's colour
        self._zoom = 1.0
        self._pan = QPointF(0, 0)
        self._fit_pending = True
        self._drag: _Drag | None = None
        self._drag_button = Qt.MouseButton.NoButton
        self._space = False
        self._pointer: QPointF | None = None
        self._live_frame: Bounds | None = None
        self._frame_caption = ""
        self._pictures: dict[str, tuple[QImage, Bounds]] = {}  # "live" / "preview" / "staged" -> drawn in a frame
        self._live_faded = False  # live mode's draft shows at half strength while a newer one is on its way
        self._comparing = False  # the staged result shows right of the split, what is under it left
        self._split = 0.5  # where across the staged result, 0..1
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.grabGesture(Qt.GestureType.PinchGesture)
        tools.changed.connect(self._tools_changed)
        self._checker = checker_brush()

    def sizeHint(self) -> QSize:
        return QSize(800, 700)

    # -- the document ----------------------------------------------------------------------

    def set_document(self, doc: CanvasDocument) -> None:
        if self.doc is not None:
            self.doc.pixels_changed.disconnect(self._pixels_changed)
            self.doc.extent_changed.disconnect(self._extent_changed)
            self.doc.frame_changed.disconnect(self._frame_changed)
            self.doc.layers_changed.disconnect(self.update)
            self.doc.active_changed.disconnect(self._active_changed)
        self.doc = doc
        self._drag = None
        doc.pixels_changed.connect(self._pixels_changed)
        doc.extent_changed.connect(self._extent_changed)
        doc.frame_changed.connect(self._frame_changed)
        doc.layers_changed.connect(self.update)
        doc.active_changed.connect(self._active_changed)
        self._rebuild()
        self._fit_pending = True
        if self.isVisible() and self.width() > 0:
            self.fit()
        self.update()

    def _rebuild(self) -> None:
        extent = self.doc.extent
        self._image = QImage(extent.width, extent.height, QImage.Format.Format_ARGB32_Premultiplied)
        self._overlay = QImage(extent.width, extent.height, QImage.Format.Format_ARGB32_Premultiplied)
        self._controls = QImage(extent.width, extent.height, QImage.Format.Format_ARGB32_Premultiplied)
        self._refresh(self.doc.bounds)

    def _refresh(self, box: Bounds) -> None:
        """Copy the document's composite, control layers and masks in `box` into the QImages drawn on screen."""
        for target, picture in ((self._image, to_qimage(self.doc.composite(box))),
                                (self._controls, to_qimage(control_overlay(self.doc.layers, box))),
                                (self._overlay, overlay_qimage(self.doc.mask(box), MASK_COLOUR, MASK_OPACITY))):
            painter = QPainter(target)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.drawImage(box.x, box.y, picture)
            painter.end()

    def _pixels_changed(self, box: Bounds) -> None:
        self._refresh(box)
        self.update(self.widget_rect(box))

    def _extent_changed(self, extent: Extent, shift) -> None:
        # Keep the picture where it was on screen: growing to the left moves the origin left.
        self._pan -= QPointF(shift.x, shift.y) * self._zoom
        if isinstance(self._drag, _FrameDrag):  # its start is in the old coordinates: drop it
            self._drag, self._live_frame = None, None
        self._rebuild()
        self.view_changed.emit()
        self.update()

    def _frame_changed(self, _frame: Bounds) -> None:
        self.view_changed.emit()
        self.update()

    def _active_changed(self, _layer) -> None:
        self.update()

    # -- pictures in a frame: the live preview and the staged result --------------------------

    def set_picture(self, kind: str, image: QImage | None, bounds: Bounds | None = None) -> None:
        """Show `image` scaled into `bounds` ("preview" while generating, "staged" for a result, "live" for live
        mode's draft: under the others, and hidden while a stroke is painted); None hides it."""
        if image is None or image.isNull() or bounds is None:
            self._pictures.pop(kind, None)
        else:
            self._pictures[kind] = (image, bounds)
        self.update()

    def picture(self, kind: str) -> tuple[QImage, Bounds] | None:
        return self._pictures.get(kind)

    def set_live_faded(self, faded: bool) -> None:
        """Show live mode's draft at half strength (what was painted since shows through it) or whole."""
        if faded != self._live_faded:
            self._live_faded = faded
            if "live" in self._pictures:
                self.update()

    @property
    def live_faded(self) -> bool:
        return self._live_faded

    def set_compare(self, on: bool) -> None:
        """Compare the staged result with the picture under it: left of a vertical split line the picture
        before, right of it the result. The pointer over the result moves the line. Only painting changes."""
        self._comparing = on
        self.update()

    @property
    def comparing(self) -> bool:
        return self._comparing

    def set_split(self, fraction: float) -> None:
        """Where the compare line is across the staged result: 0 its left edge, 1 its right edge."""
        self._split = min(1.0, max(0.0, fraction))
        if self._comparing:
            self.update()

    def split_x(self) -> float | None:
        """The compare line's x in the widget, while comparing a staged result."""
        rect = self._compare_rect()
        return None if rect is None else rect.left() + rect.width() * self._split

    def _compare_rect(self) -> QRectF | None:
        if not self._comparing or "staged" not in self._pictures:
            return None
        return QRectF(self.widget_rect(self._pictures["staged"][1]).adjusted(2, 2, -2, -2))

    def _on_compared(self, pos: QPointF) -> bool:
        rect = self._compare_rect()
        return rect is not None and rect.contains(pos)

    def _follow_split(self, pos: QPointF) -> bool:
        """Move the compare line to the pointer when it is over the staged result; whether it was."""
        rect = self._compare_rect()
        if rect is None or not rect.contains(pos) or rect.width() <= 0:
            return False
        self.set_split((pos.x() - rect.left()) / rect.width())
        return True

    def set_frame_caption(self, text: str) -> None:
        if text != self._frame_caption:
            self._frame_caption = text
            self.update()

    def frame(self) -> Bounds | None:
        """The frame as shown (while it is dragged, before it is set on the document)."""
        return self._live_frame or (self.doc.frame if self.doc else None)

    # -- zoom and pan -------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        return self._zoom

    def to_document(self, pos: QPointF) -> QPointF:
        return (QPointF(pos) - self._pan) / self._zoom

    def to_widget(self, point: QPointF) -> QPointF:
        return QPointF(point) * self._zoom + self._pan

    def widget_rect(self, box: Bounds) -> QRect:
        rect = QRectF(self.to_widget(QPointF(box.x, box.y)), QSize(box.width, box.height) * self._zoom)
        return rect.toAlignedRect().adjusted(-2, -2, 2, 2)

    def set_view(self, zoom: float, pan: QPointF) -> None:
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        changed = zoom != self._zoom
        self._zoom, self._pan = zoom, QPointF(pan)
        self._fit_pending = False
        if changed:
            self.zoom_changed.emit(zoom)
        self.view_changed.emit()
        self.update()

    def zoom_at(self, factor: float, anchor: QPointF) -> None:
        """Zoom keeping the document point under `anchor` (widget coordinates) where it is."""
        point = self.to_document(anchor)
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, self._zoom * factor))
        self.set_view(zoom, QPointF(anchor) - point * zoom)

    def zoom_in(self) -> None:
        self.zoom_at(1.25, QPointF(self.width() / 2, self.height() / 2))

    def zoom_out(self) -> None:
        self.zoom_at(0.8, QPointF(self.width() / 2, self.height() / 2))

    def actual_size(self) -> None:
        self.zoom_at(1.0 / self._zoom, QPointF(self.width() / 2, self.height() / 2))

    def fit(self) -> None:
        """Show the whole picture and the frame, as large as fits."""
        if self.doc is None or self.width() <= 0:
            return
        area = self.doc.bounds.union(self.doc.frame)
        margin = 32
        zoom = min((self.width() - 2 * margin) / area.width, (self.height() - 2 * margin) / area.height)
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        centre = QPointF(area.x + area.width / 2, area.y + area.height / 2)
        self.set_view(zoom, QPointF(self.width() / 2, self.height() / 2) - centre * zoom)

    def resizeEvent(self, event) -> None:
        if self._fit_pending:
            self.fit()
        else:
            self.view_changed.emit()
        super().resizeEvent(event)

    def showEvent(self, event) -> None:
        if self._fit_pending:
            self.fit()
        super().showEvent(event)

    def pan_by(self, dx: float, dy: float) -> None:
        self.set_view(self._zoom, self._pan + QPointF(dx, dy))

    # -- drawing ------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), self.palette().color(self.backgroundRole()).darker(130))
        if self.doc is None:
            return
        doc_rect = self.widget_rect(self.doc.bounds).adjusted(2, 2, -2, -2)
        painter.fillRect(doc_rect.intersected(event.rect()), self._checker)
        visible = self._visible_document(event.rect())
        if not visible.is_empty:
            painter.save()
            painter.setTransform(QTransform(self._zoom, 0, 0, self._zoom, self._pan.x(), self._pan.y()))
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 2)
            source = QRectF(visible.x, visible.y, visible.width, visible.height)
            painter.drawImage(source, self._image, source)
            painter.drawImage(source, self._controls, source)
            painter.restore()
            self._draw_overlay(painter, visible)
        for kind in ("live", "staged", "preview"):
            if kind == "live" and isinstance(self._drag, _StrokeDrag):
                continue  # the stroke shows as it is painted; the draft is back when it ends
            if kind in self._pictures:
                image, bounds = self._pictures[kind]
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
                rect = QRectF(self.widget_rect(bounds).adjusted(2, 2, -2, -2))
                if kind == "staged" and self._comparing:
                    self._draw_compared(painter, rect, image)
                else:
                    painter.setOpacity(0.5 if kind == "live" and self._live_faded else 1.0)
                    painter.drawImage(rect, image)
                    painter.setOpacity(1.0)
                if kind == "live" and not visible.is_empty:  # the mask stays seen over the live draft
                    self._draw_overlay(painter, visible)
        self._draw_layer_bounds(painter)
        self._draw_frame(painter)
        self._draw_brush(painter)

    def _draw_overlay(self, painter: QPainter, visible) -> None:
        """The mask overlay over the `visible` part of the document."""
        painter.save()
        painter.setTransform(QTransform(self._zoom, 0, 0, self._zoom, self._pan.x(), self._pan.y()))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 2)
        source = QRectF(visible.x, visible.y, visible.width, visible.height)
        painter.drawImage(source, self._overlay, source)
        painter.restore()

    def _draw_compared(self, painter: QPainter, rect: QRectF, image: QImage) -> None:
        """The result right of the split line only; left of it the picture under it shows."""
        x = rect.left() + rect.width() * self._split
        painter.save()
        painter.setClipRect(QRectF(x, rect.top(), rect.right() - x, rect.height()))
        painter.drawImage(rect, image)
        painter.restore()
        painter.save()
        painter.setClipRect(rect)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 4))
        painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        metrics = painter.fontMetrics()
        for text, right in (("Before", False), ("After", True)):
            width, height = metrics.horizontalAdvance(text) + 10, metrics.height() + 4
            box = QRectF(x + 6 if right else x - 6 - width, rect.top() + 6, width, height)
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    def _visible_document(self, rect: QRect) -> Bounds:
        top_left = self.to_document(QPointF(rect.topLeft()))
        bottom_right = self.to_document(QPointF(rect.bottomRight()) + QPointF(1, 1))
        x0, y0 = math.floor(top_left.x()), math.floor(top_left.y())
        x1, y1 = math.ceil(bottom_right.x()), math.ceil(bottom_right.y())
        return Bounds(x0, y0, x1 - x0, y1 - y0).clamp(self.doc.extent)

    def _draw_layer_bounds(self, painter: QPainter) -> None:
        layer = self.doc.active
        if layer is None or layer.bounds == self.doc.bounds:
            return
        pen = QPen(QColor(230, 200, 40), 1, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self.widget_rect(layer.bounds).adjusted(2, 2, -3, -3))

    def _draw_frame(self, painter: QPainter) -> None:
        frame = self.frame()
        rect = QRectF(self.widget_rect(frame).adjusted(2, 2, -2, -2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
        painter.drawRect(rect)
        painter.setPen(QPen(QColor(90, 190, 255), 1.5, Qt.PenStyle.DashLine))
        painter.drawRect(rect)
        if self.tools.tool is Tool.FRAME:
            painter.setPen(QPen(QColor(0, 0, 0), 1))
            painter.setBrush(QColor(90, 190, 255))
            for point in _handle_points(rect):
                painter.drawRect(QRectF(point - QPointF(4, 4), QSize(8, 8)))
        caption = f"{frame.width} × {frame.height}" + (f"  ·  {self._frame_caption}" if self._frame_caption else "")
        metrics = painter.fontMetrics()
        box = QRectF(rect.left(), rect.top() - metrics.height() - 6, metrics.horizontalAdvance(caption) + 12,
                     metrics.height() + 4)
        if box.top() < 0:  # no room above the frame: inside it, and on screen
            box.moveTop(max(rect.top() + 4, 4))
        box.moveLeft(max(box.left(), 4))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 60, 90, 200))
        painter.drawRoundedRect(box, 3, 3)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, caption)

    def _draw_brush(self, painter: QPainter) -> None:
        if self._pointer is None or not self.tools.tool.paints or self._panning() or self._on_compared(self._pointer):
            return
        radius = max(1.0, self.tools.brush().size / 2 * self._zoom)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for colour, width in ((QColor(0, 0, 0, 170), 3.0), (QColor(255, 255, 255, 230), 1.0)):
            painter.setPen(QPen(colour, width))
            painter.drawEllipse(self._pointer, radius, radius)
        painter.drawPoint(self._pointer)

    def _brush_rect(self, pos: QPointF) -> QRect:
        radius = self.tools.brush().size / 2 * self._zoom + 4
        return QRectF(pos.x() - radius, pos.y() - radius, 2 * radius, 2 * radius).toAlignedRect()

    # -- input --------------------------------------------------------------------------------

    def _panning(self) -> bool:
        return self._space or self.tools.tool is Tool.PAN or isinstance(self._drag, _PanDrag)

    def mousePressEvent(self, event) -> None:
        if self.doc is None or self._drag is not None:
            return
        pos = event.position()
        if event.button() == Qt.MouseButton.LeftButton and not self._panning() and self._follow_split(pos):
            return  # while comparing, the staged result is the split's handle, not a place to paint
        self._drag_button = event.button()
        if event.button() == Qt.MouseButton.MiddleButton or (event.button() == Qt.MouseButton.LeftButton and self._panning()):
            self._drag = _PanDrag(self, pos)
        elif event.button() == Qt.MouseButton.LeftButton:
            try:
                self._drag = _drag_for(self, pos)
            except LayerNotEditable as error:
                self.message.emit(str(error))
                self._drag = None
        self._stroke_began()
        self._update_cursor(pos)

    def mouseMoveEvent(self, event) -> None:
        pos = event.position()
        self._move_pointer(pos)
        if self._drag is not None:
            self._drag.move(pos)
        else:
            self._follow_split(pos)
            self._update_cursor(pos)

    def mouseReleaseEvent(self, event) -> None:
        if self._drag is not None and event.button() == self._drag_button:
            drag, self._drag = self._drag, None
            drag.finish()
            self._stroke_ended(drag)
            self._update_cursor(event.position())

    def _stroke_began(self) -> None:
        """Live mode's draft hides while a stroke is painted: the whole of it is drawn again without it."""
        if isinstance(self._drag, _StrokeDrag) and "live" in self._pictures:
            self.update()

    def _stroke_ended(self, drag: _Drag) -> None:
        if isinstance(drag, _StrokeDrag) and "live" in self._pictures:
            self.update()

    def tabletEvent(self, event) -> None:
        """A pen paints with its pressure, and its eraser end erases. Whatever is not a pen stroke is ignored,
        so Qt turns it into the mouse events above (other tools, panning, the pen's side buttons)."""
        kind, pos = event.type(), event.position()
        stroke = self._drag is None or isinstance(self._drag, _StrokeDrag)
        if self.doc is None or not self.tools.tool.paints or self._panning() or not stroke or (
                kind == QEvent.Type.TabletPress and event.button() != Qt.MouseButton.LeftButton):
            event.ignore()
            return
        if kind == QEvent.Type.TabletPress and self._drag is None:
            eraser = event.pointerType() == QPointingDevice.PointerType.Eraser
            try:
                self._drag = _StrokeDrag(self, pos, event.pressure(), erase=eraser)
                self._drag_button = Qt.MouseButton.LeftButton
                self._stroke_began()
            except LayerNotEditable as error:
                self.message.emit(str(error))
        elif kind == QEvent.Type.TabletMove:
            self._move_pointer(pos)
            if self._drag is not None:
                self._drag.move(pos, event.pressure())
            else:
                self._update_cursor(pos)
        elif kind == QEvent.Type.TabletRelease and self._drag is not None:
            drag, self._drag = self._drag, None
            drag.finish()
            self._stroke_ended(drag)
        event.accept()

    def leaveEvent(self, event) -> None:
        if self._pointer is not None:
            old, self._pointer = self._pointer, None
            self.update(self._brush_rect(old))
        super().leaveEvent(event)

    def _move_pointer(self, pos: QPointF) -> None:
        old, self._pointer = self._pointer, QPointF(pos)
        if self.tools.tool.paints:
            if old is not None:
                self.update(self._brush_rect(old))
            self.update(self._brush_rect(pos))

    def wheelEvent(self, event) -> None:
        pixels = event.pixelDelta()
        if not pixels.isNull() and not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.pan_by(pixels.x(), pixels.y())  # a touchpad's two-finger scroll pans
            return
        steps = event.angleDelta().y() / 120 or event.angleDelta().x() / 120
        if steps:
            self.zoom_at(1.2**steps, event.position())

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.NativeGesture and event.gestureType() == Qt.NativeGestureType.ZoomNativeGesture:
            self.zoom_at(1.0 + event.value(), event.position())
            return True
        if event.type() == QEvent.Type.Gesture:
            pinch = event.gesture(Qt.GestureType.PinchGesture)
            if pinch is not None:
                self.zoom_at(pinch.scaleFactor(), self.mapFromGlobal(pinch.centerPoint().toPoint()).toPointF())
                return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._update_cursor(self._pointer)
            return
        if event.key() in (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight):
            self.tools.resize_brush(-1 if event.key() == Qt.Key.Key_BracketLeft else 1)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor(self._pointer)
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space = False
        super().focusOutEvent(event)

    def _tools_changed(self) -> None:
        self._update_cursor(self._pointer)
        self.update()

    def _update_cursor(self, pos: QPointF | None) -> None:
        tool = self.tools.tool
        if isinstance(self._drag, _PanDrag):
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._panning():
            shape = Qt.CursorShape.OpenHandCursor
        elif pos is not None and self._on_compared(pos):
            shape = Qt.CursorShape.SplitHCursor  # the pointer moves the compare line; nothing paints here
        elif tool.paints:
            shape = Qt.CursorShape.BlankCursor
        elif tool is Tool.PICKER:
            shape = Qt.CursorShape.CrossCursor
        elif tool is Tool.MOVE:
            shape = Qt.CursorShape.SizeAllCursor
        elif tool is Tool.FRAME and pos is not None:
            shape = _FRAME_CURSORS[_frame_hit(self, pos)]
        else:
            shape = Qt.CursorShape.ArrowCursor
        self.setCursor(QCursor(shape))

    # -- drops ---------------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        data = event.mimeData()
        if data.hasUrls() and any(url.isLocalFile() for url in data.urls()) or data.hasImage():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        data = event.mimeData()
        where = self.to_document(event.position())
        files = [url.toLocalFile() for url in data.urls() if url.isLocalFile()] if data.hasUrls() else []
        if files:
            self.files_dropped.emit(files, where)
        elif data.hasImage():
            self.image_dropped.emit(QImage(data.imageData()), where)
        else:
            return
        event.acceptProposedAction()


# -- drags: one object per press-drag-release ---------------------------------------------------


class _Drag:
    def move(self, pos: QPointF) -> None: ...

    def finish(self) -> None: ...


class _PanDrag(_Drag):
    def __init__(self, view: CanvasView, pos: QPointF):
        self.view, self.last = view, QPointF(pos)

    def move(self, pos: QPointF) -> None:
        delta = pos - self.last
        self.last = QPointF(pos)
        self.view.pan_by(delta.x(), delta.y())


class _StrokeDrag(_Drag):
    def __init__(self, view: CanvasView, pos: QPointF, pressure: float = 1.0, erase: bool = False):
        doc, tools = view.doc, view.tools
        layer = doc.target_mask() if tools.tool.on_mask else doc.active
        if layer is None:
            raise LayerNotEditable("There is no mask layer to paint on: add one in the Layers panel."
                                   if tools.tool.on_mask else "There is no layer to paint on: add one.")
        brush = replace(tools.brush(), erase=True) if erase else tools.brush()
        self.view, self.session = view, doc.begin_stroke(layer, brush)
        self.move(pos, pressure)

    def move(self, pos: QPointF, pressure: float = 1.0) -> None:
        point = self.view.to_document(pos)
        self.session.to(point.x(), point.y(), pressure)

    def finish(self) -> None:
        self.session.finish()


class _PickDrag(_Drag):
    def __init__(self, view: CanvasView, pos: QPointF):
        self.view = view
        self.move(pos)

    def move(self, pos: QPointF) -> None:
        point = self.view.to_document(pos)
        r, g, b, a = self.view.doc.pick(math.floor(point.x()), math.floor(point.y()))
        if a:
            self.view.tools.set_colour(QColor(r, g, b))


class _MoveDrag(_Drag):
    def __init__(self, view: CanvasView, pos: QPointF):
        if view.doc.active is None:
            raise LayerNotEditable("There is no layer to move.")
        self.view, self.start = view, view.to_document(pos)
        self.session = view.doc.begin_move(view.doc.active)

    def move(self, pos: QPointF) -> None:
        delta = self.view.to_document(pos) - self.start
        self.session.to(round(delta.x()), round(delta.y()))

    def finish(self) -> None:
        self.session.finish()


class _FrameDrag(_Drag):
    """Drag inside the frame to move it, on an edge or corner to resize it (onto the grid or the picture's edges)."""

    def __init__(self, view: CanvasView, pos: QPointF):
        self.view, self.hit = view, _frame_hit(view, pos) or "move"
        self.start, self.frame = view.to_document(pos), view.doc.frame

    def move(self, pos: QPointF) -> None:
        d = self.view.to_document(pos) - self.start
        dx, dy = d.x(), d.y()
        f = self.frame
        left, top, right, bottom = f.x, f.y, f.right, f.bottom
        if self.hit == "move":
            left, top, right, bottom = left + dx, top + dy, right + dx, bottom + dy
        else:
            if "l" in self.hit:
                left = min(left + dx, right - MIN_FRAME)
            if "r" in self.hit:
                right = max(right + dx, left + MIN_FRAME)
            if "t" in self.hit:
                top = min(top + dy, bottom - MIN_FRAME)
            if "b" in self.hit:
                bottom = max(bottom + dy, top + MIN_FRAME)
        snapped = snap_frame(left, top, right, bottom, self.view.doc.extent, self.hit)
        if snapped != self.view._live_frame:
            self.view._live_frame = snapped
            self.view.view_changed.emit()
            self.view.update()

    def finish(self) -> None:
        frame, self.view._live_frame = self.view._live_frame, None
        if frame is not None:
            self.view.doc.set_frame(frame)
        self.view.update()


def _drag_for(view: CanvasView, pos: QPointF) -> _Drag:
    tool = view.tools.tool
    if tool.paints:
        return _StrokeDrag(view, pos)
    if tool is Tool.PICKER:
        return _PickDrag(view, pos)
    if tool is Tool.MOVE:
        return _MoveDrag(view, pos)
    if tool is Tool.FRAME:
        return _FrameDrag(view, pos)
    return _PanDrag(view, pos)


def _frame_hit(view: CanvasView, pos: QPointF) -> str:
    """Which part of the frame is under `pos`: "" (none), "move", or edges like "l", "tr", "b"."""
    if view.doc is None:
        return ""
    rect = QRectF(view.widget_rect(view.frame()).adjusted(2, 2, -2, -2))
    x, y = pos.x(), pos.y()
    if not rect.adjusted(-HANDLE, -HANDLE, HANDLE, HANDLE).contains(pos):
        return "move"
    hit = ""
    if abs(y - rect.top()) <= HANDLE:
        hit += "t"
    elif abs(y - rect.bottom()) <= HANDLE:
        hit += "b"
    if abs(x - rect.left()) <= HANDLE:
        hit += "l"
    elif abs(x - rect.right()) <= HANDLE:
        hit += "r"
    return hit or "move"


_FRAME_CURSORS = {
    "": Qt.CursorShape.ArrowCursor, "move": Qt.CursorShape.SizeAllCursor,
    "t": Qt.CursorShape.SizeVerCursor, "b": Qt.CursorShape.SizeVerCursor,
    "l": Qt.CursorShape.SizeHorCursor, "r": Qt.CursorShape.SizeHorCursor,
    "tl": Qt.CursorShape.SizeFDiagCursor, "br": Qt.CursorShape.SizeFDiagCursor,
    "tr": Qt.CursorShape.SizeBDiagCursor, "bl": Qt.CursorShape.SizeBDiagCursor,
}


def _handle_points(rect: QRectF) -> list[QPointF]:
    cx, cy = rect.center().x(), rect.center().y()
    return [QPointF(x, y) for x in (rect.left(), cx, rect.right()) for y in (rect.top(), cy, rect.bottom())
            if (x, y) != (cx, cy)]


def checker_brush(cell: int = 8) -> QBrush:
    """The grey-and-white squares that show transparency."""
    tile = QPixmap(2 * cell, 2 * cell)
    tile.fill(QColor(204, 204, 204))
    painter = QPainter(tile)
    painter.fillRect(0, 0, cell, cell, QColor(255, 255, 255))
    painter.fillRect(cell, cell, cell, cell, QColor(255, 255, 255))
    painter.end()
    return QBrush(tile)
