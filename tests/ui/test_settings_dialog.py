"""The Settings window as a person uses it, and the light/dark/system themes."""

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
)

from desktop.core import model_sources, paths
from desktop.core.settings import Settings
from desktop.ui import theme
from desktop.ui.settings_dialog import SettingsDialog

Role = QPalette.ColorRole
Group = QPalette.ColorGroup


@pytest.fixture
def pick_folder(monkeypatch):
    """Answer the next folder chooser with `folder` instead of opening a native dialog."""

    def pick(folder: Path | str) -> None:
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))

    return pick


def choose(qtbot, combo: QComboBox, value: str) -> None:
    """Pick an entry the way a keyboard user does: Home, then Down until it is there."""
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    for _ in range(combo.count()):
        if combo.currentData() == value:
            return
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentData() == value


def type_into(qtbot, edit: QLineEdit, text: str) -> None:
    qtbot.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)


def click(qtbot, button: QPushButton) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def click_row(qtbot, view: QListWidget, row: int) -> None:
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualItemRect(view.item(row)).center())


def own_folder_texts() -> list[str]:
    return [f"Sfumato models — {paths.models_dir()}", f"Hugging Face downloads — {model_sources.hub_cache_dir()}"]


def folder_texts(dialog: SettingsDialog) -> list[str]:
    return [dialog.folders_editor.list.item(row).text() for row in range(dialog.folders_editor.list.count())]


# -- editing ------------------------------------------------------------------------------------


def test_every_value_goes_from_its_widget_into_the_returned_settings(open_dialog, qtbot, pick_folder, tmp_path):
    original = Settings(model="/models/a.safetensors", batch_count=3, last_request={"prompt": "kept"})
    dialog = open_dialog(original)
    extra = tmp_path / "more models"
    extra.mkdir()
    output = tmp_path / "pictures" / "sfumato"

    choose(qtbot, dialog.device, "cpu")
    choose(qtbot, dialog.precision, "bf16")
    choose(qtbot, dialog.weight_storage, "int8")
    pick_folder(extra)
    click(qtbot, dialog.folders_editor.add_button)
    type_into(qtbot, dialog.output_folder, str(output))
    choose(qtbot, dialog.preview_method, "taesd")
    type_into(qtbot, dialog.preview_every.lineEdit(), "5")
    qtbot.keyClick(dialog.preview_every, Qt.Key.Key_Tab)
    choose(qtbot, dialog.theme, "dark")
    qtbot.waitUntil(lambda: dialog.ok_button.isEnabled())
    click(qtbot, dialog.ok_button)

    assert dialog.result() == QDialog.DialogCode.Accepted and not dialog.isVisible()
    edited = dialog.settings()
    assert (edited.device, edited.precision, edited.models_folders) == ("cpu", "bf16", [str(extra)])
    assert edited.weight_storage == "int8"
    assert (edited.output_folder, edited.preview_method, edited.preview_every) == (str(output), "taesd", 5)
    assert edited.theme == "dark"
    assert (edited.model, edited.batch_count, edited.last_request) == ("/models/a.safetensors", 3, {"prompt": "kept"})
    assert original == Settings(model="/models/a.safetensors", batch_count=3, last_request={"prompt": "kept"})
    assert not output.exists(), "checking the folder must not leave it (or its parents) behind"
    assert not (tmp_path / "pictures").exists()


def test_enter_accepts_even_right_after_typing(open_dialog, qtbot, tmp_path):
    dialog = open_dialog()
    type_into(qtbot, dialog.output_folder, str(tmp_path / "out"))
    qtbot.keyClick(dialog.output_folder, Qt.Key.Key_Return)  # before the delayed check has run
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.settings().output_folder == str(tmp_path / "out")


@pytest.mark.parametrize("how", ["Esc", "Cancel button"])
def test_cancel_changes_nothing(open_dialog, qtbot, pick_folder, tmp_path, how):
    original = Settings(device="cuda", models_folders=[str(tmp_path)], theme="light")
    dialog = open_dialog(original)
    choose(qtbot, dialog.device, "cpu")
    choose(qtbot, dialog.theme, "dark")
    pick_folder(tmp_path / "elsewhere")
    click(qtbot, dialog.folders_editor.add_button)
    if how == "Esc":
        qtbot.keyClick(dialog.device, Qt.Key.Key_Escape)
    else:
        click(qtbot, dialog.cancel_button)
    assert dialog.result() == QDialog.DialogCode.Rejected and not dialog.isVisible()
    assert original == Settings(device="cuda", models_folders=[str(tmp_path)], theme="light")


