"""Use all parameters on a picture made with ControlNets or reference pictures: their pictures are not in the
metadata, so the window says which were used, whether their model files are here, and how to use them again."""

from PySide6.QtCore import Qt

from desktop.core import paths
from desktop.core.control_layers import ControlSpec
from desktop.core.control import used_controls_note
from desktop.core.infotext import parse_infotext
from tests.ui.test_gallery import TIMEOUT
from tests.ui.test_use_all_addons import a1111_picture, use_all

A1111 = ("a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, "
         'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Guidance Start: 0, '
         'Guidance End: 1", ControlNet 1: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], '
         'Weight: 0.6, Guidance Start: 0, Guidance End: 0.8", IP-Adapter 0: "Model: ip-adapter_sd15 [0123abcd], '
         'Weight: 0.6, Mode: style"')


def test_the_note_names_each_control_and_says_which_model_files_are_missing(tmp_path):
    folder = paths.models_dir() / "controlnet"
    folder.mkdir(parents=True)
    (folder / "control_v11p_sd15_canny.safetensors").write_bytes(b"{}")
    note = used_controls_note(parse_infotext(A1111).params)
    assert note.startswith("This picture was also steered by ControlNet 0 (canny, control_v11p_sd15_canny), "
                           "ControlNet 1 (depth_midas, control_v11f1p_sd15_depth), whose file is not in your folders, "
                           "IP-Adapter 0 (style, ip-adapter_sd15), whose file is not in your folders.")
    assert "empty control layers with their settings were added" in note
    assert used_controls_note(parse_infotext("a cat\nSteps: 20, Seed: 1").params) == ""


def test_use_all_parameters_adds_the_controls_as_empty_layers_and_says_what_it_could_not(
        make_window, qtbot, tmp_path, sfumato_home):
    """A1111's Send to txt2img brings a ControlNet unit's settings but not its picture: here each control becomes
    an empty control layer with its kind, model, weight and steps, once however often the button is clicked."""
    window = use_all(make_window, qtbot, sfumato_home, a1111_picture(tmp_path, A1111))
    qtbot.waitUntil(lambda: window.panel.prompt.toPlainText() == "a lighthouse", timeout=TIMEOUT)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=5000)
    assert "ControlNet 0 (canny, control_v11p_sd15_canny), whose file is not in your folders" in \
        window.error_banner.text()
    specs = sorted((layer.control for layer in window.doc.layers if layer.control is not None), key=lambda s: s.kind)
    assert specs == [ControlSpec("canny", "control_v11p_sd15_canny"),
                     ControlSpec("depth", "control_v11f1p_sd15_depth", 0.6, 0.0, 0.8),
                     ControlSpec("style", "ip-adapter_sd15", 0.6)]
    layers = len(window.doc.layers)
    window.error_banner.hide()
    qtbot.mouseClick(window.gallery.buttons["use"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=5000)
    assert len(window.doc.layers) == layers, "the same empty control layers are not added twice"
