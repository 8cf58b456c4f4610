"""The Models window as a person uses it: see the models, add and remove folders,
find other apps' models, download from a (local stand-in) Hub, cancel, retry, choose."""

from __future__ import annotations

import functools
import json
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog

from desktop.core import model_sources, paths
from desktop.core import settings as settings_store
from desktop.ui.models import dialog as models_dialog
from desktop.ui.models import ModelsDialog
from desktop.ui.models.table import ModelTableModel
from tests.support.hub_server import HubServer

TIMEOUT = 30_000
REPO = "acme/tiny-diffusers"
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(autouse=True)
def no_threads_left():
    before = set(threading.enumerate())
    yield
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def open_dialog(qtbot):
    """Open a ModelsDialog and wait for its first scan; closes it after the test."""
    dialogs = []

    def open_(settings=None, **kwargs) -> ModelsDialog:
        dialog = ModelsDialog(settings or settings_store.load(), **kwargs)
        qtbot.addWidget(dialog)
        with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
            dialog.show()
        qtbot.waitExposed(dialog)
        dialog.activateWindow()
        qtbot.waitActive(dialog)  # shortcuts only work in the active window
        dialogs.append(dialog)
        return dialog

    yield open_
    for dialog in dialogs:
        dialog.close()
        assert not dialog.is_busy(), "a background job is still running after close"


def copy(source: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target


def truncated_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes()[:4000])  # the header says more bytes than are there
    return target


def rows(dialog: ModelsDialog) -> dict[str, dict[str, str]]:
    """What the table shows: name -> column -> text, in the view's order."""
    proxy, shown = dialog.table.proxy, {}
    for row in range(proxy.rowCount()):
        texts = [proxy.index(row, c).data() for c in range(proxy.columnCount())]
        shown[texts[0]] = dict(zip(ModelTableModel.COLUMNS, texts, strict=True))
    return shown


def row_of(dialog: ModelsDialog, name: str) -> int:
    return next(r for r in range(dialog.table.proxy.rowCount()) if dialog.table.proxy.index(r, 0).data() == name)


def click_row(qtbot, dialog: ModelsDialog, name: str, double: bool = False) -> None:
    index = dialog.table.proxy.index(row_of(dialog, name), 0)
    dialog.table.scrollTo(index)
    click = qtbot.mouseDClick if double else qtbot.mouseClick
    if double:  # a double click is preceded by a click, as with a real mouse
        qtbot.mouseClick(dialog.table.viewport(), Qt.MouseButton.LeftButton, pos=dialog.table.visualRect(index).center())
    click(dialog.table.viewport(), Qt.MouseButton.LeftButton, pos=dialog.table.visualRect(index).center())


def click(qtbot, button) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


# ------------------------------------------------------------------------ listing


