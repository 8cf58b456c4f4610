"""The OpenVINO CPU runtime: a loaded model's UNet and VAE decoder as compiled OpenVINO models.

`Served` stands in for them during one pipeline call (runtimes.serving): `OpenVinoUNet` takes pipe.unet's place
and answers what diffusers reads of a UNet (config, dtype, device, add_embedding, ...) from the torch UNet it
replaces, and `decode` takes the place of pipe.vae.decode. Diffusers' own scheduler loop runs unchanged, so
samplers, previews and cancel work as on PyTorch; an inference in progress is also cancelled at once.

Each part is converted once per model (openvino_convert.py; with LoRAs: once per set of LoRAs and weights, as
they are fused into the UNet's weights) and compiled per (batch, height, width) with static shapes. Each compiled
shape holds its own copy of the weights in the inference precision (OpenVINO shares none between them), so a large
part (an IR over LARGE_BYTES: any real UNet) keeps ONE compiled shape, released before the next one is compiled
(a new size or batch costs a compile, ~2 s for SD 1.5, not 1.7 GB more memory); a small part (a VAE decoder, the
tiny demo models) keeps the last COMPILED_KEPT. Measured on a 136M-parameter UNet IR on a 2-core Xeon (bf16
inference), four shapes: +320 MB process memory per static shape kept; one model compiled with dynamic
shapes instead shares its weights (+30 MB per shape) but ran each step 10-17 % slower, which is why static
shapes stay.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import torch

from desktop.core.errors import Cancelled
from desktop.core.progress import TaskState

from . import openvino_convert as convert
from .openvino_convert import UNET, VAE_DECODER, Part

COMPILED_KEPT = 4  # compiled shapes kept per small part (CFG doubles the batch; a hires fix adds a size)
LARGE_BYTES = 256 * 2**20  # an IR's weights file over this keeps one compiled shape (see the module's text)
_WAIT_MS = 50  # how often an inference in progress looks whether the user cancelled
_LABELS = {UNET: "the UNet", VAE_DECODER: "the VAE decoder"}

conversions = 0  # parts converted in this process (tests look at it)


class Compiled:
    """One converted part, read once, compiled per static input shape (least recently used dropped)."""

    def __init__(self, core, found: Part, config: dict):
        self.part = found
        self._core, self._config = core, config
        self._model = core.read_model(str(found.xml))
        convert.hold(found, self)  # never evicted from the disk cache while compiled here
        self._compiled: OrderedDict[tuple, object] = OrderedDict()
        self.kept = 1 if (found.folder / convert.BIN).stat().st_size > LARGE_BYTES else COMPILED_KEPT

    def request(self, shapes: tuple[tuple[int, ...], ...], state: TaskState):
        """An infer request for these input shapes; compiled the first time (about 2 s for SD 1.5)."""
        if shapes in self._compiled:
            self._compiled.move_to_end(shapes)
            return self._compiled[shapes]
        while len(self._compiled) >= self.kept:  # released before the next compile: never two copies at once
            self._compiled.popitem(last=False)
        model = self._model.clone()
        model.reshape({index: list(shape) for index, shape in enumerate(shapes)})
        self._compiled[shapes] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._compiled[shapes]


class GaveUp(RuntimeError):
    """This part failed to convert earlier in this session (once, or its converter died twice): it is not tried
    again until Sfumato restarts, and the status said so when it failed."""


class Runtime:
    """The compiled parts of the loaded models for one ModelManager (models.openvino).

    A part that fails to convert is remembered by its cache folder's name for the session (not tried on every
    picture): a conversion error at once, a converter that died (out of memory?) after its second death."""

    def __init__(self, threads: int = 0, fp32: bool = False):
        self._core = convert.import_openvino().Core()
        self._config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads > 0:
            self._config["INFERENCE_NUM_THREADS"] = threads
        if fp32:  # the user chose fp32; else the CPU plugin's default (bf16 where the CPU has it)
            self._config["INFERENCE_PRECISION_HINT"] = "f32"
        self._parts: dict[str, Compiled] = {}  # part folder name -> compiled
        self._by_model: dict[int, dict[str, str]] = {}  # id(LoadedModel) -> kind -> its part's folder name
        self._died: dict[str, int] = {}  # part folder name -> how often its converter died in this session
        self.gave_up: set[str] = set()  # part folder names not converted again in this session

    def part(self, loaded, kind: str, module: torch.nn.Module, found: Part, state: TaskState,
             lora_names: tuple[str, ...] = ()) -> Compiled:
        """The compiled part for `found`: from memory, from the disk cache, or converted now (saying so)."""
        global conversions
        if found.folder.name in self.gave_up:
            raise GaveUp(found.folder.name)
        held = self._parts.get(found.folder.name)
        if held is not None:
            convert.touch(found)  # used now: the disk cache evicts the least recently used
            self._remember(loaded, kind, held)
            return held
        if found.folder.exists() and not convert.is_done(found):
            state.status(f"The OpenVINO copy of {_LABELS[kind]} of {loaded.name} was damaged or incomplete: "
                         "converting it again.")
            convert.discard(found)
        compiled = None
        if convert.is_done(found):
            try:
                compiled = Compiled(self._core, found, self._config)
            except RuntimeError:
                state.status(f"The OpenVINO copy of {_LABELS[kind]} of {loaded.name} could not be read: "
                             "converting it again.")
                convert.discard(found)
        if compiled is None:
            state.status(_converting(kind, lora_names))
            start = time.perf_counter()
            try:
                convert.convert(found, module, state)  # in a child process: the window stays responsive
            except Cancelled:
                raise
            except convert.ConverterDied as error:
                self._died[found.folder.name] = self._died.get(found.folder.name, 0) + 1
                if self._died[found.folder.name] >= 2:
                    self.gave_up.add(found.folder.name)
                    error.final = True
                raise
            except Exception:
                self.gave_up.add(found.folder.name)
                raise
            conversions += 1
            size = sum(f.stat().st_size for f in found.folder.iterdir()) / 2**20
            state.status(f"Converted {_LABELS[kind]} for OpenVINO in {time.perf_counter() - start:.0f} s "
                         f"({size:.0f} MB on disk).")
            compiled = Compiled(self._core, found, self._config)
        self._remember(loaded, kind, compiled)
        return compiled

    def _remember(self, loaded, kind: str, compiled: Compiled) -> None:
        """Keep it while its model is loaded, one of each kind: the parts of an unloaded model, or the UNet of the
        LoRA set used before, leave memory (their IR stays on disk)."""
        key = id(loaded)
        if key not in self._by_model:
            self._by_model[key] = {}
            weakref.finalize(loaded, self._forget, key)
        old = self._by_model[key].get(kind)
        if old is not None and old != compiled.part.folder.name:
            self._parts.pop(old, None)
        self._by_model[key][kind] = compiled.part.folder.name
        self._parts[compiled.part.folder.name] = compiled

    def _forget(self, key: int) -> None:
        for name in self._by_model.pop(key, {}).values():
            self._parts.pop(name, None)


def infer(request, inputs: list[np.ndarray], state: TaskState, step: int) -> np.ndarray:
    """Run one inference; the user's cancel stops it at once (Cancelled)."""
    for index, value in enumerate(inputs):
        request.set_input_tensor(index, _tensor(value))
    request.start_async()
    while not request.wait_for(_WAIT_MS):
        if state.cancelled():
            request.cancel()
            raise Cancelled(step)
    return request.get_output_tensor(0).data.copy()


