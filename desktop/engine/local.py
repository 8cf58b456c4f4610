"""LocalBackend: the Backend (desktop/core/backend.py) that runs diffusers on this computer.

It puts together what the worker and the CLI used to assemble each on their
own: the device choice, the ModelManager, generate.run and the model hash
written into metadata. A different device or precision is a new LocalBackend;
the preview settings come with each job, so changing them keeps the model.
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from desktop.core import addons, controlnets, families, model_sources, modelfiles, paths, postprocess, references
from desktop.core import cpu_runtime, fewstep
from desktop.core.cpu_runtime import Measurement
from desktop.core.backend import GENERATION, PREPROCESS, CurrentCall, Job, ModelDescriptor, Result
from desktop.core.postprocess import UPSCALE
from desktop.core.errors import SfumatoError
from desktop.core.geometry import Extent
from desktop.core.progress import TaskState
from desktop.core.settings import Settings

from . import devices, generate, runtime_probe, tiny
from .models import CHECKPOINT, DEMO, LoadedModel, ModelManager

DEMO_NAME = "Demo model (random weights)"
# The variants of the other families' tiny demo models (desktop/engine/tiny_flow.py builds them).
_DEMO_VARIANTS = {"flux1": "dev", "zimage": "turbo", "sd3": "medium", "flux2-klein": "4b"}


class DemoModelUnwritable(SfumatoError):
    """The demo model could not be written (a full or read-only disk); `folder` and `reason` say where and why."""

    def __init__(self, folder: Path, reason: str):
        super().__init__(f"Could not build the demo model in {folder}: {reason}.")
        self.folder, self.reason = folder, reason


class LocalBackend:
    """Owned by one thread (the worker's, or the CLI's); only cancel() may be called from another."""

    def __init__(self, device: str = "auto", precision: str = "auto", models_folders: Iterable[str | Path] = (),
                 hash_cache: Path | None = None, weight_storage: str = "auto", few_step_marks: dict | None = None,
                 cpu_runtime: str = "pytorch", cpu_threads: int = 0):
        self.device, self.precision, self.weight_storage = device, precision, weight_storage
        self.few_step_marks = dict(few_step_marks or {})  # settings.few_step_marks: the user's word on few-step files
        self._folders = list(models_folders)
        self._hash_cache = hash_cache  # None: the cache file in Sfumato's cache folder
        self._manager: ModelManager | None = None
        # ref -> (the loaded model, weakly: one the manager unloaded is freed; its description)
        self._described: dict[str, tuple[weakref.ref, ModelDescriptor]] = {}
        self._call = CurrentCall()  # for cancel() from another thread
        # settings.cpu_runtime and cpu_threads: how a run on the CPU goes (desktop/core/cpu_runtime.py, devices.py);
        # "auto" (the settings' default) measures the CPU once at start, so a backend built by hand runs PyTorch
        self.cpu_runtime, self.cpu_threads = cpu_runtime, cpu_threads
        self.measurement: Measurement | None = None  # which CPU runtime was faster here (runtime_probe.ensure)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBackend:
        return cls(settings.device, settings.precision, settings.models_folders,
                   weight_storage=settings.weight_storage, few_step_marks=settings.few_step_marks,
                   cpu_runtime=settings.cpu_runtime, cpu_threads=settings.cpu_threads)

    def start(self, state: TaskState) -> str:
        """Choose the device (raises ValueError for one that is not there); returns its description."""
        if self._manager is None:
            choice = devices.choose(self.device, self.precision, threads=self.cpu_threads)
            self.measurement = runtime_probe.ensure(choice, self.cpu_runtime, state)
            on_cpu = choice.device.type == "cpu"  # OpenVINO only ever runs on the CPU
            runtime = cpu_runtime.chosen(self.cpu_runtime, self.measurement) if on_cpu else "pytorch"
            self._manager = ModelManager(choice, self.weight_storage, runtime, self.cpu_threads,
                                         runtime_measured=self.cpu_runtime == "auto")
        return self._manager.device.description

    def load(self, ref: str, state: TaskState) -> ModelDescriptor:
        with self._call.running(state):
            self.start(state)
            kind = families.demo_kind(ref)
            if kind is not None and self._manager.held(CHECKPOINT, ref) is None:
                _build_demo(state, kind)
            return self._describe(self._manager.load(ref, state))

    def run(self, job: Job, state: TaskState) -> list[Result]:
        if job.kind not in (GENERATION, UPSCALE, PREPROCESS):
            raise SfumatoError(f"This version of Sfumato cannot run {job.kind} jobs on this computer.")
        with self._call.running(state):
            self.start(state)
            if self._manager.device.device.type == "cpu":  # torch keeps the thread count per thread: a server or a
                devices.use_threads(self.cpu_threads)  # replica may run jobs on a thread other than start()'s
            if job.kind == PREPROCESS:
                from . import preprocess  # OpenCV, and transformers for depth, only when a control picture is made

                return [Result(preprocess.run(job.type, job.image, self._folders, state, self._manager), -1, job)]
            if job.kind == UPSCALE and job.request.faces is not None:
                from . import faces  # the face fix: OpenCV and spandrel only when faces are fixed

                return faces.run(job.request, state, self._manager, self._folders, FolderAddons(self._folders))
            if job.kind == UPSCALE:
                from . import upscale  # spandrel only when something is upscaled

                if job.request.detail is not None:  # a detail pass that cannot run stops before the upscale
                    from . import detail

                    detail.refuse_flow(job.request.detail.validated(), self._manager, state)
                results = upscale.run(job.request, state, self._manager, self._folders)
                if job.request.detail is None:
                    return results
                return self._add_detail(job.request, results[0], state)
            return generate.run(job.request, state, self._manager, job.preview_method, job.preview_every,
                                FolderAddons(self._folders))

    def _add_detail(self, request, upscaled: Result, state: TaskState) -> list[Result]:
        """Upscale with detail: the img2img pass over the upscaled picture (desktop/engine/detail.py), with its
        parameters as A1111's img2img writes them and the Postprocess keys after them."""
        from . import detail

        image = upscaled.image
        done = detail.run(request.detail, image[..., :3], state, self._manager, FolderAddons(self._folders))
        if image.shape[2] == 4:  # the transparency stays the upscaled one
            done_image = np.dstack([done.image, image[..., 3]])
        else:
            done_image = done.image
        model = self._describe(self._manager.current)
        size = Extent(int(image.shape[1]), int(image.shape[0]))
        text = postprocess.detail_parameters(request.detail, size, done.seed, model.name, model.hash, done.params,
                                             upscaled.params)
        return [Result(done_image, done.seed, request.replace(parameters=text), done.params + upscaled.params)]

    def models(self) -> list[ModelDescriptor]:
        """The usable models in the model folders, then the demo model; then the upscalers and restorers (kind
        UPSCALE; family "upscaler", "restorer" for a model of scale 1, or "face restorer") of the upscaler folders
        and the demo upscaler and restorer; then the ControlNets (kind and family "controlnet") and the demo one; then
        the IP-Adapter files (kind and family "ipadapter"; the demo one is built in), so a server can name them."""
        found = [ModelDescriptor(str(entry.path), entry.info.family.value, entry.name, variant=entry.info.variant,
                                 few_step=fewstep.kind_of(entry.info.name, entry.info.few_step, self.few_step_marks),
                                 guidance_embedded=entry.info.guidance_embedded)
                 for entry in model_sources.list_models(self._folders) if entry.usable]
        demos = [ModelDescriptor(families.DEMO_PREFIX + spec.demo, spec.family.value,
                                 f"Demo {spec.label} (random weights)", variant=_DEMO_VARIANTS.get(spec.demo, ""),
                                 few_step=fewstep.demo_kind(families.DEMO_PREFIX + spec.demo))
                 for spec in families.SPECS.values() if spec.demo and spec.demo != "sd1"]
        from .upscale import kind_of  # restorer (scale 1), upscaler or face restorer, from spandrel's reading

        upscale = frozenset({UPSCALE})
        upscalers = [ModelDescriptor(str(path), kind_of(path) or "upscaler", name, kinds=upscale)
                     for name, path in postprocess.list_upscalers(self._folders).items()]
        control = frozenset({"controlnet"})  # ControlNets (desktop/core/controlnets.py), for control layers
        controls = [ModelDescriptor(str(path), "controlnet", name, kinds=control)
                    for name, path in controlnets.list_controlnets(self._folders).items()]
        adapter = frozenset({"ipadapter"})
        adapters = [ModelDescriptor(str(path), "ipadapter", name, kinds=adapter)
                    for name, path in references.list_adapters(self._folders).items()]
        return [*found, ModelDescriptor(DEMO, "sd1", DEMO_NAME, few_step=fewstep.demo_kind(DEMO)), *demos, *upscalers,
                ModelDescriptor(DEMO, "upscaler", postprocess.DEMO_UPSCALER_NAME, kinds=upscale),
                ModelDescriptor(postprocess.DEMO_RESTORER, "restorer", postprocess.DEMO_RESTORER_NAME, kinds=upscale),
                *controls, ModelDescriptor(DEMO, "controlnet", "Demo ControlNet (random weights)", kinds=control),
                *adapters]

    def use_folders(self, folders: Iterable[str | Path]) -> None:
        self._folders = list(folders)

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        if self._manager is not None:
            self._manager.unload()
            self._manager = None
        self._described = {}

    def _describe(self, loaded: LoadedModel) -> ModelDescriptor:
        """The loaded model for metadata; hashed once per load (the hash cache file keeps it between runs)."""
        known = self._described.get(loaded.ref)
        if known is not None and known[0]() is loaded:
            return known[1]
        cache = self._hash_cache or paths.cache_dir() / "model-hashes.json"
        try:
            model_hash = modelfiles.model_hash(loaded.info.path, cache=cache)
        except (OSError, SfumatoError):
            model_hash = ""  # the pictures matter more than the hash in their metadata
        few_step = fewstep.demo_kind(loaded.ref) or fewstep.kind_of(loaded.info.name, loaded.info.few_step,
                                                                    self.few_step_marks)
        described = ModelDescriptor(loaded.ref, loaded.family, loaded.name, model_hash, variant=loaded.info.variant,
                                    few_step=few_step, guidance_embedded=loaded.info.guidance_embedded)
        self._described[loaded.ref] = (weakref.ref(loaded), described)
        return described


