"""`sfumato generate ...`: headless generation on the same engine as the app.

Prints the path of each image as it is written (stdout) and progress
(stderr); exits 0 on success, 2 with a one-line reason on bad input, 1 when
the generation fails or a picture could not be written, 130 when
interrupted. Pictures are saved through the gallery's store, as the window
saves them, so a gallery on the folder lists them at once. It runs through
LocalBackend (desktop/core/backend.py), as the window does, or with --server
through RemoteBackend on a `sfumato serve` elsewhere, writing the same files.
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
from pathlib import Path

from desktop.core import addons, credentials, fewstep, model_sources, paths, runs, settings
from desktop.core.backend import GenerationJob, ModelDescriptor
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.families import DEMO_KINDS, DEMO_PREFIX, FLOW_SAMPLERS, SPECS, Variant, demo_kind, is_flow, spec
from desktop.core.gallery.store import GalleryStore
from desktop.core.geometry import Extent, Margins
from desktop.core.imageio import load_image, load_mask
from desktop.core.infotext import InfotextError, parse_size
from desktop.core.modelfiles import Family, ModelFileError, identify
from desktop.core.generation_settings import with_lora
from desktop.core.request import (DECODERS, HIRES_UPSCALERS, Conditioning, GenerationRequest, Hires, Images,
                                  InpaintArea, InpaintSettings, MaskedContent, Mode, Sampling)
from desktop.core.prompts import DEFAULT_EMPHASIS, EMPHASIS_MODES
from desktop.core.samplers import SAMPLERS, SCHEDULES
from desktop.core.wildcards import expand_batch


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sfumato generate", description="Generate images without the window.")
    add = parser.add_argument
    add("--model", default="demo", help="a .safetensors file, a diffusers folder, a Hugging Face repo id, 'demo' (the "
                                        "SD 1.x demo model, random weights) or the demo model of another family: "
                                        f"{', '.join(DEMO_PREFIX + kind for kind in DEMO_KINDS if kind != 'sd1')}; "
                                        "with --server, the name of one of the server's models")
    add("--prompt", required=True)
    add("--negative", default="", help="negative prompt")
    add("--mode", choices=[m.value for m in Mode], default=None, help="default: txt2img, or img2img with --init")
    add("--init", type=Path, help="input image for img2img, inpaint and outpaint")
    add("--mask", type=Path, help="inpaint mask: white = repaint")
    add("--expand", type=_margins, default=Margins(), metavar="L,T,R,B", help="outpaint margins in pixels")
    add("--strength", type=float, default=0.75, help="denoising strength (img2img, inpaint)")
    # Steps, CFG, sampler, schedule, distilled guidance: the model family's recommendation when not given, or a
    # few-step model's own settings (fewstep.py: LCM, TCD, Hyper-SD, Lightning, Turbo, DMD2)
    add("--steps", type=int, help=f"default: the model's recommendation ({recommendations('steps')})")
    add("--cfg", type=float, help="CFG scale; 1: none, the negative prompt unused (default: the model's "
                                  f"recommendation: {recommendations('cfg_scale')})")
    add("--distilled-cfg", type=float, metavar="X",
        help="Forge's Distilled CFG Scale: the guidance FLUX.1 [dev] was distilled to take (default: 3.5)")
    add("--shift", type=float, default=0.0, metavar="X",
        help="the noise schedule's shift of Z-Image, FLUX and SD 3.5 models; 0: the model's own (default)")
    add("--sampler", help=f"one of: {', '.join(SAMPLERS)} (a ' Karras' suffix also works); default: DPM++ 2M, or "
                          f"Euler for the flow-matching models (which take {', '.join(FLOW_SAMPLERS)})")
    add("--schedule", choices=SCHEDULES, help="default: Automatic, or a few-step model's own")
    add("--fast", action="store_true",
        help="few-step generation: the model's own few-step settings, else the best few-step LoRA of its family "
             "in the LoRA folders (added to the prompt), and the TAESD decoder; options given still win")
    add("--decoder", choices=DECODERS, help="full: the model's own VAE (default); tiny: the TAESD decoder, much "
                                            "faster on a CPU and a little softer (the default with --fast)")
    add("--seed", type=int, default=-1, help="-1: random")
    add("--width", type=int, help="default: 512, or the input image's size")
    add("--height", type=int)
    add("--batch", type=int, default=1)
    add("--clip-skip", type=int, default=1, metavar="N",
        help="A1111's Clip skip: 1 uses the text encoder's last layer, 2 the one before it, ... (SD 1.x models)")
    add("--emphasis", choices=EMPHASIS_MODES, default=DEFAULT_EMPHASIS,
        help="how (word:1.2) weights apply, as A1111's setting of that name")
    add("--mask-blur", type=int, default=4)
    add("--masked-content", choices=[m.value for m in MaskedContent], default=MaskedContent.ORIGINAL.value)
    add("--inpaint-area", choices=[a.value for a in InpaintArea], default=InpaintArea.WHOLE.value)
    add("--padding", type=int, default=32, help="padding around the mask for --inpaint-area 'only masked'")
    add("--hires-scale", type=float, metavar="X",
        help="hires fix (txt2img): make the picture at --width x --height, upscale it X times, repaint it")
    add("--hires-resize", type=_size, metavar="WxH", help="hires fix to this size instead (0 follows the aspect)")
    add("--hires-upscaler", default="Latent", metavar="NAME",
        help=f"hires fix upscaler: {', '.join(HIRES_UPSCALERS)}, or an upscaler file's name or path (default: Latent)")
    add("--hires-steps", type=int, default=0, help="steps of the hires pass; 0: as --steps (default)")
    add("--hires-denoise", type=float, default=0.7, help="denoising strength of the hires pass (default: 0.7)")
    add("--control", action="append", default=[], type=_control, metavar="model=M,image=PATH,...",
        help="ControlNet guidance, repeatable: comma-separated model=M (a ControlNet file or folder, its name, or "
             "demo; default demo), image=PATH (required), type=canny|lineart|scribble|depth|none (default none; "
             "another type runs its preprocessor on the picture unless preprocessed=1), weight=1, start=0, end=1")
    add("--reference", action="append", default=[], type=_reference, metavar="image=PATH,...",
        help="a reference picture (IP-Adapter), repeatable: comma-separated image=PATH (required), weight=0.6, "
             "mode=content|style (style: only the adapter's style layers), adapter=NAME|PATH|demo (default demo)")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    add("--runtime", choices=("pytorch", "openvino"),
        help="what runs the model on the CPU for this run (default: the Settings window's CPU runtime); openvino "
             "converts each model once, then usually runs faster")
    add("--out", type=Path, help="output folder (default: Sfumato's output folder)")
    add("--server", metavar="URL", help="generate on a Sfumato server (sfumato serve) instead of this computer, "
                                        "e.g. http://gpu-box:7862; --model then names one of the server's models")
    add("--token", default=os.environ.get("SFUMATO_TOKEN") or None,
        help="the token the server was started with (default: the SFUMATO_TOKEN environment variable)")
    return parser


# The option that sets each request field, to name it in messages.
OPTIONS = {"prompt": "--prompt", "negative_prompt": "--negative", "model": "--model", "sampler": "--sampler",
           "schedule": "--schedule", "steps": "--steps", "cfg_scale": "--cfg", "distilled_cfg": "--distilled-cfg",
           "shift": "--shift", "seed": "--seed", "width": "--width",
           "height": "--height", "batch_size": "--batch", "strength": "--strength", "init_image": "--init",
           "mask": "--mask", "mask_blur": "--mask-blur", "inpaint_padding": "--padding", "expand": "--expand",
           "clip_skip": "--clip-skip", "emphasis": "--emphasis", "hires_scale": "--hires-scale",
           "reference": "--reference",
           "hires_resize": "--hires-resize", "hires_resize_width": "--hires-resize", "hires_resize_height":
           "--hires-resize", "hires_upscaler": "--hires-upscaler", "hires_steps": "--hires-steps",
           "hires_denoise": "--hires-denoise", "control": "--control"}


def recommendations(name: str) -> str:
    """A Variant field's recommended values, from the families' table (desktop/core/families.py): "20 for SD 1.x,
    SD 2.x, SDXL, FLUX.1 [dev]; 8 for Z-Image Turbo; ..." (each variant named once, SD's by its families)."""
    groups: dict[object, list[str]] = {}
    for found in SPECS.values():
        if found.family is Family.SDXL_REFINER:
            continue
        for key, variant in found.variants.items():
            label = variant.label or found.label
            if (key or len(found.variants) == 1) and label not in groups.setdefault(getattr(variant, name), []):
                groups[getattr(variant, name)].append(label)
    return "; ".join(f"{value:g} for {', '.join(labels)}" for value, labels in groups.items())


