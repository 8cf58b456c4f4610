"""Fast generation in the prompt panel: the Fast button, Fast decode (TAESD), a few-step model's own settings, and
the Models window's few-step marks."""

import shutil

import pytest
from PySide6.QtCore import Qt

from desktop.core import fewstep, paths
from desktop.core import settings as settings_store
from desktop.core.model_sources import ModelEntry
from desktop.core.modelfiles import Family, ModelInfo
from desktop.core.request import GenerationRequest
from desktop.ui.models import ModelsDialog
from desktop.ui.prompt_panel import FEWSTEP_ROLE, LISTING_LORAS, PromptPanel
from tests.support.addon_files import write_lora
from tests.ui.test_flow_panel import pick

MODELS = [("/m/painter.safetensors", "painter", "sd1"),
          ("/m/sdxl_lightning_4step.safetensors", "sdxl_lightning_4step", "sdxl", "", "lightning"),
          ("/m/xl.safetensors", "xl", "sdxl"), ("/m/flux-dev.safetensors", "flux-dev", "flux1", "dev"),
          ("demo", "SD 1.x demo", "sd1")]
LCM_LORA = fewstep.LoraInfo("lcm", "sd1")


@pytest.fixture
def panel(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_models(MODELS, "/m/painter.safetensors")
    return panel


def values(panel: PromptPanel) -> tuple:
    """What the panel shows: sampler, schedule, steps, CFG, Fast decode."""
    return (panel.sampler.currentText(), panel.schedule.currentText(), panel.steps.value(), panel.cfg.value(),
            panel.fast_decode.isChecked())


def click(qtbot, button) -> None:
    assert button.isVisibleTo(button.window()) and button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_fast_on_the_demo_model_sets_lcm_four_steps_no_cfg_and_taesd(panel, qtbot):
    pick(panel, "SD 1.x demo")
    click(qtbot, panel.fast_button)
    assert values(panel) == ("LCM", "Automatic", 4, 1.0, True)
    request = panel.request()
    assert (request.sampling.sampler, request.sampling.steps, request.decoder) == ("LCM", 4, "tiny")
    assert panel.fast_note == "Fast: LCM model, LCM sampler, 4 steps, CFG 1, TAESD decode"


def test_fast_on_a_model_without_a_few_step_kind_adds_its_familys_lora_once(panel, qtbot):
    panel.lora_source = lambda: {"lcm-lora-sdv1-5": LCM_LORA, "lcm-lora-sdxl": fewstep.LoraInfo("lcm", "sdxl")}
    panel.settings.prompt = "a lighthouse at dusk"
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk, <lora:lcm-lora-sdv1-5:1>"
    assert values(panel) == ("LCM", "Automatic", 4, 1.0, True)
    panel.settings.steps = 6  # the person's own change after Fast
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk, <lora:lcm-lora-sdv1-5:1>"  # not twice
    assert panel.settings.steps == 4


def test_fast_without_a_few_step_path_changes_nothing_and_says_what_to_add(panel, qtbot):
    panel.lora_source = lambda: {"detail": fewstep.LoraInfo("", "sd1")}
    before = (values(panel), panel.settings.prompt)
    click(qtbot, panel.fast_button)
    assert (values(panel), panel.settings.prompt) == before
    assert panel.fast_note.startswith("SD 1.x has no few-step path here: put an LCM")
    assert panel.fast_note in panel.fast_button.toolTip()
    pick(panel, "flux-dev")  # a flow family: its own few-step variants, named
    click(qtbot, panel.fast_button)
    assert "FLUX.1 [dev] has no few-step path here" in panel.fast_note and not panel.fast_decode.isChecked()


def test_fast_waits_for_the_lora_list_when_it_is_not_there_yet(panel, qtbot):
    listed = {}
    panel.lora_source = lambda: listed.get("loras")
    click(qtbot, panel.fast_button)
    assert panel.fast_note == LISTING_LORAS and panel.settings.sampler != "LCM"
    listed["loras"] = {"lcm-lora-sdv1-5": LCM_LORA}
    panel.loras_listed()
    assert values(panel) == ("LCM", "Automatic", 4, 1.0, True)
    panel.settings.sampler = "Euler"
    panel.loras_listed()  # a later listing does not press Fast again
    assert panel.settings.sampler == "Euler"


def test_choosing_a_few_step_model_takes_its_settings_and_back_gives_your_own(panel):
    settings = panel.settings
    settings.steps, settings.cfg_scale, settings.sampler = 28, 6.5, "Euler a"  # the person's own values
    pick(panel, "sdxl_lightning_4step")
    assert values(panel)[:4] == ("Euler", "SGM Uniform", 4, 1.0)
    settings.steps = 8  # the person's own Lightning value
    pick(panel, "xl")  # an SDXL model that is not few-step: the SD values come back
    assert (settings.steps, settings.cfg_scale, settings.sampler) == (28, 6.5, "Euler a")
    pick(panel, "sdxl_lightning_4step")
    assert (settings.steps, settings.cfg_scale, settings.sampler) == (8, 1.0, "Euler")


def test_fast_decode_is_the_requests_decoder_and_is_restored_with_the_panels_values(panel, qtbot):
    assert panel.request().decoder == "full" and not panel.fast_decode.isChecked()
    click(qtbot, panel.fast_decode)
    assert panel.request().decoder == "tiny"
    remembered = GenerationRequest.from_dict(panel.request().to_dict())  # what the window keeps between sessions
    later = PromptPanel()
    qtbot.addWidget(later)
    later.set_request(remembered)
    assert later.fast_decode.isChecked()
    later.set_request(remembered.replace(decoder="full"))  # "Use all parameters" on a picture the VAE decoded
    assert not later.fast_decode.isChecked()


def test_the_model_list_keeps_each_models_few_step_kind(panel):
    kinds = {panel.model.itemText(i): panel.model.itemData(i, FEWSTEP_ROLE) for i in range(panel.model.count())
             if panel.model.itemData(i)}
    assert kinds["sdxl_lightning_4step"] == "lightning" and kinds["painter"] == ""


# -- the Models window's marks ---------------------------------------------------------------


def entry(name: str, few_step: str = "") -> ModelEntry:
    info = ModelInfo(paths.models_dir() / f"{name}.safetensors", "safetensors", "checkpoint", Family.SD1,
                     size_bytes=1, few_step=few_step)
    return ModelEntry(info, paths.models_dir(), True, name)


def test_a_model_can_be_marked_few_step_or_not_from_its_menu(qtbot):
    dialog = ModelsDialog(settings_store.load())
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.is_busy())
    plain, lcm = entry("my_finetune"), entry("dreamshaper_lcm", "lcm")
    dialog.table.table_model.set_entries([plain, lcm])
    menu = dialog.few_step_menu(plain)
    texts = [action.text() for action in menu.actions()]
    assert texts == ["As its name says (not few-step)", "LCM", "TCD", "Hyper-SD", "Lightning", "Turbo", "DMD2",
                     "Not few-step"]
    assert menu.actions()[0].isChecked()
    menu.actions()[4].trigger()  # Lightning
    assert dialog.few_step_marks() == {"my_finetune": "lightning"}
    family = dialog.table.table_model.index(0, dialog.table.table_model.FAMILY).data()
    assert family == "SD 1.x · Lightning"
    assert dialog.message.text().startswith("my_finetune counts as a few-step model (Lightning)")
    dialog.few_step_menu(lcm).actions()[-1].trigger()  # Not few-step, whatever its name says
    assert dialog.few_step_marks() == {"my_finetune": "lightning", "dreamshaper_lcm": "none"}
    assert dialog.table.table_model.index(1, dialog.table.table_model.FAMILY).data() == "SD 1.x"
    dialog.few_step_menu(plain).actions()[0].trigger()  # as its name says again
    assert dialog.few_step_marks() == {"dreamshaper_lcm": "none"}


