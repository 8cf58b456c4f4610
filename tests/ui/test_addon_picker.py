"""The LoRA and embedding picker and the <lora: completer, as a person uses them in the prompt panel."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QPlainTextEdit

from desktop.core import paths
from desktop.ui.addon_tools import insert_text
from tests.support.addon_files import write_embedding, write_lora

TIMEOUT = 10_000


@pytest.fixture
def webui(tmp_path):
    """An A1111 install with two SD1 LoRAs (one with a preview and trigger words), an SDXL one and an embedding."""
    root = tmp_path / "webui"
    (root / "models/Stable-diffusion").mkdir(parents=True)
    lora = root / "models/Lora"
    write_lora(lora / "add_detail.safetensors")
    write_lora(lora / "paper_cut.safetensors", seed=1)
    write_lora(lora / "xl_only.safetensors", "sdxl")
    Image.new("RGB", (300, 200), "red").save(lora / "add_detail.preview.png")
    (lora / "paper_cut.civitai.info").write_text(json.dumps({"trainedWords": ["papercut style"]}))
    write_embedding(root / "embeddings/easynegative.safetensors")
    return root


def window_with(make_window, webui):
    return make_window(models_folders=[str(webui / "models/Stable-diffusion")])


def open_picker(window, qtbot):
    qtbot.mouseClick(window.panel.addons_button, Qt.MouseButton.LeftButton)
    picker = window.addon_tools.picker
    qtbot.waitUntil(lambda: picker.isVisible() and not window.addon_tools.catalog.busy(), timeout=TIMEOUT)
    return picker


def rows(picker):
    return [picker.list.item(i).text().split("\n") for i in range(picker.list.count())]


def test_the_picker_lists_loras_with_family_trigger_words_and_preview(make_window, qtbot, webui):
    window = window_with(make_window, webui)
    picker = open_picker(window, qtbot)
    assert rows(picker) == [
        ["add_detail   [SD 1.x]"],
        ["paper_cut   [SD 1.x]", "Trigger: papercut style"],
        ["xl_only   [SDXL] — for SDXL, not this model"],
    ]
    qtbot.waitUntil(lambda: not picker.list.item(0).icon().pixmap(64, 64).toImage().pixelColor(32, 32).alpha() == 0,
                    timeout=TIMEOUT)
    icon = picker.list.item(0).icon()
    assert icon.pixmap(64, 64).toImage().pixelColor(32, 32).red() > 200
    assert icon.actualSize(QSize(64, 64)) == QSize(64, 64), "a wide preview is centred in a square: names line up"
    assert picker.status.text() == "3 LoRAs"
    qtbot.keyClicks(picker.search, "papercut")
    assert rows(picker) == [["paper_cut   [SD 1.x]", "Trigger: papercut style"]]
    assert picker.status.text() == "1 of 3 LoRAs"


def test_choosing_a_lora_puts_its_tag_at_the_prompts_cursor(make_window, qtbot, webui):
    window = window_with(make_window, webui)
    window.panel.prompt.setPlainText("a castle")
    picker = open_picker(window, qtbot)
    qtbot.keyClicks(picker.search, "detail")
    qtbot.keyClick(picker.search, Qt.Key.Key_Return)
    assert window.panel.prompt.toPlainText() == "a castle, <lora:add_detail:1>"
    assert window.panel.request().conditioning.prompt == "a castle, <lora:add_detail:1>"
    picker.search.clear()
    picker.list.setFocus()
    qtbot.keyClick(picker.list, Qt.Key.Key_Down)
    qtbot.keyClick(picker.list, Qt.Key.Key_Return)
    assert window.panel.prompt.toPlainText() == "a castle, <lora:add_detail:1>, <lora:paper_cut:1>"
    assert picker.isVisible(), "the picker stays open to add more"


def test_an_embedding_goes_to_the_prompt_field_that_last_had_the_focus(make_window, qtbot, webui):
    window = window_with(make_window, webui)
    window.panel.negative.setPlainText("lowres")
    picker = open_picker(window, qtbot)
    picker.set_kind("embedding")
    assert rows(picker) == [["easynegative   [SD 1.x]"]]
    qtbot.keyClick(picker.search, Qt.Key.Key_Return)
    assert window.panel.negative.toPlainText() == "lowres, easynegative", "the negative prompt until one had the focus"
    window.activateWindow()
    window.panel.prompt.setFocus()
    qtbot.waitUntil(window.panel.prompt.hasFocus, timeout=TIMEOUT)
    picker.activateWindow()
    qtbot.keyClick(picker.search, Qt.Key.Key_Return)
    assert window.panel.prompt.toPlainText() == "easynegative"


def test_with_no_files_the_picker_says_where_to_put_them(make_window, qtbot, monkeypatch):
    from desktop.ui import addon_picker

    opened = []
    monkeypatch.setattr(addon_picker.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    window = make_window()
    picker = open_picker(window, qtbot)
    assert not picker.list.isVisible() and picker.empty.isVisible()
    own = paths.models_dir() / "loras"
    assert picker.empty.text().startswith(f"No LoRAs found yet.\n\nPut LoRA files (.safetensors) in {own} — ")
    assert "Then press Refresh." in picker.empty.text()
    assert not own.exists()
    qtbot.mouseClick(picker.open_button, Qt.MouseButton.LeftButton)
    assert opened == [str(own)] and own.is_dir()
    write_lora(own / "fresh.safetensors")
    qtbot.mouseClick(picker.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: picker.list.count() == 1, timeout=TIMEOUT)
    assert picker.list.isVisible() and not picker.empty.isVisible()


@pytest.mark.qt_log_ignore("does not support raise", "does not support grabbing the keyboard")  # offscreen
def test_typing_lora_offers_the_names_and_enter_completes_the_tag(make_window, qtbot, webui):
    window = window_with(make_window, webui)
    edit = window.panel.prompt
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=TIMEOUT)
    qtbot.keyClicks(edit, "a cat <lora:pa")
    completer = window.addon_tools.completers[0]
    qtbot.waitUntil(completer.popup_visible, timeout=TIMEOUT)
    model = completer.completer.completionModel()
    assert [model.index(i, 0).data() for i in range(model.rowCount())] == ["paper_cut"]
    qtbot.keyClick(completer.completer.popup(), Qt.Key.Key_Return)
    assert edit.toPlainText() == "a cat <lora:paper_cut:1>"
    assert not completer.popup_visible()
    qtbot.keyClicks(edit, ", <lora:")
    qtbot.waitUntil(completer.popup_visible, timeout=TIMEOUT)
    assert completer.completer.completionCount() == 3
    qtbot.keyClicks(completer.completer.popup(), "xl")
    assert completer.completer.completionCount() == 1
    qtbot.keyClick(completer.completer.popup(), Qt.Key.Key_Escape)
    assert not completer.popup_visible()
    assert edit.toPlainText() == "a cat <lora:paper_cut:1>, <lora:xl"


@pytest.mark.parametrize(("text", "cursor", "result"), [
    ("", 0, "<x>"),
    ("a cat", 5, "a cat, <x>"),
    ("a cat ", 6, "a cat, <x> "),
    ("a cat,", 6, "a cat, <x>"),
    ("a cat, ", 7, "a cat, <x>"),
    ("a cat, dog", 0, "a cat, dog, <x>"),  # where setting the text leaves the cursor: at the end
    ("a cat, dog", 5, "a cat, <x>, dog"),
    ("a cat\n", 6, "a cat\n<x>"),
])
def test_inserting_adds_a_comma_where_one_is_needed(qtbot, text, cursor, result):
    edit = QPlainTextEdit()
    qtbot.addWidget(edit)
    edit.setPlainText(text)
    text_cursor = edit.textCursor()
    text_cursor.setPosition(cursor)
    edit.setTextCursor(text_cursor)
    insert_text(edit, "<x>")
    assert edit.toPlainText() == result


def test_for_a_flux_model_the_picker_lists_only_flux_loras_and_no_embeddings(make_window, qtbot, webui):
    """A flow model refuses SD LoRAs and takes no embeddings: the picker offers neither."""
    write_lora(webui / "models/Lora/flux_style.safetensors", metadata={"ss_base_model_version": "flux1"}, seed=2)
    window = window_with(make_window, webui)
    window.panel.set_models([("/m/flux-dev.safetensors", "flux-dev", "flux1", "dev"),
                             ("/m/painter.safetensors", "painter", "sd1")], "/m/painter.safetensors")
    picker = open_picker(window, qtbot)
    picker.set_kind("embedding")
    assert picker.kind() == "embedding" and picker.tabs.isTabEnabled(1)
    window.panel.model.setCurrentIndex(window.panel.model.findText("flux-dev"))
    assert window.panel.addons_button.isEnabled()
    picker = open_picker(window, qtbot)
    assert rows(picker) == [["flux_style   [FLUX.1]"]]
    assert picker.kind() == "lora" and not picker.tabs.isTabEnabled(1)
    assert picker.tabs.tabToolTip(1) == "FLUX.1 models can't use embeddings in Sfumato yet"
    window.panel.model.setCurrentIndex(window.panel.model.findText("painter"))
    picker = open_picker(window, qtbot)
    assert picker.tabs.isTabEnabled(1) and len(rows(picker)) == 4  # every LoRA again, the FLUX one marked
