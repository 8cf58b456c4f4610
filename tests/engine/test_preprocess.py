"""ControlNet preprocessors (desktop/engine/preprocess.py): white-on-black control pictures of the input's size."""

from __future__ import annotations

import numpy as np
import pytest

from desktop.core.control import CONTROL_TYPES
from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.progress import TaskState
from desktop.engine import preprocess, tiny_depth

WEIGHT_FREE = ("canny", "lineart", "scribble", "none")


def paper(height=96, width=96) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def strokes() -> tuple[np.ndarray, np.ndarray]:
    """Black strokes on white paper (a thick bar, a one-pixel line, a dot) and where they are."""
    image = paper()
    image[20:32, 10:86] = 0  # a stroke 12 pixels thick
    image[50:80, 40] = 0  # a pen line
    image[60:66, 70:76] = 0
    return image, image[..., 0] == 0


def photo() -> np.ndarray:
    """A picture that is not a drawing: a grey gradient with a dark rectangle on it."""
    ramp = np.linspace(90, 170, 96, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], 96, axis=0), 3, axis=2).astype(np.uint8)
    image[30:66, 30:66] = 20
    return image


def test_the_menu_lists_every_control_type():
    assert set(preprocess.PREPROCESSORS) == set(CONTROL_TYPES)
    assert all(isinstance(label, str) and label for label in preprocess.PREPROCESSORS.values())
    assert [t for t in CONTROL_TYPES if preprocess.needs_weights(t)] == ["depth"]


@pytest.mark.parametrize("type", WEIGHT_FREE)
@pytest.mark.parametrize("channels", [3, 4])
def test_every_type_gives_an_rgb_picture_of_the_input_size(type, channels):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    out = preprocess.run(type, image)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    if type != "none":  # a control picture is grey: white lines on black
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_none_gives_the_picture_as_it_is():
    image = photo()
    out = preprocess.run("none", image)
    assert np.array_equal(out, image)
    out[0, 0] = 1
    assert image[0, 0, 0] != 1  # a copy, not the caller's array


def test_canny_of_a_white_square_is_its_outline_and_nothing_inside():
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 255
    out = preprocess.run("canny", image)[..., 0]
    assert set(np.unique(out)) == {0, 255}
    ys, xs = np.nonzero(out)
    assert ys.min() >= 15 and ys.max() <= 48 and xs.min() >= 15 and xs.max() <= 48  # only at the border
    assert not out[18:46, 18:46].any()  # nothing inside
    for side in (out[15:17, 20:44], out[47:49, 20:44], out[20:44, 15:17], out[20:44, 47:49]):
        assert side.any(axis=0 if side.shape[0] == 2 else 1).all()  # every side is outlined all along


