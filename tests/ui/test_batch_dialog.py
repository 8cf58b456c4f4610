"""Generate > Batch from folder... as a person uses it: choose the folders, the mode and the variations; OK queues a
FolderBatchRun on the prompt panel's request, its outputs go to a folder named after the input inside the output
folder, and the closing status line says where they and the manifest are. A wrong choice is a sentence in the
dialog, which stays open."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from desktop.core.folder_batch import FolderBatchRun
from desktop.core.progress import TaskState
from desktop.core.runs import RunContext
from desktop.core.settings import Settings
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request

TIMEOUT = 20_000


def open_dialog(window, qtbot):
    action = next(a for a in window.findChildren(type(window.generate_action)) if a.text() == "Batch from folder...")
    action.trigger()
    dialog = window.batch_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT)
    return dialog


def _pictures(folder: Path, names=("cat.png", "dog.png")) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        Image.new("RGB", (64, 64), (120, 80, 40)).save(folder / name)
    return folder


def test_ok_queues_a_folder_batch_on_the_panel_s_request_and_says_where_its_outputs_are(make_window, qtbot,
                                                                                        tmp_path):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    window.panel.set_request(make_request(prompt="a quay at dawn", steps=4, strength=0.5, seed=8))
    photos = _pictures(tmp_path / "photos")
    masks = _pictures(tmp_path / "masks")
    for name in ("cat.png", "dog.png"):
        Image.fromarray(np.full((64, 64), 255, np.uint8)).save(masks / name)
    started, said = [], []
    window.worker.job_started.connect(lambda job, request: started.append(request))
    window.worker.status.connect(said.append)
    dialog = open_dialog(window, qtbot)
    qtbot.keyClicks(dialog.input_edit, str(photos))
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("inpaint"))
    assert dialog.mask_edit.isVisible() and dialog.variations_box.isVisible() and not dialog.scale_box.isVisible()
    dialog.variations_box.setValue(3)
    qtbot.keyClicks(dialog.mask_edit, str(masks))
    out = window.settings.output_path() / "batches" / "photos"
    assert dialog.out_edit.text() == str(out)  # a new folder named after the input, inside the output folder
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(text.endswith(f"they and manifest.csv are in {out}") for text in said),
                    timeout=TIMEOUT)
    [run] = started
    assert isinstance(run, FolderBatchRun)
    assert (run.mode, run.variations, run.mask_dir, run.output) == ("inpaint", 3, masks, out)
    assert run.base.conditioning.prompt == "a quay at dawn" and run.base.sampling.strength == 0.5
    assert said[-1] == f"6 outputs; they and manifest.csv are in {out}"
    assert sorted(p.name for p in out.glob("*.png")) == [f"{s}-{k:02d}.png" for s in ("cat", "dog") for k in range(3)]
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert [(e["input"], e["mask"], [o["seed"] for o in e["outputs"]]) for e in manifest["inputs"]] == [
        ("cat.png", "cat.png", [8, 9, 10]), ("dog.png", "dog.png", [8, 9, 10])]


def test_a_wrong_choice_is_a_sentence_and_the_dialog_stays_open(make_window, qtbot, tmp_path, monkeypatch):
    window = make_window()
    queued = []
    monkeypatch.setattr(window, "submit_run", queued.append)
    dialog = open_dialog(window, qtbot)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.problem.text() == "Choose the folder of the pictures."
    qtbot.keyClicks(dialog.input_edit, str(_pictures(tmp_path / "photos")))
    assert dialog.problem.isHidden()
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("inpaint"))
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and queued == []
    assert dialog.problem.text() == ("Masks from: inpaint needs a folder of masks named as the pictures (none was "
                                     "given).")
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("upscale"))
    assert dialog.form.labelForField(dialog.model_box).text() == "Upscaler" and not dialog.variations_box.isVisible()
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    [run] = queued
    assert (run.mode, run.variations, run.post.upscaler, run.post.scale) == ("upscale", 1, "demo", 2.0)


def test_another_batch_of_the_same_folder_goes_to_a_fresh_folder_and_a_chosen_one_holding_a_batch_is_refused(
        make_window, qtbot, tmp_path, monkeypatch):
    window = make_window()
    queued = []
    monkeypatch.setattr(window, "submit_run", queued.append)
    window.panel.set_request(make_request(prompt="a forest", steps=4, strength=0.5, seed=8))
    photos = _pictures(tmp_path / "photos")
    out = window.settings.output_path() / "batches" / "photos"
    FolderBatchRun(photos, "img2img", out, make_request(prompt="a quay", steps=4, strength=0.5, seed=8)).check().run(
        FakeBackend(), TaskState(), RunContext(Settings(), None, None))  # yesterday's batch of the same folder
    dialog = open_dialog(window, qtbot)
    qtbot.keyClicks(dialog.input_edit, str(photos))
    assert dialog.out_edit.text() == str(out)
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    [run] = queued  # the default: a fresh folder, not yesterday's batch resumed with today's prompt
    assert run.output == out.parent / "photos-2" and run.base.conditioning.prompt == "a forest"
    dialog = open_dialog(window, qtbot)
    dialog.input_edit.clear()
    qtbot.keyClicks(dialog.input_edit, str(photos))
    dialog.out_edit.clear()
    qtbot.keyClicks(dialog.out_edit, str(out))  # chosen: refused
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and len(queued) == 1
    assert dialog.problem.text() == (f"Save to: {out} holds another batch (its manifest.json has other settings); "
                                     "choose another output folder.")
