"""What each model family needs and defaults to: one table the panel, the engine and the infotext read.

SD 1.x, 2.x and SDXL are UNet models with CLIP text encoders and the A1111
samplers. The flow-matching families (Z-Image, FLUX.2 klein, FLUX.1, SD3.5)
are transformers with their own text encoders (Qwen3, T5-XXL), 16- or
32-channel latents and flow-matching schedulers; some take a "distilled"
guidance instead of (or beside) classifier-free guidance, and all take a
"shift" of their noise schedule. A family has variants (FLUX.1 dev and schnell,
Z-Image Turbo and base, ...), told apart from the file (desktop/core/modelfiles.py
sets ModelInfo.variant), each with the settings its makers recommend.

Pure data: safe to import anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop.core.modelfiles import Family

#: What a family can do beyond the four modes (the panel disables the rest, the engine refuses them in a sentence).
LORAS, EMBEDDINGS, CONTROLS, REFERENCES, HIRES, CLIP_SKIP, EMPHASIS, PROMPT_EDITING = (
    "loras", "embeddings", "controls", "references", "hires", "clip_skip", "emphasis", "prompt_editing")
_UNET_FEATURES = frozenset({LORAS, EMBEDDINGS, CONTROLS, REFERENCES, HIRES, CLIP_SKIP, EMPHASIS, PROMPT_EDITING})
_FLOW_FEATURES = frozenset({LORAS})  # LoRAs through diffusers' converters (desktop/engine/flow_lora.py)

#: The A1111 sampler names that have a flow-matching scheduler (desktop/engine/schedulers.py maps them): only
#: those every flow pipeline runs in every mode, as steps on FlowMatchEuler's sigmas (diffusers' own FlowMatchHeun,
#: DPM-Solver and UniPC do not take the `sigmas`, `mu` and scale_noise those pipelines use).
FLOW_SAMPLERS = ("Euler", "Euler a", "DPM++ 2M", "UniPC")

_NON_COMMERCIAL_FLUX = ("its weights carry the FLUX.1 [dev] Non-Commercial License: pictures may be used, the "
                        "model may not be used commercially without a licence from Black Forest Labs")
_NON_COMMERCIAL_FLUX2 = ("its weights carry the FLUX Non-Commercial License: the model may not be used "
                         "commercially without a licence from Black Forest Labs")
_STABILITY_COMMUNITY = ("its weights carry the Stability AI Community License: free for people and organisations "
                        "with under USD 1 million of yearly revenue; above that it needs Stability AI's "
                        "Enterprise licence")


@dataclass(frozen=True)
class Variant:
    """The settings a variant's makers recommend, applied when a model of it is chosen."""

    label: str  # "FLUX.1 [dev]"
    steps: int
    cfg_scale: float  # 1: no classifier-free guidance (the negative prompt is not used)
    distilled_cfg: float | None = None  # the guidance the model was distilled to take (FLUX.1 dev); None: none
    shift: float | None = None  # None: the model's own scheduler config (dynamic shifting where it has it)
    licence: str = ""  # a sentence when it is not free to use commercially ("" for Apache-2.0, MIT, ...)
    sampler: str = "Euler"
    schedule: str = "Automatic"


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    label: str  # "FLUX.1"
    flow: bool  # a flow-matching transformer (not an A1111 UNet model)
    size: int  # the side it was trained at
    variants: dict[str, Variant] = field(default_factory=dict)  # "" is the variant of a file that does not say
    features: frozenset[str] = frozenset()
    samplers: tuple[str, ...] = ()  # () for every A1111 sampler
    demo: str = ""  # its tiny demo model: "demo:<kind>" (desktop/engine/tiny.py KINDS)

    def variant(self, name: str = "") -> Variant:
        return self.variants.get(name) or self.variants[""]


_SD = Variant("", 20, 7.0, sampler="DPM++ 2M", schedule="Karras")

