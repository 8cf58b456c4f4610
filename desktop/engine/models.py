"""Load models and keep one pipeline ready.

A model reference is a single-file checkpoint (.safetensors, or a pickle
.ckpt read with weights_only=True), a diffusers folder, a Hugging Face repo
id ("owner/name"), "demo" (the built-in tiny random-weight SD 1.x model) or
"demo:<kind>" (the tiny model of another family: demo:sdxl, demo:flux1, ...).
SD 1.x, 2.x and SDXL load as below; the flow-matching families (Z-Image,
FLUX.2 klein, FLUX.1, SD 3.5) with the pipelines of desktop/engine/flow.py,
their single files through desktop/engine/flow_files.py.

Single files need diffusers configs and a tokenizer: they come from a
sidecar folder "<name>.config" beside the file when there is one, else from
the configs bundled for the detected family (resources/configs), so a local
file loads with the network off.

Several models stay loaded at once, each once, keyed by (kind, ref): the
checkpoints (kind "checkpoint"), and the auxiliary models later features load
beside one (an upscaler, a ControlNet, a VAE override) through the same
held/keep/make_room calls. When the memory budget of their pool (tuning.py)
would be exceeded, the least recently used are unloaded and the status says
which. Switching back to a checkpoint still loaded reads no file.

Pipelines are made per loaded checkpoint and kept by (task, extras), with
from_pipe so they share its weights: switching mode never reloads. A failed
load leaves the models that were loaded loaded.
"""

from __future__ import annotations

import gc
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from desktop.core import families, hub, modelfiles, paths
from desktop.core.errors import ModelLoadError, OutOfMemory, SfumatoError
from desktop.core.modelfiles import Family, ModelFileError, ModelInfo
from desktop.core.progress import TaskState

from . import bundled_configs, flow, prompt_encoding, tiny, tuning
from .embeddings import EmbeddingLibrary
from .devices import DeviceChoice, empty_cache
from .previews import Previewer, UnreadableTinyDecoder, load_tiny_decoder, taesd_dir

# (family group, task, the extras that need a pipeline class of their own) -> class. Extras that replace a
# component every pipeline has (a VAE override) keep the class; ControlNets (ordinary or union) have rows here.
_PIPELINES = {
    ("sd", "txt2img", frozenset()): diffusers.StableDiffusionPipeline,
    ("sd", "img2img", frozenset()): diffusers.StableDiffusionImg2ImgPipeline,
    ("sd", "inpaint", frozenset()): diffusers.StableDiffusionInpaintPipeline,
    ("sdxl", "txt2img", frozenset()): diffusers.StableDiffusionXLPipeline,
    ("sdxl", "img2img", frozenset()): diffusers.StableDiffusionXLImg2ImgPipeline,
    ("sdxl", "inpaint", frozenset()): diffusers.StableDiffusionXLInpaintPipeline,
    # ControlNet guidance (desktop/engine/controlnet.py): one ControlNetModel, or a MultiControlNetModel for several
    ("sd", "txt2img", frozenset({"controlnet"})): diffusers.StableDiffusionControlNetPipeline,
    ("sd", "img2img", frozenset({"controlnet"})): diffusers.StableDiffusionControlNetImg2ImgPipeline,
    ("sd", "inpaint", frozenset({"controlnet"})): diffusers.StableDiffusionControlNetInpaintPipeline,
    ("sdxl", "txt2img", frozenset({"controlnet"})): diffusers.StableDiffusionXLControlNetPipeline,
    ("sdxl", "img2img", frozenset({"controlnet"})): diffusers.StableDiffusionXLControlNetImg2ImgPipeline,
    ("sdxl", "inpaint", frozenset({"controlnet"})): diffusers.StableDiffusionXLControlNetInpaintPipeline,
    # an SDXL "union" ControlNet (ControlNetUnionModel, or a MultiControlNetUnionModel for several), given to the
    # pipeline as its "controlnet" (_COMPONENTS)
    ("sdxl", "txt2img", frozenset({"controlnet_union"})): diffusers.StableDiffusionXLControlNetUnionPipeline,
    ("sdxl", "img2img", frozenset({"controlnet_union"})): diffusers.StableDiffusionXLControlNetUnionImg2ImgPipeline,
    ("sdxl", "inpaint", frozenset({"controlnet_union"})): diffusers.StableDiffusionXLControlNetUnionInpaintPipeline,
}
_COMPONENTS = {"controlnet_union": "controlnet"}  # extras named apart to choose the class -> the component they are
# Their warnings and tqdm bars go to stderr, which a windowed app does not have;
# anything the user must know is raised as an error with a message instead.
for _logging in (diffusers_logging, transformers_logging):
    _logging.set_verbosity_error()
    _logging.disable_progress_bar()

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEMO = "demo"
CHECKPOINT = "checkpoint"  # the kind of a held main model; auxiliary models are held under kinds of their own


