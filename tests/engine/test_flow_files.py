"""Single-file checkpoints of the flow-matching families: the original key layouts and loading them offline.

The tiny models' single files (desktop/engine/flow_layout.py, written by tiny.build) are in the layouts people
download: FLUX.1 and SD3.5 full files as ComfyUI's checkpoints folder holds them, Z-Image and FLUX.2 klein
transformers with their text encoder and VAE in a ComfyUI models tree. diffusers' own converters take each back
to exactly the diffusers folder's weights, and desktop/engine/flow_files.load_single_file gives the same picture.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from desktop.core.errors import ModelLoadError
from desktop.core.modelfiles import Family, ModelInfo
from desktop.engine import flow, flow_files, flow_layout

# Two loads of the same weights agree to float rounding (the converters hand over views of fused tensors, so
# some matrix products run in another order): far below one level of an 8-bit picture.
SAME_PICTURE = 1e-4
GUIDANCE = {"flux1": 3.5, "sd3": 4.5, "zimage": 1.0, "flux2-klein": 1.0}


@pytest.fixture(scope="module")
def reference(tiny_models):
    """kind -> the tiny diffusers folder's pipeline, as the diffusers folder loads."""
    import diffusers

    found = {}

    class Pipes(dict):
        def __missing__(self, kind):
            pipe = diffusers.DiffusionPipeline.from_pretrained(tiny_models[kind].folder, local_files_only=True)
            pipe.set_progress_bar_config(disable=True)
            found[kind] = pipe
            return pipe

    return Pipes()


def _single_file(tiny_models, kind: str) -> Path:
    model = tiny_models[kind]
    if kind in ("flux1", "sd3"):
        return model.checkpoint
    return flow_layout.comfy_tree(model) / "diffusion_models" / model.checkpoint.name


def _load(path: Path, info: ModelInfo):
    """load_single_file with the class models.py picks for the file."""
    return flow_files.load_single_file(path, info, flow.pipeline_class(info, "txt2img"), torch.float32)


def _info(path: Path, kind: str, variant: str = "") -> ModelInfo:
    return ModelInfo(path, "gguf" if path.suffix == ".gguf" else "safetensors", "checkpoint", Family(kind),
                     variant=variant)


def _picture(pipe, kind: str) -> np.ndarray:
    return pipe(prompt="a cat in a garden", num_inference_steps=2, height=64, width=64,
                guidance_scale=GUIDANCE[kind], generator=torch.Generator().manual_seed(7), output_type="np").images[0]


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------- layouts: round trips