def test_restore_defaults_resets_every_value_shown(open_dialog, qtbot, tmp_path):
    changed = Settings(
        device="cpu", precision="fp32", weight_storage="int8", models_folders=[str(tmp_path)],
        output_folder=str(tmp_path),
        preview_method="off", preview_every=9, theme="dark", model="/models/keep.safetensors",
    )
    dialog = open_dialog(changed)
    assert not dialog.preview_every.isEnabled()  # no previews: nothing to space out
    click(qtbot, dialog.restore_button)
    assert dialog.isVisible(), "restoring defaults does not close the window"
    assert dialog.output_folder.text() == "" and dialog.output_folder.placeholderText() == str(paths.output_dir())
    assert folder_texts(dialog) == own_folder_texts()
    assert dialog.preview_every.isEnabled()
    click(qtbot, dialog.ok_button)
    assert dialog.settings() == Settings(model="/models/keep.safetensors")


# -- validation ---------------------------------------------------------------------------------


def test_an_output_folder_that_cannot_be_made_disables_ok_and_says_why(open_dialog, qtbot, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    dialog = open_dialog()
    assert dialog.ok_button.isEnabled() and not dialog.output_error.isVisible()

    type_into(qtbot, dialog.output_folder, str(blocker / "outputs"))
    qtbot.waitUntil(lambda: not dialog.ok_button.isEnabled())
    assert dialog.output_error.isVisible()
    assert str(blocker) in dialog.output_error.text() and "not a folder" in dialog.output_error.text()
    error = dialog.output_error
    qtbot.waitUntil(lambda: error.height() >= error.heightForWidth(error.width()))  # every line shows
    qtbot.keyClick(dialog.output_folder, Qt.Key.Key_Return)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted

    type_into(qtbot, dialog.output_folder, "relative/folder")
    qtbot.waitUntil(lambda: "full path" in dialog.output_error.text())
    assert not dialog.ok_button.isEnabled()

    type_into(qtbot, dialog.output_folder, str(tmp_path / "fine"))
    qtbot.waitUntil(lambda: dialog.ok_button.isEnabled())
    assert not dialog.output_error.isVisible()
    qtbot.keyClick(dialog.output_folder, Qt.Key.Key_Return)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_a_stored_output_folder_that_became_unusable_is_flagged_on_opening(open_dialog, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    dialog = open_dialog(Settings(output_folder=str(blocker)))
    assert dialog.output_error.isVisible() and not dialog.ok_button.isEnabled()


def test_fp16_on_the_cpu_is_refused(open_dialog, qtbot):
    dialog = open_dialog()
    choose(qtbot, dialog.device, "cpu")
    choose(qtbot, dialog.precision, "fp16")
    assert not dialog.ok_button.isEnabled() and dialog.engine_problem.isVisible()
    choose(qtbot, dialog.precision, "auto")
    assert dialog.ok_button.isEnabled() and not dialog.engine_problem.isVisible()
    assert dialog.engine_note.isVisible(), "a changed device says when it takes effect"


# -- models folders -----------------------------------------------------------------------------


def test_sfumatos_own_folders_are_first_and_cannot_be_removed(open_dialog, qtbot, pick_folder, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    dialog = open_dialog(Settings(models_folders=[str(mine)]))
    folders = dialog.folders_editor.list
    assert folder_texts(dialog) == [*own_folder_texts(), str(mine)]

    click_row(qtbot, folders, 0)
    assert folders.currentRow() == 0 and not dialog.folders_editor.remove_button.isEnabled()
    qtbot.keyClick(folders, Qt.Key.Key_Delete)
    assert folders.count() == 3

    pick_folder(mine)  # already listed: selected, not added twice
    click(qtbot, dialog.folders_editor.add_button)
    assert folders.count() == 3 and folders.currentRow() == 2
    pick_folder(tmp_path / "gone")
    click(qtbot, dialog.folders_editor.add_button)
    assert folder_texts(dialog)[3] == f"{tmp_path / 'gone'}  (not found)"

    click_row(qtbot, folders, 2)
    click(qtbot, dialog.folders_editor.remove_button)
    qtbot.keyClick(folders, Qt.Key.Key_Delete)  # the next one, now selected
    assert folders.count() == 2
    click(qtbot, dialog.ok_button)
    assert dialog.settings().models_folders == []


# -- look and keyboard --------------------------------------------------------------------------


def test_every_control_has_a_tooltip_and_no_text_is_clipped(open_dialog):
    dialog = open_dialog()
    controls = [
        w for kind in (QComboBox, QLineEdit, QSpinBox, QPushButton, QListWidget) for w in dialog.findChildren(kind)
        if not isinstance(w.parent(), (QAbstractSpinBox, QComboBox))  # their inner line edits
    ]
    assert len(controls) >= 12
    assert [w for w in controls if not w.toolTip()] == []
    for widget in [*dialog.findChildren(QLabel), *dialog.findChildren(QPushButton), *dialog.findChildren(QComboBox)]:
        if widget.isVisible() and not (isinstance(widget, QLabel) and widget.wordWrap()):
            assert widget.width() >= widget.sizeHint().width(), f"{widget.text() if hasattr(widget, 'text') else widget} is clipped"
    x_positions = {dialog.mapFromGlobal(field.mapToGlobal(field.rect().topLeft())).x() for field in
                   (dialog.device, dialog.precision, dialog.output_folder, dialog.preview_method, dialog.theme)}
    assert len(x_positions) == 1, "the fields of all groups start in one column"


# -- theme ----------------------------------------------------------------------------------------


def lightness(palette: QPalette, role, group=Group.Active) -> int:
    return palette.color(group, role).lightness()


def test_dark_theme_is_dark_readable_and_consistent(app_look):
    theme.apply_theme(app_look, "dark")
    palette = app_look.palette()
    assert app_look.style().name().lower() == "fusion"
    assert lightness(palette, Role.Window) < 80 and lightness(palette, Role.WindowText) > 200
    assert lightness(palette, Role.Base) < 80 and lightness(palette, Role.Text) > 200
    for text, background in [(Role.WindowText, Role.Window), (Role.Text, Role.Base), (Role.ButtonText, Role.Button),
                             (Role.PlaceholderText, Role.Base), (Role.ToolTipText, Role.ToolTipBase),
                             (Role.Link, Role.Base), (Role.Text, Role.AlternateBase)]:
        assert theme.contrast_ratio(palette.color(text), palette.color(background)) >= 4.5, (text, background)
    disabled = theme.contrast_ratio(palette.color(Group.Disabled, Role.Text), palette.color(Group.Disabled, Role.Base))
    assert 3 <= disabled < theme.contrast_ratio(palette.color(Role.Text), palette.color(Role.Base)) / 2
    assert palette.color(Role.Highlight) == theme.light_palette().color(Role.Highlight)


def test_light_theme_is_light(app_look):
    theme.apply_theme(app_look, "dark")
    theme.apply_theme(app_look, "light")
    palette = app_look.palette()
    assert lightness(palette, Role.Window) > 200 and lightness(palette, Role.WindowText) < 80
    assert lightness(palette, Role.Base) > 200 and lightness(palette, Role.Text) < 80
    assert not theme.is_dark(palette)


def test_applying_twice_is_harmless_and_connects_once(app_look):
    theme.apply_theme(app_look, "dark")
    once = QPalette(app_look.palette())
    theme.apply_theme(app_look, "dark")
    assert app_look.palette() == once
    assert len(app_look.findChildren(QObject, "sfumatoThemeFollower")) == 1
    with pytest.raises(ValueError):
        theme.apply_theme(app_look, "purple")


def test_system_theme_follows_the_os_colour_scheme(app_look):
    theme.apply_theme(app_look, "system")  # offscreen: the scheme is usually Unknown, which reads as light
    assert theme.is_dark(app_look.palette()) == (app_look.styleHints().colorScheme() == Qt.ColorScheme.Dark)
    hints = app_look.styleHints()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # as the OS does when the user switches
    assert theme.is_dark(app_look.palette())
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not theme.is_dark(app_look.palette())
    theme.apply_theme(app_look, "light")
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # an explicit choice ignores the OS
    assert not theme.is_dark(app_look.palette())


def test_the_ai_mark_is_on_by_default_and_its_box_says_why_and_turns_it_off(open_dialog, qtbot):
    dialog = open_dialog(Settings())
    assert dialog.mark_ai.isChecked() and "article 50" in dialog.mark_ai.toolTip()
    assert dialog.mark_ai.isVisible() and dialog.mark_ai.width() >= dialog.mark_ai.sizeHint().width()
    qtbot.mouseClick(dialog.mark_ai, Qt.MouseButton.LeftButton, pos=dialog.mark_ai.rect().center())
    click(qtbot, dialog.ok_button)
    assert dialog.settings().mark_ai is False
    again = open_dialog(Settings(mark_ai=False))
    assert not again.mark_ai.isChecked()
    click(qtbot, again.restore_button)
    assert again.mark_ai.isChecked()