def test_table_lists_models_with_family_format_and_greys_a_broken_copy(open_dialog, qtbot, tiny_models, tmp_path):
    own = paths.models_dir()
    copy(tiny_models["sd1"].checkpoint, own)
    copy(tiny_models["sdxl"].checkpoint, own / "xl")
    copy(tiny_models["sd1-inpaint"].checkpoint, own)
    copy(tiny_models["sd1"].folder, paths.demo_model_dir().parent, "demo")  # the demo is not listed
    truncated_copy(tiny_models["sd1"].checkpoint, own / "half-downloaded.safetensors")
    added = tmp_path / "more-models"
    copy(tiny_models["sd1"].folder, added, "tiny-diffusers")
    settings = settings_store.load()
    settings.models_folders = [str(added)]

    dialog = open_dialog(settings)

    shown = rows(dialog)
    assert list(shown) == ["tiny-diffusers", "tiny-sd1", "tiny-sd1-inpaint", "tiny-sdxl", "half-downloaded"]
    family_format = {name: (row["Family"], row["Format"]) for name, row in shown.items()}
    assert family_format == {
        "tiny-sd1": ("SD 1.x", "safetensors"),
        "tiny-sd1-inpaint": ("SD 1.x inpainting", "safetensors"),
        "tiny-sdxl": ("SDXL", "safetensors"),
        "tiny-diffusers": ("SD 1.x", "diffusers"),
        "half-downloaded": ("—", "safetensors"),
    }
    assert shown["tiny-sd1"]["Size"] == "13.2 MB"
    assert shown["tiny-sd1"]["Folder"] == "Sfumato models" and shown["tiny-sdxl"]["Folder"] == "Sfumato models"
    assert shown["tiny-diffusers"]["Folder"] == str(added)
    assert shown["tiny-sd1"]["Note"] == ""

    broken = dialog.table.proxy.index(row_of(dialog, "half-downloaded"), 0)
    grey = QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    assert broken.data(Qt.ItemDataRole.ForegroundRole) == grey
    assert dialog.table.proxy.index(row_of(dialog, "tiny-sd1"), 0).data(Qt.ItemDataRole.ForegroundRole) is None
    assert "not a valid model file" in shown["half-downloaded"]["Note"]
    assert broken.data(Qt.ItemDataRole.ToolTipRole).startswith("Sfumato can't use this: not a valid model file:")

    click_row(qtbot, dialog, "half-downloaded")
    assert not dialog.use_button.isEnabled()
    assert dialog.message.isVisible() and "not a valid model file" in dialog.message.text()


def test_add_folder_then_rescan_shows_its_models(open_dialog, qtbot, tiny_models, tmp_path, monkeypatch):
    folder = tmp_path / "my-models"
    copy(tiny_models["sd1"].checkpoint, folder)
    settings = settings_store.load()
    settings.model = str(tmp_path / "gone.safetensors")  # a model in use that is not there any more
    dialog = open_dialog(settings)
    assert rows(dialog) == {}
    assert "No models found yet" in dialog.message.text() and dialog.scan_status.text() == "0 found"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))

    with qtbot.waitSignal(dialog.folders_changed) as changed, qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        click(qtbot, dialog.folders_editor.add_button)

    assert changed.args == [[str(folder)]]
    assert list(rows(dialog)) == ["tiny-sd1"]
    assert dialog.folders() == [str(folder)]
    assert dialog.folders_editor.list.item(dialog.folders_editor.list.count() - 1).data(Qt.ItemDataRole.UserRole) == str(folder)

    copy(tiny_models["sdxl"].checkpoint, folder / "sub")
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        qtbot.keyClick(dialog.table, Qt.Key.Key_F5)
    assert list(rows(dialog)) == ["tiny-sd1", "tiny-sdxl"]

    with qtbot.assertNotEmitted(dialog.folders_changed):
        click(qtbot, dialog.folders_editor.add_button)  # the same folder again
    assert "already in the list" in dialog.message.text()


def test_with_no_models_it_says_the_demo_model_is_in_use(open_dialog):
    dialog = open_dialog()  # a fresh profile: the demo model
    assert dialog.scan_status.text() == "Using the built-in demo model"
    assert dialog.message.isVisible() and "using its built-in demo model" in dialog.message.text()
    assert "No models found" not in dialog.message.text()


