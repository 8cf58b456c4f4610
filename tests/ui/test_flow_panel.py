"""The prompt panel with the flow-matching families (desktop/core/families.py): their own boxes, samplers, sizes and
recommended values, and the features they lack disabled, saying why."""

import pytest
from PySide6.QtCore import Qt

from desktop.core.families import FLOW_SAMPLERS
from desktop.core.request import Conditioning, GenerationRequest, Hires, Sampling
from desktop.core.samplers import SAMPLERS
from desktop.ui.prompt_panel import DEMO_HEADING, PromptPanel

MODELS = [("/m/painter.safetensors", "painter", "sd1"), ("/m/flux-dev.safetensors", "flux-dev", "flux1", "dev"),
          ("/m/flux-schnell.safetensors", "flux-schnell", "flux1", "schnell"),
          ("/m/zimage.safetensors", "zimage", "zimage", "turbo"), ("/m/xl.safetensors", "xl", "sdxl")]


@pytest.fixture
def panel(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_models(MODELS, "/m/painter.safetensors")
    return panel


def pick(panel: PromptPanel, label: str) -> None:
    """A person's choice in the model list."""
    panel.model.setCurrentIndex(panel.model.findText(label))


def shown(panel: PromptPanel) -> tuple[bool, bool]:
    return panel.shift.isVisibleTo(panel), panel.distilled.isVisibleTo(panel)


def samplers(panel: PromptPanel) -> list[str]:
    return [panel.sampler.itemText(i) for i in range(panel.sampler.count())]


def test_shift_and_distilled_cfg_show_only_where_they_apply(panel):
    assert shown(panel) == (False, False)
    for label, expected in (("flux-dev", (True, True)), ("flux-schnell", (True, False)), ("zimage", (True, False)),
                            ("xl", (False, False))):
        pick(panel, label)
        assert shown(panel) == expected, label
    assert panel.shift.specialValueText() == "Automatic" and panel.shift.value() == 0


def test_switching_to_flux_dev_takes_its_recommendation_and_back_gives_the_sd_values_again(panel):
    settings = panel.settings
    settings.steps, settings.cfg_scale, settings.clip_skip = 30, 6.0, 2  # the person's own SD values
    pick(panel, "flux-dev")
    request = panel.request()
    assert (request.sampling.steps, request.sampling.cfg_scale, request.sampling.distilled_cfg,
            request.sampling.sampler, request.sampling.schedule) == (20, 1.0, 3.5, "Euler", "Automatic")
    assert request.conditioning.clip_skip == 1  # FLUX.1 has no clip skip: the request can run
    assert (panel.steps.value(), panel.cfg.value(), panel.distilled.value(), panel.sampler.currentText()) == (
        20, 1.0, 3.5, "Euler")
    settings.steps = 28  # the person's own FLUX.1 [dev] value
    pick(panel, "painter")
    assert (settings.steps, settings.cfg_scale, settings.sampler, settings.schedule, settings.clip_skip) == (
        30, 6.0, "DPM++ 2M", "Karras", 2)
    pick(panel, "xl")  # SD 1.x, 2.x and SDXL share their values, as in A1111
    assert (settings.steps, settings.cfg_scale) == (30, 6.0)
    pick(panel, "flux-dev")
    assert settings.steps == 28
    pick(panel, "flux-schnell")  # another variant: its own recommendation
    assert (settings.steps, settings.cfg_scale) == (4, 1.0)


def test_the_same_model_listed_again_or_restored_keeps_the_values(qtbot, panel):
    pick(panel, "flux-dev")
    panel.settings.steps = 33
    panel.set_models(MODELS, "/m/flux-dev.safetensors")  # a rescan (F5)
    assert panel.settings.steps == 33
    restored = PromptPanel()  # the window restoring its last settings: the last request, then the model list
    qtbot.addWidget(restored)
    last = FLOW_SAMPLERS[-1]
    restored.set_request(GenerationRequest(sampling=Sampling(steps=12, cfg_scale=2.0, sampler=last,
                                                             schedule="Automatic", distilled_cfg=5.0)))
    restored.set_models([("/m/flux-dev.safetensors", "flux-dev", "sd1")], "/m/flux-dev.safetensors")  # a guess
    restored.set_models(MODELS, "/m/flux-dev.safetensors")  # the scan tells its family
    sampling = restored.request().sampling
    assert (sampling.steps, sampling.cfg_scale, sampling.sampler, sampling.distilled_cfg) == (12, 2.0, last, 5.0)


def test_a_flow_model_lists_only_its_samplers(panel):
    assert samplers(panel) == list(SAMPLERS)
    pick(panel, "zimage")
    assert samplers(panel) == list(FLOW_SAMPLERS)
    assert "LMS" not in FLOW_SAMPLERS
    panel.set_request(GenerationRequest(sampling=Sampling(sampler="LMS", schedule="Automatic"),
                                        conditioning=Conditioning(clip_skip=2), hires=Hires(enabled=True)))
    assert panel.settings.sampler in FLOW_SAMPLERS and panel.sampler.currentText() == panel.settings.sampler
    assert panel.settings.clip_skip == 1 and not panel.settings.hires_enabled  # what Z-Image can't run stays off
    pick(panel, "painter")
    assert samplers(panel) == list(SAMPLERS)


def test_what_flux_lacks_is_disabled_saying_why(panel):
    assert panel.addons_button.isEnabled() and panel.hires_check.isEnabled() and panel.clip_skip.isEnabled()
    panel.settings.hires_enabled = True
    pick(panel, "flux-dev")
    assert panel.addons_button.isEnabled(), "FLUX.1 takes LoRAs (desktop/engine/flow_lora.py)"
    assert panel.addons_button.toolTip() == ("Choose a FLUX.1 LoRA to put in the prompt (Ctrl+L); FLUX.1 models "
                                             "can't use embeddings in Sfumato yet")
    assert not panel.hires_check.isEnabled() and not panel.settings.hires_enabled
    assert "can't use the hires fix" in panel.hires_check.toolTip()
    assert not panel.clip_skip.isEnabled() and not panel.emphasis.isEnabled()
    pick(panel, "painter")
    assert panel.addons_button.isEnabled() and "Ctrl+L" in panel.addons_button.toolTip()
    assert panel.hires_check.isEnabled() and panel.settings.hires_enabled  # the person's SD value again


def test_flow_models_offer_megapixel_sizes(panel):
    pick(panel, "zimage")
    assert panel.presets.itemText(1) == "1024 x 1024" and panel.presets.findText("896 x 1152") > 0


def test_several_demo_models_are_listed_under_a_heading(panel):
    panel.set_models([*MODELS[:1], ("demo", "SD 1.x demo", "sd1"), ("demo:flux1", "FLUX.1 demo", "flux1")], "demo")
    texts = [panel.model.itemText(i) for i in range(panel.model.count())]
    assert texts == ["painter", "", DEMO_HEADING, "SD 1.x demo", "FLUX.1 demo"]
    heading = panel.model.model().item(2)
    assert not heading.isEnabled() and panel.model_ref() == "demo"
    pick(panel, "FLUX.1 demo")
    assert panel.model_ref() == "demo:flux1" and panel.family() == "flux1" and shown(panel) == (True, True)
    panel.set_models([("demo", "Demo model (random weights)", "sd1")], "demo")  # one demo: no heading
    assert panel.model.count() == 1


def test_the_window_lists_every_demo_model_says_a_licence_once_and_disables_control_layers(make_window, qtbot):
    window = make_window(model="demo")
    panel = window.panel
    qtbot.waitUntil(lambda: panel.model.findText("FLUX.1 demo") > 0, timeout=10_000)
    assert panel.model.findText(DEMO_HEADING) == 0 and panel.model_ref() == "demo"  # no real model here
    control = window.layers.buttons["control"]
    assert control.isEnabled()
    pick(panel, "FLUX.1 demo")
    assert window.demo_banner.isVisible() and not window.licence_banner.isVisible()  # random weights: no licence
    assert not control.isEnabled()
    assert control.toolTip() == "FLUX.1 models can't use control layers or reference pictures in Sfumato yet"
    panel.set_models([*MODELS, ("demo", "SD 1.x demo", "sd1")], "demo")
    pick(panel, "flux-dev")
    window._update_demo_banner()  # as after the window's own scan
    assert window.licence_banner.isVisible() and not window.demo_banner.isVisible()
    assert window.licence_banner.text().startswith("FLUX.1 [dev]: its weights carry the FLUX.1 [dev] Non-Commercial")
    qtbot.mouseClick(window.licence_banner, Qt.MouseButton.LeftButton)
    assert not window.licence_banner.isVisible()
    pick(panel, "painter")
    assert control.isEnabled() and "control layer" in control.toolTip()
    pick(panel, "flux-dev")
    assert not window.licence_banner.isVisible()  # said once


def test_a_licence_banner_goes_when_a_model_of_another_licence_is_chosen(make_window):
    window = make_window()
    window.panel.set_models([*MODELS, ("/m/sd35.safetensors", "sd35", "sd3", "large")], "/m/flux-dev.safetensors")
    window._update_demo_banner()
    assert window.licence_banner.isVisible() and "FLUX.1 [dev]" in window.licence_banner.text()
    pick(window.panel, "sd35")
    assert window.licence_banner.isVisible() and "Stability AI Community License" in window.licence_banner.text()
    pick(window.panel, "flux-dev")  # its licence was said: not again, and not the other's
    assert not window.licence_banner.isVisible()


def flux_picture(home, model: str = "demo:flux1", name: str = "tiny-flux1") -> None:
    """A FLUX.1 picture in the gallery: 4 steps, no CFG, shift 2, distilled CFG 5."""
    import numpy as np

    from desktop.core.gallery.store import GalleryStore
    from tests.support.requests import make_request

    store = GalleryStore(home / "outputs", home / "cache" / "thumbnails")
    request = make_request(model=model, prompt="a lighthouse at dusk", seed=77, steps=4, cfg_scale=1.0, width=64,
                           height=64, sampler="Euler", schedule="Automatic")
    request = request.replace(sampling=request.sampling.replace(shift=2.0, distilled_cfg=5.0))
    store.add_result(np.full((64, 64, 3), 90, np.uint8), request.resolved(), 77, name)
    store.close()


def use_all_of_the_picture(window, qtbot) -> None:
    gallery = window.gallery
    qtbot.waitUntil(lambda: window.gallery_store is not None and gallery.model.rowCount() == 1, timeout=60_000)
    window.tabs.setCurrentIndex(1)
    gallery.select_row(0)
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.panel.prompt.toPlainText() == "a lighthouse at dusk", timeout=5000)


