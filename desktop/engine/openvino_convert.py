"""Convert a loaded model's UNet and VAE decoder to OpenVINO IR once, and keep the IR on disk.

The IR lies under paths.cache_dir()/"openvino", one folder per converted part, named by a digest of all
that changes it: the model's identity (its file's sha256, or a stamp of a diffusers folder's weight files),
the part and its variant (family, input channels), the LoRAs fused into the UNet and their weights, the
openvino version and CONVERTER. A folder is written beside its final place and renamed into it, with a
manifest of its files' sizes last, so a crash mid-write leaves no folder that looks done; a folder that does
not match its manifest or that OpenVINO cannot read is discarded and converted again.

The cache is kept under CACHE_LIMIT (8 GB: an SD 1.5 UNet is 1.7 GB, an SDXL one 5 GB; every set of LoRAs and
weights, and every openvino version, makes new folders): after each conversion the least recently used folders
go first (a folder's modification time is set whenever it is used: `hold`), never one a compiled model of this
process holds, nor the one just made. `cache_size` and `clear_cache` are for the Settings window.

Conversion runs in a child process (child.py: the converter holds the GIL for long stretches, which would
freeze the window): this process writes the part's weights (LoRAs fused) with safetensors into the work folder,
the child rebuilds the model from its diffusers config and those weights, traces it (TorchScript,
ov.convert_model) in fp32 with dynamic batch, height and width, and saves the weights in fp16
(ov.save_model(compress_to_fp16=True)); its memory is all returned when it exits. The example latents have odd sides, so the traced UNet takes its upsampling sizes from
its skip connections and serves every size, not only multiples of 64 pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from desktop.core import modelfiles, paths
from desktop.core.errors import Cancelled
from desktop.core.progress import TaskState

from . import child
from .runtime_probe import import_openvino  # openvino with its converter's telemetry off

CACHE_LIMIT = 8 * 2**30  # bytes of IR kept on disk (see the module's text)
CONVERTER = 1  # bump when what a conversion writes changes: older folders are then never read again
MANIFEST = "manifest.json"
XML = "model.xml"
BIN = "model.bin"
UNET, VAE_DECODER = "unet", "vae-decoder"
_EXAMPLE_SIDE = (9, 11)  # latent height and width traced: odd, so no size is baked into the graph
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_STALE_WORK_SECONDS = 3600
_WEIGHTS = "weights.safetensors"  # what the converter's process reads: deleted once the IR is written
_VAE_DECODER_KEYS = ("decoder.", "post_quant_conv.")


def cache_root() -> Path:
    return paths.cache_dir() / "openvino"


@dataclass(frozen=True)
class Part:
    """One converted part of one model: what it is, its cache folder, and what made its key."""

    kind: str  # UNET or VAE_DECODER
    folder: Path
    fields: dict

    @property
    def xml(self) -> Path:
        return self.folder / XML


def model_identity(path: Path, hash_cache: Path | None = None) -> str:
    """What a model's weights are, independent of where they lie: a single file's sha256 (hashed once, through the
    model-hash cache LocalBackend keeps), or for a diffusers folder a stamp of its weight files (name, size,
    modification time), which is read in no time."""
    path = Path(path)
    if path.is_dir():
        stamp = hashlib.sha256(str(path.resolve()).encode())
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix in _WEIGHT_SUFFIXES:
                stat = file.stat()
                stamp.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return "folder:" + stamp.hexdigest()
    cache = hash_cache or paths.cache_dir() / "model-hashes.json"
    return f"file:{modelfiles.model_hash(path, cache=cache)}:{path.stat().st_size}"


def part(kind: str, identity: str, variant: dict, loras: tuple = ()) -> Part:
    """The cache folder of `kind` for the model `identity` with `variant` (family, channels, ...) and the LoRAs
    fused into it ((file identity, weight) pairs; only the UNet's)."""
    ov = import_openvino()
    fields = {"kind": kind, "model": identity, "variant": variant, "loras": [list(map(str, lora)) for lora in loras],
              "openvino": ov.get_version(), "converter": CONVERTER}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    return Part(kind, cache_root() / f"{kind}-{digest}", fields)


def is_done(found: Part) -> bool:
    """Whether the part's folder is complete: its manifest is there and every file has the size it lists."""
    try:
        manifest = json.loads((found.folder / MANIFEST).read_text(encoding="utf-8"))
        sizes = manifest["sizes"]
        return (manifest.get("fields") == json.loads(json.dumps(found.fields)) and set(sizes) == {XML, BIN}
                and all((found.folder / name).stat().st_size == size for name, size in sizes.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def discard(found: Part) -> None:
    shutil.rmtree(found.folder, ignore_errors=True)


_in_use: Counter[str] = Counter()  # cache folder name -> compiled models of this process reading it


def hold(found: Part, owner: object) -> None:
    """Mark found's folder as used now (the cache evicts the least recently used) and in use while `owner` (its
    compiled model) lives: it is never evicted or cleared meanwhile."""
    _in_use[found.folder.name] += 1
    weakref.finalize(owner, _release, found.folder.name)
    touch(found)


def touch(found: Part) -> None:
    with contextlib.suppress(OSError):
        os.utime(found.folder)


def _release(name: str) -> None:
    _in_use[name] -= 1
    if _in_use[name] <= 0:
        del _in_use[name]


def _folders() -> list[Path]:
    """The cache's part folders (not the work folders of conversions in progress), least recently used first."""
    try:
        found = [path for path in cache_root().iterdir() if path.is_dir() and not path.name.startswith(".")]
    except OSError:
        return []
    return sorted(found, key=lambda path: path.stat().st_mtime)


def _size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def cache_size() -> int:
    """Bytes the OpenVINO cache takes on disk."""
    return sum(_size(folder) for folder in _folders())


def evict(keep: str = "", limit: int | None = None) -> None:
    """Remove the least recently used folders until the cache is under `limit` (CACHE_LIMIT); never `keep` (a
    folder name) nor one in use."""
    limit = CACHE_LIMIT if limit is None else limit
    folders = _folders()
    total = sum(sizes := [_size(folder) for folder in folders])
    for folder, size in zip(folders, sizes, strict=True):
        if total <= limit:
            return
        if folder.name != keep and folder.name not in _in_use:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size


def clear_cache() -> int:
    """Remove every converted part not in use now (they are converted again when next needed); the bytes freed."""
    freed = 0
    for folder in _folders():
        if folder.name not in _in_use:
            size = _size(folder)
            shutil.rmtree(folder, ignore_errors=True)
            freed += size
    return freed


class ConverterDied(RuntimeError):
    """The converter's process ended without an answer: most likely it ran out of memory (it needs up to ~6 GB
    for SD 1.5), or it was killed. `final`: it died twice in this session, so it is not tried again."""

    def __init__(self, kind: str):
        super().__init__(f"the converter of the {kind} ended without finishing (out of memory?)")
        self.kind = kind
        self.final = False


def convert(found: Part, model: torch.nn.Module, state: TaskState) -> None:
    """Write `model` (a diffusers UNet, or the VAE whose decoder found.kind is) as found's IR with fp16 weights,
    atomically, converted in a child process (child.py) so that the converter never holds this process's GIL.

    This process writes the weights it would trace (LoRAs fused as they are now) and the model's config into a work
    folder beside the cache; the child rebuilds the model from them, traces it in fp32 and saves the IR there.
    Raises Cancelled (the child ended, nothing written) when the user cancels, ConverterDied when the child died,
    child.ChildFailed (the converter's message) when the conversion failed."""
    if state.cancelled():
        raise Cancelled(0)
    root = found.folder.parent
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_work(root)
    work = Path(tempfile.mkdtemp(prefix=f".{found.folder.name}.", suffix=".tmp", dir=root))
    try:
        weights = work / _WEIGHTS
        _save_weights(found.kind, model, weights)
        model_class = (type(model).__module__, type(model).__name__)
        try:
            child.run(_convert_in_child, (found.kind, model_class, dict(model.config), str(work),
                                          torch.get_num_threads()), state)
        except child.ChildDied:
            raise ConverterDied(found.kind) from None
        weights.unlink()
        if is_done(found):  # another Sfumato converted the same part meanwhile: its copy is as good as this one
            return
        sizes = {name: (work / name).stat().st_size for name in (XML, BIN)}
        (work / MANIFEST).write_text(json.dumps({"fields": found.fields, "sizes": sizes}), encoding="utf-8")
        discard(found)
        try:
            os.replace(work, found.folder)
        except OSError:
            if not is_done(found):  # not another process's copy that appeared just now
                raise
        evict(keep=found.folder.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _save_weights(kind: str, model: torch.nn.Module, path: Path) -> None:
    """The weights the traced part uses, in their own dtype (the child traces in fp32: bf16 -> fp32 is exact)."""
    keep = _VAE_DECODER_KEYS if kind == VAE_DECODER else ("",)
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()
               if name.startswith(keep)}
    safetensors.torch.save_file(tensors, str(path))


def _convert_in_child(kind: str, model_class: tuple[str, str], config: dict, work: str, threads: int) -> None:
    """In the child process: rebuild the model from its config and weights, trace and convert it as the module
    unet_module / vae_decoder_module gives, save the IR with fp16 weights into `work`."""
    import importlib

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []" on every conversion
    _lower_priority()
    torch.set_num_threads(max(1, threads))
    folder = Path(work)
    cls = getattr(importlib.import_module(model_class[0]), model_class[1])
    with torch.device("meta"):  # no time or memory spent on random weights that are replaced at once
        model = cls.from_config(config)
    if kind == VAE_DECODER:
        model.encoder = model.quant_conv = None  # only the decoder is traced; its weights alone were written
    # each tensor is read and made fp32 on its own: only the fp32 weights are ever held, not both copies
    with safetensors.safe_open(str(folder / _WEIGHTS), "pt") as file:
        weights = {name: file.get_tensor(name).to(torch.float32) for name in file.keys()}  # noqa: SIM118
    model.load_state_dict(weights, strict=False, assign=True)
    del weights
    missing = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if missing:
        raise RuntimeError(f"the model's weights lack {missing[0]}")
    model.eval()
    traced, example, shapes = (unet_module if kind == UNET else vae_decoder_module)(model)
    ov = import_openvino()
    with torch.no_grad(), _warnings_quiet():
        graph = ov.convert_model(traced, example_input=example, input=[ov.PartialShape(s) for s in shapes])
    ov.save_model(graph, str(folder / XML), compress_to_fp16=True)


def _lower_priority() -> None:
    """A background job: the window's thread gets the CPU first on a machine with few cores."""
    if platform.system() == "Windows":  # os.nice does not exist there
        import psutil

        psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
    else:
        os.nice(5)


def unet_module(unet) -> tuple[torch.nn.Module, tuple, list]:
    """The UNet as a module of plain tensors (sample, timestep per picture, encoder_hidden_states, and for SDXL
    text_embeds and time_ids; timestep_cond for a model with a guidance embedding), with an example and shapes."""
    config = unet.config
    height, width = _EXAMPLE_SIDE
    channels, context = config.in_channels, config.cross_attention_dim
    example = [torch.randn(1, channels, height, width), torch.tensor([500.0]), torch.randn(1, 77, context)]
    shapes = [[-1, channels, -1, -1], [-1], [-1, -1, context]]
    sdxl = config.addition_embed_type == "text_time"
    if sdxl:
        pooled = unet.add_embedding.linear_1.in_features - 6 * config.addition_time_embed_dim
        example += [torch.randn(1, pooled), torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])]
        shapes += [[-1, pooled], [-1, 6]]
    if config.time_cond_proj_dim is not None:
        example.append(torch.randn(1, config.time_cond_proj_dim))
        shapes.append([-1, config.time_cond_proj_dim])

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states, *rest):
            rest = list(rest)
            added = {"text_embeds": rest.pop(0), "time_ids": rest.pop(0)} if sdxl else None
            cond = rest.pop(0) if rest else None
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, timestep_cond=cond,
                             added_cond_kwargs=added, return_dict=False)[0]

    return Traced().eval(), tuple(example), shapes


def vae_decoder_module(vae) -> tuple[torch.nn.Module, tuple, list]:
    """The VAE's decode (post_quant_conv and decoder) as a module: latents -> pixels in -1..1."""
    channels = vae.config.latent_channels

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latents):
            return self.vae.decoder(self.vae.post_quant_conv(latents) if self.vae.post_quant_conv is not None
                                    else latents)

    return Traced().eval(), (torch.randn(1, channels, *_EXAMPLE_SIDE),), [[-1, channels, -1, -1]]


def _remove_stale_work(root: Path) -> None:
    """Temporary folders a crash left (older than an hour, so not another run's in progress)."""
    for path in root.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _STALE_WORK_SECONDS:
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _warnings_quiet():
    """Tracing warns about every Python branch on a shape: nothing a user can act on."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
