"""The Gallery tab as a person uses it: new results on top, search, reuse, favourite, delete and undo, export."""

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt

from desktop.core.gallery.store import GalleryStore
from desktop.core.infotext import parse_infotext

from desktop.ui.gallery.export_dialog import ExportDialog
from desktop.ui.gallery.model import RecordRole
from tests.support.requests import make_request

TIMEOUT = 60_000


def seed_pictures(folder: Path, thumbs: Path, prompts: list[str]) -> None:
    store = GalleryStore(folder, thumbs)
    for i, prompt in enumerate(prompts):
        picture = np.full((64, 64, 3), 40 * i % 255, np.uint8)
        request = make_request(prompt=prompt, seed=500 + i, steps=9, cfg_scale=5.5, width=64, height=64,
                                    sampler="DDIM", schedule="Automatic").resolved()
        store.add_result(picture, request, 500 + i, "painter")
    store.close()


def open_gallery(make_window, qtbot, **settings):
    window = make_window(**settings)
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    qtbot.mouseClick(window.tabs.tabBar(), Qt.MouseButton.LeftButton,
                     pos=window.tabs.tabBar().tabRect(1).center())
    assert window.tabs.currentIndex() == 1 and not window.layers_dock.isVisible()
    return window, window.gallery


def gallery_of(make_window, qtbot, home: Path, prompts: list[str]):
    """A window whose gallery holds one picture per prompt (seeds 500, 501...), on the Gallery tab."""
    seed_pictures(home / "outputs", home / "cache" / "thumbnails", prompts)
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == len(prompts), timeout=TIMEOUT)
    return window, gallery


def first_record(gallery):
    return gallery.model.index(0).data(RecordRole)


def test_generating_adds_a_thumbnail_at_the_top(make_window, qtbot):
    window, gallery = open_gallery(make_window, qtbot)
    before = gallery.model.rowCount()
    window.panel.set_request(make_request(prompt="a brand new lighthouse", steps=2, width=64, height=64, seed=9,
                                               sampler="Euler a", schedule="Automatic"))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    assert gallery.model.rowCount() == before + 1
    record = first_record(gallery)
    assert record.prompt == "a brand new lighthouse" and record.seed == 9
    qtbot.waitUntil(lambda: gallery.model.index(0).data(Qt.ItemDataRole.DecorationRole) is not None, timeout=TIMEOUT)
    assert gallery.model.index(0).data(Qt.ItemDataRole.DecorationRole).width() <= 256


def test_search_narrows_the_grid_and_filters_combine(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home,
                                 ["a red fox", "a red barn", "a blue whale", "a fox cub in snow"])
    qtbot.keyClicks(gallery.search, "fox")
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 2, timeout=5000)
    assert {first_record(gallery).prompt, gallery.model.index(1).data(RecordRole).prompt} == {"a red fox",
                                                                                                "a fox cub in snow"}
    assert gallery.count.text() == "2 pictures"
    qtbot.keyClicks(gallery.search, " snow")
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=5000)
    gallery.search.clear()
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 4, timeout=5000)


def test_use_all_parameters_fills_the_prompt_panel(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["an old sailor, portrait"])
    gallery.select_row(0)
    assert "Seed: 500" in gallery.parameters.toPlainText()
    model = window.panel.model_ref()
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.panel.prompt.toPlainText() == "an old sailor, portrait", timeout=5000)
    request = window.panel.request()
    assert (request.sampling.seed, request.sampling.steps, request.sampling.cfg_scale, request.sampling.sampler) == (500, 9, 5.5, "DDIM")
    assert request.model == model, "the chosen model stays"
    window.panel.seed.setValue(-1)
    qtbot.mouseClick(gallery.buttons["seed"], Qt.MouseButton.LeftButton)
    assert window.panel.request().sampling.seed == 500


