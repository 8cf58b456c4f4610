"""The flow-matching families in the engine: Z-Image, FLUX.2 klein, FLUX.1 and SD 3.5.

What models.py and generate.py do differently for them, in one place:

- the pipeline class of each (family, task): FLUX.2 klein has no img2img pipeline (img2img runs its inpaint
  pipeline with a full mask, as on an SD inpainting model), and FLUX.1 Fill runs every mode as an inpaint;
- what a run hands them: the prompt as plain text (A1111's emphasis brackets taken out: their weights are not
  applied), encoded once per conditioning with the pipeline's own encode_prompt and repeated for the batch,
  and the guidance each takes (CFG scale 1 or less: no classifier-free guidance, the negative prompt unused);
- what they cannot do yet (desktop/core/families.py lists their features), refused in one sentence each.

Their latents are 2x2 patches of an 8x VAE: pictures are generated on a 16-pixel grid (GRID).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import diffusers

from desktop.core import families, prompts
from desktop.core.errors import SfumatoError
from desktop.core.modelfiles import Family, ModelInfo

from . import editing, prompt_encoding

GRID = 16
SCHNELL_TOKENS = 256  # FLUX.1 schnell reads T5 prompts of at most 256 tokens (dev and the others 512)
KLEIN_INPAINT_AREA = 1024 * 1024  # FLUX.2 klein's inpaint pipeline scales a larger picture down to this area

# (family, task) -> pipeline class name. A family without an img2img row runs img2img as a full-mask inpaint.
_PIPELINES = {
    (Family.ZIMAGE, "txt2img"): "ZImagePipeline",
    (Family.ZIMAGE, "img2img"): "ZImageImg2ImgPipeline",
    (Family.ZIMAGE, "inpaint"): "ZImageInpaintPipeline",
    (Family.FLUX2_KLEIN, "txt2img"): "Flux2KleinPipeline",
    (Family.FLUX2_KLEIN, "inpaint"): "Flux2KleinInpaintPipeline",
    (Family.FLUX1, "txt2img"): "FluxPipeline",
    (Family.FLUX1, "img2img"): "FluxImg2ImgPipeline",
    (Family.FLUX1, "inpaint"): "FluxInpaintPipeline",
    (Family.SD3, "txt2img"): "StableDiffusion3Pipeline",
    (Family.SD3, "img2img"): "StableDiffusion3Img2ImgPipeline",
    (Family.SD3, "inpaint"): "StableDiffusion3InpaintPipeline",
}
_FILL = "FluxFillPipeline"  # FLUX.1 Fill: an inpainting model, every mode through it
_KONTEXT = "FluxKontextPipeline"  # FLUX.1 Kontext's img2img: the init picture is the reference it edits


def pipeline_classes() -> set[type]:
    """Every pipeline class the flow families can be run with (for the installer's list of packages)."""
    return {getattr(diffusers, name) for name in (*_PIPELINES.values(), _FILL, _KONTEXT)}


def is_inpaint_model(info: ModelInfo) -> bool:
    """A model that only inpaints (an SD inpainting model, FLUX.1 Fill): every mode runs as an inpaint, txt2img
    and img2img on a full mask."""
    return info.inpaint or (info.family is Family.FLUX1 and info.variant == "fill")


def has_img2img(family: Family | str) -> bool:
    return (Family(family), "img2img") in _PIPELINES


def pipeline_class(info: ModelInfo, task: str) -> type:
    """The diffusers class of `info`'s model for "txt2img", "img2img" or "inpaint"."""
    if is_inpaint_model(info):
        if info.family is Family.FLUX1:
            return getattr(diffusers, _FILL)
        task = "inpaint"
    if task == "img2img" and info.family is Family.FLUX1 and info.variant == "kontext":
        return getattr(diffusers, _KONTEXT)
    name = _PIPELINES.get((info.family, task))
    if name is None:
        raise ValueError(f"no {info.family.value} pipeline does {task}")
    return getattr(diffusers, name)


def working_size(pipe, width: int, height: int) -> tuple[int, int]:
    """The size `pipe` really generates a width x height picture at: FLUX.2 klein's inpaint pipeline (which also
    runs its img2img) scales a picture over a megapixel down to one, on its 16-pixel grid."""
    if isinstance(pipe, diffusers.Flux2KleinInpaintPipeline) and width * height > KLEIN_INPAINT_AREA:
        scale = math.sqrt(KLEIN_INPAINT_AREA / (width * height))
        return int(width * scale) // GRID * GRID, int(height * scale) // GRID * GRID
    return width, height


def task_inputs(pipe, info: ModelInfo, inputs: dict) -> tuple[dict, str]:
    """A mode's inputs as `pipe` takes them, and what the status says of one it does not use: FLUX.1 Kontext's
    init picture is the reference it edits as the prompt says, not a start to noise, so there is no strength.
    Kontext makes the picture at the asked size (not scaled to a megapixel) from the reference at that size."""
    if isinstance(pipe, getattr(diffusers, _KONTEXT)) and "strength" in inputs:
        inputs = {name: value for name, value in inputs.items() if name != "strength"}
        inputs.update(max_area=inputs["width"] * inputs["height"], _auto_resize=False)
        return inputs, f"{label(info)} edits the init picture as the prompt says: the denoising strength is not used."
    return inputs, ""


def label(info: ModelInfo) -> str:
    spec = families.spec(info.family)
    return spec.variant(info.variant).label or spec.label


# -- what the families cannot do yet ------------------------------------------------


def refuse_unsupported(request, family: Family | str, spans: int = 1) -> None:
    """Raise SfumatoError naming the first feature `request` uses that models of `family` do not have.
    `spans`: how many spans of steps the prompt's editing gives (editing.spans); more than one is editing."""
    name = families.spec(family).label
    conditioning = request.conditioning
    try:
        _, networks = prompts.extract_extra_networks(conditioning.prompt)
    except ValueError as error:
        raise SfumatoError(str(error)) from None
    checks = (
        (families.LORAS, bool(networks),
         f"LoRAs do not work with {name} models in Sfumato yet: take "
         f"{', '.join(dict.fromkeys(n.tag for n in networks))} out of the prompt."),
        (families.CONTROLS, bool(request.controls),
         f"Control layers (ControlNet) do not work with {name} models in Sfumato yet: turn them off or choose an "
         "SD 1.x or SDXL model."),
        (families.REFERENCES, bool(request.references),
         f"Reference pictures (IP-Adapter) do not work with {name} models in Sfumato yet: take them out or choose "
         "an SD 1.x or SDXL model."),
        (families.HIRES, request.hires.enabled,
         f"The hires fix does not work with {name} models in Sfumato yet: turn it off and generate at the size you "
         "want (these models are made for about 1024x1024), or upscale the picture afterwards."),
        (families.CLIP_SKIP, conditioning.clip_skip > 1,
         f"Clip skip does not apply to {name} models: set it to 1."),
        (families.PROMPT_EDITING, spans > 1,
         f"Prompt editing ([from:to:when]) and alternation ([a|b]) do not work with {name} models in Sfumato yet: "
         "write the prompt without them."),
    )
    for feature, used, sentence in checks:
        if used and not families.supports(family, feature):
            raise SfumatoError(sentence)


def refuse_sampler(family: Family | str, sampler: str) -> None:
    """Raise SfumatoError when `sampler` has no flow-matching scheduler, listing those that have one."""
    samplers = families.spec(family).samplers or families.FLOW_SAMPLERS
    if sampler not in samplers:
        raise SfumatoError(f"The {sampler} sampler does not work with {families.spec(family).label} models: choose "
                           f"{_either(samplers)}.")


def _either(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def plain_prompt(text: str) -> tuple[str, bool]:
    """The prompt as these models read it, and whether it had emphasis weights that are not applied.

    A1111's brackets and weights are taken out ("(cat:1.2)" reads "cat", "\\(" a bracket) and BREAK becomes a
    space: the text encoders of these families are not CLIP token chunks to weight one by one."""
    try:
        text = prompts.extract_extra_networks(text)[0]  # <lora:...> tags are not words (generate.py merges them)
    except ValueError as error:
        raise SfumatoError(str(error)) from None
    pieces = prompts.parse_emphasis(text)
    weighted = any(piece.weight != 1.0 for piece in pieces if not piece.is_break)
    plain = " ".join("".join(" " if piece.is_break else piece.text for piece in pieces).split())
    return plain, weighted


# -- guidance ------------------------------------------------------------------


@dataclass(frozen=True)
class Guidance:
    """The pipeline's guidance inputs for a run, and what the infotext and status say of them."""

    kwargs: dict
    guided: bool  # classifier-free guidance: the negative prompt is encoded and used
    params: dict = field(default_factory=dict)
    note: str = ""


def guidance(pipe, info: ModelInfo, sampling) -> Guidance:
    """CFG scale <= 1: no classifier-free guidance. FLUX.1: CFG -> true_cfg_scale, Distilled CFG Scale ->
    guidance_scale (models with guidance embedding: dev, Fill, Kontext; schnell has none). Z-Image's pipeline
    adds guidance_scale x (prompt - negative) to the prompt's prediction, so it gets CFG - 1. SD 3.5 and
    FLUX.2 klein base take the CFG scale; a step-distilled klein takes none."""
    family, cfg = info.family, sampling.cfg_scale
    guided = cfg > 1
    params: dict = {}
    note = ""
    if family is Family.FLUX1:
        kwargs = {"guidance_scale": sampling.distilled_cfg}
        if getattr(pipe.transformer.config, "guidance_embeds", False):
            params["Distilled CFG Scale"] = f"{sampling.distilled_cfg:g}"
        if isinstance(pipe, getattr(diffusers, _FILL)):
            if guided:
                note = f"{label(info)} takes no CFG scale: CFG {cfg:g} was not used."
            guided = False
        else:
            kwargs["true_cfg_scale"] = cfg if guided else 1.0
    elif family is Family.ZIMAGE:
        kwargs = {"guidance_scale": cfg - 1.0 if guided else 0.0}
    elif family is Family.FLUX2_KLEIN and getattr(pipe.config, "is_distilled", False):
        if guided:
            note = f"{label(info)} is step-distilled and takes no CFG scale: CFG {cfg:g} was not used."
        kwargs, guided = {"guidance_scale": 1.0}, False
    else:
        kwargs = {"guidance_scale": cfg if guided else 1.0}
    return Guidance(kwargs, guided, params, note)


# -- the prompt ------------------------------------------------------------------


def encode(pipe, info: ModelInfo, prompt: str, negative: str | None, device) -> dict:
    """The pipeline's prompt inputs for one picture (batch 1), from its own encode_prompt; `negative` None:
    unguided, no negative prompt is encoded."""
    family = info.family
    guided = negative is not None
    if family is Family.FLUX1:
        tokens = {"max_sequence_length": SCHNELL_TOKENS} if info.variant == "schnell" else {}
        embeds, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device, **tokens)
        out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if guided:
            embeds, pooled, _ = pipe.encode_prompt(prompt=negative, prompt_2=None, device=device, **tokens)
            out.update(negative_prompt_embeds=embeds, negative_pooled_prompt_embeds=pooled)
        return out
    if family is Family.SD3:
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, device=device, do_classifier_free_guidance=guided,
            negative_prompt=negative)
        out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if guided:
            out.update(negative_prompt_embeds=negative_embeds, negative_pooled_prompt_embeds=negative_pooled)
        return out
    if family is Family.ZIMAGE:
        embeds, negative_embeds = pipe.encode_prompt(prompt=prompt, device=device, do_classifier_free_guidance=guided,
                                                     negative_prompt=negative)
        out = {"prompt_embeds": embeds}
        if guided:
            out["negative_prompt_embeds"] = negative_embeds
        return out
    if family is Family.FLUX2_KLEIN:
        out = {"prompt_embeds": pipe.encode_prompt(prompt=prompt, device=device)[0]}
        if guided:
            out["negative_prompt_embeds"] = pipe.encode_prompt(prompt=negative, device=device)[0]
        return out
    raise ValueError(f"{family.value} is not a flow-matching family")


def batched(encoded: dict, batch: int) -> dict:
    """The encodings of one picture repeated for `batch` pictures: the pipelines take them for the whole batch
    (num_images_per_prompt 1), as some do not repeat encodings they are given."""
    out = {}
    for name, value in encoded.items():
        if isinstance(value, list):  # Z-Image: one tensor per picture, of its own length
            out[name] = [tensor for tensor in value for _ in range(batch)]
        else:
            out[name] = value.repeat(batch, *(1,) * (value.ndim - 1))
    return out


def conditioning(encoded: dict, guide: Guidance, batch: int) -> editing.Schedule:
    """The run's prompt and guidance inputs as an editing.Schedule of one span: a flow model's prompt never
    switches; the infotext's keys go in its encoding's params."""
    kwargs = {**batched(encoded, batch), **guide.kwargs, "num_images_per_prompt": 1}
    return editing.Schedule([(0, prompt_encoding.Encoded(kwargs, dict(guide.params)))], guide.guided, batch)

