"""Generation keys wherever the focus is: Esc cancels, Enter accepts, Delete discards, Left/Right step.

Keys are sent as a person's keyboard sends them: to the widget that has the focus. Jobs run on the
FakeBackend (tests/support/fake_backend.py), so they take milliseconds.
"""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication


from tests.support.requests import make_request

TIMEOUT = 60_000


def small(window, **fields):
    base = {"prompt": "", "steps": 2, "width": 64, "height": 64, "seed": 3, "sampler": "Euler a",
            "schedule": "Automatic", "batch_size": 3}
    window.panel.set_request(make_request(**{**base, **fields}))


def press(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier):
    """A key from the keyboard: it goes to the focused widget (or the active popup, such as an open menu)."""
    target = QApplication.activePopupWidget() or QApplication.focusWidget() or window
    qtbot.keyClick(target, key, modifier)


def click_generate(qtbot, window):
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        qtbot.mouseClick(window.panel.generate_button, Qt.MouseButton.LeftButton)
    assert len(window.generation.staged) == 3 and window.generation.current == 0


@pytest.mark.qt_log_ignore("does not support raise", "does not support grabbing", extend=True)  # offscreen menus
def test_esc_cancels_a_run_after_a_menu_was_closed_with_esc(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.05  # a run that lasts 3 s unless it is cancelled
    window = make_window()
    small(window, steps=60, batch_size=1)
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append(i))
    job, = window.generate()
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=TIMEOUT)
    bar = window.menuBar()
    menu = next(action for action in bar.actions() if action.text() == "&Generate")
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(menu).center())
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is not None, timeout=5000)
    with qtbot.assertNotEmitted(window.worker.job_cancelled, wait=50):
        press(qtbot, window, Qt.Key.Key_Escape)  # closes the menu, and only that
    assert QApplication.activePopupWidget() is None
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT) as cancelled:
        press(qtbot, window, Qt.Key.Key_Escape)
    assert cancelled.args == [job] and len(steps) < 60


def test_after_clicking_generate_enter_accepts_and_right_steps(make_window, fake_backend, qtbot):
    window = make_window()
    small(window)
    click_generate(qtbot, window)
    generation = window.generation
    press(qtbot, window, Qt.Key.Key_Right)
    assert generation.current == 1 and "2 of 3" in generation.bar.label.text()
    press(qtbot, window, Qt.Key.Key_Delete)
    assert len(generation.staged) == 2
    press(qtbot, window, Qt.Key.Key_Left)
    assert generation.current == 0
    layers = len(window.doc.layers)
    press(qtbot, window, Qt.Key.Key_Return)
    assert generation.staged == [] and len(window.doc.layers) == layers + 1


def test_a_spin_box_edited_before_generate_gives_the_keys_to_the_results_until_typed_in(make_window, fake_backend,
                                                                                       qtbot):
    window = make_window()
    small(window)
    box = window.panel.steps
    qtbot.mouseClick(box.lineEdit(), Qt.MouseButton.LeftButton)
    box.selectAll()
    qtbot.keyClicks(box, "2")
    assert box.hasFocus()
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        press(qtbot, window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # generate
    assert box.hasFocus() and len(window.generation.staged) == 3
    press(qtbot, window, Qt.Key.Key_Right)
    assert window.generation.current == 1, "Right steps the results, not the spin box's cursor"
    box.lineEdit().setCursorPosition(1)
    qtbot.keyClick(box, Qt.Key.Key_Backspace)
    qtbot.keyClicks(box, "3")
    press(qtbot, window, Qt.Key.Key_Left)  # the box is being typed in again: it keeps its keys
    assert window.generation.current == 1 and box.lineEdit().cursorPosition() == 0


def test_while_typing_in_the_prompt_the_arrows_and_delete_edit_the_text(make_window, fake_backend, qtbot):
    window = make_window()
    small(window)
    click_generate(qtbot, window)
    prompt = window.panel.prompt
    qtbot.mouseClick(prompt.viewport(), Qt.MouseButton.LeftButton)
    qtbot.keyClicks(prompt, "a cat")
    press(qtbot, window, Qt.Key.Key_Left)
    press(qtbot, window, Qt.Key.Key_Left)
    assert prompt.textCursor().position() == 3 and window.generation.current == 0
    press(qtbot, window, Qt.Key.Key_Delete)
    press(qtbot, window, Qt.Key.Key_Right)
    assert prompt.toPlainText() == "a ct" and prompt.textCursor().position() == 4
    assert len(window.generation.staged) == 3 and window.generation.current == 0


def choose_a_waiting_job(qtbot, window, fake_backend):
    """Start a 3 s run, queue another behind it and click that one in the queue list; returns the list."""
    fake_backend.step_delay = 0.05
    small(window, prompt="running", steps=60, batch_size=1)
    window.generate()
    small(window, prompt="waiting", batch_size=1)
    window.generate()
    queue = window.queue.list
    qtbot.waitUntil(lambda: queue.count() == 1, timeout=TIMEOUT)
    qtbot.mouseClick(queue.viewport(), Qt.MouseButton.LeftButton, pos=queue.visualItemRect(queue.item(0)).center())
    return queue


def test_delete_on_the_queue_list_removes_the_waiting_job_and_keeps_the_results(make_window, fake_backend, qtbot):
    window = make_window()
    small(window)
    click_generate(qtbot, window)
    queue = choose_a_waiting_job(qtbot, window, fake_backend)
    assert queue.hasFocus() and queue.currentRow() == 0
    press(qtbot, window, Qt.Key.Key_Delete)
    assert queue.count() == 0, "Delete on the queue removes the selected waiting job"
    assert len(window.generation.staged) == 3, "and leaves the results on the canvas alone"
    window.cancel()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)


def test_delete_on_a_spin_box_s_selected_text_clears_it_and_keeps_the_results(make_window, fake_backend, qtbot):
    window = make_window()
    small(window)
    click_generate(qtbot, window)
    box = window.panel.steps
    qtbot.mouseClick(box.lineEdit(), Qt.MouseButton.LeftButton)
    box.selectAll()
    press(qtbot, window, Qt.Key.Key_Delete)
    assert box.lineEdit().text() == "" and len(window.generation.staged) == 3
    qtbot.keyClicks(box, "5")
    press(qtbot, window, Qt.Key.Key_Left)  # still typing in it: the box keeps its keys
    assert box.value() == 5 and window.generation.current == 0


def test_delete_elsewhere_leaves_a_job_selected_in_the_queue(make_window, fake_backend, qtbot):
    window = make_window()
    queue = choose_a_waiting_job(qtbot, window, fake_backend)
    window.canvas.setFocus()
    qtbot.waitUntil(window.canvas.hasFocus, timeout=TIMEOUT)
    press(qtbot, window, Qt.Key.Key_Delete)
    assert queue.count() == 1, "Delete on the canvas leaves the job selected in the queue"
    window.cancel()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)