def test_canny_does_not_blur_first():
    """A1111 runs Canny on the picture as it is: a faint step (contrast 60) that a blur would soften below the
    high threshold is still found."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 60
    assert preprocess.run("canny", image)[:, 30:34].any()


def test_lineart_of_black_strokes_on_white_is_white_strokes_on_black_at_the_same_places():
    image, drawn = strokes()
    out = preprocess.run("lineart", image)[..., 0]
    assert (out[drawn] == 255).all()  # the thick stroke too, not only its outline
    assert (out[~drawn] == 0).all()


def test_lineart_of_a_picture_draws_its_dark_edges():
    out = preprocess.run("lineart", photo())[..., 0]
    assert out[30:66, 30:33].mean() > 100  # the dark rectangle's inner edge, darker than its surroundings
    assert out[:20].max() < 20 and out[80:].max() < 20  # the smooth gradient has no lines (a faint one at its
    # darkest end, against the blur's reflected border, as in A1111)
    assert out[44:52, 44:52].max() < 40  # nor has the rectangle's flat middle (only the blur's faint reach)


def test_scribble_of_painted_strokes_is_white_scribbles_on_black():
    layer = np.zeros((96, 96, 4), np.uint8)  # strokes painted on a transparent layer, in colours
    layer[20:32, 10:86] = (200, 30, 30, 255)
    layer[50:80, 38:43] = (20, 40, 220, 255)
    painted = layer[..., 3] > 0
    out = preprocess.run("scribble", layer)[..., 0]
    assert set(np.unique(out)) == {0, 255}
    assert (out[painted] == 255).all() and (out[~painted] == 0).all()


def test_scribble_of_a_picture_is_thick_white_lines_on_its_edges():
    out = preprocess.run("scribble", photo())[..., 0]
    assert set(np.unique(out)) == {0, 255}
    assert out[30:66, 30:34].all(axis=1).mean() > 0.8  # a line several pixels thick along the dark edge
    assert out[:15].max() == 0 and out[44:52, 44:52].max() == 0


@pytest.mark.parametrize("type", ["canny", "lineart", "scribble"])
def test_transparent_pixels_are_white_paper(type):
    layer = np.zeros((64, 64, 4), np.uint8)  # black where transparent: no line may come of it
    layer[20:44, 20:44] = (0, 0, 0, 255)
    out = preprocess.run(type, layer)[..., 0]
    assert out[2:10, 2:10].max() == 0 and out[54:62, 54:62].max() == 0
    assert out[16:48, 16:48].any()  # the opaque square on its white paper gives lines
    assert np.array_equal(preprocess.run("none", layer)[2, 2], [255, 255, 255])


def test_an_unknown_type_is_refused_naming_the_types():
    with pytest.raises(InvalidRequest) as caught:
        preprocess.run("openpose", paper())
    assert all(t in str(caught.value) for t in CONTROL_TYPES) and "openpose" in str(caught.value)
    with pytest.raises(InvalidRequest):
        preprocess.needs_weights("hed")


def test_a_picture_that_is_not_hxwx3_uint8_is_refused():
    with pytest.raises(InvalidRequest, match="uint8"):
        preprocess.run("canny", np.zeros((8, 8), np.float32))


# ---------------------------------------------------------------------------- depth


@pytest.fixture
def tiny_depth_folder(sfumato_home):
    return tiny_depth.build(preprocess.own_depth_folder())


def test_depth_without_weights_says_where_to_put_them_and_to_use_a_painted_layer():
    with pytest.raises(SfumatoError) as caught:
        preprocess.run("depth", photo())
    message = str(caught.value)
    assert str(preprocess.own_depth_folder()) in message and "type 'none'" in message
    assert "\n" not in message and "Traceback" not in message


def test_depth_with_the_tiny_model_gives_a_grey_picture_of_the_input_size(tiny_depth_folder):
    statuses = []
    out = preprocess.run("depth", photo()[:, :70], state=TaskState(on_status=statuses.append))
    assert out.shape == (96, 70, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out.min() == 0 and out.max() == 255  # normalised to the full range
    assert not any("CC-BY-NC" in line for line in statuses)  # the Small size is Apache-2.0


def test_depth_of_a_transparent_layer_works_without_a_state(tiny_depth_folder):
    assert preprocess.run("depth", np.zeros((40, 30, 4), np.uint8)).shape == (40, 30, 3)


def test_the_non_commercial_sizes_are_named_in_the_status(tiny_depth_folder, monkeypatch):
    monkeypatch.setitem(preprocess.DEPTH_SIZES, 16, "Large")  # the tiny backbone's width read as Large's
    statuses = []
    preprocess.run("depth", photo(), state=TaskState(on_status=statuses.append))
    assert any("Large" in line and "CC-BY-NC-4.0" in line and "non-commercial" in line for line in statuses)
    assert preprocess._size_name({"backbone_config": {"hidden_size": 1024}}) == "Large"
    assert preprocess._size_name({"backbone_config": {"hidden_size": 384}}) == "Small"


@pytest.mark.parametrize("layout", ["a1111", "comfyui"])
def test_depth_weights_are_found_in_the_controlnet_extensions_of_other_apps(tmp_path, layout):
    app = tmp_path / "app"
    if layout == "a1111":
        models = app / "models" / "Stable-diffusion"
        where = app / "extensions/sd-webui-controlnet/annotator/downloads/depth_anything_v2/Depth-Anything-V2-Small-hf"
    else:
        models = app / "models" / "checkpoints"
        where = app / "custom_nodes/comfyui_controlnet_aux/ckpts/depth-anything/Depth-Anything-V2-Small-hf"
    models.mkdir(parents=True)
    tiny_depth.build(where)
    assert preprocess.depth_folder([models]) == where
    assert preprocess.run("depth", photo(), [models]).shape == (96, 96, 3)


def test_sdnexts_stablediffusion_folder_is_an_app_for_the_depth_search_too(tmp_path):
    app = tmp_path / "sdnext"
    assert app.joinpath(*preprocess._A1111_DEPTH) in preprocess.depth_search_folders([app / "models" / "stablediffusion"])


def test_an_original_format_checkpoint_is_named_in_the_missing_weights_sentence(tmp_path):
    models = tmp_path / "webui" / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    downloads = tmp_path / "webui/extensions/sd-webui-controlnet/annotator/downloads/depth_anything_v2"
    downloads.mkdir(parents=True)
    (downloads / "depth_anything_v2_vits.pth").write_bytes(b"not read")
    with pytest.raises(SfumatoError, match="depth_anything_v2_vits.pth .* original format"):
        preprocess.run("depth", photo(), [models])


class _KnownDepth:
    """A stand-in for the depth network: its depth grows from the top row to the bottom one, from 3 to 5."""

    config = type("Config", (), {"patch_size": 14})()

    def __call__(self, pixel_values):
        import torch

        height, width = pixel_values.shape[2:]
        ramp = torch.linspace(3.0, 5.0, height)[:, None].expand(height, width)
        return type("Output", (), {"predicted_depth": ramp[None].clone()})()


@pytest.mark.parametrize("metric", [False, True])
def test_depth_is_normalised_with_near_white(tiny_depth_folder, monkeypatch, metric):
    """A relative model's larger values are nearer (disparity) and become white; a metric model's larger values
    are farther and become black. Either way the picture spans 0..255."""
    import torch

    loaded = preprocess._DepthModel(tiny_depth_folder, None, _KnownDepth(), torch.device("cpu"), torch.float32,
                                    28, preprocess.IMAGENET_MEAN, preprocess.IMAGENET_STD, metric)
    monkeypatch.setattr(preprocess, "_load", lambda folder, state, manager: loaded)
    out = preprocess.run("depth", photo())[..., 0].astype(int)
    near, far = (out[:4], out[-4:]) if metric else (out[-4:], out[:4])
    assert near.min() > 240 and far.max() < 15
    column = out[:, 48] if not metric else out[::-1, 48]
    assert (np.diff(column) >= 0).all() and len(np.unique(column)) > 60  # a smooth ramp, not two levels


@pytest.mark.parametrize("damage", ["cut short", "another model's weights"])
def test_damaged_depth_weights_are_refused_in_one_sentence(tiny_depth_folder, tmp_path, damage):
    weights = tiny_depth_folder / "model.safetensors"
    if damage == "cut short":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        from safetensors.numpy import save_file

        save_file({"conv.weight": np.zeros((4, 4), np.float32)}, str(weights))
    with pytest.raises(SfumatoError) as caught:
        preprocess.run("depth", photo())
    assert "damaged" in str(caught.value) and "Depth-Anything-V2-Small-hf" in str(caught.value)


def test_a_long_strip_is_not_enlarged_past_the_depth_models_longest_side(tiny_depth_folder, monkeypatch):
    import torch

    seen = []

    class Spy(_KnownDepth):
        def __call__(self, pixel_values):
            seen.append(tuple(pixel_values.shape[2:]))
            return super().__call__(pixel_values)

    loaded = preprocess._DepthModel(tiny_depth_folder, None, Spy(), torch.device("cpu"), torch.float32, 518,
                                    preprocess.IMAGENET_MEAN, preprocess.IMAGENET_STD, False)
    monkeypatch.setattr(preprocess, "_load", lambda folder, state, manager: loaded)
    assert preprocess.run("depth", np.zeros((20, 1000, 3), np.uint8)).shape == (20, 1000, 3)
    assert preprocess.run("depth", np.zeros((300, 200, 3), np.uint8)).shape == (300, 200, 3)
    assert seen[0][1] <= preprocess.DEPTH_LONGEST and seen[0][0] % 14 == 0 and seen[0][1] % 14 == 0
    assert seen[1] == (784, 518)  # the shorter side at 518, the longer 777 to the nearest multiple of 14


def test_without_opencv_the_weight_free_ones_say_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    with pytest.raises(SfumatoError, match="Control pictures need OpenCV.*opencv-python-headless"):
        preprocess.run("canny", photo())
    assert preprocess.run("none", photo()).shape == (96, 96, 3)  # a picture used as it is needs nothing


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_depth_model_is_held_by_the_backends_model_manager_on_its_device(tiny_depth_folder, precision):
    """Counted with the checkpoints and upscalers, on the backend's device and precision, released by close()."""
    import torch

    from desktop.core.backend import PreprocessJob
    from desktop.engine.local import LocalBackend

    backend = LocalBackend("cpu", precision)
    (result,) = backend.run(PreprocessJob("depth", photo()), TaskState())
    assert result.image.shape == (96, 96, 3)
    manager = backend._manager
    (held,) = [entry for (kind, _), entry in manager._held.items() if kind == preprocess.KIND]
    parameter = next(held.value.model.parameters())
    assert parameter.device == manager.device.device == torch.device("cpu")
    assert parameter.dtype == manager.device.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    assert held.size == sum(p.numel() * p.element_size() for p in held.value.model.parameters())
    again = backend.run(PreprocessJob("depth", photo()), TaskState())[0].image
    assert manager.held(preprocess.KIND, held.ref) is held.value  # loaded once
    assert np.array_equal(again, result.image)
    backend.close()
    assert manager.held(preprocess.KIND, held.ref) is None
