"""Use all parameters on an A1111 hires-fix picture made with a model upscaler: the file of that name in an
upscaler folder (other apps' too, any case) is chosen in the panel; a name no file has stays shown, with a note."""

from PySide6.QtCore import Qt

from desktop.core import paths
from desktop.core.gallery.store import GalleryStore
from desktop.engine import tiny_upscaler
from tests.ui.test_gallery import TIMEOUT, open_gallery
from tests.ui.test_use_all_addons import a1111_picture

HIRES = ("a lighthouse at dusk\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, "
         "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, Hires upscaler: 4x-UltraSharp")


def use_all(make_window, qtbot, home, picture, listed=None, **settings):
    """Use all parameters clicked on `picture` in the gallery, once the window's model scan has put the upscaler
    file `listed` in the hires list."""
    store = GalleryStore(home / "outputs", home / "cache" / "thumbnails")
    store.import_files([picture])
    store.close()
    window, gallery = open_gallery(make_window, qtbot, **settings)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=TIMEOUT)
    if listed:
        qtbot.waitUntil(lambda: window.panel.hires_upscaler.findText(listed) >= 0, timeout=TIMEOUT)
    gallery.select_row(0)
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    return window


def test_the_pictures_hires_upscaler_file_is_chosen_in_the_panel(make_window, qtbot, tmp_path, sfumato_home):
    webui = tmp_path / "webui"
    (webui / "models/Stable-diffusion").mkdir(parents=True)
    tiny_upscaler.build(webui / "models/ESRGAN/4x-ultrasharp.safetensors")  # another case than the picture's
    picture = a1111_picture(tmp_path, HIRES)
    window = use_all(make_window, qtbot, sfumato_home, picture, "4x-ultrasharp",
                     models_folders=[str(webui / "models/Stable-diffusion")])
    panel = window.panel
    qtbot.waitUntil(lambda: panel.prompt.toPlainText() == "a lighthouse at dusk", timeout=TIMEOUT)
    assert panel.hires_check.isChecked()
    assert panel.hires_upscaler.currentText() == "4x-ultrasharp"
    assert panel.request().hires.upscaler == "4x-ultrasharp"
    assert "hires upscaler" not in window.error_banner.text()


def test_a_hires_upscaler_with_no_file_stays_shown_with_a_note(make_window, qtbot, tmp_path, sfumato_home):
    picture = a1111_picture(tmp_path, HIRES)
    window = use_all(make_window, qtbot, sfumato_home, picture)
    panel = window.panel
    qtbot.waitUntil(lambda: panel.prompt.toPlainText() == "a lighthouse at dusk", timeout=TIMEOUT)
    assert panel.hires_check.isChecked()
    assert panel.hires_upscaler.currentText() == "4x-UltraSharp"
    assert panel.request().hires.upscaler == "4x-UltraSharp"
    qtbot.waitUntil(window.error_banner.isVisible, timeout=5000)
    assert window.error_banner.text() == (
        f"Missing hires upscaler: 4x-UltraSharp — put its file in {paths.models_dir() / 'upscalers'} (or an ESRGAN "
        "or upscale_models folder) and Sfumato will find it.")