def _margins(text: str) -> Margins:
    try:
        return Margins.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected L,T,R,B (or one number for every side) in whole pixels, 0 or more, got {text!r}") from None


def _values_may_start_with_dash(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """["--expand", "-64,0,0,0"] -> ["--expand=-64,0,0,0"]: argparse would take the value for an option.

    A value is joined to its option unless it is one of the options itself (a forgotten value stays an error).
    """
    options = {s for action in parser._actions if action.nargs != 0 for s in action.option_strings}
    known = set(parser._option_string_actions)
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in options and i + 1 < len(argv):
            value = argv[i + 1]
            if value.startswith("-") and value.split("=")[0] not in known and not _abbreviates(value, known):
                out.append(f"{arg}={value}")
                i += 2
                continue
        out.append(arg)
        i += 1
    return out


def _abbreviates(value: str, known: set[str]) -> bool:
    return value.startswith("--") and any(option.startswith(value.split("=")[0]) for option in known)


def request_from_args(args: argparse.Namespace, recommended: Variant | fewstep.Recipe | None = None,
                      loaded: ModelDescriptor | None = None) -> GenerationRequest:
    """The request the options ask for; what they leave out is `recommended` (else default_settings's): a family's
    Variant, or a few-step Recipe (whose schedule is the default too). With --fast, the Fast plan's settings, LoRA
    and decoder (of the `loaded` model, when it could not be told before loading it)."""
    mode = Mode(args.mode) if args.mode else (Mode.IMG2IMG if args.init else Mode.TXT2IMG)
    init = load_image(args.init) if args.init else None
    if mode is not Mode.TXT2IMG and init is None:
        raise UsageError(f"--mode {mode.value} needs --init IMAGE")
    mask = load_mask(args.mask) if args.mask else None
    if mode is Mode.INPAINT and mask is None:
        raise UsageError("--mode inpaint needs --mask IMAGE")
    if mask is not None and init is not None and mask.shape != init.shape[:2]:
        raise UsageError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {init.shape[1]}x{init.shape[0]}")
    if args.model.startswith(DEMO_PREFIX) and demo_kind(args.model) is None:
        kinds = ", ".join(["demo", *(DEMO_PREFIX + kind for kind in DEMO_KINDS if kind != "sd1")])
        raise UsageError(f"--model {args.model} is not a demo model; the demo models are {kinds}.")
    default = Extent(512, 512) if init is None else _default_extent(init)
    fast = getattr(args, "fast", False)
    plan = fast_plan(args, loaded) if fast else None
    recommended = plan.recipe if plan else recommended or default_settings(args)
    prompt = with_lora(args.prompt, plan.lora, plan.recipe.lora_weight) if plan and plan.lora else args.prompt
    few_step = isinstance(recommended, fewstep.Recipe)
    return GenerationRequest(
        mode=mode,
        model=args.model,
        width=args.width or default.width,
        height=args.height or default.height,
        sampling=Sampling(sampler=_given(args.sampler, recommended.sampler),
                          schedule=_given(args.schedule, recommended.schedule if few_step else "Automatic"),
                          steps=_given(args.steps, recommended.steps),
                          cfg_scale=_given(args.cfg, recommended.cfg_scale), seed=args.seed, batch_size=args.batch,
                          strength=args.strength, shift=args.shift,
                          distilled_cfg=_given(args.distilled_cfg, getattr(recommended, "distilled_cfg", None) or 3.5)),
        conditioning=Conditioning(prompt=prompt, negative_prompt=args.negative, clip_skip=args.clip_skip,
                                  emphasis=args.emphasis),
        images=Images(init, mask),
        inpaint=InpaintSettings(mask_blur=args.mask_blur, masked_content=MaskedContent(args.masked_content),
                                area=InpaintArea(args.inpaint_area), padding=args.padding),
        outpaint=args.expand,
        hires=_hires(args, mode),
        references=tuple(_references(args.reference)),
        controls=tuple(_controls(args.control)),
        decoder=_given(getattr(args, "decoder", None), plan.decoder if plan else "tiny" if fast else "full"),
    )


def default_settings(args: argparse.Namespace) -> Variant | fewstep.Recipe:
    """What a run uses for the steps, CFG, sampler and schedule not given: a few-step model's own settings (its
    name, metadata or the person's mark in the Models window say it is one), else its family's recommendation."""
    made = few_step_recipe(args.model, bool(args.server))
    return made if made is not None else recommended_settings(args.model, bool(args.server))


def few_step_recipe(model: str, on_server: bool = False) -> fewstep.Recipe | None:
    """The few-step settings of a model known before loading it to be a few-step one; None for any other (a demo
    model keeps the usual settings: its random weights take any)."""
    identified = _identified(model, on_server)
    if identified is None or is_flow(identified[0]):
        return None
    family, _variant, kind, embedded = identified
    return _recipe(kind, family, _model_name(model), embedded)


def _recipe(kind: str, family, name: str, guidance_embedded: bool = False) -> fewstep.Recipe | None:
    """A few-step kind's settings (`guidance_embedded`: a full LCM checkpoint, CFG 8); None for another kind."""
    if kind not in fewstep.KINDS:
        return None
    return fewstep.recipe(kind, str(getattr(family, "value", family)), fewstep.steps_in_name(name),
                          guided=fewstep.guided_in_name(name) or guidance_embedded)


def _model_name(model: str) -> str:
    return Path(model.rstrip("/\\")).name or model


def fast_plan(args: argparse.Namespace, loaded: ModelDescriptor | None = None) -> fewstep.FastPlan | None:
    """--fast: the model's own few-step settings, else the best few-step LoRA of its family in the model folders'
    LoRAs (a server's model: its own only); None while the model is not known before loading it (a server's model,
    a Hub id not downloaded yet): main asks again with the `loaded` one. Raises fewstep.NoFastPath with what to add
    and where."""
    on_server = bool(args.server)
    if loaded is not None:
        family, variant, kind, name = loaded.family, loaded.variant, loaded.few_step, loaded.name
        embedded = loaded.guidance_embedded
    else:
        identified = _identified(args.model, on_server)
        if identified is None:
            return None
        (family, variant, kind, embedded), name = identified, _model_name(args.model)
    kind = fewstep.demo_kind(args.model) or kind
    loras = {} if kind or on_server else {f.name: f for f in addons.list_addons(
        addons.LORA, settings.load(set_aside=False).models_folders)}
    return fewstep.fast_plan(str(getattr(family, "value", family)), kind, loras, model_name=name, variant=variant,
                             marks=_marks(), guidance_embedded=embedded)


def _marks() -> dict[str, str]:
    """The person's few-step marks (settings.few_step_marks, set in the Models window)."""
    return dict(settings.load(set_aside=False).few_step_marks)


def recommended_settings(model: str, on_server: bool = False) -> Variant:
    """What the makers of the model's family and variant recommend (desktop/core/families.py): a demo model's, or a
    file's or folder's on this computer as its header says, a Hub id's already downloaded; SD's for anything else
    (a Hub id not downloaded yet, a server's model: `loaded_recommendation` tells theirs once loaded)."""
    family, variant, _kind, _embedded = _identified(model, on_server) or (Family.SD1, "", "", False)
    return (spec(family) or spec(Family.SD1)).variant(variant)


def _identified(model: str, on_server: bool) -> tuple[Family | str, str, str, bool] | None:
    """The family, variant, few-step kind (the person's mark first) and whether it takes the guidance as an
    embedding (a full LCM checkpoint) of a model known before loading it (a demo model, a file or folder here, a
    Hub id in the Hub cache)."""
    kind = demo_kind(model)
    if kind is not None:
        return DEMO_KINDS[kind], "", "", False
    if on_server:
        return None
    path = Path(model) if Path(model).exists() else _downloaded(model)
    if path is None:
        return None
    try:
        info = identify(path)
    except ModelFileError:
        return Family.SD1, "", "", False  # the run says what is wrong with it
    return info.family, info.variant, fewstep.kind_of(info.name, info.few_step, _marks()), info.guidance_embedded


def _downloaded(model: str) -> Path | None:
    """The snapshot of a Hub id already in Sfumato's Hub cache (desktop/core/hub.py downloads there), None when
    the name is not a Hub id or it is not there yet."""
    if model_sources.parse_repo_id(model) != model:
        return None
    repo = model_sources.hub_cache_dir() / f"models--{model.replace('/', '--')}"
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    main = repo / "snapshots" / commit
    return main if commit.isalnum() and main.is_dir() else None


def loaded_recommendation(args: argparse.Namespace, loaded: ModelDescriptor) -> Variant | fewstep.Recipe | None:
    """The loaded model's recommendation when it could not be told before (a Hub id, a server's model) and differs
    from the SD values the request was made with: FLUX.1 [schnell] from the Hub gets its 4 steps and no CFG, not
    SD's 20 steps and CFG 7 (true CFG on FLUX: twice the work and a burnt picture); a few-step model its own
    settings. None: keep the request."""
    if _identified(args.model, bool(args.server)) is not None or spec(loaded.family) is None:
        return None
    few_step = "" if demo_kind(loaded.ref) is not None or spec(loaded.family).flow else loaded.few_step
    later = _recipe(few_step, loaded.family, loaded.name, loaded.guidance_embedded) or spec(loaded.family).variant(loaded.variant)
    return None if later == recommended_settings(args.model, bool(args.server)) else later


def _given(value, default):
    return default if value is None else value


CONTROL_KEYS = ("model", "image", "type", "weight", "start", "end", "preprocessed")


def _control(text: str) -> dict[str, str]:
    """--control's comma-separated key=value parts (desktop/core/options.parse_options: C:\\x, y\\z.png works)."""
    from desktop.core.control import CONTROL_TYPES

    spec = _options(text, "--control")
    for key, value in spec.items():
        part = f"{key}={value}"
        if key not in CONTROL_KEYS:
            raise argparse.ArgumentTypeError(f"{part!r} is not key=value with a key of {', '.join(CONTROL_KEYS)}")
        if key in ("weight", "start", "end") and not _is_number(value):
            raise argparse.ArgumentTypeError(f"{part!r}: {key} must be a number")
        if key == "type" and value not in CONTROL_TYPES:
            raise argparse.ArgumentTypeError(f"{part!r}: the type must be one of {', '.join(CONTROL_TYPES)}")
        if key == "preprocessed" and value not in ("0", "1"):
            raise argparse.ArgumentTypeError(f"{part!r}: preprocessed must be 0 or 1")
    if not spec.get("image"):
        raise argparse.ArgumentTypeError(f"{text!r} names no control picture; add image=PATH")
    return spec


def _options(text: str, option: str) -> dict[str, str]:
    from desktop.core.options import parse_options

    try:
        return parse_options(text, option)
    except InvalidRequest as error:  # argparse names the option itself
        raise argparse.ArgumentTypeError(error.message.rstrip(".")) from None


def _is_number(text: str) -> bool:
    try:
        return float(text) == float(text)  # not NaN
    except ValueError:
        return False


def _controls(specs: list[dict[str, str]]):
    from desktop.core.control import DEMO_CONTROLNET, Control

    for spec in specs:
        kind = spec.get("type", "none")
        yield Control(model=spec.get("model") or DEMO_CONTROLNET, image=load_image(Path(spec["image"])), type=kind,
                      weight=float(spec.get("weight", 1)), start=float(spec.get("start", 0)),
                      end=float(spec.get("end", 1)), preprocess=kind != "none" and spec.get("preprocessed") != "1")


REFERENCE_KEYS = ("image", "weight", "mode", "adapter")


def _reference(text: str) -> dict[str, str]:
    """--reference's comma-separated key=value parts (desktop/core/options.parse_options)."""
    from desktop.core.control import REFERENCE_MODES

    spec = _options(text, "--reference")
    unknown = [key for key in spec if key not in REFERENCE_KEYS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of its keys {', '.join(REFERENCE_KEYS)}")
    if not spec.get("image"):
        raise argparse.ArgumentTypeError(f"{text!r} names no reference picture; add image=PATH")
    if "weight" in spec:
        try:
            float(spec["weight"])
        except ValueError:
            raise argparse.ArgumentTypeError(f"the weight must be a number, got {spec['weight']!r}") from None
    if spec.get("mode", "content") not in REFERENCE_MODES:
        raise argparse.ArgumentTypeError(f"the mode must be {' or '.join(REFERENCE_MODES)}, got {spec['mode']!r}")
    return spec


def _references(specs: list[dict[str, str]]):
    from desktop.core.control import Reference

    for spec in specs:
        yield Reference(image=load_image(Path(spec["image"])), weight=float(spec.get("weight", 0.6)),
                        mode=spec.get("mode", "content"), adapter=spec.get("adapter") or "demo")


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except InfotextError:
        raise argparse.ArgumentTypeError(f"expected a size like 1024x1536 (0 for a side that follows), "
                                         f"got {text!r}") from None


def _hires(args: argparse.Namespace, mode: Mode) -> Hires:
    """--hires-scale or --hires-resize turn the hires fix on; the other --hires options alone are a mistake."""
    on = args.hires_scale is not None or args.hires_resize is not None
    if not on and (args.hires_steps or args.hires_denoise != 0.7 or args.hires_upscaler != "Latent"):
        raise UsageError("--hires-upscaler, --hires-steps and --hires-denoise need --hires-scale X or "
                         "--hires-resize WxH, which turn the hires fix on")
    if on and mode is not Mode.TXT2IMG:
        raise UsageError(f"the hires fix is for txt2img; --mode {mode.value} cannot use --hires-scale or "
                         "--hires-resize")
    name = args.hires_upscaler
    local = not getattr(args, "server", None)  # a server looks in its own folders
    if on and local and name not in HIRES_UPSCALERS and not Path(name).expanduser().is_file():
        from desktop.core.postprocess import find_upscaler

        if find_upscaler(name, settings.load(set_aside=False).models_folders) is None:
            raise UsageError(f"--hires-upscaler: {name} is not one of {', '.join(HIRES_UPSCALERS)}, and there is no "
                             "upscaler file of that name in your upscaler folders; give its name or path")
    width, height = args.hires_resize or (0, 0)
    return Hires(enabled=on, upscaler=args.hires_upscaler, scale=2.0 if args.hires_scale is None else args.hires_scale,
                 steps=args.hires_steps, denoise=args.hires_denoise, resize_width=width, resize_height=height)


def _default_extent(image) -> Extent:
    """The picture's own size (any size works: the engine pads to its grid and crops), within 64..4096."""
    h, w = image.shape[:2]
    return Extent(max(64, min(4096, w)), max(64, min(4096, h)))


def start_backend(args: argparse.Namespace, progress: _Progress):
    """The LocalBackend on the chosen device, or None after saying why not. LoRAs, embeddings and upscalers are
    looked for in the model folders the window uses; a settings file the CLI cannot read is left for the window
    to deal with. With --server, the RemoteBackend on that server, once it has answered."""
    if getattr(args, "server", None):
        return _start_remote(args, progress)
    from desktop.engine.local import LocalBackend

    window_settings = settings.load(set_aside=False)
    if window_settings.notice:
        print(f"sfumato: {window_settings.notice}", file=sys.stderr)
    window_settings.device, window_settings.precision = args.device, args.precision  # the options, for this run
    if getattr(args, "runtime", None):  # generate, grid and batch take --runtime; upscale, restore do not
        window_settings.cpu_runtime = args.runtime
    backend = LocalBackend.from_settings(window_settings)
    try:
        backend.start(progress.state)
    except ValueError as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return None
    return backend


def _start_remote(args: argparse.Namespace, progress: _Progress):
    from desktop.remote.backend import RemoteBackend

    if args.device != "auto" or args.precision != "auto" or getattr(args, "runtime", None):
        print("sfumato: --device, --precision and --runtime are chosen where the server starts (sfumato serve "
              "--device ...); leave them out with --server.", file=sys.stderr)
        return None
    try:
        backend = RemoteBackend(args.server, args.token)
        backend.start(progress.state)
    except SfumatoError as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return None
    return backend


def main(argv: list[str]) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(_values_may_start_with_dash(parser, argv))
        # The wildcards are this computer's (also with --server), looked for beside the window's model folders.
        # A batch whose seeds choose different prompts runs a seed at a time, each as that seed alone would.
        seeds = expand_batch(request_from_args(args).resolved(), settings.load(set_aside=False).models_folders)
    except InvalidRequest as error:
        print(f"sfumato: {OPTIONS.get(error.field, error.field)}: {error.message}", file=sys.stderr)
        return 2
    except (UsageError, SfumatoError) as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    DemoModelUnwritable = demo_model_error(args)
    progress = _Progress()
    backend = start_backend(args, progress)
    if backend is None:
        return 2
    store = output_store(args.out or paths.output_dir())
    if store is None:
        return 1
    try:
        model = backend.load(seeds[0].model, progress.state)
        later = loaded_recommendation(args, model)
        if later is not None or args.fast and _identified(args.model, bool(args.server)) is None:
            # the options again, with the values of the family (and few-step kind) it turned out to be
            folders = settings.load(set_aside=False).models_folders
            seeds = expand_batch(request_from_args(args, later, model).resolved(), folders)
        results = [result for k, one in enumerate(seeds) for result in backend.run(
            GenerationJob(one), progress.state if len(seeds) == 1 else runs.nth(progress.state, k, len(seeds)))]
        progress.end()
        chosen = settings.load(set_aside=False)
        return _save(store, results, model, chosen.mark_ai, credentials.Signing.from_settings(chosen))
    except DemoModelUnwritable as error:
        print(f"sfumato: could not build the demo model in {error.folder}: {error.reason}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsfumato: interrupted", file=sys.stderr)
        return 130
    except Cancelled:
        return 130
    except SfumatoError as error:
        progress.end()
        print(f"sfumato: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        progress.end()
        print(f"sfumato: the generation failed: {_reason(error)}", file=sys.stderr)
        return 1
    finally:
        store.close()


def demo_model_error(args: argparse.Namespace):
    """What a run on this computer raises when the demo model cannot be built (a server builds its own); the
    engine is imported only once the input is known to be good, and only for a run here."""
    if args.server:
        return ()
    from desktop.engine.local import DemoModelUnwritable

    return DemoModelUnwritable


def output_store(folder: Path) -> GalleryStore | None:
    """The output folder's gallery, opened before any work (a folder that cannot be written is found before
    minutes of work, not after), or None after saying why. The CLI never empties the window's undo-able deletions:
    the window's store sends those to the trash."""
    try:
        return GalleryStore(folder, paths.cache_dir() / "thumbnails", trash=lambda path: None)
    except (OSError, SfumatoError, sqlite3.Error) as error:
        print(f"sfumato: the output folder {folder} cannot be used: {_reason(error)}", file=sys.stderr)
        return None


def _save(store: GalleryStore, results, model: ModelDescriptor, mark: bool = True,
          signing: credentials.Signing | None = None) -> int:
    """Save, sign (content credentials, with `signing`) and index each result, printing its path at once; say
    how many could not be saved, and why, and which are saved unsigned."""
    saved, problems, reading = 0, [], True
    for r in results:
        try:
            path = store.add_result(r.image, r.request, r.seed, model.name, model.hash, r.params, mark, signing)
        except OSError as error:
            problems.append(_reason(error))
            continue
        saved += 1
        reading = reading and _print_path(path)
    try:
        store.refresh()  # also clears what an earlier run that was killed left half-written
    except (OSError, SfumatoError, sqlite3.Error):
        pass  # the pictures are saved; the next refresh indexes whatever this one could not
    if signing is not None and signing.problems:
        print(f"sfumato: {signing.summary()}", file=sys.stderr)
    if not problems:
        return 0
    print(f"sfumato: {saved} of {len(results)} pictures were saved; {len(problems)} could not be written to "
          f"{store.folder}: {problems[0]}.", file=sys.stderr)
    return 1


def _print_path(path) -> bool:
    """Print `path` on stdout; False once nothing reads it (`sfumato generate ... | head -1`): the pictures are
    still saved, and stdout goes to os.devnull so that Python's own flush at exit does not fail again."""
    try:
        print(path, flush=True)
        return True
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, ValueError, OSError):  # a stdout without a file descriptor
            pass
        return False


def _reason(error: Exception) -> str:
    """A short reason for a failed write: "the disk is full" for every way a full disk is reported."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text or "os error 28" in text:
        return "the disk is full"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class _Progress:
    """Step progress on stderr: one updating line on a terminal, plain lines otherwise."""

    def __init__(self):
        from desktop.core.progress import TaskState

        self.tty = sys.stderr.isatty()
        self.state = TaskState(on_step=self.step, on_status=self.status)
        self._open = False

    def step(self, index: int, total: int, preview) -> None:
        bar = "#" * (20 * index // total)
        text = f"[{bar:<20}] step {index}/{total}"
        if self.tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
            self._open = True
        else:
            print(text, file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        self.end()
        print(text, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self._open:
            print(file=sys.stderr)
            self._open = False
