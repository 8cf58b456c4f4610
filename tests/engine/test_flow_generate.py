"""The flow-matching families (Z-Image, FLUX.2 klein, FLUX.1, SD3.5) end to end on their tiny models: every mode,
previews, seeds, batches, cancel, guidance, the infotext, and what they refuse."""

import numpy as np
import pytest
import torch

from desktop.core import paths
from desktop.core.control import Control, Reference
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.geometry import Margins
from desktop.core.progress import TaskState
from desktop.core.request import Hires, InpaintArea, Mode
from desktop.engine import devices, flow, generate, tiny
from desktop.engine.models import ModelManager
from tests.support.requests import make_request

KINDS = tiny.FLOW_KINDS


@pytest.fixture(scope="module")
def manager():
    """One fp32 manager for the module: each tiny model loads once (the bf16 default is exercised through
    LocalBackend below)."""
    return ModelManager(devices.choose("cpu", "fp32"))


class Recorder(TaskState):
    def __init__(self, cancel_after: int | None = None):
        super().__init__()
        self.steps, self.notes, self._cancel_after = [], [], cancel_after

    def step(self, done, total, preview=None):
        self.steps.append((done, total, preview))
        super().step(done, total, preview)

    def status(self, text):
        self.notes.append(text)

    def cancelled(self):
        return self._cancel_after is not None and len(self.steps) >= self._cancel_after


def request(tiny_models, kind, **fields):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 1, "sampler": "Euler",
              "schedule": "Automatic", "cfg_scale": 1.0, "model": str(tiny_models[kind].folder), **fields}
    sampling = {name: fields.pop(name) for name in ("shift", "distilled_cfg") if name in fields}
    made = make_request(**fields)
    return made.replace(sampling=made.sampling.replace(**sampling)) if sampling else made


def run(manager, tiny_models, kind, state=None, **fields):
    return generate.run(request(tiny_models, kind, **fields), state or TaskState(), manager)