# -- in the window ---------------------------------------------------------------------------


@pytest.fixture
def model_files(tiny_models):
    """A plain SD 1.x checkpoint and an LCM one (by its name) in Sfumato's models folder."""
    own = paths.models_dir()
    own.mkdir(parents=True, exist_ok=True)
    plain = own / "my_finetune.safetensors"
    shutil.copyfile(tiny_models["sd1"].checkpoint, plain)
    shutil.copyfile(tiny_models["sd1"].checkpoint, own / "dreamshaper_8_lcm.safetensors")
    return plain


def listed_kinds(window) -> dict[str, str]:
    box = window.panel.model
    return {box.itemText(i): box.itemData(i, FEWSTEP_ROLE) for i in range(box.count()) if box.itemData(i)}


def test_the_window_lists_few_step_models_by_name_and_by_the_persons_mark(make_window, qtbot, model_files):
    window = make_window(model=str(model_files))
    qtbot.waitUntil(lambda: "dreamshaper_8_lcm" in listed_kinds(window))
    assert listed_kinds(window)["dreamshaper_8_lcm"] == "lcm" and listed_kinds(window)["my_finetune"] == ""
    assert listed_kinds(window)["SD 1.x demo"] == ""  # choosing a demo keeps the usual settings
    window.settings.few_step_marks = {"my_finetune": "tcd"}
    window._scan_models()
    qtbot.waitUntil(lambda: listed_kinds(window)["my_finetune"] == "tcd")
    window.panel.choose_model(str(model_files.parent / "dreamshaper_8_lcm.safetensors"))
    assert values(window.panel)[:4] == ("LCM", "Automatic", 4, 1.0)


