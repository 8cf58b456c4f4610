"""LoRAs for the flow-matching families on their tiny models: read through diffusers' converters (kohya and
ai-toolkit/diffusers layouts of FLUX.1, the diffusers layout of SD 3.5, Z-Image and FLUX.2 klein), merged for
the run, exactly gone when taken out, and refused in a sentence when made for another family."""

import diffusers
import numpy as np
import pytest

from desktop.core import families
from desktop.core.errors import SfumatoError
from desktop.core.modelfiles import Family, identify
from desktop.core.progress import TaskState
from desktop.engine import devices, generate, tiny_addons, tiny_flow_addons
from desktop.engine.models import ModelManager
from tests.engine.test_embeddings import Folder
from tests.support.requests import make_request

PIPELINES = {"flux1": "FluxPipeline", "sd3": "StableDiffusion3Pipeline", "zimage": "ZImagePipeline",
             "flux2-klein": "Flux2KleinPipeline"}


@pytest.fixture(scope="module")
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


@pytest.fixture(scope="module")
def loras(tiny_models, tmp_path_factory):
    """name -> a LoRA file for a tiny model: "flux_kohya" and "flux_aitk" (the same changes in FLUX.1's two
    layouts), "flux_other" (another seed), and "<kind>_lora" in the diffusers layout for every flow family."""
    folder = tmp_path_factory.mktemp("flow-loras")
    made = {}
    for kind, cls in PIPELINES.items():
        pipe = getattr(diffusers, cls).from_pretrained(tiny_models[kind].folder)
        made[f"{kind}_lora"] = tiny_flow_addons.build_lora(pipe, "diffusers", folder / f"{kind}_lora.safetensors",
                                                           seed=5)
        if kind == "flux1":
            made["flux_kohya"] = tiny_flow_addons.build_lora(pipe, "kohya", folder / "flux_kohya.safetensors", seed=1)
            made["flux_aitk"] = tiny_flow_addons.build_lora(pipe, "diffusers", folder / "flux_aitk.safetensors",
                                                            seed=1)
            made["flux_other"] = tiny_flow_addons.build_lora(pipe, "kohya", folder / "flux_other.safetensors",
                                                             seed=2)
    return made


def run(manager, tiny_models, kind, prompt, loras=None, **fields):
    fields = {"width": 64, "height": 64, "steps": 2, "seed": 1, "sampler": "Euler", "schedule": "Automatic",
              "cfg_scale": 1.0, **fields}
    request = make_request(model=str(tiny_models[kind].folder), prompt=prompt, **fields)
    addons = Folder(*loras.values()) if loras else None
    return generate.run(request, TaskState(), manager, addons=addons)


def image(manager, tiny_models, kind, prompt, loras=None, **fields):
    return run(manager, tiny_models, kind, prompt, loras, **fields)[0].image


