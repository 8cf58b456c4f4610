"""Bind a widget to one field of a GenerationSettings (desktop/core/generation_settings.py), both ways.

The widget's edits set the field; the field's changes (from anywhere: a
rule between fields, "Use all parameters", the frame) show in the widget.
No feedback loop: the widget is written only when it shows something else,
with its signals blocked, so a value pushed from the model never comes back
as an edit (and the panel's "the user edited this" signals stay quiet).
A spin box takes its range from the field.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QPlainTextEdit, QSpinBox, QWidget

from desktop.core.generation_settings import GenerationSettings


def bind(settings: GenerationSettings, name: str, widget: QWidget, signal, read: Callable[[], object],
         write: Callable[[object], None]) -> None:
    """The general form: `signal` says the widget changed, `read` gets its value, `write` shows one."""

    def to_model(*_args) -> None:
        value = read()
        if value is not None:  # None: a combo box being refilled
            settings.set(name, value)

    def to_widget(changed: str, value: object) -> None:
        if changed != name or read() == value:
            return
        blocked = widget.blockSignals(True)
        try:
            write(value)
        finally:
            widget.blockSignals(blocked)

    signal.connect(to_model)
    settings.changed.connect(to_widget)
    to_widget(name, settings.get(name))


def bind_spin(settings: GenerationSettings, name: str, box: QSpinBox | QDoubleSpinBox) -> None:
    field = settings.field(name)
    box.setRange(field.low, field.high)
    bind(settings, name, box, box.valueChanged, box.value, box.setValue)


def bind_text(settings: GenerationSettings, name: str, edit: QPlainTextEdit) -> None:
    bind(settings, name, edit, edit.textChanged, edit.toPlainText, edit.setPlainText)


def bind_check(settings: GenerationSettings, name: str, button: QAbstractButton) -> None:
    bind(settings, name, button, button.toggled, button.isChecked, button.setChecked)


def bind_combo_text(settings: GenerationSettings, name: str, combo: QComboBox) -> None:
    bind(settings, name, combo, combo.currentTextChanged, combo.currentText, combo.setCurrentText)


def bind_combo_data(settings: GenerationSettings, name: str, combo: QComboBox,
                    key: Callable[[object], object] = lambda data: data) -> None:
    """A combo box whose items carry data; `key` picks the field's value out of an item's data."""

    def read() -> object:
        data = combo.currentData()
        return None if data is None else key(data)

    def write(value: object) -> None:
        index = next((i for i in range(combo.count()) if key(combo.itemData(i)) == value), -1)
        if index >= 0:
            combo.setCurrentIndex(index)

    bind(settings, name, combo, combo.currentIndexChanged, read, write)
