"""The prompt panel's Hires fix group: bound to the settings, shut when off, text to image only, and the window fits."""

import pytest
from PySide6.QtWidgets import QScrollArea

from desktop.core.gallery.metadata import meta_from_chunks, to_request
from desktop.core.request import Mode
from tests.core.test_hires import A1111_HIRES
from tests.ui.test_prompt_panel_binding import make_panel
from tests.ui.test_window_fit import (  # noqa: F401 - window is the fixture
    SCREEN_H, SCREEN_W, TITLE_BAR, fit_to_screen, fully_shown, needed, set_mode, window)


def test_the_group_is_shut_until_checked_and_its_values_make_the_request(qtbot):
    panel = make_panel(qtbot)
    assert panel.hires_check.isVisible() and not panel.hires_body.isVisible()  # one line while off
    assert not panel.request().hires.enabled
    panel.hires_check.setChecked(True)  # as a click does
    assert panel.hires_body.isVisible()
    assert panel.hires_steps.text() == "Same as Steps"  # 0, as A1111's Hires steps
    panel.hires_upscaler.setCurrentText("Lanczos")
    panel.hires_scale.setValue(1.5)
    panel.hires_steps.setValue(10)
    panel.hires_denoise.setValue(0.45)
    hires = panel.request().hires
    assert (hires.enabled, hires.upscaler, hires.scale, hires.steps, hires.denoise) == (True, "Lanczos", 1.5, 10, 0.45)
    assert "hires fix makes it 768x768" in panel.mode_label.text()  # 512 x 1.5
    panel.hires_check.setChecked(False)
    assert not panel.hires_body.isVisible() and not panel.request().hires.enabled
    assert "hires" not in panel.mode_label.text()


def test_use_all_parameters_of_an_a1111_hires_picture_opens_the_group_with_its_values(qtbot):
    panel = make_panel(qtbot)
    panel.set_request(to_request(meta_from_chunks({"parameters": A1111_HIRES}), panel.request()))
    assert panel.hires_check.isChecked() and panel.hires_body.isVisible()
    assert (panel.hires_upscaler.currentText(), panel.hires_scale.value(), panel.hires_steps.value(),
            panel.hires_denoise.value()) == ("Latent (nearest-exact)", 2.0, 10, 0.45)
    assert "1024x1536" in panel.mode_label.text()


@pytest.mark.parametrize("mode", [Mode.IMG2IMG, Mode.INPAINT, Mode.OUTPAINT])
def test_other_modes_cannot_use_it_and_say_so(qtbot, mode):
    panel = make_panel(qtbot)
    panel.settings.hires_enabled = True
    panel.set_mode(mode)
    assert not panel.hires_check.isEnabled() and not panel.hires_body.isEnabled()
    assert "text to image only" in panel.hires_check.text()
    assert "hires" not in panel.mode_label.text()
    panel.set_mode(Mode.TXT2IMG)
    assert panel.hires_check.isEnabled() and panel.hires_check.text() == "Hires fix"


@pytest.mark.parametrize("opened", [False, True])
def test_the_window_fits_1280x720_with_the_group_open_or_shut(window, qtbot, opened):
    set_mode(window, qtbot, Mode.TXT2IMG)
    window.panel.settings.hires_enabled = opened
    qtbot.wait(20)
    size = needed(window)
    assert size.width() <= SCREEN_W and size.height() <= SCREEN_H - TITLE_BAR, size
    fit_to_screen(window, qtbot)
    assert fully_shown(window, window.panel.generate_button)
    scroll = window.panel.findChild(QScrollArea)  # it never scrolls sideways: nothing may be wider than it
    assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width()


def test_the_upscaler_files_and_the_demo_upscaler_are_hires_choices(make_window, qtbot, fake_backend):
    from desktop.core import paths
    from desktop.engine import tiny_upscaler

    tiny_upscaler.build(paths.models_dir() / "upscalers" / "4x-Tiny.safetensors")
    tiny_upscaler.build_restorer(paths.models_dir() / "upscalers" / "1x-Denoise.safetensors")
    window = make_window()
    panel = window.panel
    qtbot.waitUntil(lambda: panel.hires_upscaler.findText("4x-Tiny") >= 0, timeout=5000)
    items = [panel.hires_upscaler.itemText(i) for i in range(panel.hires_upscaler.count())]
    assert items[-3:] == ["Nearest", "Demo upscaler", "4x-Tiny"], "a restorer (scale 1) is no hires upscaler"
    panel.hires_check.setChecked(True)
    panel.hires_upscaler.setCurrentText("4x-Tiny")
    assert panel.request().hires.upscaler == "4x-Tiny"
    panel.set_hires_upscalers(["4x-Tiny", "2x-Other"])  # a rescan keeps the choice
    assert panel.hires_upscaler.currentText() == "4x-Tiny" and panel.request().hires.upscaler == "4x-Tiny"
