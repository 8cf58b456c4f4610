"""The window fits a 1280x720 laptop screen, with every control on it, and nothing moves under the pointer.

No generation runs here: the window is built without starting the engine, and
the queue is shown the jobs it would get from the worker.
"""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractButton

from desktop.core import settings as settings_store
from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.geometry import Bounds
from desktop.core.request import Mode
from tests.support.requests import make_request

SCREEN_W, SCREEN_H = 1280, 720
TITLE_BAR = 30  # what a window manager's title bar takes from the screen's height


@pytest.fixture
def window(qtbot):
    from desktop.ui.main_window import MainWindow

    settings = settings_store.load()
    settings.welcome_done = True
    settings.model = "demo"
    window = MainWindow(settings)
    window.worker_model = "demo"  # as if loaded: the model scan starts no engine, these tests need none
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()


def set_mode(window, qtbot, mode: Mode) -> None:
    """Give the canvas frame what makes `mode` (the way a person would: a picture, a mask, a moved frame)."""
    if mode is not Mode.TXT2IMG:
        picture = np.full((512, 512, 3), 120, np.uint8)
        doc = CanvasDocument.from_image(picture, "photo")
        window.files.set_document(doc)
        if mode is Mode.INPAINT:
            stroke = doc.begin_stroke(doc.masks()[0], Brush(size=60, colour=(255, 255, 255)))
            for x in range(150, 350, 5):
                stroke.to(x, 200)
            stroke.finish()
        elif mode is Mode.OUTPAINT:
            frame = doc.frame
            doc.set_frame(Bounds(frame.x + 200, frame.y, frame.width, frame.height))
    window._update_mode()
    assert window.panel.mode is mode
    qtbot.wait(20)


def jobs(count: int) -> list:
    return [(i, make_request(prompt=f"job {i}", steps=30)) for i in range(1, count + 1)]


def fit_to_screen(window, qtbot) -> None:
    """Size the window to the screen, as maximising does (it cannot get smaller than its minimum)."""
    window.move(0, 0)
    window.resize(SCREEN_W, SCREEN_H - TITLE_BAR)
    qtbot.wait(50)  # the layouts settle


def needed(window):
    """The smallest size the window can take."""
    return window.minimumSizeHint().expandedTo(window.minimumSize())


def fully_shown(window, widget) -> bool:
    """The widget is shown, lies on the 1280x720 screen, and no scroll area or splitter cuts it off."""
    if not widget.isVisible():
        return False
    box = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    screen = QRect(0, 0, SCREEN_W, SCREEN_H - TITLE_BAR).intersected(window.rect())
    return screen.contains(box) and widget.visibleRegion().boundingRect() == widget.rect()


@pytest.mark.parametrize("mode", [Mode.TXT2IMG, Mode.INPAINT, Mode.OUTPAINT])
def test_the_window_fits_a_1280x720_screen_in_each_mode(window, qtbot, mode):
    set_mode(window, qtbot, mode)
    window.queue.set_jobs(jobs(3))
    size = needed(window)
    assert size.width() <= SCREEN_W and size.height() <= SCREEN_H - TITLE_BAR, size


def test_the_window_fits_a_1280x720_screen_on_the_gallery_tab(window, qtbot):
    window.tabs.setCurrentIndex(1)
    window.queue.set_jobs(jobs(3))
    qtbot.wait(20)
    size = needed(window)
    assert size.width() <= SCREEN_W and size.height() <= SCREEN_H - TITLE_BAR, size


def test_a_long_error_does_not_widen_the_window(window, qtbot):
    window.show_error("The model could not be loaded: " + "a long reason that goes on and on, " * 20)
    qtbot.wait(20)
    assert needed(window).width() <= SCREEN_W
    fit_to_screen(window, qtbot)
    assert fully_shown(window, window.error_banner)
    qtbot.mouseClick(window.error_banner, Qt.MouseButton.LeftButton)
    assert not window.error_banner.isVisible()


