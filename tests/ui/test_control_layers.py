"""Control layers as a person uses them: add one from the Layers panel, fill it from the picture, paint on it, set
its strength and steps, generate (the fake backend sees the Control), hide it, undo, save and reopen the .ora."""

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from desktop.core.backend import PreprocessJob
from desktop.core.control_layers import COLOURS, ControlSpec
from desktop.core.errors import SfumatoError
from desktop.core.document import CanvasDocument
from desktop.core.geometry import Bounds
from desktop.core.layers import ImageLayer
from desktop.ui.canvas.tools import Tool
from tests.support.requests import make_request

TIMEOUT = 60_000


def photo(w=96, h=80):
    """Left half dark, right half light: its 'edges' are the line between them."""
    pixels = np.full((h, w, 3), 30, np.uint8)
    pixels[:, w // 2:] = 220
    return pixels


def preprocessed(fake_backend):
    """The preprocess jobs the backend ran (the FakeBackend's control picture: white where the picture is light)."""
    return [(job.type, job.image.shape) for job in fake_backend.jobs if isinstance(job, PreprocessJob)]


def open_photo(window, pixels):
    window.files.set_document(CanvasDocument.from_image(pixels, "photo"), name="photo")
    window.canvas.fit()
    return window.doc


def add_control(window, kind):
    menu = window.layers.buttons["control"].menu()
    action = next(a for a in menu.actions() if a.data() == kind)
    action.trigger()
    return window.doc.active


def at(window, x, y):
    return window.canvas.to_widget(QPointF(x + 0.5, y + 0.5)).toPoint()


def drag(qtbot, widget, points):
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=points[0])
    for point in points[1:]:
        qtbot.mouseMove(widget, point)
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=points[-1])


def generate(window, qtbot, fake_backend):
    request = make_request(prompt="a house", steps=3, seed=7, sampler="Euler a", schedule="Automatic")
    window.panel.set_request(request.replace(width=window.doc.frame.width, height=window.doc.frame.height))
    before = len(fake_backend.jobs)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        assert window.generate(), window.error_banner.text()
    assert len(fake_backend.jobs) == before + 1
    return fake_backend.jobs[-1].request


def test_a_control_layer_made_from_the_picture_and_painted_on_guides_the_generation(
        make_window, qtbot, fake_backend):
    window = make_window()
    pixels = photo()
    doc = open_photo(window, pixels)
    layer = add_control(window, "canny")
    controls = window.layers.controls
    assert layer.control == ControlSpec("canny") and controls.isVisible(), "its settings show under the list"
    qtbot.mouseClick(controls.from_picture, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: layer.pixels[..., 3].any(), timeout=10_000)
    assert preprocessed(fake_backend) == [("canny", (80, 96, 3))], "the preprocessor ran once, on the backend"
    assert controls.from_picture.isEnabled()
    np.testing.assert_array_equal(doc.composite()[..., :3], pixels, "the control layer is not in the picture")

    window.tools.set_tool(Tool.BRUSH)
    window.tools.set_brush(size=6, hardness=1.0, opacity=1.0)
    window.tools.set_colour(QColor("black"))  # any colour: on a line layer a stroke is a line
    drag(qtbot, window.canvas, [at(window, 8, 20), at(window, 30, 20)])
    assert layer.pixels[20, 10, 3] == 255 and doc.history.undo_label == "Brush stroke"
    shown = window.canvas.grab().toImage().pixelColor(at(window, 15, 20))
    assert (shown.red(), shown.green(), shown.blue()) != (30, 30, 30), "the stroke shows on the canvas, tinted"
    assert shown.blue() > shown.red(), "in the canny layers' colour"

    controls.strength.setValue(150)
    controls.start.setValue(10)
    controls.end.setValue(80)
    assert layer.control == ControlSpec("canny", weight=1.5, start=0.1, end=0.8)
    doc.set_frame(Bounds(0, 8, 96, 64))
    request = generate(window, qtbot, fake_backend)
    assert len(request.controls) == 1 and request.references == ()
    control = request.controls[0]
    assert (control.model, control.type, control.weight, control.start, control.end, control.preprocess) == (
        "demo", "canny", 1.5, 0.1, 0.8, False)
    expected = np.zeros((64, 96), np.uint8)
    expected[:, 48:] = 255  # the preprocessor's lines ...
    expected[12, 8:31] = 255  # ... and the painted stroke (row 20 of the picture is row 12 of the frame)
    assert control.image.shape == (64, 96, 3)
    np.testing.assert_array_equal(control.image[..., 0][:, 40:], expected[:, 40:])
    assert control.image[12, 10:29].min() == 255 and control.image[40, 10:29].max() == 0
    np.testing.assert_array_equal(request.images.init, pixels[8:72], "the init image is the picture alone")