def test_remove_from_list_keeps_the_files(open_dialog, qtbot, tiny_models, tmp_path):
    folder = tmp_path / "other"
    model = copy(tiny_models["sd1"].checkpoint, folder)
    copy(tiny_models["sdxl"].checkpoint, paths.models_dir())
    settings = settings_store.load()
    settings.models_folders = [str(folder)]
    dialog = open_dialog(settings)

    click_row(qtbot, dialog, "tiny-sdxl")  # in Sfumato's own folder: nothing to remove
    assert dialog.folders_editor.list.currentItem().data(Qt.ItemDataRole.UserRole) == str(paths.models_dir())
    assert not dialog.folders_editor.remove_button.isEnabled()
    assert "always searched" in dialog.folders_editor.note.text()

    click_row(qtbot, dialog, "tiny-sd1")
    assert dialog.folders_editor.list.currentItem().data(Qt.ItemDataRole.UserRole) == str(folder)
    assert "does not delete" in dialog.folders_editor.note.text()
    with qtbot.waitSignal(dialog.folders_changed) as changed, qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        click(qtbot, dialog.folders_editor.remove_button)

    assert changed.args == [[]]
    assert dialog.folders() == []
    assert list(rows(dialog)) == ["tiny-sdxl"]
    assert model.is_file()
    assert "No file was deleted" in dialog.message.text()
    assert settings.models_folders == [str(folder)], "the dialog edits a copy; the caller saves"


def test_choosing_a_model_and_accepting_returns_it(open_dialog, qtbot, tiny_models):
    sd1 = copy(tiny_models["sd1"].checkpoint, paths.models_dir())
    xl = copy(tiny_models["sdxl"].checkpoint, paths.models_dir())
    truncated_copy(sd1, paths.models_dir() / "broken.safetensors")

    dialog = open_dialog()
    assert dialog.chosen_model() is None
    click_row(qtbot, dialog, "broken", double=True)  # an unusable row is not chosen
    assert dialog.isVisible() and not dialog.use_button.isEnabled()

    click_row(qtbot, dialog, "tiny-sdxl")
    assert dialog.use_button.isEnabled() and dialog.use_button.isDefault()
    click(qtbot, dialog.use_button)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.chosen_model() == str(xl)
    assert not dialog.isVisible()

    second = open_dialog()
    click_row(qtbot, second, "tiny-sd1", double=True)
    assert second.chosen_model() == str(sd1)


def test_the_current_model_is_selected_and_closing_chooses_nothing(open_dialog, qtbot, tiny_models):
    sd1 = copy(tiny_models["sd1"].checkpoint, paths.models_dir())
    copy(tiny_models["sdxl"].checkpoint, paths.models_dir())
    settings = settings_store.load()
    settings.model = str(sd1)

    dialog = open_dialog(settings)

    assert dialog.selected_entry().path == sd1
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert dialog.result() == QDialog.DialogCode.Rejected and dialog.chosen_model() is None


