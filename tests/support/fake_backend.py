"""FakeBackend: a Backend (desktop/core/backend.py) that paints instead of running a model.

For tests of everything around a generation (the queue, previews, cancel,
results on the canvas, the gallery, errors) in milliseconds instead of
seconds. It behaves like the engine where a caller can see it:

- the pictures are deterministic: a colour gradient chosen by a hash of the
  model, prompts and seed, of the size the engine would return; img2img
  blends the init image by the strength, inpaint and outpaint keep every
  pixel outside the mask (as the engine does where the mask is 0);
- every step goes through `state.step(i, total, preview)` with a preview at
  1/8 size (none for preview method "off"), `total` counted as diffusers
  counts it (steps x strength for img2img and inpaint);
- a cancel (of the state, or through cancel()) raises Cancelled within one
  step, also during `step_delay`;
- an UpscaleJob returns the picture resized with Lanczos to the asked size, its parameters with A1111's
  Postprocess keys, after `upscale_tiles` steps (one per tile, no preview), as the engine does;
- a PreprocessJob (a control layer's "From picture") returns its control picture at once, white where the
  picture is light and black elsewhere (no engine, no OpenCV), after checking the type as the engine does;
- `load_error`, `run_error` (raised after `fail_at_step` steps; OutOfMemory for
  a run out of memory), `preprocess_error` (raised by a PreprocessJob, as depth without its weights) and
  `start_error` inject failures.

What it saw is kept for assertions: `started`, `closed`, `loads`, `jobs`.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from PIL import Image

from desktop.core import preprocessors
from desktop.core.backend import GENERATION, PREPROCESS, CurrentCall, Job, ModelDescriptor, Result
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.postprocess import (DEMO_RESTORER, DEMO_RESTORER_NAME, DEMO_UPSCALER, DEMO_UPSCALER_NAME, UPSCALE,
                                      result_params, with_params)
from desktop.core.progress import TaskState
from desktop.core.request import GenerationRequest, InpaintArea, Mode
from desktop.core.settings import Settings

DEVICE = "Fake device (tests)"


class FakeBackend:
    def __init__(
        self,
        *,
        step_delay: float = 0.0,
        family: str = "sd1",
        start_error: Exception | None = None,
        load_error: Exception | None = None,
        run_error: Exception | None = None,
        fail_at_step: int = 0,
        catalogue: list[ModelDescriptor] | None = None,
    ):
        self.step_delay = step_delay
        self.upscale_tiles = 4  # the steps of an upscale
        self.family = family
        self.start_error, self.load_error, self.run_error = start_error, load_error, run_error
        self.fail_at_step = fail_at_step
        self.preprocess_error: Exception | None = None
        self.catalogue = catalogue if catalogue is not None else [ModelDescriptor("demo", "sd1", "Demo model")]
        self.started = 0  # start() calls that succeeded
        self.closed = 0
        self.loads: list[str] = []  # refs asked for, in order
        self.jobs: list[Job] = []
        self.folders: list[str] = []  # the model folders of the latest use_folders()
        self.current: ModelDescriptor | None = None
        self._call = CurrentCall()  # for cancel() from another thread

    def factory(self, settings: Settings | None = None) -> FakeBackend:
        """A BackendFactory that always gives this backend, so a test can configure and inspect it."""
        return self

    # -- the Backend protocol ------------------------------------------------------------

    def start(self, state: TaskState) -> str:
        if self.start_error is not None:
            raise self.start_error
        self.started += 1
        return DEVICE

    def load(self, ref: str, state: TaskState) -> ModelDescriptor:
        self.loads.append(ref)
        with self._call.running(state):
            return self._ensure(ref, state)

    def _ensure(self, ref: str, state: TaskState) -> ModelDescriptor:
        """The model loaded, as the engine's run() loads the request's model."""
        if self.current is not None and self.current.ref == ref:
            return self.current
        name = ref.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
        state.status(f"Loading {name}...")
        if self.load_error is not None:
            raise self.load_error
        if state.cancelled():
            raise Cancelled(0)
        digest = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        self.current = ModelDescriptor(ref, self.family, name, digest)
        state.status(f"Ready: {name} on {DEVICE}")
        return self.current

    def run(self, job: Job, state: TaskState) -> list[Result]:
        if job.kind == UPSCALE:
            return self._upscale(job, state)
        if job.kind == PREPROCESS:
            return self._preprocess(job, state)
        if job.kind != GENERATION:
            raise SfumatoError(f"The fake backend cannot run {job.kind} jobs.")
        request = job.request.resolved()
        with self._call.running(state):
            self._ensure(request.model, state)
            self.jobs.append(job)
            if state.cancelled():
                raise Cancelled(0)
            state.status(f"Generating {request.sampling.batch_size} image(s), {request.width}x{request.height}")
            images = [picture(request, seed) for seed in request.sampling.seeds]
            total = steps_run(request)
            for index in range(1, total + 1):
                if self.run_error is not None and index > self.fail_at_step:
                    raise self.run_error
                self._wait(state, index)
                show = index % max(1, job.preview_every) == 0 or index == total
                state.step(index, total, _preview(images[0], index / total) if show and job.preview_method != "off"
                           else None)
            if self.run_error is not None:
                raise self.run_error
            return [Result(image, seed, request) for image, seed in zip(images, request.sampling.seeds, strict=True)]

    def _upscale(self, job: Job, state: TaskState) -> list[Result]:
        request = job.request.validated()
        with self._call.running(state):
            self.jobs.append(job)
            target = request.target()
            state.status(f"Upscaling {request.source.width}x{request.source.height} to {target.width}x{target.height}")
            for index in range(1, self.upscale_tiles + 1):
                if self.run_error is not None and index > self.fail_at_step:
                    raise self.run_error
                self._wait(state, index)
                state.step(index, self.upscale_tiles, None)
            name = {DEMO_UPSCALER: DEMO_UPSCALER_NAME, DEMO_RESTORER: DEMO_RESTORER_NAME}.get(request.upscaler,
                                                                                           request.upscaler)
            params = result_params(request, name)
            image = _fit(request.image, target.width, target.height)
            return [Result(image, -1, request.replace(parameters=with_params(request.parameters, params)), params)]

    def _preprocess(self, job: Job, state: TaskState) -> list[Result]:
        with self._call.running(state):
            self.jobs.append(job)
            preprocessors.check_type(job.type)
            self._wait(state, 0)
            if self.preprocess_error is not None:
                raise self.preprocess_error
            rgb = job.image[..., :3]
            if job.type == "none":
                return [Result(np.ascontiguousarray(rgb).copy(), -1, job)]
            light = np.where(rgb.mean(axis=2) > 127.5, 255, 0).astype(np.uint8)
            return [Result(np.repeat(light[..., None], 3, axis=2), -1, job)]

    def models(self) -> list[ModelDescriptor]:
        return list(self.catalogue)

    def use_folders(self, folders: list[str]) -> None:
        self.folders = list(folders)

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        self.closed += 1
        self.current = None

    # -- helpers ------------------------------------------------------------------------

    def _wait(self, state: TaskState, index: int) -> None:
        """Sleep `step_delay`, in slices, so a cancel is seen within the step."""
        end = time.perf_counter() + self.step_delay
        while True:
            if state.cancelled():
                raise Cancelled(index)
            left = end - time.perf_counter()
            if left <= 0:
                return
            time.sleep(min(left, 0.005))


def steps_run(request: GenerationRequest) -> int:
    """Denoising steps diffusers runs: all for txt2img, steps x strength when starting from a picture."""
    if request.mode is Mode.TXT2IMG:
        return request.sampling.steps
    return max(1, min(int(request.sampling.steps * request.sampling.strength), request.sampling.steps))


def colour(request: GenerationRequest, seed: int) -> np.ndarray:
    conditioning = request.conditioning
    key = "\0".join((request.model, conditioning.prompt, conditioning.negative_prompt, str(seed))).encode("utf-8",
                                                                                                         "replace")
    return np.frombuffer(hashlib.sha256(key).digest()[:3], np.uint8).astype(np.float32)


def picture(request: GenerationRequest, seed: int) -> np.ndarray:
    """The fake's result for one seed of a resolved request: HxWx3 uint8 at the engine's output size."""
    width, height = request.output_extent()
    ramp = np.linspace(0.35, 1.0, width, dtype=np.float32)[None, :, None]
    fall = np.linspace(1.0, 0.6, height, dtype=np.float32)[:, None, None]
    painted = colour(request, seed)[None, None, :] * ramp * fall
    if request.mode is Mode.IMG2IMG:
        init = _fit(_rgb(request.images.init), width, height).astype(np.float32)
        painted = init * (1 - request.sampling.strength) + painted * request.sampling.strength
    out = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
    if request.mode is Mode.INPAINT:
        init, mask = request.images.init, request.images.mask
        if request.inpaint.area is InpaintArea.WHOLE:
            init, mask = _fit(init, width, height), _fit(mask, width, height)
        keep = mask == 0
        out[keep] = _rgb(init)[keep]
    elif request.mode is Mode.OUTPAINT:
        init = request.images.init
        h, w = init.shape[:2]
        left, top = request.outpaint.left, request.outpaint.top
        keep = np.ones((h, w), bool)
        if init.ndim == 3 and init.shape[2] == 4:
            keep &= init[..., 3] == 255  # see-through pixels are area to fill
        if request.images.mask is not None and request.images.mask.shape == (h, w):
            keep &= request.images.mask < 128  # painted over: repaint
        region = out[top:top + h, left:left + w]
        region[keep] = _rgb(init)[keep]
    return out


def _preview(image: np.ndarray, done: float) -> np.ndarray:
    """1/8 size, from grey towards the final picture as the steps go."""
    small = image[::8, ::8].astype(np.float32)
    return (127.5 + (small - 127.5) * done + 0.5).astype(np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., :3]) if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
