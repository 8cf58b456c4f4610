"""Int8 weight storage of a flow model's transformer (torchao): where the device plan chooses it, from the real
models' byte counts, and what it does to the tiny FLUX.1 on the CPU (forced by the setting)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from desktop.core.modelfiles import Family
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import devices, generate, models, tuning
from desktop.engine.models import ModelManager
from tests.support.released_models import meta_components
from tests.support.requests import make_request

pytest.importorskip("torchao")

GiB = tuning.GiB
CUDA_BF16 = devices.DeviceChoice(torch.device("cuda"), torch.bfloat16, "CUDA (test)")
CPU_BF16 = devices.DeviceChoice(torch.device("cpu"), torch.bfloat16, "CPU (test)")
MPS_F16 = devices.DeviceChoice(torch.device("mps"), torch.float16, "MPS (test)")


class MetaPipe:
    """FLUX.1 dev's models on the meta device in bf16 (no weights allocated): enough for the byte counts."""

    def __init__(self, name: str = "flux1-dev"):
        self.components = meta_components(name)
        self.transformer = self.components["transformer"]


@pytest.fixture(scope="module")
def flux():
    pipe = MetaPipe()
    return tuning.weights_bytes(pipe), tuning.largest_component(pipe), tuning.int8_sizes(pipe)


def test_flux1_dev_in_int8_is_half_its_transformer(flux):
    weights, largest, int8 = flux
    assert 33.5e9 < weights < 34e9  # bytes in bf16: the transformer, T5-XXL, CLIP L and the VAE
    saved = weights - int8.weights  # the transformer's 23.8 GB in bf16 becomes about 11.9 GB
    assert 11.7e9 < saved < 11.95e9
    assert 11.9e9 < int8.largest < 12.2e9  # still the largest model: T5-XXL's encoder is 9.5 GB
    assert largest - int8.largest == saved


def decided(choice, flux, gpu, storage="auto"):
    weights, largest, int8 = flux
    return tuning.plan(choice, Family.FLUX1, weights, gpu * GiB, 64 * GiB, largest=largest, int8=int8,
                       storage=storage)


@pytest.mark.parametrize(("gpu", "int8", "offload", "sequential"), [
    (8, False, True, True),  # even in int8 the transformer does not fit: sequential offload in bf16, as before
    (12, False, True, True),  # 11.1 GiB of int8 transformer and a 1 GiB step: just over 12
    (16, True, True, False),  # model offload of the int8 transformer instead of sequential offload
    (24, False, True, False),  # model offload fits in bf16 already: the weights stay bf16
    (80, False, False, False),
])
def test_auto_stores_int8_only_where_a_cuda_gpu_would_otherwise_need_sequential_offload(flux, gpu, int8, offload,
                                                                                     sequential):
    plan = decided(CUDA_BF16, flux, gpu)
    assert (plan.int8, plan.offload, plan.sequential) == (int8, offload, sequential)
    if int8:
        assert plan.note == "model offload: it needs about 22.9 GiB, the GPU has 16.0 GiB free; stored in int8 to " \
                            "fit: about 12.1 GiB"


def test_the_setting_decides_full_never_and_int8_always_but_not_with_sequential_offload(flux):
    assert not decided(CUDA_BF16, flux, 16, "full").int8
    assert decided(CUDA_BF16, flux, 16, "full").sequential
    whole = decided(CUDA_BF16, flux, 24, "int8")  # 20.4 GiB of weights and 2.5 of decode fit a 24 GiB GPU whole
    assert whole.int8 and not whole.offload and whole.note == "stored in int8: about 22.9 GiB"
    assert not decided(CUDA_BF16, flux, 8, "int8").int8  # int8 would still need sequential offload
    assert decided(CPU_BF16, flux, 16, "int8").int8


@pytest.mark.parametrize("choice", [CPU_BF16, MPS_F16])
def test_auto_never_stores_int8_on_the_cpu_or_a_mac(flux, choice):
    assert not decided(choice, flux, 16).int8


def test_a_quantized_transformer_or_none_is_never_stored_int8(flux):
    pipe = MetaPipe()
    pipe.transformer.is_quantized = True  # as diffusers marks a GGUF one
    assert tuning.int8_sizes(pipe) is None
    weights, largest, _ = flux
    assert not tuning.plan(CUDA_BF16, Family.FLUX1, weights, 16 * GiB, largest=largest, int8=None).int8


def test_the_estimate_says_it_is_stored_in_int8_to_fit(flux):
    weights, largest, int8 = flux
    assert tuning.estimate(CUDA_BF16, Family.FLUX1, weights, 16 * GiB, largest=largest, int8=int8) == (
        "needs about 33.9 GiB; this GPU has 16.0 GiB free: stored in int8 to fit: about 12.1 GiB, it will run with "
        "model offload, about 1.3x slower")
    assert tuning.estimate(CUDA_BF16, Family.FLUX1, weights, 16 * GiB, largest=largest, int8=int8,
                           storage="full").endswith("it will run with sequential offload, about 4x slower")


