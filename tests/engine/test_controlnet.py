"""ControlNet guidance end to end on the tiny models: what the control pictures change, and what they must not."""

import numpy as np
import pytest
import torch

from desktop.core.control import Control, used_controls_note
from desktop.core.errors import SfumatoError
from desktop.core.geometry import Bounds, Margins
from desktop.core.progress import TaskState
from desktop.core.request import Hires, InpaintArea, Mode
from desktop.engine import controlnet, devices, generate, tiny_control, tuning
from desktop.engine.models import CHECKPOINT, ModelManager
from tests.support.requests import make_request


@pytest.fixture(scope="session")
def controls(tiny_models, tmp_path_factory):
    """kind -> TinyControlNet built from the tiny model of that kind."""
    root = tmp_path_factory.mktemp("tiny-controls")

    class Built(dict):
        def __missing__(self, kind):
            self[kind] = tiny_control.build(root, kind, models_root=tiny_models[kind].folder.parent)
            return self[kind]

    return Built()


def picture(seed=0, w=64, h=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run(manager, model, **fields):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 3, "seed": 1, "model": model, **fields}
    return generate.run(make_request(**fields), TaskState(), manager)


def image(manager, model, *controls, **fields):
    return run(manager, model, controls=tuple(controls), **fields)[0].image