def test_a_hidden_control_layer_is_not_sent(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo())
    layer = add_control(window, "canny")
    window.layers.controls.fill_from_picture()
    qtbot.waitUntil(lambda: layer.pixels[..., 3].any(), timeout=10_000)
    model = window.layers.model
    model.setData(model.index(model.row(layer)), Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert not layer.visible
    assert generate(window, qtbot, fake_backend).controls == ()
    assert doc.layers[-2] is layer


def test_a_reference_layer_copies_the_picture_and_is_sent_as_a_style_reference(make_window, qtbot, fake_backend):
    window = make_window()
    pixels = photo()
    doc = open_photo(window, pixels)
    layer = add_control(window, "style")
    controls = window.layers.controls
    assert not controls.start.isVisible() and controls.model_label.text() == "Adapter"
    qtbot.mouseClick(controls.from_picture, Qt.MouseButton.LeftButton)  # a copy: no preprocessor, at once
    np.testing.assert_array_equal(layer.pixels[..., :3], pixels)
    request = generate(window, qtbot, fake_backend)
    assert request.controls == () and len(request.references) == 1
    reference = request.references[0]
    assert (reference.mode, reference.weight, reference.adapter) == ("style", 0.6, "demo")
    np.testing.assert_array_equal(reference.image, pixels)


def test_adding_and_changing_a_control_layer_undo_one_step_each(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo())
    layers = len(doc.layers)
    layer = add_control(window, "depth")
    controls = window.layers.controls
    controls.strength.setValue(40)
    controls.kind.setCurrentIndex(controls.kind.findData("scribble"))
    controls.kind.activated.emit(controls.kind.currentIndex())
    assert layer.control == ControlSpec("scribble", weight=0.4)
    assert "Scribble" in window.layers.model.data(window.layers.model.index(window.layers.model.row(layer)))
    window.undo()
    assert layer.control == ControlSpec("depth", weight=0.4)
    assert controls.kind.currentData() == "depth", "the settings show the undone kind"
    window.undo()
    assert layer.control == ControlSpec("depth") and controls.strength.value() == 100
    window.undo()
    assert len(doc.layers) == layers and not controls.isVisible()


def test_a_control_layer_is_saved_in_the_ora_and_reopens_as_one(make_window, qtbot, tmp_path, answer_dialogs):
    window = make_window()
    pixels = photo()
    open_photo(window, pixels)
    layer = add_control(window, "lineart")
    window.layers.controls.strength.setValue(70)
    window.layers.controls.fill_from_picture()
    qtbot.waitUntil(lambda: layer.pixels[..., 3].any(), timeout=10_000)
    answer_dialogs["path"] = str(tmp_path / "guided")
    window.files.save()
    path = tmp_path / "guided.ora"
    qtbot.waitUntil(lambda: not window.doc.modified, timeout=10_000)
    window.files.new()
    window.files.open(path)
    qtbot.waitUntil(lambda: window.files.path == path, timeout=10_000)
    opened = next(l for l in window.doc.layers if l.name == layer.name)
    assert opened.control == ControlSpec("lineart", weight=0.7)
    np.testing.assert_array_equal(opened.pixels, layer.pixels)
    np.testing.assert_array_equal(window.doc.composite()[..., :3], pixels)
    window.doc.set_active(opened)
    assert window.layers.controls.isVisible() and window.layers.controls.strength.value() == 70


def test_from_picture_on_an_empty_canvas_says_what_to_do(make_window, qtbot, fake_backend):
    window = make_window()
    add_control(window, "canny")
    with qtbot.waitSignal(window.layers.message, timeout=2000) as said:
        window.layers.controls.fill_from_picture()
    assert "empty" in said.args[0] and preprocessed(fake_backend) == []


def test_each_kind_has_its_own_tint():
    assert len(set(COLOURS[k] for k in ("canny", "lineart", "scribble", "depth", "none"))) == 5


@pytest.mark.engine
def test_from_picture_with_the_weight_free_canny_preprocessor_draws_the_picture_s_edges(make_window, qtbot):
    """On the real LocalBackend: the job reaches desktop/engine/preprocess.py through the worker."""
    pytest.importorskip("cv2")
    window = make_window()
    doc = open_photo(window, photo())
    layer = add_control(window, "canny")
    window.layers.controls.fill_from_picture()
    qtbot.waitUntil(lambda: layer.pixels[..., 3].any(), timeout=30_000)
    edges = layer.pixels[..., 3] > 0
    columns = np.flatnonzero(edges.any(axis=0))
    assert set(columns) <= {47, 48}, "the only edge is where dark meets light"
    assert doc.history.undo_label == "Control from picture"


def test_a_picture_layer_becomes_a_reference_and_leaves_the_picture(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo())
    style = np.zeros((80, 96, 4), np.uint8)
    style[0:10, 0:20] = (10, 200, 10, 255)
    layer = doc.add_layer(ImageLayer(style, "dropped"))
    assert tuple(doc.composite()[5, 5, :3]) == (10, 200, 10)
    menu = window.layers.buttons["control"].menu()
    next(a for a in menu.actions() if a.data() == "active:style").trigger()
    assert layer.control == ControlSpec("style", weight=0.6) and window.layers.controls.isVisible()
    np.testing.assert_array_equal(doc.composite()[..., :3], photo(), "it left the picture")
    reference = generate(window, qtbot, fake_backend).references[0]
    assert reference.mode == "style" and reference.image.shape == (10, 20, 3)
    window.undo()
    assert layer.control is None and tuple(doc.composite()[5, 5, :3]) == (10, 200, 10)


def test_the_model_box_lists_the_controlnet_and_ip_adapter_files_of_the_model_folders(make_window, qtbot):
    controlnets = pytest.importorskip("desktop.core.controlnets")
    references = pytest.importorskip("desktop.core.references")
    for folder, name in ((controlnets.own_folder(), "control_v11p_sd15_canny.safetensors"),
                         (references.own_folder(), "ip-adapter_sd15.safetensors")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    window = make_window()
    add_control(window, "canny")
    box = window.layers.controls.model
    qtbot.waitUntil(lambda: box.count() == 2, timeout=10_000)
    assert [box.itemText(i) for i in range(box.count())] == ["demo", "control_v11p_sd15_canny"]
    box.setCurrentIndex(1)
    box.activated.emit(1)
    assert window.doc.active.control.model == "control_v11p_sd15_canny"
    add_control(window, "reference")
    assert [box.itemText(i) for i in range(box.count())] == ["demo", "ip-adapter_sd15"]


def test_closing_a_picture_with_only_a_painted_control_layer_asks_to_save_it(make_window, qtbot, answer_dialogs):
    window = make_window()
    doc = window.doc
    layer = add_control(window, "scribble")
    window.tools.set_tool(Tool.BRUSH)
    drag(qtbot, window.canvas, [at(window, 20, 20), at(window, 60, 20)])
    assert layer.pixels.any() and not doc.composite().any()
    answer_dialogs["save_changes"] = "cancel"
    assert not window.files.new(), "the person is asked, and Cancel keeps the scribble"
    assert window.doc is doc
    answer_dialogs["save_changes"] = "discard"  # the window may close at the end


def test_a_preprocessor_that_fails_says_why_above_the_canvas(make_window, qtbot, fake_backend):
    fake_backend.preprocess_error = SfumatoError("Depth needs the Depth Anything V2 Small weights; put their folder "
                                                 "in models/preprocessors.")
    window = make_window()
    open_photo(window, photo())
    layer = add_control(window, "depth")
    window.layers.controls.fill_from_picture()
    qtbot.waitUntil(window.error_banner.isVisible, timeout=10_000)
    assert "Depth from the picture did not work: Depth needs" in window.error_banner.text()
    assert window.layers.controls.from_picture.isEnabled() and not layer.pixels.any()


def test_from_picture_waits_in_the_queue_behind_a_generation_and_its_picture_is_not_kept(make_window, qtbot,
                                                                                         fake_backend):
    fake_backend.step_delay = 0.05
    window = make_window()
    doc = open_photo(window, photo())
    layer = add_control(window, "canny")
    controls = window.layers.controls
    request = make_request(prompt="a house", steps=8, seed=7, width=96, height=80)
    window.panel.set_request(request)
    with qtbot.waitSignal(window.worker.job_started, timeout=TIMEOUT):
        assert window.generate()
    qtbot.mouseClick(controls.from_picture, Qt.MouseButton.LeftButton)
    assert [window.queue.list.item(i).text() for i in range(window.queue.list.count())] == [
        "Canny edges from the picture  ·  96x80"]
    assert controls.from_picture.text() == "Working…" and not controls.from_picture.isEnabled()
    assert not layer.pixels.any(), "it waits for the generation"
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        pass
    qtbot.waitUntil(lambda: layer.pixels[..., 3].any(), timeout=TIMEOUT)
    assert isinstance(fake_backend.jobs[-1], PreprocessJob), "it ran after the generation"
    assert controls.from_picture.text() == "From picture" and controls.from_picture.isEnabled()
    assert doc.history.undo_label == "Control from picture" and window.queue.list.count() == 0
    assert not window.error_banner.isVisible()
    window.generation.discard_all()
    saved = [path for _image, _seed, path in shown.args[0]]
    assert sorted(p.name for p in window.settings.output_path().rglob("*.png")) == sorted(p.name for p in saved), \
        "only the generation's picture is written to the output folder"
    qtbot.waitUntil(lambda: window.gallery.model.rowCount() == len(saved), timeout=TIMEOUT)
    window.undo()
    assert not layer.pixels.any(), "one undo step"


def test_a_control_layer_deleted_while_its_picture_is_made_drops_the_picture(make_window, qtbot, fake_backend):
    fake_backend.step_delay = 0.3
    window = make_window()
    doc = open_photo(window, photo())
    layer = add_control(window, "scribble")
    messages = []
    window.layers.message.connect(messages.append)
    with qtbot.waitSignal(window.worker.job_started, timeout=TIMEOUT):
        window.layers.controls.fill_from_picture()
    window.layers.delete()
    assert all(candidate is not layer for candidate in doc.layers)
    with qtbot.waitSignal(window.worker.job_finished, timeout=TIMEOUT):
        pass
    qtbot.wait(50)
    assert not layer.pixels.any() and not window.error_banner.isVisible()
    assert not any("now holds" in m for m in messages) and doc.history.undo_label == "Delete layer"
    window.undo()
    doc.set_active(layer)
    assert window.layers.controls.from_picture.isEnabled(), "back again, it can be filled again"


def test_cancelling_from_picture_frees_the_button_and_says_nothing_wrong(make_window, qtbot, fake_backend):
    fake_backend.step_delay = 5.0
    window = make_window()
    open_photo(window, photo())
    layer = add_control(window, "lineart")
    controls = window.layers.controls
    with qtbot.waitSignal(window.worker.job_started, timeout=TIMEOUT):
        controls.fill_from_picture()
    assert window.cancel_button.isEnabled()
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert controls.from_picture.isEnabled() and controls.from_picture.text() == "From picture"
    assert not layer.pixels.any() and not window.error_banner.isVisible()


def _generate_and_read(window, qtbot):
    """Generate what the frame holds; the result's pixels and its saved parameters (the infotext)."""
    from PIL import Image

    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        assert window.generate(), window.error_banner.text()
    window.generation.discard_all()
    image, _seed, path = shown.args[0][0]
    return np.asarray(image), Image.open(path).info.get("parameters", "")


@pytest.mark.engine
def test_a_painted_scribble_layer_steers_a_real_generation_with_the_demo_controlnet(make_window, qtbot):
    """End to end on the tiny SD 1 model: the scribble changes the picture, and the infotext names the control."""
    window = make_window()
    window.panel.set_request(make_request(prompt="a house", steps=2, seed=5, sampler="Euler", width=64, height=64))
    window.doc.set_frame(Bounds(0, 0, 64, 64))
    plain = _generate_and_read(window, qtbot)
    layer = add_control(window, "scribble")
    window.tools.set_tool(Tool.BRUSH)
    window.tools.set_brush(size=10, hardness=1.0, opacity=1.0)
    drag(qtbot, window.canvas, [at(window, 8, 30), at(window, 56, 30)])
    window.layers.controls.strength.setValue(200)
    guided = _generate_and_read(window, qtbot)
    assert not np.array_equal(plain[0], guided[0]), "the scribble changed the picture"
    assert "ControlNet 0:" in guided[1] and "scribble" in guided[1], guided[1]
    window.doc.set_property(layer, "visible", False)
    hidden = _generate_and_read(window, qtbot)
    np.testing.assert_array_equal(hidden[0], plain[0], "hidden, it guides nothing")


def test_a_picture_dropped_on_the_prompt_panel_becomes_a_reference_layer(make_window, qtbot, tmp_path):
    """Dropping a picture on the panel (as from a file manager) makes it a Reference layer at the frame's corner:
    sent as a content Reference, not part of the picture, one undo step."""
    from PIL import Image
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    from desktop.core.layers import ImageLayer

    window = make_window()
    doc = window.doc
    doc.add_layer(ImageLayer(np.full((64, 64, 4), 200, np.uint8), "photo"))
    before, layers = doc.composite().copy(), len(doc.layers)
    style = np.zeros((40, 30, 3), np.uint8)
    style[:, :15] = (200, 30, 30)
    path = tmp_path / "style.png"
    Image.fromarray(style).save(path)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    window.panel.dropEvent(drop)
    qtbot.waitUntil(lambda: len(doc.layers) == layers + 1, timeout=5000)
    layer = doc.active
    assert layer.name == "Reference: style" and layer.control.kind == "reference"
    assert np.array_equal(layer.pixels[..., :3], style) and (layer.offset.x, layer.offset.y) == (doc.frame.x, doc.frame.y)
    assert np.array_equal(doc.composite(), before), "a reference is not part of the picture"
    doc.undo()
    assert len(doc.layers) == layers