def test_add_model_file_adds_its_folder_and_a_broken_file_says_why(open_dialog, qtbot, tiny_models, tmp_path,
                                                                   monkeypatch):
    dialog = open_dialog()
    broken = truncated_copy(tiny_models["sd1"].checkpoint, tmp_path / "downloads" / "model.safetensors")
    picked = [str(broken)]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (picked[0], ""))

    click(qtbot, dialog.add_file_button)
    qtbot.waitUntil(lambda: "not a valid model file" in dialog.message.text(), timeout=TIMEOUT)
    assert dialog.message.isVisible() and dialog.folders() == []
    assert "model.safetensors" in dialog.message.text()

    good = copy(tiny_models["sdxl"].checkpoint, tmp_path / "elsewhere")
    picked[0] = str(good)
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        qtbot.keyClick(dialog, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert dialog.folders() == [str(good.parent)]
    assert dialog.selected_entry().path == good
    assert "Added tiny-sdxl.safetensors" in dialog.message.text()


def test_find_other_apps_models_adds_the_ticked_folders(open_dialog, qtbot, tiny_models, tmp_path, monkeypatch):
    home = tmp_path / "home"
    comfy = home / "ComfyUI" / "models" / "checkpoints"
    copy(tiny_models["sd1"].checkpoint, comfy)
    a1111 = home / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    copy(tiny_models["sdxl"].checkpoint, a1111)
    monkeypatch.delenv("INVOKEAI_ROOT", raising=False)
    monkeypatch.setattr(models_dialog, "detect_other_apps",
                        functools.partial(model_sources.detect_other_apps, home=home, system_roots=()))
    dialog = open_dialog()

    click(qtbot, dialog.find_apps_button)
    qtbot.waitUntil(lambda: dialog.other_apps_dialog is not None and dialog.other_apps_dialog.isVisible(),
                    timeout=TIMEOUT)
    chooser = dialog.other_apps_dialog
    items = {chooser.list.item(i).text().split(" — ")[0]: chooser.list.item(i) for i in range(chooser.list.count())}
    assert set(items) == {"ComfyUI", "AUTOMATIC1111"}
    items["AUTOMATIC1111"].setCheckState(Qt.CheckState.Unchecked)
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        click(qtbot, chooser.add_button)

    assert dialog.folders() == [str(comfy)]
    assert list(rows(dialog)) == ["tiny-sd1"]


def test_find_other_apps_says_when_there_are_none(open_dialog, qtbot, tmp_path, monkeypatch):
    monkeypatch.delenv("INVOKEAI_ROOT", raising=False)
    monkeypatch.setattr(models_dialog, "detect_other_apps",
                        functools.partial(model_sources.detect_other_apps, home=tmp_path, system_roots=()))
    dialog = open_dialog()
    qtbot.keyClick(dialog, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "No other Stable Diffusion apps were found" in dialog.message.text(), timeout=TIMEOUT)
    assert dialog.other_apps_dialog is None and dialog.folders() == []


# ---------------------------------------------------------------------- downloads


def diffusers_repo(folder: Path) -> Path:
    """A small SD 1.x diffusers repo with 3 MB of (random) UNet weights."""
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline",
                                        "unet": ["diffusers", "UNet2DConditionModel"]}).encode(),
        "unet/config.json": json.dumps({"_class_name": "UNet2DConditionModel", "in_channels": 4,
                                        "cross_attention_dim": 768}).encode(),
        WEIGHTS: random.Random(7).randbytes(3 * 2**20),
        "scheduler/scheduler_config.json": b'{"prediction_type": "epsilon"}',
        "tokenizer/vocab.json": b'{"a": 0}',
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    # conftest.py turns huggingface_hub's offline mode on for the suite; this talks to 127.0.0.1 only.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 5)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    # Progress (and the cancel check) comes once per chunk the client reads: small chunks.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    with HubServer({REPO: diffusers_repo(tmp_path / "repo")}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    assert server.errors == []


def watch_progress(dialog: ModelsDialog) -> list[tuple[int, int, str]]:
    seen = []
    bar = dialog.download.progress
    bar.valueChanged.connect(lambda value: seen.append((value, bar.maximum(), dialog.download.status.text())))
    return seen