@pytest.mark.parametrize("kind", ["flux1", "sd3", "zimage", "flux2-klein"])
def test_each_tiny_single_file_converts_back_through_diffusers_to_the_folders_transformer(tiny_models, reference,
                                                                                          kind):
    from diffusers.loaders import single_file_utils as su

    convert = {
        "flux1": su.convert_flux_transformer_checkpoint_to_diffusers,
        "sd3": su.convert_sd3_transformer_checkpoint_to_diffusers,
        "zimage": su.convert_z_image_transformer_checkpoint_to_diffusers,
        "flux2-klein": su.convert_flux2_transformer_checkpoint_to_diffusers,
    }[kind]
    state = load_file(str(tiny_models[kind].checkpoint))
    transformer = _strip(state, flow_layout.TRANSFORMER_PREFIX) if kind in ("flux1", "sd3") else state
    expected = reference[kind].transformer.state_dict()
    if kind == "flux1":  # diffusers 0.42 splits linear1 at FLUX.1's 3072 width; the tiny one is 32 wide
        back = flow_files._flux1_checkpoint(transformer)
    else:
        back = convert(dict(transformer))
    assert set(back) == set(expected)
    assert all(torch.equal(back[k], expected[k]) for k in expected)


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_the_flux1_layout_converts_back_through_diffusers_at_the_released_width(guidance):
    """At 3072 wide (thin second dimensions keep it small) diffusers' own converter is the whole way back."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    with init_empty_weights():
        model = FluxTransformer2DModel(num_layers=2, num_single_layers=2, guidance_embeds=guidance)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn((v.shape[0], 2) if v.ndim == 2 else v.shape, generator=gen)
             for k, v in model.state_dict().items()}
    original = flow_layout.flux1_transformer(state)
    assert ("guidance_in.in_layer.weight" in original) == guidance
    assert original["single_blocks.0.linear1.weight"].shape[0] == 3 * 3072 + 4 * 3072
    back = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("kind", ["flux1", "sd3"])
def test_a_full_files_vae_and_text_encoders_convert_back_through_diffusers(tiny_models, reference, kind):
    from diffusers.loaders import single_file_utils as su

    pipe = reference[kind]
    state = load_file(str(tiny_models[kind].checkpoint))
    vae = su.convert_ldm_vae_checkpoint(state, pipe.vae.config)  # it finds the "vae." / "first_stage_model." prefix
    assert vae.keys() == pipe.vae.state_dict().keys()
    assert all(torch.equal(vae[k], v) for k, v in pipe.vae.state_dict().items())
    t5 = su.convert_sd3_t5_checkpoint_to_diffusers(state)
    encoder = pipe.text_encoder_2 if kind == "flux1" else pipe.text_encoder_3
    assert all(torch.equal(t5[k], v) for k, v in encoder.state_dict().items())
    clips = [(flow_layout.CLIP_L_PREFIX, pipe.text_encoder)]
    if kind == "sd3":
        clips.append((flow_layout.CLIP_G_PREFIX, pipe.text_encoder_2))
    for prefix, encoder in clips:
        back = su.convert_ldm_clip_checkpoint(state, prefix)
        if not hasattr(encoder, "text_model"):  # transformers >= 5.6's CLIPTextModel, as diffusers' loader does
            back = {k.removeprefix("text_model."): v for k, v in back.items()}
        expected = {k: v for k, v in encoder.state_dict().items() if not k.endswith("position_ids")}
        assert set(back) == set(expected)
        assert all(torch.equal(back[k], v) for k, v in expected.items())


@pytest.mark.parametrize("kind", ["zimage", "flux2-klein"])
def test_a_comfy_trees_vae_file_converts_back_to_the_folders_vae(tiny_models, reference, kind):
    vae = reference[kind].vae
    name = flow_layout.VAE_FILES[kind]
    state = load_file(str(flow_layout.comfy_tree(tiny_models[kind]) / "vae" / name))
    assert "encoder.down.0.block.0.conv1.weight" in state  # the LDM layout, not diffusers'
    back = flow_files._vae_to_diffusers(state, vae.config)
    expected = {k: v for k, v in vae.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(expected)
    assert all(torch.equal(back[k], v) for k, v in expected.items())


# ---------------------------------------------------------------------------- loading


@pytest.mark.parametrize("kind", ["flux1", "sd3", "zimage", "flux2-klein"])
def test_each_tiny_single_file_loads_offline_and_makes_the_diffusers_folders_picture(tiny_models, reference, kind):
    path = _single_file(tiny_models, kind)
    pipe = _load(path, _info(path, kind))
    assert type(pipe).__name__ == type(reference[kind]).__name__
    assert all(not m.training for m in pipe.components.values() if isinstance(m, torch.nn.Module))
    difference = np.abs(_picture(pipe, kind) - _picture(reference[kind], kind)).max()
    assert difference < SAME_PICTURE


def test_an_sd35_file_with_its_vae_takes_its_text_encoders_from_the_text_encoders_folder(tiny_models, reference,
                                                                                        tmp_path):
    """As Stability ships SD3.5: the MMDiT and the VAE in checkpoints/, CLIP-L, CLIP-G and T5 in text_encoders/."""
    pipe = reference["sd3"]
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "text_encoders").mkdir()
    path = models / "checkpoints" / "sd3.5_medium.safetensors"
    state = load_file(str(tiny_models["sd3"].checkpoint))
    save_file({k: v for k, v in state.items() if not k.startswith("text_encoders.")}, str(path))
    shutil.copytree(tiny_models["sd3"].config, path.with_suffix(".config"))
    save_file(flow_layout.clip_text(pipe.text_encoder), str(models / "text_encoders" / "clip_l.safetensors"))
    save_file(flow_layout.clip_text(pipe.text_encoder_2), str(models / "text_encoders" / "clip_g.safetensors"))
    t5 = models / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"  # the name only: fp8 files are tested below
    save_file(flow_layout.plain_text(pipe.text_encoder_3), str(t5))

    loaded = _load(path, _info(path, "sd3", "medium"))
    assert np.abs(_picture(loaded, "sd3") - _picture(pipe, "sd3")).max() < SAME_PICTURE


def test_a_transformer_only_file_without_its_text_encoder_says_which_file_to_put_where(tiny_models, tmp_path):
    tree = flow_layout.comfy_tree(tiny_models["zimage"])
    copy = tmp_path / "models"
    shutil.copytree(tree, copy)
    (copy / "text_encoders" / flow_layout.TEXT_ENCODER_FILE).unlink()
    path = copy / "diffusion_models" / tiny_models["zimage"].checkpoint.name
    with pytest.raises(ModelLoadError) as caught:
        _load(path, _info(path, "zimage", "turbo"))
    message = str(caught.value)
    assert "the Qwen3-4B text encoder (qwen_3_4b.safetensors)" in message
    assert f"text_encoders folder beside {copy}" in message
    assert "VAE" not in message  # ae.safetensors is there
    assert message.count(".") <= 3 and "Traceback" not in message


def test_a_text_encoder_of_another_size_is_not_taken_for_the_one_the_model_needs(tiny_models, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(flow_layout.comfy_tree(tiny_models["flux2-klein"]), copy)
    encoder = copy / "text_encoders" / flow_layout.TEXT_ENCODER_FILE
    state = load_file(str(encoder))
    save_file({k: torch.cat([v, v], dim=-1) if k.endswith("embed_tokens.weight") else v for k, v in state.items()},
              str(encoder))  # a wider Qwen3 (as Qwen3-8B is beside 4B)
    path = copy / "diffusion_models" / tiny_models["flux2-klein"].checkpoint.name
    with pytest.raises(ModelLoadError, match=r"the Qwen3 text encoder \(qwen_3_4b.safetensors\) was not found"):
        _load(path, _info(path, "flux2-klein", "4b"))


def test_a_file_beside_no_config_asks_for_the_tokenizer_sfumato_does_not_bundle(tiny_models, tmp_path):
    path = tmp_path / "flux1-dev-fp8.safetensors"
    shutil.copyfile(tiny_models["flux1"].checkpoint, path)  # no sidecar: the bundled FLUX.1 dev config
    with pytest.raises(ModelLoadError) as caught:
        _load(path, _info(path, "flux1", "dev"))
    message = str(caught.value)
    assert "the T5-XXL tokenizer is not bundled with Sfumato" in message
    assert "spiece.model" in message and "tokenizers/t5xxl" in message
    assert "diffusers folder or Hugging Face id" in message


def test_a_truncated_file_is_refused_in_a_sentence(tiny_models, tmp_path):
    path = tmp_path / "flux1-dev.safetensors"
    data = tiny_models["flux1"].checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    shutil.copytree(tiny_models["flux1"].config, tmp_path / "flux1-dev.config")
    with pytest.raises(ModelLoadError, match=r"flux1-dev.*it is truncated .*Download it again\.$"):
        _load(path, _info(path, "flux1", "dev"))


def test_a_scaled_fp8_file_is_refused_in_a_sentence(tmp_path):
    path = tmp_path / "flux1-dev-fp8-scaled.safetensors"
    save_file({"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn),
               "img_in.weight": torch.zeros(4, 4, dtype=torch.float8_e4m3fn),
               "img_in.scale_weight": torch.ones(1)}, str(path))
    with pytest.raises(ModelLoadError, match="scaled fp8"):
        _load(path, _info(path, "flux1", "dev"))


def test_an_fp8_transformer_loads_upcast_to_the_working_dtype(tiny_models, reference, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(flow_layout.comfy_tree(tiny_models["flux2-klein"]), copy)
    model = tiny_models["flux2-klein"]
    original = copy / "diffusion_models" / model.checkpoint.name
    path = original.with_name("tiny-flux2-klein-fp8.safetensors")
    state = load_file(str(original))
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in state.items()}, str(path))
    shutil.copytree(original.with_suffix(".config"), path.with_suffix(".config"))

    pipe = _load(path, _info(path, "flux2-klein", "4b"))
    loaded = pipe.transformer.state_dict()
    reference_state = reference["flux2-klein"].transformer.state_dict()
    expected = {k: v.to(torch.float8_e4m3fn).float() for k, v in reference_state.items()}
    assert all(loaded[k].dtype == torch.float32 and torch.equal(loaded[k], v) for k, v in expected.items())
    assert np.isfinite(_picture(pipe, "flux2-klein")).all()


def test_a_gguf_flux1_transformer_loads_quantized_with_comfy_text_encoders_and_vae(tiny_models, reference, tmp_path):
    """A Q8_0 GGUF transformer (as city96's FLUX.1 files) in diffusion_models/, CLIP-L, T5 and ae.safetensors
    beside it: the transformer stays quantized and the picture is the folder's within Q8_0's rounding."""
    pipe = reference["flux1"]
    path = _gguf_tree(tiny_models, pipe, tmp_path)
    loaded = _load(path, _info(path, "flux1", "dev"))
    assert type(loaded.transformer.transformer_blocks[0].attn.to_q).__name__ == "GGUFLinear"
    assert loaded.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.uint8
    difference = np.abs(_picture(loaded, "flux1") - _picture(pipe, "flux1"))
    assert difference.max() < 2 / 255 and difference.mean() < 1 / 255


def _gguf_tree(tiny_models, pipe, tmp_path) -> Path:
    """The tiny FLUX.1 as a Q8_0 GGUF transformer in a ComfyUI models tree, its text encoders and VAE beside it."""
    gguf = pytest.importorskip("gguf")
    models = tmp_path / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True)
    path = models / "diffusion_models" / "tiny-flux1-Q8_0.gguf"
    _write_gguf(gguf, path, flow_layout.flux1_transformer(pipe.transformer.state_dict()))
    shutil.copytree(tiny_models["flux1"].config, path.with_suffix(".config"))
    save_file(flow_layout.clip_text(pipe.text_encoder), str(models / "text_encoders" / "clip_l.safetensors"))
    save_file(flow_layout.plain_text(pipe.text_encoder_2), str(models / "text_encoders" / "t5xxl_fp16.safetensors"))
    save_file(flow_layout.ldm_vae(pipe.vae), str(models / "vae" / "ae.safetensors"))
    return path


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_gguf_flux1_model_runs_img2img_inpaint_and_outpaint(tiny_models, reference, tmp_path, precision):
    """The img2img and inpaint pipelines are made from the loaded one (from_pipe) and share its quantized
    transformer, which cannot be cast to another dtype."""
    from desktop.core.geometry import Margins
    from desktop.core.progress import TaskState
    from desktop.core.request import Mode
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager
    from tests.support.requests import make_request

    path = _gguf_tree(tiny_models, reference["flux1"], tmp_path)
    manager = ModelManager(devices.choose("cpu", precision))
    init = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    for fields in ({"mode": Mode.IMG2IMG, "init_image": init, "strength": 0.5},
                   {"mode": Mode.INPAINT, "init_image": init, "mask": mask, "mask_blur": 0, "strength": 1.0},
                   {"mode": Mode.OUTPAINT, "init_image": init, "expand": Margins(0, 16, 0, 0), "mask_blur": 0}):
        request = make_request(prompt="a lighthouse", width=64, height=64, steps=2, seed=1, sampler="Euler",
                               schedule="Automatic", cfg_scale=1.0, model=str(path), **fields)
        result, = generate.run(request, TaskState(), manager)
        assert result.image.std() > 1
    transformer = manager.current.pipelines[("inpaint", ())].transformer
    assert type(transformer.transformer_blocks[0].attn.to_q).__name__ == "GGUFLinear"


def _write_gguf(gguf, path: Path, state: dict) -> None:
    """Q8_0 for every matrix whose rows fill whole 32-value blocks, F32 for the rest (as llama.cpp's tools do)."""
    writer = gguf.GGUFWriter(str(path), "flux")
    for name, value in state.items():
        array = value.float().numpy()
        if array.ndim == 2 and array.shape[1] % 32 == 0:
            quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_tiny_model_whose_comfy_tree_is_gone_is_built_again(tmp_path):
    from desktop.engine import tiny

    model = tiny.build(tmp_path, "flux2-klein")
    tree = flow_layout.comfy_tree(model)
    assert sorted(p.name for p in tree.iterdir()) == ["diffusion_models", "text_encoders", "vae"]
    shutil.rmtree(tree)
    tiny.build(tmp_path, "flux2-klein")
    assert (tree / "vae" / "flux2-vae.safetensors").is_file()


@pytest.mark.parametrize("kind", ["flux1", "zimage"])
def test_the_engine_runs_a_single_file_as_it_runs_the_diffusers_folder(tiny_models, kind):
    """Through ModelManager and generate.run: txt2img and inpaint (another pipeline of the same weights)."""
    from desktop.core.progress import TaskState
    from desktop.core.request import Mode
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager
    from tests.support.requests import make_request

    manager = ModelManager(devices.choose("cpu", "fp32"))
    rng = np.random.default_rng(0)
    init = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    modes = ({}, {"mode": Mode.INPAINT, "init_image": init, "mask": mask, "mask_blur": 0, "strength": 1.0})
    for fields in modes:
        pictures = []
        for model in (tiny_models[kind].folder, _single_file(tiny_models, kind)):
            request = make_request(prompt="a lighthouse", width=64, height=64, steps=2, seed=1, sampler="Euler",
                                   schedule="Automatic", cfg_scale=1.0, model=str(model), **fields)
            pictures.append(generate.run(request, TaskState(), manager)[0].image.astype(int))
        assert np.abs(pictures[0] - pictures[1]).max() <= 1  # one level of rounding at most


def test_a_parts_tensors_are_read_one_by_one_as_safetensors_reads_them(tmp_path):
    """flow_files reads a text encoder or VAE file tensor by tensor (converting each to the working dtype):
    the same tensors as safetensors' own reader, of every dtype, empty ones and those of one prefix alone."""
    path = tmp_path / "part.safetensors"
    torch.manual_seed(0)
    state = {"vae.a": torch.randn(3, 5, dtype=torch.float16), "vae.b": torch.randn(7).to(torch.float8_e4m3fn),
             "vae.c": torch.arange(6, dtype=torch.int64).reshape(2, 3), "vae.d": torch.tensor([True, False]),
             "vae.e": torch.zeros(0, 4, dtype=torch.bfloat16), "vae.f": torch.randn(2, 2, dtype=torch.float32),
             "other.g": torch.randn(4)}
    save_file(state, str(path))
    read = flow_files._read_prefixed(path, "vae.", torch.bfloat16)
    expected = {k[4:]: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in load_file(str(path)).items()
                if k.startswith("vae.")}
    assert sorted(read) == sorted(expected)
    assert all(read[k].dtype == v.dtype and read[k].shape == v.shape and torch.equal(read[k], v)
               for k, v in expected.items())


MEASURE = """
import os, sys, torch
from desktop.engine import flow_files

def resident(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

flow_files._read_prefixed(sys.argv[1], "encoder.block.0.", torch.bfloat16)  # torch's first conversion sets up
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from what is resident now
before = resident("VmRSS:")
state = flow_files._read_prefixed(sys.argv[1], "", torch.bfloat16)
print(resident("VmHWM:") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the peak memory is reset through Linux's /proc")
def test_a_parts_file_converted_to_the_working_dtype_takes_little_more_than_its_size(tmp_path):
    """A T5-XXL in fp16 made bf16 once took twice its size (the whole file mapped beside the converted copy)."""
    import subprocess
    import sys

    path = tmp_path / "t5xxl_fp16.safetensors"
    save_file({f"encoder.block.{i}.weight": torch.ones(1024, 1024, dtype=torch.float16) for i in range(48)},
              str(path))  # 96 MB
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    rise = int(out.stdout.split()[-1])
    assert rise < 1.5 * size, f"reading took {rise / size:.2f}x the file's size"
