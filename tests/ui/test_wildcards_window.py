"""Wildcards in the window: the prompt the seed chose is what runs, is saved and is staged; a missing file is said."""

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop.core import paths
from desktop.core.infotext import parse_infotext
from desktop.core.wildcards import expand, wildcard_folders

from tests.support.requests import make_request

TIMEOUT = 60_000
PROMPT, NEGATIVE = "a __animals/birds__ in {fog|rain|snow}, (detailed:1.2)", "{blurry|dark|grainy}"


def test_the_saved_and_staged_prompt_is_the_one_the_seed_chose(make_window, qtbot, fake_backend):
    birds = paths.wildcards_dir() / "animals" / "birds.txt"
    birds.parent.mkdir(parents=True)
    birds.write_text("# birds\nowl\nwren\n{blue|grey} heron\n", encoding="utf-8")
    window = make_window()
    window.panel.set_request(make_request(prompt=PROMPT, negative_prompt=NEGATIVE, steps=2, width=64, height=64,
                                          seed=41, batch_size=2))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.generate()
    folders = wildcard_folders(window.settings.models_folders)
    chosen = {seed: (expand(PROMPT, seed, folders), expand(NEGATIVE, seed, folders, negative=True)) for seed in (41, 42)}
    prompt, negative = chosen[41]
    assert "__" not in prompt and "{" not in prompt + negative and prompt.endswith("(detailed:1.2)")
    assert chosen[41] != chosen[42]
    # each seed of the batch gets the prompt it chooses alone (in a plot, a folder batch): a picture a seed
    assert [(job.request.sampling.seed, job.request.sampling.batch_size, job.request.conditioning.prompt,
             job.request.conditioning.negative_prompt) for job in fake_backend.jobs[-2:]] == \
        [(seed, 1, *chosen[seed]) for seed in (41, 42)]
    assert [seed for _, seed, _ in shown.args[0]] == [41, 42]
    for _, seed, path in shown.args[0]:
        info = parse_infotext(Image.open(path).text["parameters"])
        assert (info.prompt, info.negative_prompt, info.params["Seed"]) == (*chosen[seed], str(seed))
    assert window.generation.staged[0].prompt == prompt
    assert window.panel.prompt.toPlainText() == PROMPT  # the template stays for the next run


def test_a_missing_wildcard_file_is_one_sentence_in_the_window(make_window, qtbot, fake_backend):
    window = make_window()
    window.panel.set_request(make_request(prompt="a __nowhere__ cat", steps=2, width=64, height=64, seed=1))
    with qtbot.waitSignal(window.worker.job_failed, timeout=TIMEOUT):
        window.generate()
    said = window.error_banner.text()
    assert "__nowhere__" in said and str(paths.wildcards_dir()) in said
    assert fake_backend.jobs == []


@pytest.mark.qt_log_ignore("does not support raise", "does not support grabbing the keyboard")  # offscreen
def test_typing_two_underscores_offers_the_wildcard_names(make_window, qtbot, fake_backend, tmp_path):
    own = paths.wildcards_dir()
    (own / "clothes").mkdir(parents=True)
    (own / "clothes" / "hats.txt").write_text("beret\n", encoding="utf-8")
    (own / "colors.txt").write_text("red\n", encoding="utf-8")
    beside = tmp_path / "more-models" / "wildcards"
    beside.mkdir(parents=True)
    (beside / "hair_color.txt").write_text("black\n", encoding="utf-8")
    window = make_window(models_folders=[str(tmp_path / "more-models")])
    edit = window.panel.prompt
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=TIMEOUT)
    completer = window.addon_tools.wildcard_completers[0]
    qtbot.keyClicks(edit, "a __")
    qtbot.waitUntil(completer.popup_visible, timeout=TIMEOUT)
    model = completer.completer.completionModel()
    assert [model.index(i, 0).data() for i in range(model.rowCount())] == ["clothes/hats", "colors", "hair_color"]
    qtbot.keyClicks(completer.completer.popup(), "ha")
    assert completer.completer.completionCount() == 2
    qtbot.keyClick(completer.completer.popup(), Qt.Key.Key_Return)
    assert edit.toPlainText() == "a __clothes/hats__"
    qtbot.keyClicks(edit, " ")
    assert not completer.popup_visible()
    assert not window.addon_tools.completers[0].popup_visible()  # the LoRA list stays shut
