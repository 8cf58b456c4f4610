"""What each flow family's variants hand their pipelines: Z-Image's CFG, FLUX.1 schnell's T5 length, FLUX.1
Kontext's pipelines. Spies on the pipelines' own calls, on the tiny models."""

import diffusers
import pytest

from desktop.core.progress import TaskState
from desktop.engine import devices, generate
from desktop.engine.models import ModelManager
from tests.engine.test_flow_generate import flux1_variant, request


@pytest.fixture(scope="module")
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def spy(monkeypatch, cls, method: str) -> list[dict]:
    """The keyword arguments of every call of cls.method, which still runs."""
    calls, original = [], getattr(cls, method)

    def record(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, record)
    return calls


@pytest.mark.parametrize("cfg, scale", [(1.0, 0.0), (0.5, 0.0), (4.0, 3.0), (7.5, 6.5)])
def test_zimage_gets_the_cfg_scale_less_one(manager, tiny_models, monkeypatch, cfg, scale):
    """Z-Image's pipeline adds guidance_scale x (prompt - negative) to the prompt's prediction: A1111's CFG c is
    its c - 1, and CFG 1 (or less) none."""
    calls = spy(monkeypatch, diffusers.ZImagePipeline, "__call__")
    generate.run(request(tiny_models, "zimage", cfg_scale=cfg), TaskState(), manager)
    assert [call["guidance_scale"] for call in calls] == [scale]


@pytest.fixture(scope="module")
def schnell(tiny_models, tmp_path_factory):
    return flux1_variant(tiny_models, tmp_path_factory.mktemp("schnell") / "tiny-flux1-schnell", "FluxPipeline",
                         guidance_embeds=False)


def test_flux1_schnell_reads_256_t5_tokens_and_dev_512(manager, tiny_models, schnell, monkeypatch):
    """The pipeline's own call of encode_prompt (given the encodings, it encodes nothing) is not counted."""
    calls = spy(monkeypatch, diffusers.FluxPipeline, "encode_prompt")

    def lengths(model, prompt):
        calls.clear()
        generate.run(request(tiny_models, "flux1", model=model, prompt=prompt), TaskState(), manager)
        return [call.get("max_sequence_length", 512) for call in calls if call.get("prompt") is not None]

    assert lengths(schnell, "a schnell lighthouse") == [256]
    assert lengths(str(tiny_models["flux1"].folder), "a dev lighthouse") == [512]


@pytest.fixture(scope="module")
def kontext(tiny_models, tmp_path_factory):
    """A tiny FLUX.1 Kontext: dev's transformer, saved as a FluxKontextPipeline folder."""
    return flux1_variant(tiny_models, tmp_path_factory.mktemp("kontext") / "tiny-flux1-kontext", "FluxKontextPipeline")


def test_flux1_kontext_edits_the_init_picture_in_img2img_and_generates_plainly_in_txt2img(
        manager, tiny_models, kontext, monkeypatch):
    from desktop.core.request import Mode
    from tests.engine.test_flow_generate import Recorder, picture

    assert manager.identify(kontext).variant == "kontext"
    edits = spy(monkeypatch, diffusers.FluxKontextPipeline, "__call__")
    plain = spy(monkeypatch, diffusers.FluxPipeline, "__call__")
    noised = spy(monkeypatch, diffusers.FluxImg2ImgPipeline, "__call__")
    state = Recorder()
    result, = generate.run(request(tiny_models, "flux1", model=kontext, mode=Mode.IMG2IMG, init_image=picture(80, 64),
                                   strength=0.5, width=80, height=64), state, manager)
    assert result.image.shape == (64, 80, 3) and result.image.std() > 1, "the asked size, not Kontext's megapixel"
    assert noised == [] and len(edits) == 1, "the init picture is the reference Kontext edits, not noised"
    assert "strength" not in edits[0] and edits[0]["image"].size == (80, 64)
    assert [done for done, _, _ in state.steps] == [1, 2], "every step: no denoising strength"
    assert ("FLUX.1 Kontext [dev] edits the init picture as the prompt says: the denoising strength is not used."
            in state.notes)
    generate.run(request(tiny_models, "flux1", model=kontext), TaskState(), manager)
    assert len(plain) == 1 and len(edits) == 1