class FolderAddons:
    """The LoRAs and embeddings of the model folders (desktop/core/addons.py), for generate.run."""

    def __init__(self, folders: Iterable[str | Path]):
        self._folders = list(folders)
        self.folders = self._folders  # also where the hires fix's model upscalers are looked for

    def find(self, kind: str, name: str) -> Path | None:
        return addons.find(kind, name, self._folders)

    def files(self, kind: str) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for addon in addons.list_addons(kind, self._folders):
            found.setdefault(addon.name, addon.path)
        return found

    def short_hash(self, kind: str, path: Path) -> str:
        try:
            return addons.short_hash(kind, path)
        except (OSError, SfumatoError):
            return ""  # the pictures matter more than the hashes in their metadata

    def where(self, kind: str) -> str:
        return f"{addons.own_folder(kind)} or the {'Lora' if kind == 'lora' else 'embeddings'} folder of your other app"


def _build_demo(state: TaskState, kind: str = "sd1") -> None:
    """Build the demo model of `kind` now (the first time), so a full or read-only disk gets a sentence, not a
    traceback."""
    from safetensors import SafetensorError

    root = paths.demo_model_dir()
    if not tiny.paths(root, kind).folder.is_dir():
        state.status("Preparing the demo model...")
    try:
        tiny.build(root, kind)
    except (OSError, SafetensorError) as error:
        text = str(error)
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text or "os error 28" in text:
            reason = f"the disk is full; free some space there, or point {paths.HOME_ENV} at a folder on another disk"
        elif isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        else:
            reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise DemoModelUnwritable(root, reason) from None
