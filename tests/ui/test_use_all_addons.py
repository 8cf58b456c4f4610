"""Use all parameters on a picture made with LoRAs and embeddings: found by name or hash, or said missing."""

from PIL import Image, PngImagePlugin
from PySide6.QtCore import Qt

from desktop.core import addons, paths
from desktop.core.gallery.store import GalleryStore
from tests.support.addon_files import write_embedding, write_lora
from tests.ui.test_gallery import TIMEOUT, open_gallery


def a1111_picture(folder, parameters):
    source = folder / "from-a1111.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    Image.new("RGB", (64, 64), "teal").save(source, pnginfo=info)
    return source


def use_all(make_window, qtbot, home, picture, **settings):
    """The picture in the gallery of a window opened with `settings`, and Use all parameters clicked on it."""
    store = GalleryStore(home / "outputs", home / "cache" / "thumbnails")
    store.import_files([picture])
    store.close()
    window, gallery = open_gallery(make_window, qtbot, **settings)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=TIMEOUT)
    gallery.select_row(0)
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    return window


def test_use_all_parameters_renames_loras_found_by_hash_and_says_which_are_missing(
        make_window, qtbot, tmp_path, sfumato_home):
    webui = tmp_path / "webui"
    (webui / "models/Stable-diffusion").mkdir(parents=True)
    write_lora(webui / "models/Lora/add_detail.safetensors")
    mine = write_lora(webui / "models/Lora/detail_tweaker_v2.safetensors", seed=4)
    neg = write_embedding(webui / "embeddings/easyneg_local.safetensors")
    lora_hash, ti_hash = addons.short_hash("lora", mine), addons.short_hash("embedding", neg)
    picture = a1111_picture(tmp_path, (
        "a lighthouse <lora:add_detail:0.7> <lora:detailer:0.5>, <lora:gone_lora:1>\n"
        "Negative prompt: EasyNegative, lowres\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, "
        f'Lora hashes: "detailer: {lora_hash}, gone_lora: 0123456789ab", TI hashes: "EasyNegative: {ti_hash}"'))
    window = use_all(make_window, qtbot, sfumato_home, picture, models_folders=[str(webui / "models/Stable-diffusion")])
    qtbot.waitUntil(lambda: window.panel.prompt.toPlainText().startswith("a lighthouse"), timeout=TIMEOUT)
    assert window.panel.prompt.toPlainText() == (
        "a lighthouse <lora:add_detail:0.7> <lora:detail_tweaker_v2:0.5>, <lora:gone_lora:1>")
    assert window.panel.negative.toPlainText() == "easyneg_local, lowres"
    qtbot.waitUntil(window.error_banner.isVisible, timeout=5000)
    assert window.error_banner.text() == (
        f"Missing LoRAs: gone_lora — put them in {paths.models_dir() / 'loras'} (or any model folder) "
        "and Sfumato will find them.")


def test_use_all_parameters_with_every_lora_here_shows_no_warning(make_window, qtbot, tmp_path, sfumato_home):
    write_lora(paths.models_dir() / "loras/add_detail.safetensors")
    picture = a1111_picture(tmp_path, "a fox <lora:add_detail:0.7>\nSteps: 20, Seed: 1, Size: 64x64")
    window = use_all(make_window, qtbot, sfumato_home, picture)
    qtbot.waitUntil(lambda: window.panel.prompt.toPlainText() == "a fox <lora:add_detail:0.7>", timeout=TIMEOUT)
    qtbot.wait(100)
    assert "Missing" not in window.error_banner.text()  # (the model scan may have said something)


def test_use_all_parameters_does_not_ask_for_a_lora_tag_of_the_negative_prompt(make_window, qtbot, tmp_path,
                                                                                sfumato_home):
    """As in A1111, a <lora:...> tag in the negative prompt is words: no LoRA is missing for it."""
    picture = a1111_picture(tmp_path, "a fox\nNegative prompt: blurry, <lora:gone_lora:1>\nSteps: 20, Seed: 1, "
                                      "Size: 64x64")
    window = use_all(make_window, qtbot, sfumato_home, picture)
    qtbot.waitUntil(lambda: window.panel.negative.toPlainText() == "blurry, <lora:gone_lora:1>", timeout=TIMEOUT)
    assert "Missing" not in window.error_banner.text()  # said, if at all, in the same step that set the prompts