def distance(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_a_flux1_lora_changes_the_picture_and_taking_it_out_restores_it_exactly(manager, tiny_models, loras):
    base = image(manager, tiny_models, "flux1", "a lighthouse")
    zero = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0>", loras)
    assert np.array_equal(zero, base), "weight 0 is no LoRA"
    one, = run(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1>", loras)
    assert np.abs(one.image.astype(int) - base.astype(int)).mean() > 1
    assert dict(one.params)["Lora hashes"] == "flux_kohya: 0123456789ab"
    half = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0.5>", loras)
    assert not np.array_equal(half, one.image) and not np.array_equal(half, base)
    both = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1> <lora:flux_other:0.7>", loras)
    assert not np.array_equal(both, one.image)
    assert np.array_equal(image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1>", loras), one.image)
    without, = run(manager, tiny_models, "flux1", "a lighthouse", loras)
    assert np.array_equal(without.image, base), "every LoRA out: the base picture, exactly"
    assert "Lora hashes" not in dict(without.params)


def test_the_kohya_and_ai_toolkit_layouts_of_the_same_flux1_lora_make_the_same_picture(manager, tiny_models, loras):
    assert identify(loras["flux_kohya"]).family is identify(loras["flux_aitk"]).family is Family.FLUX1
    kohya = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0.8>", loras)
    aitk = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_aitk:0.8>", loras)
    assert np.array_equal(kohya, aitk)
    assert not np.array_equal(kohya, image(manager, tiny_models, "flux1", "a lighthouse"))


def test_switching_loras_gives_the_picture_of_a_fresh_load_with_them(manager, tiny_models, loras):
    image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_other:1>", loras)
    switched = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0.6>", loras)
    fresh = image(ModelManager(devices.choose("cpu", "fp32")), tiny_models, "flux1",
                  "a lighthouse <lora:flux_kohya:0.6>", loras)
    assert np.array_equal(switched, fresh)


def test_a_batch_after_a_lora_change_uses_the_new_weights(manager, tiny_models, loras):
    first = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1>", loras)
    batch = run(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0.4>", loras, batch_size=2)
    singles = [image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0.4>", loras, seed=seed)
               for seed in (1, 2)]
    for result, single in zip(batch, singles, strict=True):  # batched products may round apart: the same picture
        assert distance(result.image, single) < 2.0
    assert distance(batch[0].image, first) > 4 * distance(batch[0].image, singles[0]) + 1


@pytest.mark.parametrize("kind", ["sd3", "zimage", "flux2-klein"])
def test_a_diffusers_lora_of_every_other_flow_family_changes_its_picture_and_goes_exactly(manager, tiny_models,
                                                                                          loras, kind):
    assert identify(loras[f"{kind}_lora"]).family.value == kind
    assert families.supports(kind, families.LORAS)
    base = image(manager, tiny_models, kind, "a lighthouse")
    with_lora = image(manager, tiny_models, kind, f"a lighthouse <lora:{kind}_lora:1>", loras)
    assert np.abs(with_lora.astype(int) - base.astype(int)).mean() > 0.5
    assert np.array_equal(image(manager, tiny_models, kind, "a lighthouse", loras), base)


@pytest.mark.parametrize("kind, name, sentence", [
    ("sd3", "flux_kohya", "flux_kohya.safetensors is a LoRA for FLUX.1; the loaded model is SD 3.5. Choose an SD 3.5 "
                          "LoRA or a FLUX.1 model."),
    ("flux1", "flux2-klein_lora", "flux2-klein_lora.safetensors is a LoRA for FLUX.2 [klein]; the loaded model is "
                                  "FLUX.1. Choose a FLUX.1 LoRA or a FLUX.2 [klein] model."),
    ("flux1", "sd1_detail", "sd1_detail.safetensors is a LoRA for SD 1.x or 2.x; the loaded model is FLUX.1. "
                            "Choose a FLUX.1 LoRA or an SD 1.x or 2.x model."),
    ("sd1", "zimage_lora", "zimage_lora.safetensors is a LoRA for Z-Image; the loaded model is SD 1.x. Choose an "
                           "SD 1.x LoRA or a Z-Image model."),
])
def test_a_lora_for_another_family_is_refused_in_a_sentence_and_the_model_stays_as_it_was(
        manager, tiny_models, loras, tmp_path, kind, name, sentence):
    files = dict(loras)
    sd1 = diffusers.StableDiffusionPipeline.from_pretrained(tiny_models["sd1"].folder, safety_checker=None,
                                                            requires_safety_checker=False)
    files["sd1_detail"] = tiny_addons.build_lora(sd1, "kohya", tmp_path / "sd1_detail.safetensors", seed=1)
    with pytest.raises(SfumatoError) as refused:
        run(manager, tiny_models, kind, f"a lighthouse <lora:{name}:1>", files)
    assert str(refused.value) == sentence
    fields = {"sampler": "DPM++ 2M", "cfg_scale": 7.0} if kind == "sd1" else {}
    assert np.array_equal(image(manager, tiny_models, kind, "a lighthouse", files, **fields),
                          image(manager, tiny_models, kind, "a lighthouse", **fields)), "left at base"


def test_a_lora_of_flux1s_text_encoder_encodes_the_prompt_again(manager, tiny_models, loras):
    """kohya's FLUX.1 LoRAs may change the CLIP text encoder (A1111's text weight comes first in the tag): the
    prompt's encoding is remembered per set of LoRAs, never reused from a run without them."""
    base = image(manager, tiny_models, "flux1", "a lighthouse")
    text_only = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1:0>", loras)
    transformer_only = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:0:1>", loras)
    both = image(manager, tiny_models, "flux1", "a lighthouse <lora:flux_kohya:1>", loras)
    assert len({base.tobytes(), text_only.tobytes(), transformer_only.tobytes(), both.tobytes()}) == 4
    assert np.array_equal(image(manager, tiny_models, "flux1", "a lighthouse"), base)


@pytest.mark.parametrize("scaled", ["alpha tensors", "peft metadata"])
def test_a_diffusers_loras_alpha_scales_it_as_peft_does(tiny_models, loras, tmp_path, scaled):
    """alpha / rank is the scale: from ``.alpha`` tensors, else from the lora_alpha of diffusers' metadata."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from desktop.engine import lora
    from desktop.engine.flow_lora import FlowLoraPatcher

    tensors = load_file(loras["flux_aitk"])
    stems = {k.removesuffix(".lora_A.weight") for k in tensors if k.endswith(".lora_A.weight")}
    if scaled == "alpha tensors":
        save_file({**tensors, **{f"{s}.alpha": torch.tensor(8.0) for s in stems}}, tmp_path / "twice.safetensors")
    else:
        metadata = {"lora_adapter_metadata": json.dumps({"transformer.r": 4, "transformer.lora_alpha": 8})}
        save_file(tensors, tmp_path / "twice.safetensors", metadata=metadata)
    pipe = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)
    patcher, layer = FlowLoraPatcher(pipe, "flux1"), pipe.transformer.transformer_blocks[0].attn.to_q
    base = layer.weight.detach().clone()
    patcher.apply([lora.LoraUse(loras["flux_aitk"])])
    once = layer.weight.detach() - base
    patcher.apply([lora.LoraUse(tmp_path / "twice.safetensors")])
    assert torch.allclose(layer.weight.detach() - base, 2 * once, atol=1e-6) and once.abs().max() > 0
    patcher.restore()
    assert torch.equal(layer.weight, base)


def test_a_lora_merges_into_a_model_under_sequential_offload(tiny_models, loras):
    """A model too large for the GPU runs with sequential CPU offload: its layers hold empty (meta) tensors between
    runs and accelerate's hooks the weights each run moves in. Those are merged, and restored exactly."""
    import torch

    from desktop.engine import lora
    from desktop.engine.flow_lora import FlowLoraPatcher

    plain = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)
    FlowLoraPatcher(plain, "flux1").apply([lora.LoraUse(loras["flux_kohya"], unet=0.7)])
    offloaded = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)
    offloaded.enable_sequential_cpu_offload(device="cpu")
    layer = offloaded.transformer.transformer_blocks[0].attn.to_q
    stored = layer._hf_hook.weights_map["weight"]
    base = stored.clone()
    patcher = FlowLoraPatcher(offloaded, "flux1")
    patcher.apply([lora.LoraUse(loras["flux_kohya"], unet=0.7)])
    assert layer.weight.device.type == "meta"
    assert torch.equal(stored, plain.transformer.transformer_blocks[0].attn.to_q.weight)
    patcher.restore()
    assert torch.equal(stored, base)


def test_a_gguf_quantized_model_refuses_a_lora_in_a_sentence(tiny_models, loras):
    """GGUF's quantized blocks cannot take a merged change: the sentence says what to do instead."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from desktop.engine import lora
    from desktop.engine.flow_lora import FlowLoraPatcher

    pipe = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)
    pipe.transformer.proj_out.weight = GGUFParameter(pipe.transformer.proj_out.weight.data.clone(), quant_type=1)
    with pytest.raises(lora.LoraError) as refused:
        FlowLoraPatcher(pipe, "flux1").apply([lora.LoraUse(loras["flux_kohya"])])
    assert str(refused.value) == ("LoRAs cannot be merged into a GGUF-quantized FLUX.1 model yet: take flux_kohya out "
                                  "of the prompt, or choose the model's .safetensors file.")
