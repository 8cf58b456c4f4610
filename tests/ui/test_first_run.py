"""The first start: the welcome offers other apps' model folders, a file, a download or the demo."""


from PySide6.QtCore import Qt

from desktop.core import settings as settings_store
from desktop.core.brush import Brush
from desktop.core.model_sources import Source
from desktop.ui.welcome import WelcomeDialog

TIMEOUT = 60_000


def test_welcome_lists_other_apps_folders_and_adds_the_ticked_ones(make_window, qtbot, tmp_path):
    a1111 = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    comfy = tmp_path / "ComfyUI" / "models" / "checkpoints"
    for folder in (a1111, comfy):
        folder.mkdir(parents=True)
    window = make_window(welcome_done=False)
    dialog = WelcomeDialog(window, detect=lambda: [Source("AUTOMATIC1111", a1111), Source("ComfyUI", comfy)])
    qtbot.addWidget(dialog)
    dialog.folders_chosen.connect(window._welcome_folders)
    dialog.finished.connect(window._welcome_done)
    dialog.open()
    qtbot.waitUntil(lambda: dialog.found.count() == 2, timeout=5000)
    assert "AUTOMATIC1111" in dialog.found.item(0).text()
    dialog.found.item(1).setCheckState(Qt.CheckState.Unchecked)
    qtbot.mouseClick(dialog.use_found, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    stored = settings_store.load()
    assert stored.models_folders == [str(a1111)] and stored.welcome_done


def test_the_welcome_names_every_family_sfumato_paints_with(make_window, qtbot):
    from PySide6.QtWidgets import QLabel

    dialog = WelcomeDialog(make_window(welcome_done=False), detect=lambda: [])
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "No other" in dialog.found_label.text(), timeout=10_000)
    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    for name in ("SD 1.x", "SD 2.x", "SDXL", "SD 3.5", "FLUX.1", "FLUX.2 [klein]", "Z-Image", ".gguf"):
        assert name in text, name


def test_the_first_start_shows_the_welcome_and_the_demo_button_closes_it(make_window, qtbot):
    window = make_window(welcome_done=False)
    window.show_welcome()
    dialog = window.welcome
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: "No other" in dialog.found_label.text() or dialog.found.count() > 0, timeout=10_000)
    qtbot.mouseClick(dialog.demo, Qt.MouseButton.LeftButton)
    assert settings_store.load().welcome_done and not dialog.isVisible()


def test_welcome_download_opens_the_models_window_at_the_download(make_window, qtbot, monkeypatch):
    from desktop.ui.models import ModelsDialog

    opened = []
    monkeypatch.setattr(ModelsDialog, "exec", lambda self: opened.append(self.download.isVisibleTo(self)) or 0)
    window = make_window(welcome_done=False)
    window.show_welcome()
    qtbot.mouseClick(window.welcome.download, Qt.MouseButton.LeftButton)
    assert opened == [True]


def test_an_unexpected_error_shows_where_the_report_is_and_autosaves(make_window, qtbot):
    from desktop import diagnostics
    from desktop.core import autosave

    window = make_window()
    window.layers.new_layer("image")
    stroke = window.doc.begin_stroke(window.doc.active, Brush())
    stroke.to(10, 10)
    stroke.finish()
    try:
        raise RuntimeError("a bug in a slot")
    except RuntimeError as error:
        report = diagnostics.write_crash_report(type(error), error, error.__traceback__)
    window.crash_reported.emit(report, "RuntimeError: a bug in a slot")
    qtbot.waitUntil(lambda: window.crash_box is not None and window.crash_box.isVisible(), timeout=5000)
    assert str(report) in window.crash_box.text() and str(report) in window.error_banner.text()
    qtbot.waitUntil(autosave.exists, timeout=10_000)
    window.crash_box.accept()
