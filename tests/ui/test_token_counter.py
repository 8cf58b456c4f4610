"""The prompt fields' token counters ("12/75", "80/150"), as a person sees them while typing."""

from __future__ import annotations

import json



def counters(window):
    return window.panel.prompt_tokens, window.panel.negative_tokens


def shows(qtbot, label, text):
    qtbot.waitUntil(lambda: label.text() == text, timeout=3000)


def test_typing_a_long_prompt_shows_two_chunks(make_window, qtbot):
    window = make_window()
    prompt, negative = counters(window)
    shows(qtbot, prompt, "0/75")
    shows(qtbot, negative, "0/75")
    qtbot.keyClicks(window.panel.prompt, "cat " * 80)
    shows(qtbot, prompt, "80/150")
    assert negative.text() == "0/75"
    qtbot.keyClicks(window.panel.negative, "blurry, lowres")
    shows(qtbot, negative, "4/75")


def test_the_counter_sits_at_the_top_right_corner_of_its_field(make_window, qtbot):
    window = make_window()
    for label, edit in zip(counters(window), (window.panel.prompt, window.panel.negative)):
        assert label.isVisible()
        assert "75" in label.toolTip() and "BREAK" in label.toolTip()
        label_box = label.rect().translated(label.mapTo(window, label.rect().topLeft()))
        edit_box = edit.rect().translated(edit.mapTo(window, edit.rect().topLeft()))
        assert abs(label_box.right() - edit_box.right()) <= 12  # right-aligned with the field
        assert 0 <= edit_box.top() - label_box.bottom() <= 12  # in the title row just above it


def test_it_counts_after_a_pause_not_at_every_key(make_window, qtbot):
    window = make_window()
    prompt, _ = counters(window)
    shows(qtbot, prompt, "0/75")
    qtbot.keyClicks(window.panel.prompt, "a red fox")
    assert prompt.text() == "0/75"  # no count while keys arrive (the event loop has not run its timer)
    shows(qtbot, prompt, "3/75")


def test_lora_tags_brackets_and_break_count_as_a1111(make_window, qtbot):
    window = make_window()
    prompt, _ = counters(window)
    qtbot.keyClicks(window.panel.prompt, "a (red:1.3) fox <lora:add_detail:0.8>")
    shows(qtbot, prompt, "3/75")
    qtbot.keyClicks(window.panel.prompt, " BREAK sky")
    shows(qtbot, prompt, "76/150")
    window.panel.settings.emphasis = "None"  # as in A1111, brackets and BREAK are read as text
    shows(qtbot, prompt, "11/75")  # a ( red : 1 . 3 ) fox break sky


def test_prompt_editing_counts_the_longest_text_the_steps_reach(make_window, qtbot):
    window = make_window()
    prompt, _ = counters(window)
    window.panel.settings.steps = 20
    window.panel.prompt.setPlainText("[cat:" + "dog " * 80 + ":25]")  # dogs from step 26 on
    shows(qtbot, prompt, "1/75")
    window.panel.steps.setValue(30)
    shows(qtbot, prompt, "80/150")


def test_another_model_counts_with_its_own_tokenizer(make_window, qtbot, tmp_path):
    """A model whose tokenizer knows no merges reads every letter as a token."""
    folder = tmp_path / "letters-model"
    write_letters_tokenizer(folder / "tokenizer")
    window = make_window()
    prompt, negative = counters(window)
    window.panel.prompt.setPlainText("an emerald cathedral")
    window.panel.negative.setPlainText("blurry")
    shows(qtbot, prompt, "3/75")
    shows(qtbot, negative, "1/75")
    window.panel.set_models([(str(folder), "letters", "sd1"), ("demo", "demo", "sd1")], str(folder))
    shows(qtbot, prompt, "18/75")
    shows(qtbot, negative, "6/75")
    window.panel.model.setCurrentIndex(1)  # the demo, not built here: the bundled CLIP vocabulary
    shows(qtbot, prompt, "3/75")


def write_letters_tokenizer(folder):
    """A CLIP tokenizer folder with the byte symbols (alone and ending a word) and no merges."""
    from desktop.core.clip_tokenizer import _byte_chars

    folder.mkdir(parents=True)
    symbols = list(_byte_chars())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