EMBEDDINGS_KEPT = 8  # prompt encodings remembered per model


@dataclass
class LoadedModel:
    ref: str
    info: ModelInfo
    pipelines: dict = field(repr=False)  # (task, extras) -> pipeline; the first is the one loaded from disk
    scheduler_config: dict = field(repr=False)  # the model's own, before any sampler replaced it
    plan: tuning.Plan = field(default_factory=tuning.Plan)  # the device settings it was loaded with
    embeddings: OrderedDict = field(default_factory=OrderedDict, repr=False)  # see ModelManager.span_embeddings
    loras: lora.LoraPatcher | None = field(default=None, repr=False)  # the LoRAs merged into its weights

    @property
    def family(self) -> str:
        return self.info.family.value

    @property
    def inpaint_model(self) -> bool:
        return flow.is_inpaint_model(self.info)

    @property
    def flow(self) -> bool:
        """A flow-matching family (desktop/engine/flow.py), not an A1111 UNet model."""
        return families.is_flow(self.info.family)

    @property
    def name(self) -> str:
        return _name(self.info.path)


@dataclass
class Held:
    """One model kept loaded under (kind, ref): a checkpoint's LoadedModel, or an auxiliary model."""

    kind: str
    ref: str
    name: str  # what the status line calls it
    value: object = field(repr=False)
    size: int  # bytes of its weights
    pool: str  # tuning.GPU or tuning.SYSTEM: the memory they are in


