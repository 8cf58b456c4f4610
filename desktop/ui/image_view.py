"""ImageView: shows one picture (a live preview or a result) scaled to fit, with a caption."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._caption = ""
        self._placeholder = "Type a prompt and press Generate (Ctrl+Enter)."
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    def image(self) -> QImage | None:
        return self._image

    def set_image(self, image: QImage | None, caption: str = "") -> None:
        self._image = image
        self._caption = caption
        self.update()

    def set_caption(self, caption: str) -> None:
        if caption != self._caption:
            self._caption = caption
            self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        if self._image is None or self._image.isNull():
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            return
        area = self.rect().adjusted(12, 12, -12, -36)
        size = self._image.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(area.center())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self._image)
        if self._caption:
            painter.setPen(palette.color(QPalette.ColorRole.Text))
            caption_box = QRect(0, target.bottom() + 6, self.width(), 24)
            painter.drawText(caption_box, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, self._caption)