def test_an_int8_model_has_no_lighter_plan():
    assert tuning.lighter(tuning.Plan(offload=True, int8=True)) is None


# -- the tiny FLUX.1 on the CPU --------------------------------------------------------------------------------------

def request(tiny_models, **fields):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 1, "sampler": "Euler",
              "schedule": "Automatic", "cfg_scale": 1.0, "model": str(tiny_models["flux1"].folder), **fields}
    return make_request(**fields)


class Notes(TaskState):
    def __init__(self):
        super().__init__()
        self.notes = []

    def status(self, text):
        self.notes.append(text)


def linear_weights(transformer):
    return [m.weight for m in transformer.modules() if isinstance(m, torch.nn.Linear)]


@pytest.fixture(scope="module")
def pictures(tiny_models):
    """The tiny FLUX.1 in fp32 as it is, and with its transformer forced to int8: (manager, result) each."""
    made = {}
    for storage in ("full", "int8"):
        manager = ModelManager(devices.choose("cpu", "fp32"), storage)
        state = Notes()
        result, = generate.run(request(tiny_models), state, manager)
        made[storage] = (manager, result, state)
    return made


def test_forced_int8_stores_the_tiny_transformers_linear_weights_in_int8(pictures):
    full, int8 = pictures["full"][0], pictures["int8"][0]
    weights = linear_weights(int8.pipeline("txt2img").transformer)
    assert weights and all(w.qdata.dtype == torch.int8 for w in weights)
    assert all(not hasattr(w, "qdata") for w in linear_weights(full.pipeline("txt2img").transformer))
    before = sum(tuning.tensor_bytes(p) for p in full.pipeline("txt2img").transformer.parameters())
    after = sum(tuning.tensor_bytes(p) for p in int8.pipeline("txt2img").transformer.parameters())
    assert after < 0.4 * before  # fp32 -> int8 and a scale a row: 541,184 -> 159,936 bytes
    assert int8.current.plan.int8
    assert any(note.startswith("Ready: tiny-flux1 on CPU") and note.endswith(" (stored in int8)")
               for note in pictures["int8"][2].notes)


def test_the_int8_picture_is_close_to_the_full_one_and_says_so(pictures):
    full, int8 = pictures["full"][1], pictures["int8"][1]
    difference = np.abs(full.image.astype(int) - int8.image.astype(int))
    assert difference.mean() < 1.0 and difference.max() <= 8  # of 255; measured: mean 0.14, max 2
    assert dict(int8.params)["Weights"] == "int8"
    assert "Weights" not in dict(full.params)


def test_img2img_of_an_int8_model_shares_its_int8_transformer(pictures, tiny_models):
    manager, first, _ = pictures["int8"]
    result, = generate.run(request(tiny_models, mode=Mode.IMG2IMG, init_image=first.image, strength=0.6), TaskState(),
                           manager)
    assert result.image.shape == (64, 64, 3) and dict(result.params)["Weights"] == "int8"
    assert manager.pipeline("img2img").transformer is manager.pipeline("txt2img").transformer


def test_without_torchao_forced_int8_says_so_and_loads_as_it_is(tiny_models, monkeypatch):
    monkeypatch.setattr(models, "_torchao", lambda: False)
    manager, state = ModelManager(devices.choose("cpu", "fp32"), "int8"), Notes()
    manager.load(str(tiny_models["flux1"].folder), state)
    assert not manager.current.plan.int8
    assert any(note.endswith("its weights stay as they are: storing them in int8 needs the torchao package.")
               for note in state.notes)


def test_an_int8_model_refuses_a_lora_in_a_sentence_and_keeps_its_weights(pictures, tiny_models, tmp_path):
    """torchao's int8 tensors cannot take a merged change: the sentence says what to do instead."""
    import diffusers

    from desktop.core.errors import SfumatoError
    from desktop.engine import tiny_flow_addons
    from tests.engine.test_embeddings import Folder

    pipe = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)
    made = tiny_flow_addons.build_lora(pipe, "kohya", tmp_path / "flux_kohya.safetensors", seed=1)
    manager, first, _ = pictures["int8"]
    with pytest.raises(SfumatoError) as refused:
        generate.run(request(tiny_models, prompt="a lighthouse <lora:flux_kohya:1>"), TaskState(), manager,
                     addons=Folder(made))
    assert str(refused.value) == ("LoRAs cannot be merged into a FLUX.1 model whose weights are stored in int8: take "
                                  "flux_kohya out of the prompt, or set Weight storage to Full in the Engine "
                                  "settings.")
    again, = generate.run(request(tiny_models), TaskState(), manager)
    assert np.array_equal(again.image, first.image)
