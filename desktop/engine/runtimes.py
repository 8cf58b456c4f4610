"""Which runtime runs a pipeline's denoiser and VAE decoder: PyTorch, or OpenVINO on the CPU.

generate.py runs every pipeline call inside `serving(...)`. With PyTorch it does nothing. With OpenVINO
(settings.cpu_runtime, desktop/core/cpu_runtime.py; desktop/engine/openvino_runtime.py) it swaps the
pipeline's UNet and VAE decoder for compiled OpenVINO models for the length of the call, behind diffusers'
own scheduler loop, so samplers, previews and cancel work unchanged; what OpenVINO cannot run (a
ControlNet, an IP-Adapter, a flow family) runs on PyTorch and the status says so.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from desktop.core import families
from desktop.core.errors import Cancelled
from desktop.core.progress import TaskState

from . import devices, runtime_probe

PYTORCH, OPENVINO = "pytorch", "openvino"
PARAMS = (("Runtime", "OpenVINO"),)
_runtimes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # ModelManager -> openvino_runtime.Runtime


@contextmanager
def serving(pipe, models, loaded, task: str, state: TaskState) -> Iterator[tuple[tuple[str, str], ...]]:
    """Run `pipe` for one call on the runtime the model manager was set up with; yields the infotext params
    that say so (("Runtime", "OpenVINO"),) or () for PyTorch."""
    if getattr(models, "runtime", PYTORCH) != OPENVINO or (models.runtime_measured and families.demo_kind(loaded.ref)):
        yield ()  # Auto runs a demo model on PyTorch: its conversion would take longer than all its pictures
        return
    why = _not_served(pipe, models, loaded)
    if why:
        state.status(f"{why}: this picture is made with PyTorch.")
        yield ()
        return
    from . import openvino_runtime

    try:
        unet = _unet_part(pipe, models, loaded, state)
    except Cancelled:
        raise
    except openvino_runtime.GaveUp:  # the status said so when it failed
        yield ()
        return
    except Exception as error:  # noqa: BLE001 - a model OpenVINO cannot take runs on PyTorch, said in a sentence
        state.status(_died(error, "the UNet", "the picture is made with PyTorch")
                     or f"OpenVINO could not convert {loaded.name} ({_first_line(error)}): pictures are made "
                        "with PyTorch until Sfumato restarts.")
        yield ()
        return
    torch_unet, vae = pipe.unet, pipe.vae
    decoder = _vae_stand_in(pipe, models, loaded, state)
    pipe.__dict__["unet"] = openvino_runtime.OpenVinoUNet(torch_unet, unet, state)  # not via setattr: the
    # pipeline's config (what save_pretrained would write) stays the torch UNet's
    if decoder is not None:
        vae.decode = decoder
    try:
        yield PARAMS
    finally:
        pipe.__dict__["unet"] = torch_unet
        if decoder is not None:
            del vae.decode


def _not_served(pipe, models, loaded) -> str:
    """Why OpenVINO does not run this call (one clause), or ""."""
    if models.device.device.type != "cpu":
        return f"OpenVINO runs only on the CPU, and this model runs on the {models.device.description}"
    if loaded.flow:
        return f"OpenVINO does not run {loaded.info.family.value.upper()} models yet"
    if getattr(pipe, "controlnet", None) is not None:
        return "A ControlNet runs on PyTorch only"
    if getattr(pipe.unet, "encoder_hid_proj", None) is not None:
        return "A reference picture (IP-Adapter) works on PyTorch only"
    try:
        runtime_probe.import_openvino()
    except ImportError:
        return "OpenVINO is not installed with this copy of Sfumato"
    return ""


def runtime_of(models):
    """The manager's OpenVINO runtime (compiled parts), made the first time."""
    from . import openvino_runtime

    if models not in _runtimes:
        import torch

        threads = models.threads or devices.physical_cores()  # settings.cpu_threads, 0: one per core
        _runtimes[models] = openvino_runtime.Runtime(threads, fp32=models.device.dtype == torch.float32)
    return _runtimes[models]


