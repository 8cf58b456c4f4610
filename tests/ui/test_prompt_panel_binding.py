"""The prompt panel's widgets follow its GenerationSettings, and the settings follow the widgets."""

from PySide6.QtCore import Qt

from desktop.core.request import Conditioning, GenerationRequest, MaskedContent, Sampling
from desktop.ui.prompt_panel import PromptPanel


def make_panel(qtbot) -> PromptPanel:
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_widgets_show_what_is_set_in_the_settings(qtbot):
    panel = make_panel(qtbot)
    sizes, models = [], []
    panel.size_changed.connect(lambda w, h: sizes.append((w, h)))
    panel.model_changed.connect(models.append)
    s = panel.settings
    s.prompt, s.steps, s.seed, s.clip_skip = "a lighthouse", 33, 4_294_967_295, 2
    s.masked_content = MaskedContent.LATENT_NOISE
    s.set_size(768, 640)
    assert panel.prompt.toPlainText() == "a lighthouse"
    assert (panel.steps.value(), int(panel.seed.value()), panel.clip_skip.value()) == (33, 4_294_967_295, 2)
    assert panel.masked_content.currentText() == "Latent noise"
    assert (panel.width_box.value(), panel.height_box.value()) == (768, 640)
    s.sampler = "Euler a"
    assert (panel.sampler.currentText(), panel.schedule.currentText()) == ("Euler a", "Automatic")
    assert sizes == [(768, 640)]  # once for both sides: the canvas frame follows
    assert models == []  # the model list says what was picked in it, and nothing was


def test_the_settings_follow_what_is_typed_and_picked(qtbot):
    panel = make_panel(qtbot)
    qtbot.keyClicks(panel.prompt, "a cat")
    panel.clip_skip.setFocus()
    panel.clip_skip.selectAll()
    qtbot.keyClicks(panel.clip_skip, "3")
    panel.masked_content.setCurrentIndex(1)
    panel.aspect_lock.click()
    panel.width_box.setValue(1024)
    request = panel.request()
    assert request.conditioning.prompt == "a cat"
    assert request.conditioning.clip_skip == 3
    assert request.inpaint.masked_content is MaskedContent.FILL
    assert (request.width, request.height) == (1024, 1024)  # locked at 1:1
    assert panel.height_box.value() == 1024


def test_typing_in_a_prompt_keeps_the_cursor_where_it_is(qtbot):
    panel = make_panel(qtbot)
    qtbot.keyClicks(panel.prompt, "a cat")
    qtbot.keyClick(panel.prompt, Qt.Key.Key_Home)
    qtbot.keyClicks(panel.prompt, "big ")
    assert panel.settings.prompt == "big a cat"


def test_clip_skip_goes_from_1_to_12_and_round_trips(qtbot):
    panel = make_panel(qtbot)
    assert (panel.clip_skip.minimum(), panel.clip_skip.maximum(), panel.clip_skip.value()) == (1, 12, 1)
    request = GenerationRequest(sampling=Sampling(seed=12), conditioning=Conditioning(prompt="x", clip_skip=2))
    panel.set_request(request)
    assert panel.clip_skip.value() == 2
    assert panel.request() == request


def test_the_boxes_show_the_cfg_and_strength_a_picture_runs_with(qtbot):
    """After Use all parameters with CFG 7.25 and strength 0.375, the boxes say so and the request runs with it."""
    panel = make_panel(qtbot)
    panel.set_request(GenerationRequest(sampling=Sampling(cfg_scale=7.25, strength=0.375)))
    assert (panel.cfg.text(), panel.strength.text()) == ("7.25", "0.375")
    request = panel.request()
    assert (request.sampling.cfg_scale, request.sampling.strength) == (panel.cfg.value(), panel.strength.value())


def test_the_emphasis_mode_is_chosen_beside_clip_skip_and_round_trips(qtbot):
    panel = make_panel(qtbot)
    assert [panel.emphasis.itemText(i) for i in range(panel.emphasis.count())] == [
        "Original", "No norm", "Ignore", "None"]
    assert panel.request().conditioning.emphasis == "Original"
    panel.emphasis.setCurrentText("No norm")
    assert panel.request().conditioning.emphasis == "No norm"
    panel.set_request(GenerationRequest(conditioning=Conditioning(prompt="x", emphasis="Ignore")))
    assert panel.emphasis.currentText() == "Ignore"
