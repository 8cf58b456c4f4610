"""GenerationKeys: the keys of a generation work wherever the focus is.

Esc cancels the running job; Enter accepts, Delete discards, Left/Right
step through the results staged on the canvas and C compares the shown one
with the picture before. Shortcuts and key presses
follow the focus, so they failed where the focus happened to be: after a
menu was closed with Esc the menu bar kept the focus and ate the next Esc,
and after a click on Generate a spin box took Right and Enter. One
application-wide event filter sees these keys before any widget or
shortcut, and acts on them when there is something to act on, in this
window, unless the person is typing:

- A text field (line edit, prompt box) keeps Enter, Delete, Left and Right.
  Esc still cancels there, as a text field has no use for it, except in a
  field edited in place (renaming a layer), where Esc undoes the edit.
- A spin box gives them to the staged results, because the person has moved
  on from it (they clicked Generate); once they type into it again, it keeps
  them, until the next results arrive. Delete on its selected text clears
  the text (and counts as typing): dropping a result by mistake costs more
  than a cleared box, which refills when it loses the focus.
- A list or grid (the queue, the layers, the gallery) keeps Delete for its
  own items: on the queue it removes the selected waiting job.
- Menus, drop-down lists and dialogs are windows of their own, so they keep
  every key (Esc closes a menu; it does not cancel the run).
- The results' keys work while the canvas is shown, not on the Gallery tab.

This filter is the only route for these keys: the canvas has no shortcuts
of its own for them (desktop/ui/canvas/generation.py).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QMenuBar,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

from .canvas.generation import CanvasGeneration
from .compare_view import CompareView

_Key = Qt.Key
_STAGING_KEYS = {_Key.Key_Return, _Key.Key_Enter, _Key.Key_Delete, _Key.Key_Left, _Key.Key_Right, _Key.Key_C}
_EDITING_KEYS = {_Key.Key_Delete, _Key.Key_Backspace}  # they type, though their text may be empty


class GenerationKeys(QObject):
    """Installed on the application for `window`; `running()` says whether Esc has a job to cancel."""

    def __init__(self, window: QWidget, generation: CanvasGeneration, running: Callable[[], bool],
                 cancel: Callable[[], None]):
        super().__init__(window)
        self.window = window
        self.generation = generation
        self.running = running
        self.cancel = cancel
        self._typed_in: QAbstractSpinBox | None = None  # the spin box typed into since the last results came
        self._staged = 0
        generation.staging_changed.connect(self._staging_changed)
        QApplication.instance().installEventFilter(self)

    def _staging_changed(self, count: int) -> None:
        if count > self._staged:  # new results: the spin box edited before Generate is done with
            self._typed_in = None
        self._staged = count

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return False
        if not isinstance(watched, QWidget) or watched.window() is not self.window:
            return False  # another window: a menu, a drop-down list, a dialog
        action = self._action(event)
        if action is None:
            if kind == QEvent.Type.KeyPress and (event.text() or event.key() in _EDITING_KEYS):
                self._note_typing()
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # ours: no shortcut takes it, and the key press comes to this filter
            return True
        action()
        # The menu bar, left highlighted by a menu closed with Esc, also lets go of the keyboard.
        return not (event.key() == _Key.Key_Escape and isinstance(watched, QMenuBar))

    def _action(self, event) -> Callable[[], object] | None:
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return None  # Ctrl+Enter generates, Shift+Delete clears a layer...
        key = event.key()
        if key == _Key.Key_Escape:
            focus = QApplication.focusWidget()
            if _in_place_editor(focus) or isinstance(focus, CompareView):  # Esc gives up the edit / closes it
                return None
            return self.cancel if self.running() else None
        if key not in _STAGING_KEYS or not self.generation.staged or not self.generation.view.isVisible():
            return None
        if self._typing(QApplication.focusWidget(), key):
            return None
        if key in (_Key.Key_Return, _Key.Key_Enter):
            return self.generation.accept
        if key == _Key.Key_Delete:
            return self.generation.discard
        if key == _Key.Key_C:
            return self.generation.toggle_compare
        return lambda: self.generation.step(-1 if key == _Key.Key_Left else 1)

    def _typing(self, widget: QWidget | None, key: Qt.Key) -> bool:
        """Whether `widget` keeps `key` for itself."""
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), QAbstractSpinBox):
            widget = widget.parent()
        if isinstance(widget, QAbstractSpinBox):
            return widget is self._typed_in or (key == _Key.Key_Delete and widget.lineEdit().hasSelectedText())
        if isinstance(widget, QAbstractItemView):
            return key == _Key.Key_Delete
        if isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit)):
            return not widget.isReadOnly()
        return isinstance(widget, QComboBox) and widget.isEditable()

    def _note_typing(self) -> None:
        widget = QApplication.focusWidget()
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), QAbstractSpinBox):
            widget = widget.parent()
        if isinstance(widget, QAbstractSpinBox):
            self._typed_in = widget


def _in_place_editor(widget: QWidget | None) -> bool:
    """A field opened over an item of a list (a layer's name): Esc there gives up the edit."""
    if not isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit)):
        return False
    while widget is not None:
        if isinstance(widget, QAbstractItemView):
            return True
        widget = widget.parentWidget()
    return False