def picture(w=64, h=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def changed(a, b):
    return not np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_gives_a_picture_of_the_asked_size_with_a_preview_every_step(manager, tiny_models, kind, mode):
    """Sizes off the 16-pixel grid of these models come back as asked; an inpaint keeps every pixel outside the
    mask; an outpaint keeps the picture it grows."""
    source = picture(72, 72)
    mask = np.zeros((72, 72), np.uint8)
    mask[16:40, 20:52] = 255
    fields = {Mode.TXT2IMG: {}, Mode.IMG2IMG: {"init_image": source, "strength": 0.5},
              Mode.INPAINT: {"init_image": source, "mask": mask, "mask_blur": 0, "strength": 1.0},
              Mode.OUTPAINT: {"init_image": source, "expand": Margins(0, 16, 0, 0), "mask_blur": 0}}[mode]
    state = Recorder()
    result, = run(manager, tiny_models, kind, state, mode=mode, width=72, height=72, **fields)
    height = 88 if mode is Mode.OUTPAINT else 72
    assert result.image.shape == (height, 72, 3) and result.image.std() > 1
    steps = 1 if mode is Mode.IMG2IMG else 2  # strength 0.5 of 2 steps
    assert [(done, total) for done, total, _ in state.steps] == [(i + 1, steps) for i in range(steps)]
    assert all(preview.shape == (height // 8, 72 // 8, 3) for _, _, preview in state.steps), \
        "a latent-sized preview of the picture being made, at the asked size"
    if mode is Mode.INPAINT:
        assert np.array_equal(result.image[mask == 0], source[mask == 0])
        assert changed(result.image[mask > 0], source[mask > 0])
    if mode is Mode.OUTPAINT:
        assert np.array_equal(result.image[16:], source)


def test_klein_pictures_over_a_megapixel_come_back_at_the_asked_size(manager, tiny_models):
    """FLUX.2 klein's inpaint pipeline (its img2img too) works on a picture over a megapixel scaled down to one."""
    state = Recorder()
    result, = run(manager, tiny_models, "flux2-klein", state, mode=Mode.IMG2IMG, init_image=picture(1072, 1040),
                  strength=0.5, width=1072, height=1040)
    assert result.image.shape == (1040, 1072, 3)
    assert [preview is not None for _, _, preview in state.steps] == [True]


def test_inpaint_only_masked_repaints_the_masked_area_at_full_size(manager, tiny_models):
    source = picture(96, 80)
    mask = np.zeros((80, 96), np.uint8)
    mask[30:50, 40:60] = 255
    result, = run(manager, tiny_models, "sd3", mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=0,
                  strength=1.0, inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8)
    assert result.image.shape == (80, 96, 3)
    assert np.array_equal(result.image[mask == 0], source[mask == 0])
    assert changed(result.image[mask > 0], source[mask > 0])


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_repeat_and_a_batch_is_its_single_runs(manager, tiny_models, kind):
    first, = run(manager, tiny_models, kind, seed=5)
    again, = run(manager, tiny_models, kind, seed=5)
    other, = run(manager, tiny_models, kind, seed=6)
    batch = run(manager, tiny_models, kind, seed=5, batch_size=2)
    assert np.array_equal(first.image, again.image) and changed(first.image, other.image)
    assert [r.seed for r in batch] == [5, 6]
    for single, batched in zip((first, other), batch):  # batched products may round apart: the same picture
        assert np.abs(single.image.astype(int) - batched.image.astype(int)).mean() < 2.0


@pytest.mark.parametrize("kind", ["sd3", "flux1"])
def test_an_img2img_batch_is_its_single_runs(manager, tiny_models, kind):
    """Each picture of the batch encodes the init picture with its own seed (SD3's pipeline needs one per seed)."""
    fields = {"mode": Mode.IMG2IMG, "init_image": picture(), "strength": 0.5, "steps": 4}
    batch = run(manager, tiny_models, kind, seed=8, batch_size=2, **fields)
    second, = run(manager, tiny_models, kind, seed=9, **fields)
    assert np.abs(second.image.astype(int) - batch[1].image.astype(int)).mean() < 2.0


def test_cancel_after_the_first_step_stops_within_a_step(manager, tiny_models):
    state = Recorder(cancel_after=1)
    with pytest.raises(Cancelled):
        run(manager, tiny_models, "flux1", state, steps=4)
    assert [done for done, _, _ in state.steps] == [1]


def test_out_of_memory_retries_with_a_tiled_vae_and_succeeds(manager, tiny_models, monkeypatch):
    """A transformer has no sliced attention: the retry tiles the VAE and runs again."""
    run(manager, tiny_models, "sd3")
    transformer = manager.pipeline("txt2img").transformer
    forward, failed = transformer.forward, []

    def once(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", once)
    state = Recorder()
    result, = run(manager, tiny_models, "sd3", state)
    assert result.image.shape == (64, 64, 3) and failed
    assert any(note.startswith("Out of memory: trying again with lighter settings") for note in state.notes)


@pytest.mark.parametrize("fields, sentence", [
    ({"controls": (Control("demo", picture(), "canny"),)}, "Control layers (ControlNet) do not work with FLUX.1"),
    ({"references": (Reference(picture()),)}, "Reference pictures (IP-Adapter) do not work with FLUX.1"),
    ({"hires": Hires(enabled=True)}, "The hires fix does not work with FLUX.1 models in Sfumato yet"),
    ({"clip_skip": 2}, "Clip skip does not apply to FLUX.1 models: set it to 1."),
    ({"prompt": "a [lighthouse:castle:0.5]"}, "Prompt editing ([from:to:when]) and alternation ([a|b]) do not work"),
    ({"sampler": "Heun"},
     "The Heun sampler does not work with FLUX.1 models: choose Euler, Euler a, DPM++ 2M or UniPC."),
])
def test_what_flow_models_cannot_do_is_refused_in_a_sentence(manager, tiny_models, fields, sentence):
    state = Recorder()
    with pytest.raises(SfumatoError) as refused:
        run(manager, tiny_models, "flux1", state, **fields)
    assert str(refused.value).startswith(sentence) and str(refused.value).endswith(".")
    assert state.steps == []


def test_the_infotext_has_distilled_cfg_for_flux1_dev_and_the_shift_when_set(manager, tiny_models):
    dev, = run(manager, tiny_models, "flux1", distilled_cfg=2.5)
    assert dict(dev.params) == {"Distilled CFG Scale": "2.5"}
    shifted, = run(manager, tiny_models, "flux1", shift=2.0)
    assert dict(shifted.params) == {"Distilled CFG Scale": "3.5", "Shift": "2"}
    assert changed(shifted.image, run(manager, tiny_models, "flux1")[0].image)
    sd3, = run(manager, tiny_models, "sd3", distilled_cfg=2.5)
    assert dict(sd3.params) == {}, "SD 3.5 takes no distilled guidance"
    assert changed(dev.image, run(manager, tiny_models, "flux1", distilled_cfg=6.0)[0].image)


@pytest.mark.parametrize("kind", ["zimage", "sd3", "flux1"])
def test_the_negative_prompt_counts_only_with_cfg_above_one(manager, tiny_models, kind):
    def image(cfg, negative):
        return run(manager, tiny_models, kind, cfg_scale=cfg, negative_prompt=negative)[0].image

    assert np.array_equal(image(1.0, "fog"), image(1.0, "a red castle at night"))
    assert changed(image(3.0, "fog"), image(3.0, "a red castle at night"))


@pytest.fixture(scope="module")
def klein_base(tiny_models, tmp_path_factory):
    """The tiny FLUX.2 klein as a base (not step-distilled) model, which takes classifier-free guidance."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("klein") / "tiny-flux2-klein-base"
    shutil.copytree(tiny_models["flux2-klein"].folder, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "is_distilled": False}))
    return str(folder)


@pytest.mark.parametrize("mode", [Mode.TXT2IMG, Mode.IMG2IMG])
def test_klein_base_takes_cfg_with_the_negative_prompt(manager, tiny_models, klein_base, mode):
    fields = {"init_image": picture(), "strength": 0.5, "steps": 4} if mode is Mode.IMG2IMG else {}

    def image(cfg, negative):
        return run(manager, tiny_models, "flux2-klein", model=klein_base, mode=mode, cfg_scale=cfg,
                   negative_prompt=negative, **fields)[0].image

    assert np.array_equal(image(1.0, "fog"), image(1.0, "a red castle at night"))
    assert changed(image(3.0, "fog"), image(3.0, "a red castle at night"))


def test_a_step_distilled_klein_says_it_takes_no_cfg(manager, tiny_models):
    state = Recorder()
    guided, = run(manager, tiny_models, "flux2-klein", state, cfg_scale=4.0, negative_prompt="fog")
    assert np.array_equal(guided.image, run(manager, tiny_models, "flux2-klein")[0].image)
    assert "FLUX.2 [klein] 4B is step-distilled and takes no CFG scale: CFG 4 was not used." in state.notes


def test_emphasis_is_read_as_plain_words_and_the_status_says_so(manager, tiny_models):
    state = Recorder()
    weighted, = run(manager, tiny_models, "zimage", state, prompt="a (lighthouse:1.3), [fog]")
    plain, = run(manager, tiny_models, "zimage", prompt="a lighthouse, fog")
    assert np.array_equal(weighted.image, plain.image)
    assert any("Emphasis weights such as (word:1.2) are not applied for Z-Image" in note for note in state.notes)
    assert flow.plain_prompt(r"a \(tall\) tower BREAK at dusk") == ("a (tall) tower at dusk", False)


def test_the_prompt_is_encoded_once_per_conditioning(manager, tiny_models, monkeypatch):
    run(manager, tiny_models, "sd3", prompt="an encoded lighthouse", cfg_scale=2.0)
    calls = []
    encode = flow.encode
    monkeypatch.setattr(flow, "encode", lambda *args: calls.append(args) or encode(*args))
    run(manager, tiny_models, "sd3", prompt="an encoded lighthouse", cfg_scale=2.0, seed=9, batch_size=2)
    assert calls == [], "a new seed or batch reuses the encoded prompt"
    run(manager, tiny_models, "sd3", prompt="an encoded lighthouse", cfg_scale=2.0, negative_prompt="fog")
    assert len(calls) == 1, "a new negative prompt is a new conditioning"


def flux1_variant(tiny_models, folder, pipeline: str, **transformer):
    """The tiny FLUX.1 dev model with another variant's transformer, saved as that variant's pipeline."""
    import diffusers

    base = diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder, local_files_only=True)
    torch.manual_seed(0)
    model = diffusers.FluxTransformer2DModel.from_config({**base.transformer.config, **transformer})
    getattr(diffusers, pipeline).from_pipe(base, transformer=model).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def flux_fill(tiny_models, tmp_path_factory):
    """A tiny FLUX.1 Fill: its transformer takes the latents, the masked picture and the mask."""
    return flux1_variant(tiny_models, tmp_path_factory.mktemp("fill") / "tiny-flux1-fill", "FluxFillPipeline",
                         in_channels=384, out_channels=64)


def test_flux1_schnell_takes_no_distilled_cfg(manager, tiny_models, tmp_path_factory):
    schnell = flux1_variant(tiny_models, tmp_path_factory.mktemp("schnell") / "tiny-flux1-schnell", "FluxPipeline",
                            guidance_embeds=False)
    assert manager.identify(schnell).variant == "schnell"
    first, = run(manager, tiny_models, "flux1", model=schnell, distilled_cfg=2.0)
    other, = run(manager, tiny_models, "flux1", model=schnell, distilled_cfg=6.0)
    assert first.params == () and np.array_equal(first.image, other.image)


@pytest.mark.parametrize("mode", [Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT])
def test_flux1_fill_runs_every_mode_as_an_inpaint_without_cfg(manager, tiny_models, flux_fill, mode):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    fields = {Mode.TXT2IMG: {}, Mode.IMG2IMG: {"init_image": picture(), "strength": 0.5},
              Mode.INPAINT: {"init_image": picture(), "mask": mask, "mask_blur": 0, "strength": 1.0}}[mode]
    state = Recorder()
    result, = run(manager, tiny_models, "flux1", state, mode=mode, model=flux_fill, cfg_scale=3.0, **fields)
    assert result.image.shape == (64, 64, 3) and result.image.std() > 1
    assert dict(result.params) == {"Distilled CFG Scale": "3.5"}
    assert "FLUX.1 Fill [dev] takes no CFG scale: CFG 3 was not used." in state.notes
    if mode is Mode.INPAINT:
        assert np.array_equal(result.image[mask == 0], picture()[mask == 0])


@pytest.mark.parametrize("kind", ["flux1", "sd3"])
def test_a_single_file_makes_the_pictures_of_its_folder(manager, tiny_models, kind):
    """Full single files (as ComfyUI's checkpoints folder holds them) load through flow_files."""
    folder, = run(manager, tiny_models, kind)
    single, = run(manager, tiny_models, kind, model=str(tiny_models[kind].checkpoint))
    assert np.abs(folder.image.astype(int) - single.image.astype(int)).mean() < 2.0


def test_demo_flux1_loads_through_the_local_backend(tiny_models, monkeypatch):
    from desktop.core.backend import GENERATION
    from desktop.engine.local import LocalBackend

    monkeypatch.setattr(paths, "demo_model_dir", lambda: tiny_models["flux1"].folder.parent)  # built already
    backend = LocalBackend("cpu")  # the CPU's default precision
    state = Recorder()
    described = backend.load("demo:flux1", state)
    assert (described.ref, described.family, described.variant) == ("demo:flux1", "flux1", "dev")
    assert not any("Non-Commercial" in note for note in state.notes), "a demo's weights are random: no licence"
    assert any(note.startswith("tiny-flux1: about ") and note.endswith(" s per step at 1024x1024 on this CPU.")
               for note in state.notes), "the device plan's estimate before it is placed"
    listed = [(m.ref, m.family) for m in backend.models() if GENERATION in m.kinds]
    assert listed[:2] == [("demo", "sd1"), ("demo:sdxl", "sdxl")]
    assert {"demo:zimage", "demo:flux2-klein", "demo:flux1", "demo:sd3"} <= {ref for ref, _ in listed}
    result, = generate.run(make_request(model="demo:flux1", prompt="a lighthouse", width=64, height=64, steps=2,
                                        sampler="Euler", schedule="Automatic", cfg_scale=1.0, seed=3),
                           TaskState(), backend._manager)
    assert result.image.shape == (64, 64, 3)
    by_path = Recorder()  # the same weights as a model file: its licence is said
    backend.load(str(tiny_models["flux1"].folder), by_path)
    assert any(note.startswith("FLUX.1 [dev]: its weights carry the FLUX.1 [dev] Non-Commercial License")
               for note in by_path.notes)
    backend.close()
