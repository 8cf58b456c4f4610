"""The one editor of the models folders, as the Models window and the Settings window both show it."""

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from desktop.core import model_sources, paths
from desktop.core import settings as settings_store
from desktop.core.settings import Settings
from desktop.ui.models import ModelsDialog
from desktop.ui.models.folders import FolderListEditor
from desktop.ui.settings_dialog import SettingsDialog

TIMEOUT = 20_000


@pytest.fixture
def models_window(qtbot):
    def make(folders: list[str]) -> tuple[FolderListEditor, list[str]]:
        settings = settings_store.load()
        settings.models_folders = folders
        dialog = ModelsDialog(settings, in_use="demo")
        qtbot.addWidget(dialog)
        qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT)
        return dialog.folders_editor, dialog.folders

    return make


@pytest.fixture
def settings_window(qtbot):
    def make(folders: list[str]) -> tuple[FolderListEditor, list[str]]:
        dialog = SettingsDialog(Settings(models_folders=folders))
        qtbot.addWidget(dialog)
        return dialog.folders_editor, lambda: dialog.settings().models_folders

    return make


def test_both_windows_edit_the_folders_with_the_same_widget(models_window, settings_window):
    (in_models, _), (in_settings, _) = models_window([]), settings_window([])
    assert type(in_models) is type(in_settings) is FolderListEditor
    texts = [[editor.list.item(r).text() for r in range(editor.list.count())] for editor in (in_models, in_settings)]
    assert texts[0] == texts[1] == [f"Sfumato models — {paths.models_dir()}",
                                    f"Hugging Face downloads — {model_sources.hub_cache_dir()}"]


@pytest.mark.parametrize("window", ["models_window", "settings_window"])
def test_the_same_folder_typed_another_way_is_not_added_twice(window, request, qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    editor, folders = request.getfixturevalue(window)([str(folder)])

    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    for spelling in (f"{folder}/", "~/checkpoints", str(tmp_path / "x" / ".." / "checkpoints"), str(link),
                     f"{paths.models_dir()}/", str(model_sources.hub_cache_dir())):
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, s=spelling, **kwargs: s)
        qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
        assert folders() == [str(folder)], spelling
        assert editor.list.count() == 3

    assert editor.list.currentItem().data(Qt.ItemDataRole.UserRole) == str(model_sources.hub_cache_dir())
    other = tmp_path / "loras"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: f"{other}/")
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    assert folders() == [str(folder), str(other)]


def test_adding_several_skips_those_listed_and_repeated(qtbot, tmp_path):
    listed = tmp_path / "a"
    editor = FolderListEditor([str(listed)])
    qtbot.addWidget(editor)
    with qtbot.waitSignal(editor.changed) as changed:
        added = editor.add_folders([f"{listed}/", str(tmp_path / "b"), f"{tmp_path / 'b'}/", str(paths.models_dir())])
    assert added == [str(tmp_path / "b")]
    assert changed.args == [[str(listed), str(tmp_path / "b")]]
    with qtbot.assertNotEmitted(editor.changed):
        assert editor.add_folders([str(Path(listed))]) == []