def test_favourite_delete_and_undo_from_the_keyboard(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one", "two", "three"])
    gallery.select_row(0)
    gallery.list.setFocus()
    qtbot.keyClick(gallery.list, Qt.Key.Key_F)
    assert first_record(gallery).favourite
    qtbot.mouseClick(gallery.favourites, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=5000)
    qtbot.mouseClick(gallery.favourites, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 3, timeout=5000)
    gallery.select_row(1)
    path = window.gallery_store.path(gallery.current())
    gallery.list.setFocus()
    qtbot.keyClick(gallery.list, Qt.Key.Key_Delete)
    assert gallery.model.rowCount() == 2 and not path.exists()
    qtbot.keyClick(gallery.list, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert gallery.model.rowCount() == 3 and path.exists()


def test_the_favourite_button_shows_whether_the_chosen_picture_is_a_favourite(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one", "two"])
    button = gallery.buttons["favourite"]
    gallery.select_row(0)
    assert not button.isChecked() and button.text() == "☆ Favourite"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert first_record(gallery).favourite and button.isChecked() and button.text() == "★ Favourite"
    gallery.select_row(1)
    assert not button.isChecked()
    gallery.select_row(0)
    assert button.isChecked()
    gallery.list.setFocus()
    qtbot.keyClick(gallery.list, Qt.Key.Key_F)
    assert not first_record(gallery).favourite and not button.isChecked()


def test_a_search_that_finds_nothing_says_so(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a red fox"])
    qtbot.keyClicks(gallery.search, "zebra")
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 0, timeout=5000)
    assert gallery.parameters.toPlainText() == ""
    assert gallery.parameters.placeholderText().startswith("No pictures match “zebra”")
    gallery.search.clear()
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=5000)
    gallery.select_row(0)
    assert "Seed: 500" in gallery.parameters.toPlainText()


def test_arrow_keys_step_through_the_pictures(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a", "b", "c"])
    gallery.select_row(0)
    gallery.list.setFocus()
    qtbot.keyClick(gallery.list, Qt.Key.Key_Right)
    assert gallery.current().prompt == "b"
    assert "b" == parse_infotext(gallery.parameters.toPlainText()).prompt


def test_export_dialog_writes_the_selection_without_metadata(make_window, qtbot, sfumato_home, tmp_path):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["x", "y"])
    gallery.list.selectAll()
    records = gallery.selected()
    assert gallery.buttons["export"].text() == "Export 2..."
    dialog = ExportDialog(records, tmp_path / "exported", window)
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(dialog.format.findData("JPEG"))
    dialog.template.setText("{seed}-{bogus}")
    assert not dialog.buttons.buttons()[0].isEnabled() and "bogus" in dialog.example.text()
    dialog.template.setText("{seed}-{prompt}")
    dialog.keep.setChecked(False)
    from desktop.core.gallery import export as exporting

    written = exporting.export([(r, window.gallery_store.path(r)) for r in records], dialog.options())
    assert sorted(p.name for p in written) == ["500-x.jpg", "501-y.jpg"]
    assert all("exif" not in Image.open(p).info for p in written)


def test_send_to_canvas_as_a_layer(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["for the canvas"])
    gallery.select_row(0)
    qtbot.mouseClick(gallery.buttons["layer"], Qt.MouseButton.LeftButton)
    assert window.tabs.currentIndex() == 0
    qtbot.waitUntil(lambda: window.doc.extent.width == 64, timeout=10_000)  # blank canvas: it becomes the picture
    assert window.doc.layers[0].name.endswith("500")


def test_pictures_dropped_on_the_grid_are_imported_with_their_parameters(make_window, qtbot, tmp_path):
    from PIL import PngImagePlugin
    from PySide6.QtCore import QMimeData, QUrl

    from tests.support.drops import drop

    window, gallery = open_gallery(make_window, qtbot)
    source = tmp_path / "from-a1111.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a misty harbour\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 4242, Size: 64x64")
    Image.new("RGB", (64, 64), "teal").save(source, pnginfo=info)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(source)), QUrl.fromLocalFile(str(junk))])
    drop(gallery.list.viewport(), gallery.list.viewport().rect().center(), data)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=10_000)
    record = first_record(gallery)
    assert (record.prompt, record.seed, record.source) == ("a misty harbour", 4242, "a1111")
    assert source.exists(), "the original stays where it was"
    qtbot.waitUntil(window.error_banner.isVisible, timeout=5000)
    assert "junk.png" in window.error_banner.text()


def test_dragging_thumbnails_out_hands_over_the_files(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["out"])
    data = gallery.model.mimeData([gallery.model.index(0)])
    (url,) = data.urls()
    assert Path(url.toLocalFile()) == window.gallery_store.path(first_record(gallery))


def test_a_portrait_photo_is_shown_upright(make_window, qtbot, tmp_path, sfumato_home, fake_backend):
    from tests.core.test_imageio import portrait_photo

    store = GalleryStore(sfumato_home / "outputs", sfumato_home / "cache" / "thumbnails")
    store.import_files([portrait_photo(tmp_path / "phone.jpg")])
    store.close()
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=TIMEOUT)
    gallery.list.setCurrentIndex(gallery.model.index(0))
    qtbot.waitUntil(lambda: not gallery.picture.image.isNull(), timeout=TIMEOUT)
    shown = gallery.picture.image
    assert (shown.width(), shown.height()) == (20, 40), "portrait: 20 wide, 40 high, as its EXIF says"
    assert shown.pixelColor(17, 2).red() > 200 and shown.pixelColor(17, 2).green() < 60, "the red corner is top right"


def test_the_picture_shown_before_any_click_can_be_favoured_exported_and_deleted(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one", "two"])
    gallery.list.setCurrentIndex(gallery.model.index(0))  # what the grid does by itself when it gets the focus
    gallery.list.selectionModel().clearSelection()
    assert gallery.current() is not None
    assert all(gallery.buttons[key].isEnabled() for key in ("favourite", "export", "delete"))
    path = window.gallery_store.path(gallery.current())
    qtbot.mouseClick(gallery.buttons["delete"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=5000)
    assert not path.exists()


def test_an_export_that_cannot_be_signed_says_why_in_the_status_bar(make_window, qtbot, sfumato_home, tmp_path,
                                                                       monkeypatch):
    import dataclasses

    from desktop.core import credentials
    from desktop.ui import main_window as main_window_module

    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["x"])
    gallery.select_row(0)
    folder = tmp_path / "exported"

    class Accepting(ExportDialog):
        def exec(self):
            return self.DialogCode.Accepted

        def options(self):
            return dataclasses.replace(super().options(), folder=folder, signing=credentials.Signing(
                str(tmp_path / "gone.pem"), str(tmp_path / "key.pem")))

    monkeypatch.setattr(main_window_module, "ExportDialog", Accepting)
    window.export_pictures(gallery.selected())
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("Exported 1 picture(s)"), timeout=10_000)
    assert window.statusBar().currentMessage().endswith("could not be read (No such file or directory); choose "
                                                        "another file in File > Settings.")
    assert "without content credentials" in window.statusBar().currentMessage()