def test_the_layers_panel_can_be_closed_and_stays_closed_until_asked_for(window, qtbot):
    window.layers_dock.close()
    window.tabs.setCurrentIndex(1)
    window.tabs.setCurrentIndex(0)
    assert not window.layers_dock.isVisible() and not window.layers_action.isChecked()
    window.layers_action.trigger()  # View > Layers panel
    assert window.layers_dock.isVisible()
    window.tabs.setCurrentIndex(1)
    assert not window.layers_dock.isVisible() and not window.layers_action.isEnabled()
    window.tabs.setCurrentIndex(0)
    assert window.layers_dock.isVisible()


@pytest.mark.parametrize("mode", [Mode.TXT2IMG, Mode.INPAINT, Mode.OUTPAINT])
def test_at_1280x720_generate_and_cancel_are_on_screen(window, qtbot, mode):
    set_mode(window, qtbot, mode)
    fit_to_screen(window, qtbot)
    for button in (window.panel.generate_button, window.cancel_button):
        assert fully_shown(window, button), button.text()


def test_at_1280x720_every_button_of_the_canvas_tab_is_on_screen(window, qtbot):
    set_mode(window, qtbot, Mode.INPAINT)
    window.queue.set_jobs(jobs(4))
    window.layers.add_control("canny")  # its settings show under the layer list, and must fit too
    fit_to_screen(window, qtbot)
    groups = {"layers": window.layers, "queue": window.queue, "tools": window.tool_bar}
    for name, group in groups.items():
        buttons = group.findChildren(QAbstractButton)
        assert buttons, name
        hidden = [b.text() or b.toolTip() for b in buttons if not fully_shown(window, b)]
        assert not hidden, f"{name}: {hidden}"
    assert fully_shown(window, window.layers.opacity)


def test_at_1280x720_every_button_of_the_gallery_is_on_screen(window, qtbot):
    window.tabs.setCurrentIndex(1)
    window.queue.set_jobs(jobs(2))
    fit_to_screen(window, qtbot)
    hidden = [key for key, button in window.gallery.buttons.items() if not fully_shown(window, button)]
    assert not hidden
    for button in window.queue.findChildren(QAbstractButton):
        assert fully_shown(window, button), button.text()


def test_removing_a_queued_job_moves_no_button(window, qtbot):
    fit_to_screen(window, qtbot)
    watched = [window.cancel_button, window.queue.remove_button, window.panel.generate_button]

    def places():
        qtbot.wait(20)
        return [b.mapTo(window, QPoint(0, 0)).toTuple() for b in watched]

    window._queue_changed(jobs(2))
    with_jobs = places()
    window._queue_changed(jobs(1))
    assert places() == with_jobs
    window._queue_changed([])  # the last one removed: the list empties
    assert places() == with_jobs


def test_a_long_status_line_stops_short_of_the_device_label(window, qtbot):
    fit_to_screen(window, qtbot)
    window.device_label.setText("Device: CPU (AVX512, 2 threads), bfloat16")
    text = "Saved to /home/someone/Pictures/Sfumato/" + "MMMMMMMMMM" * 40
    window.statusBar().showMessage(text)
    qtbot.wait(50)
    bar, label = window.statusBar(), window.device_label
    assert label.width() >= label.sizeHint().width()  # the device label shows all of its text
    image = bar.grab().toImage()
    background = bar.palette().window().color()
    gap = range(label.x() - 6, label.x() - 1)  # just left of the label: the message must not reach it
    inked = [x for x in gap for y in range(image.height())
             if _differs(QColor(image.pixel(round(x * image.devicePixelRatio()), y)), background)]
    assert not inked, "the message runs into the Device label"
    assert text in bar.toolTip()  # the whole line, to read on hovering


def _differs(a: QColor, b: QColor) -> bool:
    return max(abs(a.red() - b.red()), abs(a.green() - b.green()), abs(a.blue() - b.blue())) > 40
