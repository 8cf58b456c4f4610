"""An X/Y/Z plot opened in the gallery: its cells in a grid under their axis labels, one Z value at a time.

A click on a cell chooses it (the gallery's details then show that cell's own picture, with Use all parameters and
the other actions); arrow keys move between cells; a cell whose picture is gone is drawn as missing. Esc or the
button goes back to the gallery.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRect, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPen
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from desktop.core.gallery.plots import Plot, PlotCell

LABEL_WIDTH = 110  # the Y labels' column
LABEL_HEIGHT = 24  # the X labels' row
GAP = 4
MIN_CELL, MAX_CELL = 72, 256


def short(label: str, name: str) -> str:
    """A label without its axis's name ("Steps: 4" -> "4"): the names are said above the grid."""
    return label[len(name) + 2:] if name and label.startswith(f"{name}: ") else label


class PlotGrid(QWidget):
    """The cells of one Z value, as large as the room shown allows (between MIN_CELL and MAX_CELL: more rows than
    fit scroll), with the X labels above and the Y labels left of them.

    Signals:
        chosen(object): the PlotCell clicked (or reached with the arrow keys).
    """

    chosen = Signal(object)

    def __init__(self):
        super().__init__()
        self.plot: Plot | None = None
        self.z = 0
        self.thumbnails: dict[tuple[int, int, int], QImage] = {}
        self.current: tuple[int, int] | None = None
        self.room_height = 0  # of the scroll area's viewport: the cells shrink to fit it, down to MIN_CELL
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_plot(self, plot: Plot | None) -> None:
        self.plot, self.z, self.current = plot, 0, None
        self.thumbnails = {}
        self._resize()

    def set_z(self, z: int) -> None:
        self.z = z
        self.update()
        if self.current is not None:
            self._choose(*self.current)

    def set_thumbnail(self, place: tuple[int, int, int], image: QImage) -> None:
        self.thumbnails[place] = image
        self.update()

    def columns(self) -> int:
        return len(self.plot.x.labels) if self.plot else 0

    def rows(self) -> int:
        return len(self.plot.y.labels) if self.plot else 0

    def _left(self) -> int:
        return LABEL_WIDTH if self.plot is not None and self.plot.y.name else 0

    def cell_side(self, width: int | None = None) -> int:
        columns, rows = max(1, self.columns()), max(1, self.rows())
        room = ((self.width() if width is None else width) - self._left() - GAP * (columns + 1)) // columns
        if self.room_height:
            room = min(room, (self.room_height - LABEL_HEIGHT - GAP * (rows + 1)) // rows)
        return max(MIN_CELL, min(MAX_CELL, room))

    def set_room_height(self, height: int) -> None:
        if height != self.room_height:
            self.room_height = height
            self._resize()

    def cell_rect(self, x: int, y: int) -> QRect:
        side = self.cell_side()
        spare = self.width() - self._left() - GAP - max(1, self.columns()) * (side + GAP)
        left = self._left() + max(0, spare // 2)  # the grid centred in the room it has
        return QRect(left + GAP + x * (side + GAP), LABEL_HEIGHT + GAP + y * (side + GAP), side, side)

    def sizeHint(self) -> QSize:
        return QSize(self._left() + (MAX_CELL + GAP) * max(1, self.columns()), self.heightForWidth(800))

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return LABEL_HEIGHT + GAP + self.rows() * (self.cell_side(width) + GAP)

    def _resize(self) -> None:
        columns = max(1, self.columns())
        self.setMinimumWidth(self._left() + GAP + columns * (MIN_CELL + GAP))
        self.setMinimumHeight(self.heightForWidth(self.width()))
        self.updateGeometry()
        self.update()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.setMinimumHeight(self.heightForWidth(self.width()))

    def cell_at(self, point) -> tuple[int, int] | None:
        for y in range(self.rows()):
            for x in range(self.columns()):
                if self.cell_rect(x, y).contains(point):
                    return x, y
        return None

    def mousePressEvent(self, event) -> None:
        place = self.cell_at(event.position().toPoint())
        if event.button() == Qt.MouseButton.LeftButton and place is not None:
            self._choose(*place)
            event.accept()
            return
        super().mousePressEvent(event)

    def keyPressEvent(self, event) -> None:
        moves = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0), Qt.Key.Key_Up: (0, -1), Qt.Key.Key_Down: (0, 1)}
        if event.key() in moves and self.plot is not None:
            dx, dy = moves[event.key()]
            x, y = self.current or (0, 0)
            if self.current is not None:
                x, y = min(self.columns() - 1, max(0, x + dx)), min(self.rows() - 1, max(0, y + dy))
            self._choose(x, y)
            event.accept()
            return
        super().keyPressEvent(event)

    def _choose(self, x: int, y: int) -> None:
        self.current = (x, y)
        self.update()
        cell = self.plot.cell(x, y, self.z) if self.plot is not None else None
        self.chosen.emit(cell if cell is not None else PlotCell(None, x, y, self.z, None, False))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        if self.plot is None:
            return
        metrics = painter.fontMetrics()
        painter.setPen(palette.text().color())
        columns, rows = self._visible(event.rect())  # only what is shown: a plot may have hundreds of cells
        for x in columns:
            label = short(self.plot.x.labels[x], self.plot.x.name)
            rect = self.cell_rect(x, 0)
            box = QRect(rect.left(), 0, rect.width(), LABEL_HEIGHT)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter,
                             metrics.elidedText(label, Qt.TextElideMode.ElideRight, box.width()))
        if self._left():
            for y in rows:
                label = short(self.plot.y.labels[y], self.plot.y.name)
                rect = self.cell_rect(0, y)
                box = QRect(rect.left() - LABEL_WIDTH, rect.top(), LABEL_WIDTH - GAP, rect.height())
                painter.drawText(box, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight | Qt.TextFlag.TextWordWrap,
                                 label)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for y in rows:
            for x in columns:
                self._paint_cell(painter, x, y)

    def _visible(self, area: QRect) -> tuple[range, range]:
        """The columns and the rows whose cells (and labels) meet `area`."""
        first, step = self.cell_rect(0, 0), self.cell_side() + GAP
        # (the X labels are painted for the columns, the Y labels for the rows: each band is counted apart)
        columns = range(max(0, (area.left() - first.left()) // step),
                        max(0, min(self.columns(), (area.right() - first.left()) // step + 1)))
        rows = range(max(0, (area.top() - first.top()) // step),
                     max(0, min(self.rows(), (area.bottom() - first.top()) // step + 1)))
        return columns, rows

    def _paint_cell(self, painter: QPainter, x: int, y: int) -> None:
        rect = self.cell_rect(x, y)
        palette = self.palette()
        painter.fillRect(rect, palette.alternateBase())
        cell = self.plot.cell(x, y, self.z)
        image = self.thumbnails.get((x, y, self.z))
        if cell is not None and cell.present and image is not None and not image.isNull():
            size = image.size().scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(rect.center())
            painter.drawImage(target, image)
        elif cell is None or not cell.present:
            painter.setPen(QPen(palette.mid().color(), 1, Qt.PenStyle.DashLine))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
            painter.setPen(palette.placeholderText().color())
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "Missing")
        if self.current == (x, y):
            painter.setPen(QPen(palette.highlight().color(), 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect.adjusted(1, 1, -1, -1))


class PlotView(QWidget):
    """Signals:
    chosen(object): a cell was chosen (a PlotCell; its path is None where the plot has no such cell).
    close_requested(): back to the gallery.
    """

    chosen = Signal(object)
    close_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.z_box = QComboBox()
        self.z_box.setToolTip("The plot's Z axis: one grid per value")
        self.z_box.currentIndexChanged.connect(lambda z: self.grid.set_z(max(0, z)))
        self.back = QPushButton("Back to the gallery")
        self.back.setToolTip("Close the grid view (Esc)")
        self.back.clicked.connect(self.close_requested)
        self.grid = PlotGrid()
        self.grid.chosen.connect(self.chosen)
        self.grid.installEventFilter(self)
        self.scroll_area = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid)
        scroll.viewport().installEventFilter(self)
        self.axes = QLabel()  # "X: Steps · Y: CFG scale"
        top = QHBoxLayout()
        top.addWidget(self.caption, 1)
        top.addWidget(self.z_box)
        top.addWidget(self.back)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.axes)
        layout.addWidget(scroll, 1)

    def set_plot(self, name: str, plot: Plot) -> None:
        self.grid.set_plot(plot)
        count = len(plot.cells)
        missing = plot.missing()
        text = f"{name}: {count} picture{'s' if count != 1 else ''}"
        if missing:
            text += f", {missing} missing"
        self.caption.setText(text + ". Click a cell to see its picture and use its parameters.")
        axes = [f"{key}: {axis.name}" for key, axis in (("X", plot.x), ("Y", plot.y)) if axis.name]
        self.axes.setText("   ·   ".join(axes))
        self.z_box.blockSignals(True)
        self.z_box.clear()
        self.z_box.addItems([f"{plot.z.name}: {short(label, plot.z.name)}" for label in plot.z.labels]
                            if plot.z.name else [])
        self.z_box.blockSignals(False)
        self.z_box.setVisible(self.z_box.count() > 1)
        self.grid.setFocus()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.scroll_area.viewport() and event.type() == QEvent.Type.Resize:
            self.grid.set_room_height(event.size().height())
        if watched is self.grid and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.close_requested.emit()
            return True
        if watched is self.grid and event.type() == QEvent.Type.ShortcutOverride \
                and event.key() == Qt.Key.Key_Escape:
            event.accept()  # Esc is the view's, before the window's Esc (Cancel) shortcut
            return True
        return super().eventFilter(watched, event)