def test_use_all_on_a_flux_picture_chooses_its_model_and_keeps_the_sd_values_for_later(make_window, qtbot,
                                                                                       sfumato_home):
    flux_picture(sfumato_home)
    window = make_window(model="demo")
    panel = window.panel
    qtbot.waitUntil(lambda: panel.model.findText("FLUX.1 demo") > 0, timeout=10_000)
    panel.settings.steps, panel.settings.cfg_scale, panel.settings.sampler = 30, 6.0, "LMS"  # the person's SD values
    use_all_of_the_picture(window, qtbot)
    request = panel.request()
    assert panel.model_ref() == "demo:flux1" and panel.family() == "flux1"
    assert (request.sampling.steps, request.sampling.cfg_scale, request.sampling.shift,
            request.sampling.distilled_cfg) == (4, 1.0, 2.0, 5.0)
    assert shown(panel) == (True, True) and panel.distilled.value() == 5.0 and panel.shift.value() == 2.0
    pick(panel, "SD 1.x demo")
    assert (panel.settings.steps, panel.settings.cfg_scale, panel.settings.sampler) == (30, 6.0, "LMS")


def test_use_all_on_a_picture_of_a_model_not_listed_keeps_the_model_and_says_so(make_window, qtbot, sfumato_home):
    flux_picture(sfumato_home, model="/elsewhere/flux1-dev.safetensors", name="flux1-dev")
    window = make_window(model="demo")
    qtbot.waitUntil(lambda: window.panel.model.findText("FLUX.1 demo") > 0, timeout=10_000)
    use_all_of_the_picture(window, qtbot)
    assert window.panel.model_ref() == "demo"
    assert window.statusBar().currentMessage() == (
        "The picture's parameters are in the panel. flux1-dev is not in the model list, so the panel keeps "
        "SD 1.x demo.")


def test_the_token_counters_show_only_for_clip_models(panel):
    """CLIP's n/75 chunks mean nothing to FLUX.1's T5 or Z-Image's Qwen3 (256-512 tokens of another vocabulary)."""
    counters = (panel.prompt_tokens, panel.negative_tokens)
    assert all(counter.isVisibleTo(panel) for counter in counters)
    for label in ("flux-dev", "zimage"):
        pick(panel, label)
        assert not any(counter.isVisibleTo(panel) for counter in counters), label
    pick(panel, "xl")
    assert all(counter.isVisibleTo(panel) for counter in counters)
