"""PostScript dressed as a picture never reaches Ghostscript: every reader opens raster formats only.

A file named x.png that holds EPS would make Pillow launch `gs` (which loops forever on `{ } loop`, and keeps a
core busy after Sfumato is gone). A fake `gs` first on PATH leaves a marker if anything launches it.
"""

import os
import zipfile

import pytest
from PIL import EpsImagePlugin

from desktop.cli import main as cli_main
from desktop.core import ora
from desktop.core.gallery.export import ExportOptions, export
from desktop.core.gallery.index import ImageRecord
from desktop.core.gallery.store import GalleryStore
from desktop.core.gallery.thumbnails import make_thumbnail
from desktop.core.geometry import Extent
from desktop.core.imageio import ImageError, load_image, load_mask

from .images import POSTSCRIPT, fake_ghostscript

REFUSED = "x.png is not a picture Sfumato can read"


@pytest.fixture
def postscript(tmp_path, monkeypatch):
    """(x.png holding PostScript, the marker a launched gs would leave)."""
    marker = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # Pillow looks for gs again (on our PATH)
    path = tmp_path / "in" / "x.png"
    path.parent.mkdir()
    path.write_bytes(POSTSCRIPT)
    yield path, marker
    assert not marker.exists(), "Ghostscript was launched"


def test_init_image_and_mask_refuse_postscript(postscript, capsys):
    path, _ = postscript
    for read in (load_image, load_mask):
        with pytest.raises(ImageError, match=REFUSED):
            read(path)
    assert cli_main(["--init", str(path), "--prompt", "a cat"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"sfumato: {REFUSED}")


def test_gallery_import_thumbnail_and_export_refuse_postscript(postscript, tmp_path):
    path, _ = postscript
    store = GalleryStore(tmp_path / "out", tmp_path / "thumbs")
    records, problems = store.import_files([path])
    store.close()
    assert records == [] and len(problems) == 1 and problems[0].startswith(REFUSED)
    with pytest.raises(ImageError, match=REFUSED):
        make_thumbnail(path, tmp_path / "thumb.jpg")
    record = ImageRecord(1, "x.png", 0, len(POSTSCRIPT), 0.0, 10, 10, "", "", "", None, "", None, None, "", "", False)
    with pytest.raises(ImageError, match=REFUSED):
        export([(record, path)], ExportOptions(tmp_path / "export"))


def test_an_ora_layer_that_is_postscript_is_refused(postscript, tmp_path):
    path, _ = postscript
    target = tmp_path / "x.ora"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("mimetype", ora.MIMETYPE)
        archive.writestr("stack.xml", '<image w="10" h="10"><stack><layer src="data/x.png"/></stack></image>')
        archive.writestr("data/x.png", path.read_bytes())
    with pytest.raises(ora.OraError, match="data/x.png is not a picture Sfumato can read"):
        ora.read(target)


def test_the_canvas_refuses_postscript_to_open_or_import(postscript, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QWidget

    from desktop.ui.canvas.files import CanvasFiles

    path, _ = postscript
    window = QWidget()
    qtbot.addWidget(window)
    files = CanvasFiles(window, lambda: Extent(64, 64))
    for action in (files.open, files.import_layer, lambda p: files.drop_files([str(p)], QPointF(5, 5))):
        with qtbot.waitSignal(files.error, timeout=20_000) as message:
            action(path)
        assert REFUSED in message.args[0]
    files.closing()
