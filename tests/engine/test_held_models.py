"""Several models loaded at once: switching back is instant, a full budget unloads the least recently used
and says so, pipelines are kept per task and extras, and prompt encodings per conditioning."""

import gc
import weakref

import pytest
import torch

from desktop.core import modelfiles
from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState
from desktop.core.request import Conditioning
from desktop.engine import devices, tuning
from desktop.engine.local import LocalBackend
from desktop.engine.models import CHECKPOINT, ModelManager

CUDA_FP16 = devices.DeviceChoice(torch.device("cuda"), torch.float16, "CUDA (test)")


def statuses():
    said = []
    return TaskState(on_status=said.append), said


def weights(manager, ref) -> int:
    return tuning.weights_bytes(next(iter(manager.held(CHECKPOINT, ref).pipelines.values())))


@pytest.fixture
def reads(monkeypatch):
    """Every model file or folder the manager opens, by name."""
    opened = []
    real_identify, real_load = modelfiles.identify, ModelManager._load_pipeline

    def identify(path, *args, **kwargs):
        opened.append(path.name)
        return real_identify(path, *args, **kwargs)

    def load_pipeline(self, path, info):
        opened.append(path.name)
        return real_load(self, path, info)

    monkeypatch.setattr(modelfiles, "identify", identify)
    monkeypatch.setattr(ModelManager, "_load_pipeline", load_pipeline)
    return opened


def test_two_checkpoints_stay_loaded_and_switching_back_reads_no_file(tiny_models, reads):
    first, second = str(tiny_models["sd1"].folder), str(tiny_models["sd1-inpaint"].folder)
    manager = ModelManager(devices.choose("cpu", "fp32"))
    loaded = manager.load(first)
    unet = manager.pipeline("txt2img").unet
    manager.load(second)
    assert manager.current.ref == second
    reads.clear()

    state, said = statuses()
    assert manager.load(first, state) is loaded and manager.current is loaded
    assert reads == [], "the model still loaded is used as it is"
    assert manager.pipeline("txt2img").unet is unet
    assert said == [f"Ready: tiny-sd1 on {manager.device.description}"]
    assert manager.load(second).info.inpaint and reads == []


def test_a_budget_that_fits_one_model_unloads_the_other_and_says_so(tiny_models, reads, monkeypatch):
    first, second = str(tiny_models["sd1"].folder), str(tiny_models["sd1-inpaint"].folder)
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(first)
    one = weights(manager, first) * 1.5
    monkeypatch.setattr(tuning, "measure", lambda choice: (None, int(one / tuning.SYSTEM_SHARE)))
    gone = weakref.ref(manager.pipeline("txt2img").unet)

    state, said = statuses()
    manager.load(second, state)
    assert "Unloaded tiny-sd1 to make room for tiny-sd1-inpaint" in said
    assert manager.held(CHECKPOINT, first) is None
    gc.collect()
    assert gone() is None, "its weights are freed"

    reads.clear()
    state, said = statuses()
    manager.load(first, state)
    assert "tiny-sd1" in reads, "an unloaded model is read from its file again"
    assert "Unloaded tiny-sd1-inpaint to make room for tiny-sd1" in said


def test_the_least_recently_used_model_is_unloaded_first(tiny_models, monkeypatch):
    a, b, c = (str(tiny_models[kind].folder) for kind in ("sd1", "sd1-inpaint", "sdxl"))
    manager = ModelManager(devices.choose("cpu", "fp32"))
    sizes = {}
    for ref in (a, b, c):
        manager.load(ref)
        sizes[ref] = weights(manager, ref)
    manager.unload()
    budget = max(sizes[a] + sizes[b], sizes[a] + sizes[c])  # any two, never all three
    monkeypatch.setattr(tuning, "measure", lambda choice: (None, int(budget / tuning.SYSTEM_SHARE) + 1))

    manager.load(a)
    manager.load(b)
    manager.load(a)  # used after b
    state, said = statuses()
    manager.load(c, state)
    assert [s for s in said if s.startswith("Unloaded")] == ["Unloaded tiny-sd1-inpaint to make room for tiny-sdxl"]
    assert manager.held(CHECKPOINT, a) is not None and manager.held(CHECKPOINT, b) is None


def test_a_full_gpu_unloads_a_model_rather_than_offloading_the_new_one(tiny_models, monkeypatch):
    """On CUDA the budget is the GPU's free memory: the weights held there come back when a model is unloaded."""
    first, second = str(tiny_models["sd1"].folder), str(tiny_models["sd1-inpaint"].folder)
    monkeypatch.setattr(tuning, "configure_backends", lambda choice: None)
    monkeypatch.setattr(tuning, "apply", lambda pipe, plan, device: None)  # no GPU here: placing is pretended
    manager = ModelManager(CUDA_FP16)
    monkeypatch.setattr(tuning, "measure", lambda choice: (None, None))
    manager.load(first)
    one = weights(manager, first)
    card = one + tuning.working_memory(manager.current.info.family) + one // 2  # fits one model, not two

    def measure(choice):
        used = sum(h.size for h in manager._held.values() if h.pool == tuning.GPU)
        return card - used, 64 * tuning.GiB

    monkeypatch.setattr(tuning, "measure", measure)
    state, said = statuses()
    loaded = manager.load(second, state)
    assert "Unloaded tiny-sd1 to make room for tiny-sd1-inpaint" in said
    assert not loaded.plan.offload, "the room made is used whole, not offloaded"