def _tensor(value: np.ndarray):
    return convert.import_openvino().Tensor(np.ascontiguousarray(value, dtype=np.float32))


def _array(value: torch.Tensor) -> np.ndarray:
    return value.detach().to(torch.float32).cpu().numpy()


class OpenVinoUNet:
    """Stands in for a pipeline's UNet: called as diffusers calls it, runs the compiled model; any attribute it
    does not have is the torch UNet's (config, dtype, device, add_embedding, ...)."""

    def __init__(self, unet, compiled: Compiled, state: TaskState):
        self.__dict__.update(_unet=unet, _compiled=compiled, _state=state, calls=0)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_unet"], name)

    def __call__(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, *args,
                 timestep_cond=None, added_cond_kwargs=None, return_dict: bool = True, **kwargs):
        batch = sample.shape[0]
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch)
        inputs = [_array(sample), _array(timestep), _array(encoder_hidden_states)]
        if self._unet.config.addition_embed_type == "text_time":
            inputs += [_array(added_cond_kwargs["text_embeds"]), _array(added_cond_kwargs["time_ids"])]
        if self._unet.config.time_cond_proj_dim is not None:
            inputs.append(_array(timestep_cond))
        request = self._compiled.request(tuple(value.shape for value in inputs), self._state)
        out = torch.from_numpy(infer(request, inputs, self._state, self.calls)).to(sample.dtype)
        self.__dict__["calls"] += 1
        return (out,) if not return_dict else SimpleNamespace(sample=out)


def vae_decode(vae, compiled: Compiled, state: TaskState):
    """A stand-in for vae.decode running the compiled VAE decoder."""

    def decode(z: torch.Tensor, return_dict: bool = True, generator=None):
        request = compiled.request((tuple(z.shape),), state)
        out = torch.from_numpy(infer(request, [_array(z)], state, 0))
        return (out,) if not return_dict else SimpleNamespace(sample=out)

    return decode


def _converting(kind: str, lora_names: tuple[str, ...]) -> str:
    if kind == VAE_DECODER:
        return "Converting the VAE decoder for OpenVINO (once for this model)..."
    if lora_names:
        return (f"Converting the UNet with the LoRAs {', '.join(lora_names)} for OpenVINO: LoRAs are fused into its "
                "weights, so each set of LoRAs and weights converts once (about a minute, and as much disk as the "
                "UNet: 1.7 GB for SD 1.5)...")
    return "Converting the UNet for OpenVINO (once for this model; about a minute)..."
