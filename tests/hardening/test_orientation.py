"""A phone's portrait photo opens upright on the canvas, as a picture and as a layer (EXIF orientation)."""

from desktop.core.geometry import Extent
from tests.core.test_imageio import portrait_photo


def test_the_canvas_opens_and_imports_a_portrait_photo_upright(tmp_path, qtbot):
    from PySide6.QtWidgets import QWidget

    from desktop.ui.canvas.files import CanvasFiles

    photo = portrait_photo(tmp_path / "phone.jpg")
    window = QWidget()
    qtbot.addWidget(window)
    files = CanvasFiles(window, lambda: Extent(64, 64))
    with qtbot.waitSignal(files.document_changed, timeout=20_000):
        files.open(photo)
    assert files.doc.extent == Extent(20, 40), "portrait: 20 wide, 40 high"
    picture = files.doc.composite()
    assert picture[2, 17, 0] > 200 and picture[2, 17, 1] < 60, "the red corner is top right"
    count = len(files.doc.layers)
    files.import_layer(photo)
    qtbot.waitUntil(lambda: len(files.doc.layers) > count, timeout=20_000)
    assert [layer.pixels.shape[:2] for layer in files.doc.layers if layer.kind == "image"] == [(40, 20)] * 2
    files.closing()
