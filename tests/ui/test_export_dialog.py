"""The export dialog: stripping metadata also keeps the prompt out of the default file names, and says so."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from desktop.core.gallery.store import GalleryStore

from desktop.ui.gallery.export_dialog import ExportDialog
from tests.support.requests import make_request


@pytest.fixture
def dialog(qtbot, tmp_path):
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    request = make_request(prompt="my secret garden", seed=42, width=64, height=64).resolved()
    path = store.add_result(np.zeros((64, 64, 3), np.uint8), request, 42, "tiny")
    dialog = ExportDialog([store.index.by_path(store.relative(path))], tmp_path / "exported")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_stripping_switches_the_default_names_and_says_the_name_shows(dialog):
    assert "secret" in dialog.example.text() and dialog.name_notice.isHidden()
    dialog.keep.setChecked(False)
    assert dialog.template.text() == "{date}-{seed}" and dialog.options().template == "{date}-{seed}"
    assert "secret" not in dialog.example.text() and dialog.example.text().endswith("-42.png")
    assert dialog.name_notice.isVisible()
    assert dialog.name_notice.text() == "The file names are not stripped: they show the date and the seed."
    dialog.keep.setChecked(True)
    assert dialog.template.text() == "{date}-{seed}-{prompt}" and dialog.name_notice.isHidden()


def test_a_template_the_user_typed_is_kept_and_the_notice_names_the_prompt(dialog, qtbot):
    dialog.template.selectAll()
    qtbot.keyClicks(dialog.template, "{prompt}-{seed}")
    dialog.keep.setChecked(False)
    assert dialog.template.text() == "{prompt}-{seed}"
    assert dialog.name_notice.text() == "The file names are not stripped: they show the prompt and the seed."
    assert "secret" in dialog.example.text()


def test_a_stripped_export_keeps_the_ai_mark_until_its_box_is_unticked(dialog, qtbot, tmp_path):
    from desktop.core import marking
    from desktop.core.gallery.export import export

    assert dialog.keep_mark.isChecked() and "article 50" in dialog.keep_mark.toolTip()
    dialog.keep.setChecked(False)
    record = dialog.records[0]
    source = tmp_path / "outputs" / record.path
    kept = export([(record, source)], dialog.options())[0]
    assert marking.read_source_type(kept) == marking.TRAINED and b"secret" not in kept.read_bytes()
    qtbot.mouseClick(dialog.keep_mark, Qt.MouseButton.LeftButton, pos=dialog.keep_mark.rect().center())
    assert dialog.options().keep_mark is False
    bare = export([(record, source)], dialog.options())[0]
    assert marking.read_source_type(bare) is None and b"xmpmeta" not in bare.read_bytes()
