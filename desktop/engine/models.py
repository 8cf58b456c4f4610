"""Load models and keep one pipeline ready.

A model reference is a single-file checkpoint (.safetensors, or a pickle
.ckpt read with weights_only=True), a diffusers folder, a Hugging Face repo
id ("owner/name"), or "demo" (the built-in tiny random-weight model).

Single files need diffusers configs and a tokenizer: they come from a
sidecar folder "<name>.config" beside the file when there is one, else from
the configs bundled for the detected family (resources/configs), so a local
file loads with the network off.

txt2img, img2img and inpaint pipelines share the loaded weights (from_pipe);
switching mode never reloads. A failed load leaves the previous model loaded.
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

from desktop.core import hub, modelfiles, paths
from desktop.core.errors import ModelLoadError, OutOfMemory
from desktop.core.modelfiles import Family, ModelFileError, ModelInfo
from desktop.core.progress import TaskState

from . import bundled_configs, tiny, tuning
from .devices import DeviceChoice, empty_cache
from .previews import Previewer, taesd_dir

_PIPELINES = {
    "sd": {
        "txt2img": diffusers.StableDiffusionPipeline,
        "img2img": diffusers.StableDiffusionImg2ImgPipeline,
        "inpaint": diffusers.StableDiffusionInpaintPipeline,
    },
    "sdxl": {
        "txt2img": diffusers.StableDiffusionXLPipeline,
        "img2img": diffusers.StableDiffusionXLImg2ImgPipeline,
        "inpaint": diffusers.StableDiffusionXLInpaintPipeline,
    },
}
# Their warnings and tqdm bars go to stderr, which a windowed app does not have;
# anything the user must know is raised as an error with a message instead.
for _logging in (diffusers_logging, transformers_logging):
    _logging.set_verbosity_error()
    _logging.disable_progress_bar()

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEMO = "demo"


EMBEDDINGS_KEPT = 8  # prompt encodings remembered per model


@dataclass
class LoadedModel:
    ref: str
    info: ModelInfo
    pipelines: dict = field(repr=False)  # "txt2img" | "img2img" | "inpaint" -> pipeline
    scheduler_config: dict = field(repr=False)  # the model's own, before any sampler replaced it
    plan: tuning.Plan = field(default_factory=tuning.Plan)  # the device settings it was loaded with
    embeddings: OrderedDict = field(default_factory=OrderedDict, repr=False)  # (prompt, negative, guided) -> kwargs

    @property
    def family(self) -> str:
        return self.info.family.value

    @property
    def inpaint_model(self) -> bool:
        return self.info.inpaint

    @property
    def name(self) -> str:
        return self.info.path.stem if self.info.path.suffix else self.info.path.name


class ModelManager:
    """Owns the one loaded model. Used only from the worker thread."""

    def __init__(self, device: DeviceChoice):
        self.device = device
        tuning.configure_backends(device)
        self.current: LoadedModel | None = None
        self._previewer: Previewer | None = None
        self._previewer_key: tuple[str, str] | None = None

    def load(self, ref: str, state: TaskState | None = None) -> LoadedModel:
        """Make `ref` the loaded model (no-op when it already is)."""
        state = state or TaskState()
        if self.current is not None and self.current.ref == ref:
            return self.current
        path, info = self._resolve(ref, state)
        state.status(f"Loading {path.name}...")
        pipe = self._load_pipeline(path, info)
        self.unload()
        plan = tuning.plan(self.device, info.family, tuning.weights_bytes(pipe), *tuning.measure(self.device))
        try:
            plan = tuning.place(pipe, plan, self.device.device, self.release_cache)
        except torch.OutOfMemoryError:
            del pipe
            self.release_cache()
            raise OutOfMemory(f"{path.name} does not fit in the memory of the {self.device.description}.") from None
        if info.prediction and pipe.scheduler.config.get("prediction_type") != info.prediction:
            # v-prediction checkpoints say so in their keys or metadata; the bundled config may not match
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=info.prediction)
        kind = "inpaint" if info.inpaint else "txt2img"
        self.current = LoadedModel(ref, info, {kind: pipe}, dict(pipe.scheduler.config), plan)
        note = f" ({plan.note})" if plan.note else ""
        state.status(f"Ready: {path.name} on {self.device.description}{note}")
        return self.current

    def pipeline(self, kind: str):
        """The pipeline for "txt2img", "img2img" or "inpaint", sharing the loaded weights."""
        if self.current is None:
            raise RuntimeError("no model is loaded")
        pipes = self.current.pipelines
        if kind not in pipes:
            group = "sdxl" if self.current.info.family is Family.SDXL else "sd"
            base = next(iter(pipes.values()))
            pipes[kind] = _PIPELINES[group][kind].from_pipe(base, dtype=self.device.dtype)
            pipes[kind].set_progress_bar_config(disable=True)
            tuning.derive(pipes[kind], self.current.plan, self.device.device)
        return pipes[kind]

    def prompt_embeddings(self, pipe, prompt: str, negative: str, guided: bool) -> dict:
        """The encoded prompt as pipeline arguments, encoded once per text (a new seed reuses it)."""
        cache = self.current.embeddings
        key = (prompt, negative, guided)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        negative_prompt = negative or None
        if self.current.info.family is Family.SDXL:
            embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
                prompt, device=self.device.device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
                negative_prompt=negative_prompt)
            kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds,
                      "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": negative_pooled}
        else:
            embeds, negative_embeds = pipe.encode_prompt(prompt, self.device.device, 1, guided, negative_prompt)
            kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}
        kwargs = {name: value for name, value in kwargs.items() if value is not None}
        cache[key] = kwargs
        while len(cache) > EMBEDDINGS_KEPT:
            cache.popitem(last=False)
        return kwargs

    def unload(self) -> None:
        self.current = None
        self.release_cache()

    def release_cache(self) -> None:
        gc.collect()
        empty_cache(self.device.device)

    def previewer(self, family: str, method: str) -> Previewer:
        """The preview maker for this family and method, kept between runs (TAESD loads once)."""
        key = (family, method)
        if self._previewer_key != key:
            self._previewer = Previewer(family, method, taesd_dir(paths.models_dir(), family),
                                        self.device.device, self.device.dtype)
            self._previewer_key = key
        return self._previewer

    # -- resolving and loading ------------------------------------------------

    def _resolve(self, ref: str, state: TaskState) -> tuple[Path, ModelInfo]:
        if ref == DEMO:
            state.status("Preparing the demo model...")
            path = tiny.build(paths.demo_model_dir(), "sd1").folder
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
        if info.kind != "checkpoint":
            raise ModelLoadError(path, f"it is a {info.kind.upper() if info.kind == 'vae' else info.kind} file, "
                                       "not a full model. Choose a Stable Diffusion checkpoint instead.")
        if info.family not in (Family.SD1, Family.SD2, Family.SDXL):
            hint = _sentence(info.note) if info.note else "it is not a Stable Diffusion 1.x, 2.x or SDXL model."
            raise ModelLoadError(path, f"{hint} Sfumato loads Stable Diffusion 1.x, 2.x and SDXL models.")
        return path, info

    def _load_pipeline(self, path: Path, info: ModelInfo):
        group = "sdxl" if info.family is Family.SDXL else "sd"
        cls = _PIPELINES[group]["inpaint" if info.inpaint else "txt2img"]
        extra = {"safety_checker": None, "requires_safety_checker": False} if group == "sd" else {}
        try:
            if path.is_dir():
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


def _explain(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lowered = text.lower()
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