def differ(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_both_layouts_load_by_the_real_loaders_to_the_same_weights(controls, kind):
    built = controls[kind]
    folder = controlnet.read(built.folder, "folder", torch.float32)
    single = controlnet.read(built.file, "file", torch.float32)
    assert {k: v for k, v in folder.config.items() if not k.startswith("_")} == \
        {k: v for k, v in single.config.items() if not k.startswith("_")}
    a, b = folder.state_dict(), single.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(bool(v.any()) for k, v in a.items() if k.startswith("controlnet_down_blocks"))  # not zero convs
    if kind == "sd1":
        from safetensors import safe_open

        with safe_open(str(built.file), "pt") as f:
            keys = set(f.keys())
        for prefix in ("control_model.input_blocks.", "control_model.zero_convs.", "control_model.input_hint_block.",
                       "control_model.middle_block_out."):
            assert any(k.startswith(prefix) for k in keys), prefix


def test_both_layouts_give_the_same_pixels(cpu_manager, tiny_models, controls):
    sd1, control = str(tiny_models["sd1"].folder), picture(3)
    from_folder = image(cpu_manager, sd1, Control(str(controls["sd1"].folder), control))
    from_file = image(cpu_manager, sd1, Control(str(controls["sd1"].file), control))
    assert np.array_equal(from_folder, from_file)


def test_a_control_at_weight_0_or_ending_at_0_gives_the_pixels_of_none(cpu_manager, tiny_models, controls):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    none = image(cpu_manager, sd1)
    assert np.array_equal(image(cpu_manager, sd1, Control(ref, picture(), weight=0.0)), none)
    assert np.array_equal(image(cpu_manager, sd1, Control(ref, picture(), start=0.0, end=0.0)), none)
    acting = image(cpu_manager, sd1, Control(ref, picture()))
    assert differ(acting, none) > 1  # the same control at weight 1 does change the picture


def test_changing_the_control_picture_changes_the_result(cpu_manager, tiny_models, controls):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    a = image(cpu_manager, sd1, Control(ref, picture(1)))
    again = image(cpu_manager, sd1, Control(ref, picture(1)))
    b = image(cpu_manager, sd1, Control(ref, picture(2)))
    assert np.array_equal(a, again)
    assert differ(a, b) > 0.5


def test_two_controlnets_at_once(cpu_manager, tiny_models, controls):
    sd1 = str(tiny_models["sd1"].folder)
    first = Control(str(controls["sd1"].file), picture(1))
    second = Control(str(controls["sd1"].folder), picture(2), weight=0.5, start=0.2, end=0.8)
    one = run(cpu_manager, sd1, controls=(first,))[0]
    both = run(cpu_manager, sd1, controls=(first, second))[0]
    assert differ(one.image, both.image) > 0.5
    muted = image(cpu_manager, sd1, first, second.replace(weight=0.0))
    assert np.array_equal(muted, one.image)
    params = dict(both.params)
    assert params["ControlNet 0"].startswith("Module: none, Model: tiny-control-sd1 [")
    assert params["ControlNet 1"].startswith("Module: none, Model: tiny-control-sd1 [")
    assert params["ControlNet 1"].endswith("Weight: 0.5, Guidance Start: 0.2, Guidance End: 0.8")


def test_the_demo_controlnet_is_built_beside_the_demo_model(cpu_manager):
    result = run(cpu_manager, "demo", controls=(Control("demo", picture()),), steps=2)[0]
    assert result.image.shape == (64, 64, 3)
    assert dict(result.params)["ControlNet 0"].startswith("Module: none, Model: demo [")


def test_a_controlnet_of_another_family_is_refused_naming_both(cpu_manager, tiny_models, controls):
    with pytest.raises(SfumatoError) as refused:
        run(cpu_manager, str(tiny_models["sd1"].folder), controls=(Control(str(controls["sdxl"].file), picture()),))
    message = str(refused.value)
    assert "it is an SDXL ControlNet (cross-attention width 96)" in message and "\n" not in message
    assert "tiny-sd1 is an SD 1.x model (width 32). Choose a ControlNet made for SD 1.x." in message
    with pytest.raises(SfumatoError, match="the demo ControlNet works with the demo model only, and tiny-sdxl is an "
                                           "SDXL model"):
        run(cpu_manager, str(tiny_models["sdxl"].folder), controls=(Control("demo", picture()),))


def test_sdxl_with_a_controlnet(cpu_manager, tiny_models, controls):
    sdxl, ref = str(tiny_models["sdxl"].folder), str(controls["sdxl"].folder)
    none = image(cpu_manager, sdxl, steps=2)
    assert np.array_equal(image(cpu_manager, sdxl, Control(ref, picture(), weight=0.0), steps=2), none)
    assert differ(image(cpu_manager, sdxl, Control(ref, picture()), steps=2), none) > 0.5


def test_img2img_takes_the_control(cpu_manager, tiny_models, controls):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    fields = dict(mode=Mode.IMG2IMG, init_image=picture(7, 80, 72), width=80, height=72, strength=0.75, steps=4)
    none = image(cpu_manager, sd1, **fields)
    muted = image(cpu_manager, sd1, Control(ref, picture(1), weight=0.0), **fields)
    guided = image(cpu_manager, sd1, Control(ref, picture(1, 40, 36)), **fields)  # any size: resized to 80x72
    assert np.array_equal(muted, none)
    assert guided.shape == (72, 80, 3) and differ(guided, none) > 0.5


def test_inpaint_only_masked_crops_the_control_picture_as_the_picture(cpu_manager, tiny_models, controls):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    init = picture(7, 128, 128)
    mask = np.zeros((128, 128), np.uint8)
    mask[Bounds(80, 80, 24, 24).slices] = 255
    fields = dict(mode=Mode.INPAINT, init_image=init, mask=mask, inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8,
                  mask_blur=2, width=64, height=64, steps=4)
    control = picture(1, 128, 128)
    elsewhere = control.copy()
    elsewhere[:64, :64] = 255 - elsewhere[:64, :64]  # far from the mask's crop
    inside = control.copy()
    inside[84:100, 84:100] = 255 - inside[84:100, 84:100]
    a = image(cpu_manager, sd1, Control(ref, control), **fields)
    assert a.shape == (128, 128, 3)
    assert np.array_equal(a[:64, :64], init[:64, :64])  # nothing outside the mask changes
    assert np.array_equal(image(cpu_manager, sd1, Control(ref, elsewhere), **fields), a)
    assert differ(image(cpu_manager, sd1, Control(ref, inside), **fields)[80:104, 80:104], a[80:104, 80:104]) > 0.5


@pytest.fixture
def handed(monkeypatch):
    """(task, control picture as an array) for every pass, as the pipeline is given them."""
    seen = []
    attach = controlnet.Guidance.attach

    def spy(self, prepared, request, hires_plan=None):
        done = attach(self, prepared, request, hires_plan)
        given = done.inputs.get("image") if done.task == "txt2img" else done.inputs["control_image"]
        seen.append((done.task, np.asarray(given)))
        return done

    monkeypatch.setattr(controlnet.Guidance, "attach", spy)
    return seen


def lines(rows: list[int], w=64, h=80) -> np.ndarray:
    """Black with a white horizontal line 2 pixels thick at each of `rows`."""
    image = np.zeros((h, w, 3), np.uint8)
    for row in rows:
        image[row:row + 2] = 255
    return image


def bright_rows(image: np.ndarray) -> list[int]:
    return [int(r) for r in np.flatnonzero(image[..., 0].mean(axis=1) > 127)]


def test_the_hires_fix_second_pass_takes_the_control_cut_at_the_centre_as_the_picture(cpu_manager, tiny_models,
                                                                                     controls, handed):
    """A 64x80 first pass resized to 128x96 covers 128x160 and is cut at the centre (rows 32 to 128): the control
    is upscaled and cut the same way, not squashed to 128x96."""
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    hires = Hires(enabled=True, upscaler="Latent", steps=2, resize_width=128, resize_height=96)
    control = lines([4, 20, 39, 70])  # rows 4 and 70 fall outside the cut (rows 8 and 140 of 160)
    result = run(cpu_manager, sd1, controls=(Control(ref, control),), steps=2, hires=hires, width=64, height=80)[0]
    assert result.image.shape == (96, 128, 3)
    (first_task, first), (second_task, second) = handed
    assert (first_task, first.shape, second_task, second.shape) == ("txt2img", (80, 64, 3), "img2img", (96, 128, 3))
    assert np.array_equal(first, control)
    assert bright_rows(second) == [8, 9, 10, 11, 46, 47, 48, 49]  # rows 20 and 39, doubled, less the 32 cut off


def test_an_outpaint_control_the_size_of_the_photo_lines_up_with_the_photo(cpu_manager, tiny_models, controls,
                                                                          handed):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    photo = picture(7, 64, 80)
    control = lines([39])  # a line across the photo's middle (made from the photo: its size)
    fields = dict(mode=Mode.OUTPAINT, init_image=photo, expand=Margins(16, 24, 8, 0), steps=2, mask_blur=2)
    result = run(cpu_manager, sd1, controls=(Control(ref, control),), **fields)[0]
    assert result.image.shape == (104, 88, 3)
    [(task, given)] = handed
    assert task == "inpaint" and given.shape == (104, 88, 3)
    assert bright_rows(given) == [24 + 39, 24 + 40]  # over the photo's middle, placed at the top margin
    assert np.array_equal(given[24:104, 16:80], control)  # not stretched
    assert not given[:24].any() and not given[:, :16].any() and not given[:, 80:].any()  # black in the margins


def test_an_outpaint_control_the_size_of_the_canvas_is_used_as_it_is_and_others_are_resized():
    request = make_request(mode=Mode.OUTPAINT, init_image=picture(7, 64, 80), expand=Margins(16, 24, 8, 0),
                           model="demo").resolved()
    canvas = picture(3, 88, 104)
    assert controlnet.outpaint_control(canvas, request) is canvas
    resized = controlnet.outpaint_control(picture(3, 44, 52), request)
    assert resized.shape == (104, 88, 3)


def test_two_controlnets_of_a_run_never_unload_each_other(tiny_models, controls, monkeypatch):
    """Room is made for the second ControlNet without unloading the first, which the run and its pipeline hold."""
    sd1 = str(tiny_models["sd1"].folder)
    manager = ModelManager(devices.choose("cpu"))
    checkpoint = tuning.weights_bytes(next(iter(manager.load(sd1).pipelines.values())))
    net = controlnet.read(controls["sd1"].file, "size", manager.device.dtype)
    one = sum(p.numel() * p.element_size() for p in net.parameters())
    budget = checkpoint + int(one * 1.5)  # the checkpoint and one ControlNet and a half
    monkeypatch.setattr(tuning, "measure", lambda choice: (None, int(budget / tuning.SYSTEM_SHARE) + 1))
    said = []
    first, second = Control(str(controls["sd1"].file), picture(1)), Control(str(controls["sd1"].folder), picture(2))
    generate.run(make_request(prompt="a lighthouse", width=64, height=64, steps=2, model=sd1,
                              controls=(first, second)), TaskState(on_status=said.append), manager)
    assert [s for s in said if s.startswith("Unloaded")] == []
    for built in (controls["sd1"].file, controls["sd1"].folder):
        assert manager.held(controlnet.KIND, str(built.resolve())) is not None


def test_a_controlnet_refused_for_the_family_is_not_left_loaded(tiny_models, controls):
    manager = ModelManager(devices.choose("cpu"))
    with pytest.raises(SfumatoError, match="it is an SDXL ControlNet"):
        run(manager, str(tiny_models["sd1"].folder), controls=(Control(str(controls["sdxl"].file), picture()),))
    assert manager.held(controlnet.KIND, str(controls["sdxl"].file.resolve())) is None


def test_an_offloaded_model_s_controlnet_is_counted_in_system_memory(tiny_models, controls, monkeypatch):
    """A model offloaded to the CPU keeps its ControlNets there too: they are not counted against the GPU."""
    sd1 = str(tiny_models["sd1"].folder)
    monkeypatch.setattr(tuning, "configure_backends", lambda choice: None)
    manager = ModelManager(devices.DeviceChoice(torch.device("cuda"), torch.float32, "CUDA (test)"))
    monkeypatch.setattr(tuning, "measure", lambda choice: (None, None))
    monkeypatch.setattr(tuning, "place", lambda pipe, plan, device, release: tuning.Plan(offload=True))
    loaded = manager.load(sd1)
    assert loaded.plan.offload
    request = make_request(model=sd1, controls=(Control(str(controls["sd1"].file), picture()),)).resolved()
    controlnet.prepare(request, manager, (), TaskState(), loaded)
    held = manager._held[(controlnet.KIND, str(controls["sd1"].file.resolve()))]
    assert held.pool == tuning.SYSTEM


@pytest.mark.parametrize(("kind", "module"), [
    ("canny", "canny"), ("lineart", "lineart_standard (from white bg & black line)"), ("scribble", "scribble_xdog"),
    ("depth", "depth_anything_v2"), ("none", "none")])
@pytest.mark.parametrize("preprocess", [True, False])  # a control layer made "From picture" holds the output
def test_the_infotext_names_the_module_as_a1111_does_and_use_all_reads_it_back(kind, module, preprocess):
    from desktop.core.control import used_controls
    from desktop.core.control_layers import spec_of_used

    value = controlnet.infotext_value(Control("demo", picture(), type=kind, preprocess=preprocess), "x [ab12cd34]")
    assert value == f"Module: {module}, Model: x [ab12cd34], Weight: 1, Guidance Start: 0, Guidance End: 1"
    assert f"ControlNet 0 ({module}, x)" in used_controls_note({"ControlNet 0": value})
    assert spec_of_used(used_controls({"ControlNet 0": value})[0]).kind == kind  # Use all: a layer of its kind


def test_a_controlnet_loads_once_and_unloading_it_frees_its_pipelines(cpu_manager, tiny_models, controls):
    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].folder)
    run(cpu_manager, sd1, controls=(Control(ref, picture()),), steps=2)
    key = str(controls["sd1"].folder.resolve())
    net = cpu_manager.held(controlnet.KIND, key)
    assert net is not None
    said = []
    controlnet.load(ref, cpu_manager, TaskState(on_status=said.append))
    assert said == []  # held: nothing read again
    loaded = cpu_manager.held(CHECKPOINT, sd1)
    assert any(extras for _, extras in loaded.pipelines)
    cpu_manager.unload(controlnet.KIND, key)
    assert not any(module is net for _, extras in loaded.pipelines for _, module in extras)