SPECS: dict[Family, FamilySpec] = {
    Family.SD1: FamilySpec(Family.SD1, "SD 1.x", False, 512, {"": _SD}, _UNET_FEATURES, demo="sd1"),
    Family.SD2: FamilySpec(Family.SD2, "SD 2.x", False, 768, {"": _SD}, _UNET_FEATURES),
    Family.SDXL: FamilySpec(Family.SDXL, "SDXL", False, 1024, {"": _SD}, _UNET_FEATURES, demo="sdxl"),
    Family.ZIMAGE: FamilySpec(Family.ZIMAGE, "Z-Image", True, 1024, {
        "": Variant("Z-Image", 8, 1.0),  # a name that says neither (a finetune): Turbo's few steps
        "turbo": Variant("Z-Image Turbo", 8, 1.0),
        "base": Variant("Z-Image", 28, 4.0),
    }, _FLOW_FEATURES, samplers=FLOW_SAMPLERS, demo="zimage"),
    Family.FLUX2_KLEIN: FamilySpec(Family.FLUX2_KLEIN, "FLUX.2 [klein]", True, 1024, {
        "": Variant("FLUX.2 [klein] 4B", 4, 1.0),
        "4b": Variant("FLUX.2 [klein] 4B", 4, 1.0),
        "9b": Variant("FLUX.2 [klein] 9B", 4, 1.0, licence=_NON_COMMERCIAL_FLUX2),
        "base-4b": Variant("FLUX.2 [klein] base 4B", 50, 4.0),
        "base-9b": Variant("FLUX.2 [klein] base 9B", 50, 4.0, licence=_NON_COMMERCIAL_FLUX2),
    }, _FLOW_FEATURES, samplers=FLOW_SAMPLERS, demo="flux2-klein"),
    Family.FLUX1: FamilySpec(Family.FLUX1, "FLUX.1", True, 1024, {
        "": Variant("FLUX.1 [dev]", 20, 1.0, distilled_cfg=3.5, licence=_NON_COMMERCIAL_FLUX),
        "dev": Variant("FLUX.1 [dev]", 20, 1.0, distilled_cfg=3.5, licence=_NON_COMMERCIAL_FLUX),
        "schnell": Variant("FLUX.1 [schnell]", 4, 1.0),
        "fill": Variant("FLUX.1 Fill [dev]", 28, 1.0, distilled_cfg=30.0, licence=_NON_COMMERCIAL_FLUX),
        "kontext": Variant("FLUX.1 Kontext [dev]", 28, 1.0, distilled_cfg=2.5, licence=_NON_COMMERCIAL_FLUX),
    }, _FLOW_FEATURES, samplers=FLOW_SAMPLERS, demo="flux1"),
    Family.SD3: FamilySpec(Family.SD3, "SD 3.5", True, 1024, {
        "": Variant("SD 3.5 Medium", 40, 4.5, licence=_STABILITY_COMMUNITY),
        "medium": Variant("SD 3.5 Medium", 40, 4.5, licence=_STABILITY_COMMUNITY),
        "large": Variant("SD 3.5 Large", 28, 3.5, licence=_STABILITY_COMMUNITY),
        "large-turbo": Variant("SD 3.5 Large Turbo", 4, 1.0, licence=_STABILITY_COMMUNITY),
    }, _FLOW_FEATURES, samplers=FLOW_SAMPLERS, demo="sd3"),
}
SPECS[Family.SDXL_REFINER] = FamilySpec(Family.SDXL_REFINER, "SDXL refiner", False, 1024, {"": _SD}, _UNET_FEATURES)

#: "demo:<kind>" -> the family of that tiny demo model; "demo" alone is the SD 1.x one.
DEMO_KINDS = {spec.demo: spec.family for spec in SPECS.values() if spec.demo}
DEMO_PREFIX = "demo:"


def spec(family: Family | str) -> FamilySpec | None:
    """The family's entry; None for an unknown family."""
    try:
        return SPECS.get(Family(family))
    except ValueError:
        return None


def is_flow(family: Family | str) -> bool:
    found = spec(family)
    return bool(found and found.flow)


def supports(family: Family | str, feature: str) -> bool:
    """Whether models of `family` can use `feature` (LORAS, CONTROLS, HIRES, ...) in Sfumato today."""
    found = spec(family)
    return found is None or feature in found.features


def demo_kind(ref: str) -> str | None:
    """The tiny model kind a demo reference names: "demo" -> "sd1", "demo:flux1" -> "flux1"; None for others."""
    if ref == "demo":
        return "sd1"
    if ref.startswith(DEMO_PREFIX) and ref[len(DEMO_PREFIX):] in DEMO_KINDS:
        return ref[len(DEMO_PREFIX):]
    return None