def test_fast_in_the_window_finds_a_lora_in_the_lora_folder_and_says_what_it_chose(make_window, qtbot,
                                                                                   model_files):
    write_lora(paths.models_dir() / "loras" / "lcm-lora-sdv1-5.safetensors")
    window = make_window(model=str(model_files))
    qtbot.waitUntil(lambda: "my_finetune" in listed_kinds(window))
    window.panel.settings.prompt = "a fox"
    click(qtbot, window.panel.fast_button)
    qtbot.waitUntil(lambda: window.panel.settings.prompt == "a fox, <lora:lcm-lora-sdv1-5:1>")
    assert values(window.panel) == ("LCM", "Automatic", 4, 1.0, True)
    assert window.statusBar().currentMessage().startswith("Fast: LCM LoRA lcm-lora-sdv1-5 at weight 1")


FAST_LORAS = {"lcm-lora-sdv1-5": LCM_LORA, "lcm-lora-sdxl": fewstep.LoraInfo("lcm", "sdxl")}


def test_fasts_lora_tag_goes_when_the_model_of_another_family_is_chosen_or_made_fast(panel, qtbot):
    panel.lora_source = lambda: FAST_LORAS
    panel.settings.prompt = "a lighthouse at dusk"
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk, <lora:lcm-lora-sdv1-5:1>"
    pick(panel, "xl")  # SDXL: the SD 1.5 LoRA Fast added does not fit it
    assert panel.prompt.toPlainText() == "a lighthouse at dusk"
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk, <lora:lcm-lora-sdxl:1>"
    panel.set_models([(ref, label, "sd1" if label == "xl" else family, *rest) for ref, label, family, *rest in MODELS],
                     "/m/xl.safetensors")  # the scan tells the same file is SD 1.x after all
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk, <lora:lcm-lora-sdv1-5:1>"


def test_fast_never_takes_out_the_persons_own_lora_tags(panel, qtbot):
    panel.lora_source = lambda: FAST_LORAS
    panel.settings.prompt = "a fox <lora:LCM-LoRA-SDv1-5:0.7>, <lora:detail:0.5>"  # their own, at their weight
    click(qtbot, panel.fast_button)
    assert panel.prompt.toPlainText() == "a fox <lora:LCM-LoRA-SDv1-5:0.7>, <lora:detail:0.5>"
    pick(panel, "xl")
    assert panel.prompt.toPlainText() == "a fox <lora:LCM-LoRA-SDv1-5:0.7>, <lora:detail:0.5>"


def test_a_full_lcm_checkpoint_gets_cfg_8_from_its_preset_and_from_fast(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_models([*MODELS, ("/m/dreamshaper-distilled", "dreamshaper-distilled", "sd1", "", "lcm", True)],
                     "/m/painter.safetensors")
    pick(panel, "dreamshaper-distilled")  # its UNet takes the CFG scale as an embedding: 1 would be no guidance
    assert values(panel)[:4] == ("LCM", "Automatic", 4, 8.0)
    panel.settings.cfg_scale = 5.0
    click(qtbot, panel.fast_button)
    assert values(panel) == ("LCM", "Automatic", 4, 8.0, True)