def test_a_transparent_control_picture_is_black_where_transparent():
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[:4, ..., 3] = 0
    seen = controlnet.control_picture(Control("demo", rgba))
    assert seen.shape == (8, 8, 3) and (seen[:4] == 0).all() and (seen[4:] == 255).all()


def test_a_control_asking_for_it_is_preprocessed_first(cpu_manager, tiny_models, controls):
    from desktop.engine import preprocess

    sd1, ref = str(tiny_models["sd1"].folder), str(controls["sd1"].file)
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[16:48, 16:48] = 200
    edges = preprocess.run("canny", photo)
    assert np.array_equal(controlnet.control_picture(Control(ref, photo, type="canny", preprocess=True)), edges)
    assert np.array_equal(controlnet.control_picture(Control(ref, photo, type="canny")), photo)  # made already
    made = run(cpu_manager, sd1, controls=(Control(ref, photo, type="canny", preprocess=True),))[0]
    assert np.array_equal(made.image, image(cpu_manager, sd1, Control(ref, edges, type="canny")))
    assert dict(made.params)["ControlNet 0"].startswith("Module: canny, Model: tiny-control-sd1 [")


def test_a_control_and_a_reference_picture_together(cpu_manager):
    from desktop.core.control import Reference

    both = run(cpu_manager, "demo", controls=(Control("demo", picture(1)),), references=(Reference(picture(2)),),
               steps=2)[0]
    control_only = image(cpu_manager, "demo", Control("demo", picture(1)), steps=2)
    assert differ(both.image, control_only) > 0.5
    assert {"ControlNet 0", "IP-Adapter 0"} <= dict(both.params).keys()


def test_a_depth_control_is_preprocessed_with_the_model_the_backends_manager_holds(monkeypatch):
    """--control type=depth: the depth model is the one the backend's ModelManager holds (its device, counted),
    not one loaded for the call on another device."""
    from desktop.core.control import Control
    from desktop.engine import controlnet, preprocess

    seen = {}
    monkeypatch.setattr(preprocess, "run", lambda type, image, folders=(), state=None, manager=None:
                        seen.setdefault("manager", manager) or image[..., :3])
    manager = object()
    controlnet.control_picture(Control("demo", np.zeros((8, 8, 3), np.uint8), "depth", preprocess=True),
                               (), None, manager)
    assert seen["manager"] is manager
