"""The Backend protocol: what the worker and the CLI call to make pictures.

A backend owns the models and the device. The engine's LocalBackend
(desktop/engine/local.py) runs diffusers on this computer; tests use
FakeBackend (tests/support/fake_backend.py); a remote server would be one
more class. Callers never import the engine: they take a backend, or a
factory that makes one on the thread that will own it.

Calls, all from the one thread that owns the backend except `cancel()`:

    start(state) -> str         prepare the device; returns its description
    load(ref, state)            make a model ready -> ModelDescriptor
    run(job, state)             do one job -> [Result]
    models()                    what this backend can load -> [ModelDescriptor]
    cancel()                    from any thread: stop the call in progress
    close()                     release the models and the device

`state` is a TaskState: progress and previews go out through it, and a
backend checks `state.cancelled()` between steps and raises Cancelled, so a
cancelled job stops within one step. Errors a person can act on are
SfumatoError subclasses (desktop/core/errors.py) with a sentence to show.

A job is a small frozen dataclass with a `kind`: GenerationJob, UpscaleJob
(a model upscale, desktop/core/postprocess.py) and PreprocessJob (a control layer's
"From picture": a ControlNet preprocessor, desktop/core/preprocessors.py); an operation that is not a
diffusion run (face restore, denoise) becomes a new job dataclass with its own
kind, and a model says which kinds it can run in `ModelDescriptor.kinds`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from desktop.core.postprocess import UPSCALE, UpscaleRequest
from desktop.core.progress import TaskState
from desktop.core.request import GenerationRequest
from desktop.core.settings import Settings

GENERATION = "generation"
PREPROCESS = "preprocess"


@dataclass(frozen=True)
class GenerationJob:
    """Make the pictures of `request` (any mode), with a preview every `preview_every` steps."""

    kind: ClassVar[str] = GENERATION
    request: GenerationRequest
    preview_method: str = "approximate"  # "approximate" | "taesd" | "none" (desktop/core/settings.py)
    preview_every: int = 1


@dataclass(frozen=True)
class UpscaleJob:
    """Enlarge one picture with an upscaler model; progress is one step per tile."""

    kind: ClassVar[str] = UPSCALE
    request: UpscaleRequest


@dataclass(frozen=True)
class PreprocessJob:
    """Make the control picture of `type` (desktop/core/preprocessors.py) from `image` (HxWx3 uint8 RGB, the
    picture on white paper). Its result is one Result whose image is the control picture (HxWx3 uint8, the size of
    `image`), seed -1 and this job as its request; it is not a picture to save."""

    kind: ClassVar[str] = PREPROCESS
    type: str
    image: np.ndarray = field(compare=False, repr=False)


Job = GenerationJob | UpscaleJob | PreprocessJob  # grows as job kinds are added


@dataclass(frozen=True)
class ModelDescriptor:
    """A model as a backend knows it: `ref` as asked for, `name` and `hash` as written into metadata."""

    ref: str
    family: str  # "sd1", "sd2", "sdxl", ... (modelfiles.Family values)
    name: str
    hash: str = ""  # A1111's short hash; "" when unknown (a catalogue lists models unhashed)
    kinds: frozenset[str] = frozenset({GENERATION})  # the job kinds it can run
    variant: str = ""  # within its family (desktop/core/families.py): "dev", "schnell", "turbo", ...; "" unknown
    few_step: str = ""  # desktop/core/fewstep.py KINDS ("lcm", "turbo", ...) when it is a few-step model; "" not
    # a full LCM checkpoint whose UNet takes the CFG scale as an embedding (ModelInfo.guidance_embedded): its few-step
    # settings are fewstep.recipe(..., guided=True), CFG 8; fast_plan(..., guidance_embedded=True)
    guidance_embedded: bool = False


@dataclass(frozen=True)
class Result:
    image: np.ndarray  # HxWx3 uint8
    seed: int
    # resolved; shared by the batch (a PreprocessJob's result carries its job)
    request: GenerationRequest | UpscaleRequest | PreprocessJob = field(repr=False)
    # What the run adds to the infotext beside the request's values, in A1111's keys and order
    # ("Lora hashes", "TI hashes", "Pad conds", ...)
    params: tuple[tuple[str, str], ...] = ()
    note: str = ""  # a sentence for the person beside "Done" (e.g. that no face was found, so nothing changed)


@runtime_checkable
class Backend(Protocol):
    def start(self, state: TaskState) -> str: ...

    def load(self, ref: str, state: TaskState) -> ModelDescriptor: ...

    def run(self, job: Job, state: TaskState) -> list[Result]: ...

    def models(self) -> list[ModelDescriptor]: ...

    # The settings' model folders as they are now (added in the welcome or Models window after the backend was
    # made): where the next jobs look for models, LoRAs, embeddings and upscalers.
    def use_folders(self, folders: list[str]) -> None: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


# Makes a backend from the settings, on the thread that will own it (so torch is imported there).
BackendFactory = Callable[[Settings], Backend]


class CurrentCall:
    """The TaskStates of a backend's calls in progress, so that `cancel()` from any thread reaches every one (a
    server's backend runs several jobs at once, one per replica)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._states: list[TaskState] = []

    @contextmanager
    def running(self, state: TaskState) -> Iterator[TaskState]:
        with self._lock:
            self._states.append(state)
        try:
            yield state
        finally:
            with self._lock:
                self._states.remove(state)

    def cancel(self) -> None:
        with self._lock:
            for state in self._states:
                state.cancel()