class ModelManager:
    """Owns the loaded models; `current` is the checkpoint the last load() chose. Used only from the worker thread."""

    def __init__(self, device: DeviceChoice, weight_storage: str = "auto", runtime: str = "pytorch", threads: int = 0,
                 runtime_measured: bool = False):
        self.device = device
        self.weight_storage = weight_storage  # tuning.STORAGES: int8 transformers where the plan says
        # "pytorch" or "openvino": what runs the UNet and VAE decoder on the CPU (desktop/engine/runtimes.py), with
        # `threads` threads (0: one per physical core)
        self.runtime, self.threads = runtime, threads
        # the runtime came from the Auto setting's measurement, not the person's explicit choice: then the tiny demo
        # models run on PyTorch, as converting a model of a few MB costs more than OpenVINO would ever save on it
        self.runtime_measured = runtime_measured
        tuning.configure_backends(device)
        self.current: LoadedModel | None = None
        self._held: OrderedDict[tuple[str, str], Held] = OrderedDict()  # least recently used first
        self._previewer: Previewer | None = None
        self._previewer_key: tuple | None = None
        self._tiny_decoders: dict[Path, object] = {}  # TAESD folder -> its AutoencoderTiny (tiny_decoder)
        self._tiny_unreadable: dict[Path, str] = {}  # TAESD folder -> why its files could not be read, last try
        self._preview_told: set[tuple[Path, str]] = set()  # unreadable TAESDs the previews' status already named
        self._embedding_library = EmbeddingLibrary()
        self._resolved: tuple[str, Path, ModelInfo] | None = None  # identify()'s answer, for the load after it

    def load(self, ref: str, state: TaskState | None = None) -> LoadedModel:
        """Make `ref` the current model: at once when it is still loaded, else from its file."""
        state = state or TaskState()
        loaded = self.held(CHECKPOINT, ref)
        if loaded is not None:
            if loaded is not self.current:
                self.current = loaded
                state.status(self._ready(loaded))
            return loaded
        resolved, self._resolved = self._resolved, None
        path, info = resolved[1:] if resolved is not None and resolved[0] == ref else self._resolve(ref, state)
        state.status(f"Loading {path.name}...")
        pipe = self._load_pipeline(path, info)
        said = families.is_flow(info.family) and families.demo_kind(ref) is None  # a demo's weights are random
        licence = families.spec(info.family).variant(info.variant).licence if said else ""
        if licence:
            state.status(f"{flow.label(info)}: {licence}.")
        name, weights = _name(path), tuning.weights_bytes(pipe)
        self.make_room(tuning.GPU, weights + tuning.working_memory(info.family), name, state)
        gpu_free, system = tuning.measure(self.device)
        largest = tuning.largest_component(pipe)
        int8 = tuning.int8_sizes(pipe) if families.is_flow(info.family) and _torchao() else None
        estimate = tuning.estimate(self.device, info.family, weights, gpu_free, largest=largest,
                                   denoiser=tuning.denoiser_parameters(pipe), variant=info.variant, int8=int8,
                                   storage=self.weight_storage)
        if estimate:
            state.status(f"{name}: {estimate}.")
        plan = tuning.plan(self.device, info.family, weights, gpu_free, system, largest=largest, int8=int8,
                           storage=self.weight_storage)
        if self.weight_storage == "int8" and int8 is None and families.is_flow(info.family):
            state.status(f"{name}: its weights stay as they are: " + ("its transformer is already quantized."
                         if _torchao() else "storing them in int8 needs the torchao package."))
        if plan.int8:
            tuning.store_int8(pipe)  # before it moves to the GPU: the bf16 transformer never has to fit there
            weights = tuning.weights_bytes(pipe)
        try:
            plan = tuning.place(pipe, plan, self.device.device, self.release_cache)
        except torch.OutOfMemoryError:
            del pipe
            self.release_cache()
            raise OutOfMemory(f"{path.name} does not fit in the memory of the {self.device.description}.") from None
        pool = tuning.pool(self.device, plan)
        if pool == tuning.SYSTEM:
            self.make_room(pool, weights, name, state)
        if info.prediction and pipe.scheduler.config.get("prediction_type") != info.prediction:
            # v-prediction checkpoints say so in their keys or metadata; the bundled config may not match
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=info.prediction)
        task = "inpaint" if flow.is_inpaint_model(info) else "txt2img"
        loaded = LoadedModel(ref, info, {(task, ()): pipe}, dict(pipe.scheduler.config), plan)
        self.keep(CHECKPOINT, ref, loaded, weights, pool, name)
        self.current = loaded
        state.status(self._ready(loaded))
        return loaded

    def identify(self, ref: str, state: TaskState | None = None) -> ModelInfo:
        """What `ref` is (family, variant, ...), from its file's header or folder's configs, without loading its
        weights, so a request it cannot run stops before a long load; the load that follows does not read it
        again. Raises ModelLoadError as load() does."""
        held = self._held.get((CHECKPOINT, ref))
        if held is not None:
            return held.value.info
        if self._resolved is None or self._resolved[0] != ref:
            self._resolved = (ref, *self._resolve(ref, state or TaskState()))
        return self._resolved[2]

    def flow_prompt(self, pipe, prompt: str, negative: str | None) -> dict:
        """The current flow model's encoding of `prompt` (and of `negative` when the run is guided; None when it
        is not) for one picture (flow.encode), encoded once per conditioning: a new seed or batch reuses it."""
        loaded = self.current
        loras = loaded.loras.signature() if loaded.loras is not None else ()  # a LoRA may change a text encoder
        key = ("flow", loaded.ref, prompt, negative, loras)
        cache = loaded.embeddings
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        cache[key] = flow.encode(pipe, loaded.info, prompt, negative, self.device.device)
        while len(cache) > EMBEDDINGS_KEPT:
            cache.popitem(last=False)
        return cache[key]

    def _ready(self, loaded: LoadedModel) -> str:
        note = f" ({loaded.plan.note})" if loaded.plan.note else ""
        return f"Ready: {loaded.info.path.name} on {self.device.description}{note}"

    # -- the models held, for checkpoints and auxiliary models alike ----------

    def held(self, kind: str, ref: str):
        """The model loaded as (kind, ref), now the most recently used; None when it is not loaded."""
        entry = self._held.get((kind, ref))
        if entry is None:
            return None
        self._held.move_to_end((kind, ref))
        return entry.value

    def keep(self, kind: str, ref: str, value, size: int, pool: str, name: str) -> None:
        """Hold a model just loaded (after make_room) until it is unloaded to make room or by unload()."""
        self._held[(kind, ref)] = Held(kind, ref, name, value, size, pool)

    def make_room(self, pool: str, size: int, name: str, state: TaskState, spare=()) -> None:
        """Unload the least recently used models of `pool` until `size` more bytes fit its budget, saying which.

        GPU: until its free memory holds `size` (weights and working memory); when nothing is left to unload the
        device plan offloads instead. SYSTEM: until the models held there and `size` fit tuning.system_budget.
        `spare`: (kind, ref) keys never unloaded here (the checkpoint an auxiliary model is loaded for).
        """
        if pool == tuning.GPU and self.device.device.type != "cuda":
            return
        while True:
            gpu_free, system = tuning.measure(self.device)
            if pool == tuning.GPU:
                fits = gpu_free is None or size <= gpu_free
            else:
                budget = tuning.system_budget(system)
                fits = budget is None or size + sum(h.size for h in self._held.values() if h.pool == pool) <= budget
            victim = next((h for key, h in self._held.items() if h.pool == pool and key not in spare), None)
            if fits or victim is None:
                return
            self.unload(victim.kind, victim.ref)
            state.status(f"Unloaded {victim.name} to make room for {name}")

    def unload(self, kind: str | None = None, ref: str | None = None) -> None:
        """Unload the model held as (kind, ref), or every model."""
        keys = [(kind, ref)] if kind is not None else list(self._held)
        for key in keys:
            entry = self._held.pop(key, None)
            if entry is not None and entry.value is self.current:
                self.current = None
            if entry is not None and not isinstance(entry.value, LoadedModel):
                self._forget_pipelines_using(entry.value)
        if kind is None:
            self.current = None
        self.release_cache()

    def _forget_pipelines_using(self, module) -> None:
        """Drop the pipelines made with an auxiliary model just unloaded (alone, or in a MultiControlNetModel),
        so that they do not keep its weights in memory."""
        def uses(extra) -> bool:
            return extra is module or any(net is module for net in getattr(extra, "nets", ()))

        for held in self._held.values():
            if isinstance(held.value, LoadedModel):
                pipes = held.value.pipelines
                for key in [k for k in pipes if any(uses(extra) for _, extra in k[1])]:
                    del pipes[key]

    # -- using the current checkpoint -----------------------------------------

    def pipeline(self, task: str, extras: tuple = ()):
        """The current model's pipeline for "txt2img", "img2img" or "inpaint", sharing its weights.

        `extras`: (component name, module) pairs it uses beside or instead of the model's own, such as
        ("vae", a VAE override); each combination is made once (from_pipe) and kept with the model.
        """
        if self.current is None:
            raise RuntimeError("no model is loaded")
        loaded, extras = self.current, tuple(extras)
        pipes = loaded.pipelines
        if (task, extras) not in pipes:
            base = next(iter(pipes.values()))
            group = "sdxl" if loaded.info.family is Family.SDXL else "sd"
            own = frozenset(name for name, _ in extras if name not in base.components)
            if loaded.flow:
                cls = flow.pipeline_class(loaded.info, task) if not own else None
            else:
                cls = _PIPELINES.get((group, task, own))
            if cls is None:
                raise ValueError(f"no {loaded.family} pipeline does {task} with {', '.join(sorted(own))}")
            for _, module in extras:
                tuning.adopt(module, loaded.plan, self.device.device)
            # from_pipe casts every module to its dtype, which a quantized one (a GGUF or int8 transformer) refuses:
            # it joins after, as it was loaded
            quantized = {k: m for k, m in base.components.items()
                         if getattr(m, "is_quantized", False) or (loaded.plan.int8 and k == "transformer")}
            pipe = cls.from_pipe(base, dtype=self.device.dtype, **dict.fromkeys(quantized),
                                 **{_COMPONENTS.get(k, k): v for k, v in extras})
            pipe.register_modules(**quantized)
            pipe.set_progress_bar_config(disable=True)
            tuning.derive(pipe, loaded.plan, self.device.device)
            pipes[(task, extras)] = pipe
        return pipes[(task, extras)]

    def offload_sequentially(self) -> bool:
        """After a run of the current model ran out of GPU memory with model offload: its pipelines move to
        sequential offload (tuning.lighter), which later runs keep. False when there is nothing lighter."""
        loaded = self.current
        plan = tuning.lighter(loaded.plan)
        if plan is None:
            return False
        loaded.plan = plan
        for pipe in loaded.pipelines.values():
            tuning.derive(pipe, plan, self.device.device)
        self.release_cache()
        return True

    def span_embeddings(self, pipe, spans, guided: bool, embeddings: dict | None = None) -> list:
        """The encodings of a prompt's spans of steps (editing.spans; one without prompt editing), encoded once
        per conditioning (a new seed reuses it).

        Remembered by all that changes the encoding: the model and the text encoders of `pipe`, every span's
        conditioning (prompt, negative prompt, clip skip, emphasis), whether the run is guided, the LoRAs
        merged into the text encoders and the textual-inversion embeddings that can be used.
        """
        spans = tuple(spans)
        loaded = self.current
        cache = loaded.embeddings
        encoders = tuple(id(getattr(pipe, name, None)) for name in ("text_encoder", "text_encoder_2"))
        vectors = tuple(sorted((name, id(v)) for name, value in (embeddings or {}).items() for v in value.values()))
        loras = loaded.loras.signature() if loaded.loras is not None else ()
        key = (loaded.ref, encoders, spans, guided, loras, vectors)
        if key in cache:
            cache.move_to_end(key)
            return cache[key][0]
        encoded = prompt_encoding.encode_spans(pipe, loaded.family, spans, guided, self.device.device, embeddings)
        cache[key] = (encoded, embeddings)  # holding the vectors: no re-read embedding can take their ids
        while len(cache) > EMBEDDINGS_KEPT:
            cache.popitem(last=False)
        return encoded

    def use_loras(self, uses) -> list[str]:
        """Merge exactly these LoRAs (lora.LoraUse) into the current model's weights; [] takes them all out.
        Returns what the status line should say (weights that matched nothing, ...)."""
        from . import lora  # torch-heavy code only a prompt with a LoRA needs

        loaded = self.current
        if loaded.loras is None:
            if not uses:
                return []
            base = next(iter(loaded.pipelines.values()))
            if loaded.flow:  # diffusers' converters read their layouts (kohya, ai-toolkit, XLabs, BFL)
                from .flow_lora import FlowLoraPatcher

                loaded.loras = FlowLoraPatcher(base, loaded.family)
            else:
                parts = {name: getattr(base, name, None) for name in ("unet", "text_encoder", "text_encoder_2")}
                loaded.loras = lora.LoraPatcher({k: v for k, v in parts.items() if v is not None}, loaded.family)
        with torch.no_grad():
            return loaded.loras.apply(uses)

    def usable_embeddings(self, files: dict[str, Path]) -> tuple[dict, dict[str, str]]:
        """The textual-inversion embeddings among `files` (name -> file) the current model's encoders take, and
        name -> why each other one cannot be used."""
        if self.current.flow:  # their names are words: these families take no embeddings (yet)
            return {}, {}
        base = next(iter(self.current.pipelines.values()))
        widths = {"clip_l": base.text_encoder.config.hidden_size}
        if getattr(base, "text_encoder_2", None) is not None:
            widths["clip_g"] = base.text_encoder_2.config.hidden_size
        return self._embedding_library.for_model(files, widths)

    def release_cache(self) -> None:
        gc.collect()
        empty_cache(self.device.device)

    def previewer(self, family: str, method: str, model: Path | None = None,
                  state: TaskState | None = None) -> Previewer:
        """The preview maker for this family and method, kept between runs (its TAESD is tiny_decoder's). When
        the TAESD's files cannot be read it previews with the approximation, which the status says once."""
        decoder, folder = self.tiny_decoder(family, model) if method == "taesd" else (None, None)
        why = self.tiny_unreadable(folder) if folder is not None else ""
        if why and state is not None and (folder, why) not in self._preview_told:
            self._preview_told.add((folder, why))
            state.status(f"The previews use the approximation: the TAESD in {folder} could not be read ({why}); "
                         "download its files again.")
        key = (family, method, id(decoder))
        if self._previewer_key != key:
            self._previewer = Previewer(family, method, None, self.device.device, self.device.dtype, decoder)
            self._previewer_key = key
        return self._previewer

    def tiny_decoder(self, family: str, model: Path | None = None):
        """(TAESD, folder): the family's tiny decoder from `folder`, loaded once and kept, or None when its files
        are not there. `folder` is models/taesd, taesdxl, taef1 or taesd3, or for a demo model (`model`: its
        folder) the tiny TAESD built inside it."""
        folder = tiny.taesd_folder(model) if model is not None else None
        folder = folder or taesd_dir(paths.models_dir(), family)
        decoder = self._tiny_decoders.get(folder)
        if decoder is None:
            try:
                decoder = load_tiny_decoder(folder, family, self.device.device, self.device.dtype)
            except UnreadableTinyDecoder as error:
                self._tiny_unreadable[folder] = str(error)
            else:
                self._tiny_unreadable.pop(folder, None)
            if decoder is not None:
                self._tiny_decoders[folder] = decoder
        return decoder, folder

    def tiny_unreadable(self, folder: Path) -> str:
        """Why the TAESD in `folder` could not be read at the last try; "" when it was read or is not there."""
        return self._tiny_unreadable.get(folder, "")

    # -- resolving and loading ------------------------------------------------

    def _resolve(self, ref: str, state: TaskState) -> tuple[Path, ModelInfo]:
        kind = families.demo_kind(ref)
        if kind is not None:
            state.status("Preparing the demo model...")
            path = tiny.build(paths.demo_model_dir(), kind).folder
        elif Path(ref).expanduser().exists():
            path = Path(ref).expanduser()
        elif _REPO_ID.match(ref):
            path = hub.download(ref, state)
        else:
            raise ModelLoadError(ref, "there is no such file or folder, and it is not a Hugging Face repo id.")
        try:
            info = modelfiles.identify(path)
        except ModelFileError as error:
            raise ModelLoadError(path, str(error)) from None
        if info.kind == "unknown":
            raise ModelLoadError(path, _sentence(info.note or "it is not a Stable Diffusion model file."))
        if info.kind == "upscaler":
            raise ModelLoadError(path, "it is an upscaler, not a full model. Use it to upscale pictures, and choose "
                                       "a Stable Diffusion checkpoint to generate.")
        if info.kind != "checkpoint":
            raise ModelLoadError(path, f"it is a {info.kind.upper() if info.kind == 'vae' else info.kind} file, "
                                       "not a full model. Choose a Stable Diffusion checkpoint instead.")
        if info.family not in (Family.SD1, Family.SD2, Family.SDXL) and not families.is_flow(info.family):
            hint = _sentence(info.note) if info.note else "it is not a model Sfumato can generate with."
            raise ModelLoadError(path, f"{hint} Sfumato loads Stable Diffusion 1.x, 2.x, SDXL, SD 3.5, FLUX.1, "
                                       "FLUX.2 [klein] and Z-Image models.")
        return path, info

    def _load_pipeline(self, path: Path, info: ModelInfo):
        group = "sdxl" if info.family is Family.SDXL else "sd"
        if families.is_flow(info.family):
            cls, group = flow.pipeline_class(info, "txt2img"), "flow"  # an inpainting model: its inpaint class
        else:
            cls = _PIPELINES[(group, "inpaint" if info.inpaint else "txt2img", frozenset())]
        extra = {"safety_checker": None, "requires_safety_checker": False} if group == "sd" else {}
        try:
            if group == "flow" and not path.is_dir():
                from . import flow_files  # single files of these families: their own loader

                pipe = flow_files.load_single_file(path, info, cls, self.device.dtype)
            elif path.is_dir():
                pipe = cls.from_pretrained(path, dtype=self.device.dtype, local_files_only=True, **extra)
            else:
                config = modelfiles.sidecar_config(path) or self._bundled_config(info)
                pipe = cls.from_single_file(
                    str(path), config=str(config), dtype=self.device.dtype, local_files_only=True, **extra
                )
        except (ModelLoadError, OutOfMemory):
            raise
        except torch.OutOfMemoryError:
            raise OutOfMemory(f"{path.name} does not fit in memory.") from None
        except Exception as error:  # noqa: BLE001 - any loader failure becomes one clear message
            raise ModelLoadError(path, _explain(error)) from error
        pipe.set_progress_bar_config(disable=True)  # a windowed app has no stderr to draw bars on
        return pipe

    def _bundled_config(self, info: ModelInfo) -> Path:
        return bundled_configs.cached_config(info.family.value + ("-inpaint" if info.inpaint else ""))


def _torchao() -> bool:
    """Whether torchao (int8 weight storage) is installed: the app works without it, in full precision."""
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def _name(path: Path) -> str:
    return path.stem if path.suffix else path.name


def _explain(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lowered = str(error).lower()  # PyTorch says what is wrong below "Error(s) in loading state_dict for X:"
    if any(_refused_code(e) for e in _chain(error)):  # diffusers words it "Unable to load weights"
        return "this .ckpt file contains code, not only weights, so it was not opened. Use a .safetensors version of the model."
    if "size mismatch" in lowered or "shape" in lowered:
        return "its weights do not match the architecture Sfumato detected. The file may be damaged or of a model type Sfumato does not support."
    if "header" in lowered or "deserializ" in lowered or "incomplete" in lowered or "truncat" in lowered:
        return "the file is damaged or incomplete. Download it again."
    return text


def _chain(error: BaseException, limit: int = 16) -> list[BaseException]:
    """The error and those it was raised from or while handling, nearest first."""
    chain: list[BaseException] = []
    while error is not None and len(chain) < limit and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _refused_code(error: BaseException) -> bool:
    """torch.load(weights_only=True) met something that is not a tensor or plain data."""
    text = str(error).lower()
    return "weights only load failed" in text or "weights_only" in text


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