def test_pipelines_share_the_weights_and_are_kept_by_task_and_extras(tiny_models):
    first, second = str(tiny_models["sd1"].folder), str(tiny_models["sd1-inpaint"].folder)
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(second)
    other_vae = manager.pipeline("inpaint").vae
    manager.load(first)
    txt2img, img2img, inpaint = (manager.pipeline(task) for task in ("txt2img", "img2img", "inpaint"))
    assert txt2img.unet is img2img.unet is inpaint.unet and txt2img.vae is inpaint.vae
    assert manager.pipeline("img2img") is img2img, "made once"

    extras = (("vae", other_vae),)
    with_vae = manager.pipeline("txt2img", extras)
    assert with_vae is not txt2img and with_vae.vae is other_vae
    assert with_vae.unet is txt2img.unet and with_vae.text_encoder is txt2img.text_encoder
    assert manager.pipeline("txt2img", extras) is with_vae
    assert manager.pipeline("txt2img").vae is txt2img.vae, "the model's own pipeline keeps its VAE"


def test_the_prompt_is_encoded_again_only_when_the_conditioning_changes(tiny_models, monkeypatch):
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(str(tiny_models["sd1"].folder))
    pipe = manager.pipeline("txt2img")
    encoder, calls = pipe.text_encoder, []
    real_forward = encoder.forward

    def forward(*args, **kwargs):
        calls.append(1)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", forward)

    def encodes(conditioning, guided=True, using=pipe) -> bool:
        before = len(calls)
        with torch.inference_mode():
            manager.span_embeddings(using, [conditioning], guided)[0]
        return len(calls) > before

    base = Conditioning(prompt="a boat", negative_prompt="fog")
    assert encodes(base)
    assert not encodes(Conditioning(prompt="a boat", negative_prompt="fog")), "the same conditioning: no encoding"
    assert encodes(base.replace(clip_skip=2)), "clip skip changes the encoding"
    assert encodes(base.replace(prompt="a ship"))
    assert encodes(base.replace(negative_prompt=""))
    assert encodes(base, guided=False)
    assert not encodes(base, using=manager.pipeline("img2img")), "another task of the model reuses it"

    with torch.inference_mode():
        last = manager.span_embeddings(pipe, [base], True)[0].kwargs["prompt_embeds"]
        skipped = manager.span_embeddings(pipe, [base.replace(clip_skip=2)], True)[0].kwargs["prompt_embeds"]
    assert not torch.equal(last, skipped), "clip skip 2 reads the layer before the last"


@pytest.mark.parametrize("clip_skip", [1, 2, 3, 4])
def test_clip_skip_reads_the_layer_a1111_reads(tiny_models, clip_skip):
    """A1111: the hidden state N from the end (1: the last layer), through the final layer norm."""
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(str(tiny_models["sd1"].folder))
    pipe = manager.pipeline("txt2img")
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    ids = tokenizer("a boat", padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = encoder.final_layer_norm(encoder(ids, output_hidden_states=True).hidden_states[-clip_skip])
        got = manager.span_embeddings(pipe, [Conditioning(prompt="a boat", clip_skip=clip_skip)], False)[0]
    torch.testing.assert_close(got.kwargs["prompt_embeds"], expected)


def test_clip_skip_beyond_the_text_encoder_is_refused_in_a_sentence(tiny_models):
    """(SDXL models ignore clip skip, as in A1111: tests/engine/test_generate.py.)"""
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(str(tiny_models["sd1"].folder))
    pipe = manager.pipeline("txt2img")
    with torch.inference_mode():
        assert manager.span_embeddings(pipe, [Conditioning(prompt="a boat", clip_skip=4)], True)[0]
        with pytest.raises(SfumatoError) as refused:
            manager.span_embeddings(pipe, [Conditioning(prompt="a boat", clip_skip=8)], True)[0]
    assert str(refused.value) == "Clip skip 8 is more than this model's text encoder has layers (4): use 1 to 4."


def test_the_backend_describes_the_model_switched_back_to(tiny_models, reads):
    first, second = str(tiny_models["sd1"].folder), str(tiny_models["sd1-inpaint"].folder)
    backend = LocalBackend("cpu", "fp32")
    described = backend.load(first, TaskState())
    assert backend.load(second, TaskState()).name == "tiny-sd1-inpaint"
    reads.clear()
    again = backend.load(first, TaskState())
    assert again == described and again.name == "tiny-sd1" and reads == []
    backend.close()


def test_the_pools_and_the_system_budget():
    assert tuning.system_budget(16 * tuning.GiB) == 8 * tuning.GiB and tuning.system_budget(None) is None
    assert tuning.pool(CUDA_FP16, tuning.Plan()) == tuning.GPU
    assert tuning.pool(CUDA_FP16, tuning.Plan(offload=True)) == tuning.SYSTEM, "offloaded weights wait in RAM"
    assert tuning.pool(devices.choose("cpu", "fp32"), tuning.Plan()) == tuning.SYSTEM
