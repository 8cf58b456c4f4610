"""The gallery's picture as large as fits, and the one way it reads a picture file for showing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop.core.imageio import ImageError, load_image

from ..qimage import to_qimage


class PictureView(QWidget):
    """The chosen picture, as large as fits."""

    def __init__(self):
        super().__init__()
        self.image = QImage()
        self.setMinimumSize(240, 120)  # on a short screen the picture gives way to the actions below it
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage) -> None:
        self.image = image
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self.image.isNull():
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Choose a picture")
            return
        size = self.image.size().scaled(self.rect().adjusted(6, 6, -6, -6).size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(self.rect().center())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self.image)


def read_picture(path: Path) -> QImage:
    """The picture upright (EXIF orientation), through Sfumato's one reader; a null QImage when unreadable."""
    try:
        return to_qimage(load_image(path))
    except ImageError:
        return QImage()