def test_download_shows_progress_and_lists_the_model(open_dialog, qtbot, hub_server):
    dialog = open_dialog()
    assert not dialog.download.isVisible()
    qtbot.keyClick(dialog, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(dialog.download.isVisible)  # a button's shortcut clicks it after a moment
    assert dialog.download.repo_edit.hasFocus()
    qtbot.keyClicks(dialog.download.repo_edit, "acme/")
    assert not dialog.download.download_button.isEnabled() and "owner/name" in dialog.download.status.text()
    qtbot.keyClicks(dialog.download.repo_edit, "tiny-diffusers")
    assert dialog.download.download_button.isEnabled()
    seen = watch_progress(dialog)

    with qtbot.waitSignal(dialog.download_finished, timeout=TIMEOUT) as finished:
        qtbot.keyClick(dialog.download.repo_edit, Qt.Key.Key_Return)  # Enter downloads; it does not close the dialog
        assert dialog.isVisible() and dialog.download.cancel_button.isEnabled()
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        pass

    folder = Path(finished.args[0])
    assert folder.is_relative_to(model_sources.hub_cache_dir()) and (folder / WEIGHTS).is_file()
    assert any(maximum == 3 and "of 3 MB" in text for _, maximum, text in seen), seen
    assert dialog.download.status.text() == f"Downloaded {REPO}. It is selected in the list above."
    assert (dialog.download.progress.value(), dialog.download.progress.maximum()) == (1, 1)
    assert not dialog.download.cancel_button.isEnabled() and not dialog.download.retry_button.isEnabled()
    assert rows(dialog)[REPO] | {"Size": ""} == {
        "Name": REPO, "Family": "SD 1.x", "Format": "diffusers", "Size": "",
        "Folder": "Hugging Face downloads", "Note": "",
    }
    assert dialog.selected_entry().path == folder
    assert dialog.folders() == [], "downloads live in Sfumato's own folder"
    click(qtbot, dialog.use_button)
    assert dialog.chosen_model() == str(folder)


def test_cancel_stops_the_download_and_retry_finishes_it(open_dialog, qtbot, hub_server):
    hub_server.chunk_delay = 0.02  # 3 MB in 64 KB pieces: about a second
    dialog = open_dialog()
    dialog.show_download_panel()
    qtbot.keyClicks(dialog.download.repo_edit, REPO)
    seen = watch_progress(dialog)
    click(qtbot, dialog.download.download_button)
    qtbot.waitUntil(lambda: any(value >= 1 and maximum == 3 for value, maximum, _ in seen), timeout=TIMEOUT)

    started = time.monotonic()
    click(qtbot, dialog.download.cancel_button)
    qtbot.waitUntil(lambda: dialog.download.status.text().startswith("Cancelled"), timeout=5_000)
    assert time.monotonic() - started < 2
    assert not dialog.is_busy()
    hub_server.wait_idle()
    (cut,) = hub_server.file_requests(WEIGHTS, "GET")
    assert 0 < cut.bytes_sent < 3 * 2**20, "the cancel should stop the transfer mid-file"
    assert dialog.download.retry_button.isEnabled() and dialog.download.download_button.isEnabled()
    assert REPO not in rows(dialog) or not dialog.entries()[0].usable

    hub_server.chunk_delay = 0
    with qtbot.waitSignal(dialog.download_finished, timeout=TIMEOUT) as finished:
        qtbot.keyClick(dialog, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        pass
    assert dialog.download.status.text().startswith("Downloaded")
    assert (Path(finished.args[0]) / WEIGHTS).stat().st_size == 3 * 2**20
    assert rows(dialog)[REPO]["Family"] == "SD 1.x"


def test_a_download_error_is_shown_inline_and_can_be_retried(open_dialog, qtbot, hub_server):
    dialog = open_dialog()
    dialog.show_download_panel()
    qtbot.keyClicks(dialog.download.repo_edit, "https://huggingface.co/acme/no-such-model")
    click(qtbot, dialog.download.download_button)
    qtbot.waitUntil(lambda: "there is no such repository" in dialog.download.status.text(), timeout=TIMEOUT)
    assert dialog.download.retry_button.isEnabled() and dialog.download.repo_edit.isEnabled()
    assert dialog.isVisible()


def test_closing_during_a_download_cancels_it_and_waits(open_dialog, qtbot, hub_server):
    hub_server.chunk_delay = 0.05
    dialog = open_dialog()
    dialog.show_download_panel()
    qtbot.keyClicks(dialog.download.repo_edit, REPO)
    seen = watch_progress(dialog)
    click(qtbot, dialog.download.download_button)
    qtbot.waitUntil(lambda: any(value >= 1 for value, _, _ in seen), timeout=TIMEOUT)

    started = time.monotonic()
    dialog.close()

    assert time.monotonic() - started < 2
    assert not dialog.is_busy() and dialog.result() == QDialog.DialogCode.Rejected
    hub_server.wait_idle()


def test_the_dialog_module_does_not_import_the_engine():
    import subprocess
    import sys

    probe = "import sys, desktop.ui.models; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
            "('torch', 'diffusers', 'transformers', 'huggingface_hub') or m.startswith('desktop.engine')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