def _unet_part(pipe, models, loaded, state: TaskState):
    from . import openvino_convert as convert

    unet = pipe.unet
    uses = [lora for lora in (loaded.loras.signature() if loaded.loras is not None else ())
            if lora[3] and _changes_unet(*lora[:3])]  # a text-encoder-only LoRA leaves the UNet's IR as it is
    fused = tuple((path, size, mtime, weight) for path, size, mtime, weight, _ in uses)
    variant = {"family": loaded.family, "in_channels": unet.config.in_channels,
               "sdxl": unet.config.addition_embed_type == "text_time",
               "guidance_embedding": unet.config.time_cond_proj_dim, "dtype": str(unet.dtype)}  # bf16-rounded
    # weights are not the fp32 ones: an IR made from a bf16 UNet is not reused after switching to fp32
    found = convert.part(convert.UNET, convert.model_identity(loaded.info.path), variant, fused)
    names = tuple(Path(path).stem for path, *_ in uses)
    return runtime_of(models).part(loaded, convert.UNET, unet, found, state, names)


_TEXT_ONLY = ("lora_te", "text_encoder.", "text_encoder_2.")  # kohya/A1111 and diffusers text encoder keys


@functools.lru_cache(maxsize=256)
def _changes_unet(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the LoRA file has any layer outside the text encoders (read from its header only); a file that
    is not safetensors, or names it cannot tell, counts as changing the UNet."""
    import safetensors

    try:
        with safetensors.safe_open(path, "pt") as file:
            keys = list(file.keys())  # noqa: SIM118
    except Exception:  # noqa: BLE001 - .pt/.ckpt or unreadable: assume it changes the UNet (the safe side)
        return True
    return not keys or not all(key.startswith(_TEXT_ONLY) for key in keys)


def _vae_stand_in(pipe, models, loaded, state: TaskState):
    """pipe.vae.decode on OpenVINO, converted at its first use; None where the VAE stays on PyTorch: a VAE
    override (not the model's own), or a large picture decoded in tiles."""
    from . import openvino_convert as convert, openvino_runtime

    own = next(iter(loaded.pipelines.values())).vae
    vae = pipe.vae
    if vae is not own or getattr(vae, "use_tiling", False) or type(vae).__name__ != "AutoencoderKL":
        return None
    held: dict = {}

    def decode(z, return_dict: bool = True, generator=None):
        if "compiled" not in held:
            found = convert.part(convert.VAE_DECODER, convert.model_identity(loaded.info.path),
                                 {"family": loaded.family, "latent_channels": vae.config.latent_channels,
                                  "dtype": str(vae.dtype)})
            try:
                held["compiled"] = runtime_of(models).part(loaded, convert.VAE_DECODER, vae, found, state)
            except Cancelled:
                raise
            except openvino_runtime.GaveUp:  # the status said so when it failed
                held["compiled"] = None
            except Exception as error:  # noqa: BLE001 - the picture is decoded on PyTorch instead
                state.status(_died(error, "the VAE decoder", "the picture is decoded with PyTorch")
                             or f"OpenVINO could not convert the VAE decoder of {loaded.name} "
                                f"({_first_line(error)}): it decodes on PyTorch until Sfumato restarts.")
                held["compiled"] = None
        if held["compiled"] is None:
            return type(vae).decode(vae, z, return_dict=return_dict, generator=generator)
        return openvino_runtime.vae_decode(vae, held["compiled"], state)(z, return_dict, generator)

    return decode


def _died(error: Exception, label: str, instead: str) -> str:
    """The sentence for a converter whose process died (openvino_convert.ConverterDied), else ""."""
    from .openvino_convert import ConverterDied

    if not isinstance(error, ConverterDied):
        return ""
    if error.final:
        return (f"Converting {label} for OpenVINO failed twice (the converter ran out of memory?): "
                f"{instead.replace('the picture is', 'pictures are')} until Sfumato restarts; close other programs "
                "before then, or choose PyTorch in Settings > Device.")
    return (f"Converting {label} for OpenVINO failed (the converter ran out of memory?): {instead}; close other "
            "programs and try again, or choose PyTorch in Settings > Device.")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
