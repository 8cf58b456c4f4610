"""Model upscale: tiles blend into the untiled picture, out-of-memory halves the tile, sizes are exact, the
metadata is A1111's Extras', cancel stops within a tile, and the upscaler is held like the other models."""

import sys
from pathlib import Path
import types

import numpy as np
import pytest
import torch

from desktop.core.backend import UpscaleJob
from desktop.core.errors import Cancelled, OutOfMemory
from desktop.core.geometry import Extent
from desktop.core.postprocess import UpscaleRequest, UpscalerError
from desktop.core.progress import TaskState
from desktop.engine import devices, tiny_upscaler, upscale
from desktop.engine.local import LocalBackend
from desktop.engine.models import ModelManager

# Bound of |tiled - untiled| in 0..255 steps. Where the model sees no further than the quarter of the overlap that
# gets no weight, the blend is exact up to rounding everywhere; for a model that sees further, away from the seams.
ROUNDING = 1


@pytest.fixture
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def picture(height, width, seed=0):
    """A smooth gradient with noise on it: seams would show on the gradient, the noise exercises the model."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def tiled_and_whole(manager, image, tile, overlap, ref="demo"):
    up = upscale.load(ref, manager, TaskState())
    whole = upscale.upscale_image(up, image, TaskState(), 10_000)
    tiled = upscale.upscale_image(up, image, TaskState(), tile, overlap)
    return up, whole.astype(int), tiled.astype(int)


def test_tiles_blend_into_the_untiled_picture(manager):
    image = picture(150, 230)
    up, whole, tiled = tiled_and_whole(manager, image, 64, 32)
    assert tiled.shape == whole.shape == (600, 920, 3)
    # The demo model sees 4 input pixels around each one, the overlap's quarter is 8: equal everywhere.
    assert np.abs(tiled - whole).max() <= ROUNDING


def test_a_model_that_sees_further_than_the_overlap_is_equal_away_from_the_seams(manager, tmp_path):
    deep = tiny_upscaler.build(tmp_path / "deep-x2.safetensors", scale=2, num_conv=10)  # sees 12 pixels around
    image = picture(200, 200, seed=1)
    up, whole, tiled = tiled_and_whole(manager, image, 96, 32, ref=str(deep))
    assert up.scale == 2
    difference = np.abs(tiled - whole).max(axis=2)
    near = np.zeros(200 * 2, bool)
    for start in upscale.starts(200, 96, 32)[1:]:  # each seam region: the overlap of two tiles, in output pixels
        near[start * 2:(start + 32) * 2] = True
    away = ~near[:, None] & ~near[None, :]
    assert away.sum() > 0.3 * away.size
    assert difference[away].max() <= ROUNDING
    assert np.abs(tiled - whole).mean() < 0.5, "the seams blend: no visible band"


def test_out_of_memory_halves_the_tile_down_to_128(manager, monkeypatch):
    image = picture(300, 300)
    up = upscale.load("demo", manager, TaskState())
    whole = upscale.upscale_image(up, image, TaskState(), 10_000)
    real, sides = upscale._infer, []

    def infer(upscaler, pixels):
        sides.append(max(pixels.shape[:2]))
        if max(pixels.shape[:2]) > 128:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(upscaler, pixels)

    monkeypatch.setattr(upscale, "_infer", infer)
    said = []
    out = upscale.upscale_image(up, image, TaskState(on_status=said.append), 512)
    assert said == ["Out of memory: trying again with 256-pixel tiles",
                    "Out of memory: trying again with 128-pixel tiles"]
    assert sides[:2] == [300, 256] and set(sides[2:]) == {128}
    assert np.abs(out.astype(int) - whole).max() <= ROUNDING


def test_out_of_memory_at_128_pixel_tiles_is_a_sentence(manager, monkeypatch):
    up = upscale.load("demo", manager, TaskState())

    def infer(upscaler, pixels):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes.")

    monkeypatch.setattr(upscale, "_infer", infer)
    with pytest.raises(OutOfMemory, match="ran out of memory even with 128-pixel tiles"):
        upscale.upscale_image(up, picture(300, 300), TaskState(), 256)


def test_other_errors_are_not_taken_for_out_of_memory(manager, monkeypatch):
    up = upscale.load("demo", manager, TaskState())
    monkeypatch.setattr(upscale, "_infer", lambda u, p: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        upscale.upscale_image(up, picture(300, 300), TaskState(), 256)


@pytest.mark.parametrize("scale, size, expected", [
    (1.5, None, (75, 56)), (2, None, (100, 74)), (3, None, (150, 111)), (4, None, (200, 148)),
    (2, Extent(333, 222), (333, 222)), (2, Extent(17, 400), (17, 400)),
])
def test_output_sizes_are_exact(manager, scale, size, expected):
    result, = upscale.run(UpscaleRequest(picture(37, 50), scale, size), TaskState(), manager)
    assert (result.image.shape[1], result.image.shape[0]) == expected
    assert result.image.dtype == np.uint8 and result.image.shape[2] == 3


def test_transparency_is_kept(manager):
    rgba = np.dstack([picture(20, 30), np.full((20, 30), 128, np.uint8)])
    result, = upscale.run(UpscaleRequest(rgba, 2), TaskState(), manager)
    assert result.image.shape == (40, 60, 4) and (result.image[..., 3] == 128).all()


def test_the_metadata_is_the_source_parameters_with_a1111_extras_keys(tmp_path):
    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    source = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 50x37, Model: dreamshaper_8"
    request = UpscaleRequest(picture(37, 50), 2, upscaler="demo", parameters=source)
    result, = backend.run(UpscaleJob(request), TaskState())
    assert result.params == (("Postprocess upscale by", "2"),
                             ("Postprocess upscaler", "Demo upscaler (random weights)"))
    assert result.request.parameters == source + ", Postprocess upscale by: 2, " \
                                                 "Postprocess upscaler: Demo upscaler (random weights)"
    bare, = backend.run(UpscaleJob(request.replace(parameters="", scale=1.5)), TaskState())
    assert bare.request.parameters == "Postprocess upscale by: 1.5, Postprocess upscaler: Demo upscaler (random weights)"
    backend.close()


def test_cancel_stops_within_one_tile(manager):
    steps = []
    state = TaskState(on_step=lambda i, n, preview: (steps.append((i, n)), state.cancel()))
    up = upscale.load("demo", manager, TaskState())
    with pytest.raises(Cancelled):
        upscale.upscale_image(up, picture(300, 300), state, 128)
    assert steps == [(1, 9)], "one tile of the nine ran, then it stopped"


def test_progress_is_one_step_per_tile(manager):
    steps = []
    up = upscale.load("demo", manager, TaskState())
    upscale.upscale_image(up, picture(200, 300), TaskState(on_step=lambda i, n, p: steps.append((i, n))), 128)
    assert steps == [(i, 6) for i in range(1, 7)]


def test_the_upscaler_is_held_by_the_model_manager(manager, monkeypatch):
    first = upscale.load("demo", manager, TaskState())
    key = str(first.path.resolve())
    assert manager.held(upscale.KIND, key) is first
    monkeypatch.setattr(upscale, "read_model", lambda *a: pytest.fail("an upscaler still held is not read again"))
    assert upscale.load("demo", manager, TaskState()) is first
    manager.unload(upscale.KIND, key)
    assert manager.held(upscale.KIND, key) is None


def test_a_named_upscaler_is_found_in_a_comfyui_folder(manager, tmp_path):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    tiny_upscaler.build(comfy / "upscale_models" / "2x-Tiny.safetensors", scale=2)
    result, = upscale.run(UpscaleRequest(picture(10, 10), 2, upscaler="2x-tiny"), TaskState(), manager,
                          [comfy / "checkpoints"])
    assert result.params[1] == ("Postprocess upscaler", "2x-Tiny")


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_precision_follows_the_device_where_the_architecture_supports_it(precision, dtype):
    manager = ModelManager(devices.choose("cpu", precision))
    up = upscale.load("demo", manager, TaskState())
    assert up.dtype == dtype and next(up.model.model.parameters()).dtype == dtype
    out = upscale.upscale_image(up, picture(20, 20), TaskState(), 10_000)
    assert out.shape == (80, 80, 3)


def test_an_architecture_from_spandrel_extra_arches_names_its_licence(manager, monkeypatch, tmp_path):
    spandrel = upscale.import_spandrel()
    compact = spandrel.MAIN_REGISTRY["Compact"].architecture
    module = types.ModuleType("spandrel_extra_arches")
    arch_module = types.ModuleType("spandrel_extra_arches.architectures.CodeFormer")

    class FakeCodeFormer(type(compact)):  # detected like Compact, but defined in the extra package
        pass

    FakeCodeFormer.__module__ = arch_module.__name__
    fake = FakeCodeFormer()
    fake._id = spandrel.ArchId("CodeFormer")
    module.EXTRA_REGISTRY = [spandrel.ArchSupport.from_architecture(fake, before=(compact.id,))]
    monkeypatch.setitem(sys.modules, "spandrel_extra_arches", module)
    said = []
    up = upscale.load(str(tiny_upscaler.build(tmp_path / "nc.safetensors")), manager, TaskState(on_status=said.append))
    assert "non-commercial" in up.licence
    assert any("spandrel-extra-arches" in s and "non-commercial" in s for s in said)
    assert "CodeFormer" not in spandrel.MAIN_REGISTRY, "the extra architectures never join spandrel's own registry"


def test_a_torchvision_built_for_another_torch_breaks_neither_clip_nor_upscaling(tmp_path):
    """pip's torchvision is built for CUDA; beside a CPU-only torch its import fails. transformers would then
    fail to load CLIP, and spandrel to import: Sfumato treats it as absent."""
    import subprocess

    broken = tmp_path / "site"
    (broken / "torchvision").mkdir(parents=True)
    (broken / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = broken / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    (info / "RECORD").write_text("")
    code = ("import desktop.engine\n"
            "from transformers import CLIPTextModel\n"
            "from desktop.engine import upscale\n"
            "print(upscale.import_spandrel().MAIN_REGISTRY.get('ESRGAN') is not None)\n")
    env = {**__import__("os").environ, "PYTHONPATH": f"{broken}{__import__('os').pathsep}{Path.cwd()}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


def test_a_codeformer_file_without_its_non_commercial_package_says_so(manager, tmp_path):
    """A1111 keeps codeformer-v0.1.0.pth in models/Codeformer; spandrel reads it only with spandrel-extra-arches,
    which Sfumato does not install. Fixing faces with it says why it cannot, not that it is a bad upscaler."""
    import torch

    names = ("position_emb", "quantize.embedding.weight", "ft_layers.0.self_attn.in_proj_weight",
             "encoder.blocks.0.weight")
    path = tmp_path / "codeformer-v0.1.0.pth"
    torch.save({"params_ema": {name: torch.zeros(2, 2) for name in names}}, path)
    with pytest.raises(UpscalerError, match="CodeFormer face restorer.*S-Lab License 1.0.*non-commercial"):
        upscale.load(str(path), manager, TaskState(), face=True)
