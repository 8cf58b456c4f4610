"""Few-step models and LoRAs: telling them from their files, their makers' settings, and the "Fast" plan.

A few-step model (or a LoRA that makes any model of its family one) draws a picture in 1-8 steps instead of
20-30, mostly without classifier-free guidance (CFG 1: one UNet call a step instead of two). On a CPU that is
the difference between 46 s and 5 s a picture. Each kind wants its own sampler and step count; the settings
below are what the makers' model cards on the Hugging Face Hub recommend (paraphrased, never copied):

- LCM: latent-consistency/lcm-lora-sdv1-5, lcm-lora-sdxl and SimianLuo/LCM_Dreamshaper_v7 cards: LCMScheduler,
  2-8 steps (4 in their examples), guidance off or 1-2.
- TCD: h1t/TCD-SD15, TCD-SD21-base and TCD-SDXL-LoRA cards and diffusers' TCD-LoRA guide: TCDScheduler, 4 steps
  in their examples (4-50 work; Fast keeps 4-8), guidance off; eta (gamma) 0.3 is the engine's business
  (desktop/engine/schedulers.py).
- Hyper-SD: ByteDance/Hyper-SD card: a LoRA per step count, named "Hyper-SD15-8steps-lora",
  "Hyper-SDXL-4steps-lora", ...; the 2-, 4- and 8-step LoRAs with DDIM and trailing timesteps (A1111's
  "SGM Uniform") and guidance off; the 1-step "unified" LoRA with TCD; the "CFG" LoRAs (8 and 12 steps) take a
  guidance of 5-8 and a negative prompt.
- Lightning: ByteDance/SDXL-Lightning card: Euler with trailing timesteps, guidance off, 2, 4 or 8 steps as the
  file says ("sdxl_lightning_4step_unet"); SDXL only. Finetunes ("...LightningBakedvae") take the same.
- Turbo: stabilityai/sd-turbo (an SD 2.1 distillation) and sdxl-turbo cards: 1-4 steps, guidance off, 512x512;
  img2img needs strength x steps >= 1, so the default is 2 steps (strength 0.5 still runs one step). Their own
  scheduler configs: Euler (ancestral for SDXL-Turbo) with trailing timesteps, so Euler a with SGM Uniform.
- DMD2: tianweiy/DMD2 card: "dmd2_sdxl_4step_lora" with LCMScheduler, 4 steps, guidance off; SDXL only.

Only the UNet families (sd1, sd2, sdxl) are this module's: the flow families' few-step variants (FLUX.1
[schnell], Z-Image Turbo, FLUX.2 [klein], SD 3.5 Large Turbo) are told apart and set up by desktop/core/families.py;
fast_plan hands their own settings back (kind "") when the chosen variant is a few-step one, and refuses the others.

Pure Python: no torch, no Qt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from desktop.core.errors import SfumatoError
from desktop.core.samplers import AUTOMATIC, SGM_UNIFORM

LCM, TCD, HYPER, LIGHTNING, TURBO, DMD2 = "lcm", "tcd", "hyper", "lightning", "turbo", "dmd2"
KINDS = (LCM, TCD, HYPER, LIGHTNING, TURBO, DMD2)
LABELS = {LCM: "LCM", TCD: "TCD", HYPER: "Hyper-SD", LIGHTNING: "Lightning", TURBO: "Turbo", DMD2: "DMD2"}
NONE = "none"  # a user's mark (settings.few_step_marks) saying "not few-step", whatever the name says

#: The families each kind was released for (Fast takes a LoRA of another family only when its owner marked it).
FAMILIES = {LCM: ("sd1", "sdxl"), TCD: ("sd1", "sd2", "sdxl"), HYPER: ("sd1", "sdxl"), LIGHTNING: ("sdxl",),
            TURBO: ("sd2", "sdxl"), DMD2: ("sdxl",)}
UNET_FAMILIES = ("sd1", "sd2", "sdxl")

#: The order fast_plan takes a family's few-step LoRAs in. LCM first: its LoRA works on most finetunes of its base
#: model at 2-8 steps with the LCM sampler and still takes a little guidance (CFG 1-2). Hyper-SD next: trained per
#: step count, good on finetunes. TCD: finer detail than LCM at the same steps but its LoRA fits finetunes less
#: well. DMD2 (SDXL): very good at its 4 fixed steps, no latitude. Lightning's LoRA last: its makers say the full
#: Lightning UNet is the better choice and the LoRA suits other SDXL models least.
LORA_ORDER = (LCM, HYPER, TCD, DMD2, LIGHTNING)


class NoFastPath(SfumatoError):
    """The model has no few-step path with the files there are: one sentence saying what to add and where."""


@dataclass(frozen=True)
class Recipe:
    """The settings a few-step kind is made for."""

    kind: str  # KINDS, or "" for a flow family's few-step variant (desktop/core/families.py)
    label: str  # "LCM"
    sampler: str  # A1111's name (desktop/core/samplers.py)
    schedule: str  # "Automatic" or samplers.SGM_UNIFORM
    steps: int
    cfg_scale: float  # 1: no classifier-free guidance (the negative prompt is not used)
    steps_range: tuple[int, int]
    cfg_range: tuple[float, float]
    size: int = 0  # the long side it was distilled at when that is not its family's (Turbo: 512); 0: the family's
    lora_weight: float = 1.0


@dataclass(frozen=True)
class _Kind:
    sampler: str
    schedule: str
    steps: int
    steps_range: tuple[int, int]
    cfg_range: tuple[float, float] = (1.0, 1.0)
    size: int = 0


_RECIPES = {
    LCM: _Kind("LCM", AUTOMATIC, 4, (2, 8), (1.0, 2.0)),
    TCD: _Kind("TCD", AUTOMATIC, 4, (4, 8)),
    HYPER: _Kind("DDIM", SGM_UNIFORM, 8, (1, 12)),
    LIGHTNING: _Kind("Euler", SGM_UNIFORM, 4, (2, 8), (1.0, 2.0)),
    TURBO: _Kind("Euler a", SGM_UNIFORM, 2, (1, 4), size=512),
    DMD2: _Kind("LCM", AUTOMATIC, 4, (1, 4)),
}
HYPER_GUIDED_CFG = (5.0, 8.0)  # Hyper-SD's "CFG" LoRAs
# A full LCM checkpoint whose UNet takes the guidance as an embedding (time_cond_proj_dim: SimianLuo/
# LCM_Dreamshaper_v7): the pipeline gives it CFG - 1 with one UNet batch, and its card runs guidance_scale 8.
LCM_EMBEDDED_CFG, LCM_EMBEDDED_RANGE = 8.0, (3.0, 12.0)


def recipe(kind: str, family: str = "sd1", steps_hint: int | None = None, *, guided: bool = False) -> Recipe:
    """The settings for a few-step `kind`; `steps_hint` is the step count its file's name says (steps_in_name),
    `guided` that it takes guidance (Hyper-SD's "CFG" LoRAs: guided_in_name; a full LCM checkpoint whose UNet
    embeds the guidance: ModelInfo.guidance_embedded, CFG 8). Raises ValueError for
    a kind not in KINDS. `family` is the model's ("sd1", "sdxl", ...); every kind's settings are the same in each."""
    if kind not in _RECIPES:
        raise ValueError(f"unknown few-step kind {kind!r}; known kinds: {', '.join(KINDS)}")
    base = _RECIPES[kind]
    lo, hi = base.steps_range
    steps = min(max(steps_hint, lo), hi) if steps_hint else base.steps
    sampler, schedule, cfg_range = base.sampler, base.schedule, base.cfg_range
    if kind == HYPER and steps == 1 and not guided:
        sampler, schedule = "TCD", AUTOMATIC  # the card's 1-step "unified" LoRA runs with TCD
    if kind == HYPER and guided:
        cfg_range = HYPER_GUIDED_CFG
    cfg = cfg_range[0]
    if kind == LCM and guided:  # a full LCM checkpoint's guidance embedding (ModelInfo.guidance_embedded)
        cfg, cfg_range = LCM_EMBEDDED_CFG, LCM_EMBEDDED_RANGE
    return Recipe(kind, LABELS[kind], sampler, schedule, steps, cfg, (lo, hi), cfg_range, base.size)


# ------------------------------------------------------------------ recognition

# A name's words: split at anything but letters and digits, then camelCase humps and digit runs, so
# "realvisxlV40_v40LightningBakedvae" gives ... "lightning", "bakedvae" and "Hyper-SD15" gives "hyper", "sd", "15".
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STEPS = re.compile(r"(?<!\d)(\d{1,2})[ _.-]?(?:[Ss][Tt][Ee][Pp][Ss]?)(?![a-z])")
# Words beside "lightning" that make it a subject (a LoRA of lightning bolts), not SDXL-Lightning.
_LIGHTNING_SUBJECTS = {"bolt", "bolts", "effect", "effects", "style", "storm", "storms", "strike", "strikes", "magic",
                       "element", "elemental", "aura", "fx", "vfx", "power", "powers", "sky", "thunder", "electric",
                       "electricity", "spell"}
# kohya and modelspec metadata that name what was trained (short texts only). Free text (descriptions, training
# comments, tags) is not read: "Turbo-charged realism" or "works with the LCM LoRA" says nothing of the file, and
# the user's mark covers a few-step file its name does not tell. (Not ss_sd_model_name: a LoRA's base model.)
METADATA_KEYS = ("ss_output_name", "modelspec.title")
MAX_METADATA_CHARS = 500


def words(name: str) -> list[str]:
    """The lower-case words of a name, as recognise reads them."""
    return [w.lower() for w in _WORDS.findall(name)]


def steps_in_name(name: str) -> int | None:
    """The step count a name says ("Hyper-SDXL-4steps-lora" -> 4, "sdxl_lightning_8step_unet" -> 8); None if none."""
    found = _STEPS.search(name)
    if not found:
        return None
    steps = int(found.group(1))
    return steps if 1 <= steps <= 50 else None


def guided_in_name(name: str) -> bool:
    """Whether a name says it takes guidance ("Hyper-SD15-8steps-CFG-lora")."""
    return "cfg" in words(name)


def recognise(name: str, metadata: Mapping[str, str] | None = None) -> str:
    """The few-step kind a file, folder or Hub id name (and a safetensors file's `__metadata__`) says, or ""."""
    kind = _kind_of_words(words(name), name)
    if kind or not metadata:
        return kind
    for key in METADATA_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value and len(value) <= MAX_METADATA_CHARS:
            kind = _kind_of_words(words(value), value)
            if kind:
                return kind
    return ""


def _kind_of_words(ws: list[str], text: str) -> str:
    found = set(ws)
    if "lcm" in found:
        return LCM
    if "tcd" in found:
        return TCD
    steps = steps_in_name(text) is not None
    for i, w in enumerate(ws):
        after, then = (ws[i + 1:i + 3] + ["", ""])[:2]
        version = after == "v" and then.isdigit()
        if w == "hyper" and (after.startswith("sd") or steps or not after or version):
            return HYPER  # "Hyper-SD15", "HyperSDXL", "..._hyper_8steps", "juggernautXL_hyper_v2"; not "HyperRealism"
        if w == "dmd" and after == "2":
            return DMD2
        if w == "lightning" and not found & _LIGHTNING_SUBJECTS:
            return LIGHTNING
        if w == "turbo":
            return TURBO
    return ""


# One-step distillations that need what the engine does not do: SDXL-Lightning's predicts x0, Hyper-SDXL's UNet
# runs LCM at timestep 800 only, DMD2's at timestep 399 only. Their 2-, 4- and 8-step files (and the Hyper-SDXL 1-step
# LoRA, which runs with TCD) work.
_ONE_STEP_INSTEAD = {
    LIGHTNING: "SDXL-Lightning's 1-step file predicts the picture (x0), which Sfumato cannot sample: use its 2- or "
               "4-step file (sdxl_lightning_2step_unet, sdxl_lightning_4step_unet or their LoRAs) instead.",
    HYPER: "Hyper-SDXL's 1-step UNet runs only at timestep 800, which Sfumato cannot sample: use "
           "Hyper-SDXL-1step-lora or the 2-, 4- or 8-step Hyper-SD files instead.",
    DMD2: "DMD2's 1-step model runs only at timestep 399, which Sfumato cannot sample: use its 4-step file "
          "(dmd2_sdxl_4step_unet or dmd2_sdxl_4step_lora) instead.",
}


def unsupported(name: str) -> str:
    """One sentence when `name` is a one-step distilled file the engine cannot run right (SDXL-Lightning's x0
    file, Hyper-SDXL's 1-step UNet, DMD2's 1-step model), saying which file of its family to use; else ""."""
    if steps_in_name(name) != 1:
        return ""
    kind = recognise(name)
    if kind == HYPER and "unet" not in words(name):
        return ""  # the 1-step LoRA runs with TCD
    return _ONE_STEP_INSTEAD.get(kind, "")


def kind_of(name: str, recognised: str, marks: Mapping[str, str] | None) -> str:
    """The few-step kind of the model or LoRA `name`: the user's mark (settings.few_step_marks) when there is one
    ("none": not few-step), else what its file says (`recognised`)."""
    mark = (marks or {}).get(name)
    if mark == NONE:
        return ""
    if mark in KINDS:
        return mark
    return recognised if recognised in KINDS else ""


def demo_kind(ref: str) -> str:
    """The built-in tiny demo models of the UNet families count as LCM models (random weights: any sampler works), so
    Fast and live mode work out of the box; "" for any other reference."""
    from desktop.core import families  # families imports modelfiles, which imports this module

    kind = families.demo_kind(ref)
    return LCM if kind in UNET_FAMILIES else ""


# ------------------------------------------------------------------ the Fast plan


class LoraInfo(NamedTuple):
    """What fast_plan needs of a LoRA (addons.AddonFile and modelfiles.ModelInfo have both attributes too)."""

    few_step: str  # KINDS or ""
    family: str  # "sd1", "sdxl", ... (a modelfiles.Family is one)


@dataclass(frozen=True)
class FastPlan:
    recipe: Recipe
    lora: str  # "" or the LoRA to add as <lora:name:weight>
    decoder: str  # request.DECODERS: "tiny" (TAESD)
    note: str  # one sentence saying what was chosen


_TAG_BREAKERS = (":", "=", ">")  # a LoRA name with one of these breaks its <lora:name:weight> tag


def fast_plan(family: str, model_few_step: str, loras: Mapping[str, object], *, model_name: str = "",
              variant: str = "", marks: Mapping[str, str] | None = None,
              guidance_embedded: bool = False) -> FastPlan:
    """How to make the chosen model fast: its own few-step settings when it is a few-step model, else the best
    few-step LoRA of its family among `loras` (name -> an object with .few_step and .family: LoraInfo,
    addons.AddonFile), with the TAESD decoder. `model_name` (its file's) gives the step count its name says;
    `variant` a flow family's variant; `marks` the user's few-step marks (applied to the LoRAs and the model);
    `guidance_embedded` that the model's UNet takes the CFG scale as an embedding (a full LCM checkpoint: CFG 8).
    Raises NoFastPath with a sentence saying what to add and where."""
    family = str(getattr(family, "value", family))
    if model_name:
        model_few_step = kind_of(model_name, model_few_step, marks)
    if family not in UNET_FAMILIES:
        return _flow_plan(family, variant)
    if model_few_step in KINDS:
        if unsupported(model_name):
            raise NoFastPath(unsupported(model_name))
        made = recipe(model_few_step, family, steps_in_name(model_name),
                      guided=guided_in_name(model_name) or guidance_embedded)
        return FastPlan(made, "", "tiny", f"Fast: {made.label} model, {_settings(made)}, TAESD decode")
    candidates, untaggable = [], []
    for name, info in loras.items():
        kind = kind_of(name, str(getattr(info, "few_step", "") or ""), marks)
        lora_family = str(getattr(getattr(info, "family", ""), "value", getattr(info, "family", "")))
        released = family in FAMILIES.get(kind, ())
        marked = (marks or {}).get(name) in KINDS  # the user's word holds for any family
        if kind in LORA_ORDER and lora_family == family and (released or marked):
            if any(mark in name for mark in _TAG_BREAKERS):  # <lora:name:weight> cannot name it
                untaggable.append(name)
                continue
            steps, guided = steps_in_name(name), guided_in_name(name)
            # the kind's rank; then a LoRA without guidance (half the UNet calls), nearest 4 steps, by name
            candidates.append(((LORA_ORDER.index(kind), guided, abs((steps or 4) - 4), name.lower()), name, kind))
    if not candidates and untaggable:
        raise NoFastPath(f"The few-step LoRA {min(untaggable)} cannot be named in a prompt's <lora:...> tag: rename "
                         f"its file without ':', '=' or '>' and Fast will use it.")
    if not candidates:
        raise NoFastPath(_refusal(family))
    _, name, kind = min(candidates)
    made = recipe(kind, family, steps_in_name(name), guided=guided_in_name(name))
    weight = f"{made.lora_weight:g}"
    return FastPlan(made, name, "tiny",
                    f"Fast: {made.label} LoRA {name} at weight {weight}, {_settings(made)}, TAESD decode")


def _settings(made: Recipe) -> str:
    schedule = f" ({made.schedule})" if made.schedule != AUTOMATIC else ""
    steps = "1 step" if made.steps == 1 else f"{made.steps} steps"
    return f"{made.sampler} sampler{schedule}, {steps}, CFG {made.cfg_scale:g}"


def _family_label(family: str) -> str:
    from desktop.core import families

    spec = families.spec(family)
    return spec.label if spec else "This model's family"


def _refusal(family: str) -> str:
    label = _family_label(family)
    kinds = [LABELS[k] for k in LORA_ORDER if family in FAMILIES[k]]
    loras = " or ".join(", ".join(kinds).rsplit(", ", 1))
    article = "an" if loras.startswith("LCM") else "a"  # "an LCM", "a TCD"
    models = {"sd1": "an LCM model", "sd2": "SD-Turbo"}.get(family, "a Turbo or Lightning model")
    return (f"{label} has no few-step path here: put {article} {loras} LoRA for {label} in your LoRA folder "
            f"(models/loras in Sfumato's models folder, or your other app's Lora folder), or choose {models}.")


def _flow_plan(family: str, variant: str) -> FastPlan:
    """A flow family's few-step variant runs at its makers' settings (desktop/core/families.py); the others have
    no few-step LoRA Sfumato knows."""
    from desktop.core import families

    spec = families.spec(family)
    if spec is None or not spec.flow:
        raise NoFastPath("This model's family is not known, so it has no few-step path: choose an SD 1.5 or SDXL "
                         "model with a few-step LoRA, or a Turbo, Lightning or LCM model.")
    chosen = spec.variant(variant)
    if chosen.steps > 8:
        fast = [v.label for name, v in spec.variants.items() if name and v.steps <= 8]
        what = f"choose {' or '.join(dict.fromkeys(fast))}" if fast else "choose an SD 1.5 or SDXL model"
        raise NoFastPath(f"{chosen.label} has no few-step path here: {what}, which draws in a few steps.")
    made = Recipe("", chosen.label, chosen.sampler, chosen.schedule, chosen.steps, chosen.cfg_scale,
                  (1, chosen.steps), (chosen.cfg_scale, chosen.cfg_scale), 0)
    return FastPlan(made, "", "tiny", f"Fast: {chosen.label} at its own settings, {_settings(made)}, TAESD decode")
