"""LoRAs for the flow-matching families (FLUX.1, FLUX.2 klein, SD 3.5, Z-Image), merged like SD LoRAs.

diffusers' own converters read the file: each family's pipeline class has ``lora_state_dict``, which turns
kohya / sd-scripts (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``), ai-toolkit and diffusers /
PEFT (``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``), XLabs and BFL layouts into diffusers
names, splitting FLUX's fused qkv and single-block projections into the diffusers model's layers (and folding
kohya's alpha into the factors). The result is merged by lora.LoraPatcher exactly as an SD LoRA is: the
layers' original weights are kept and copied back bit for bit, so taking a LoRA out or changing its weight
gives the picture a fresh load would. No PEFT adapter layers are added to the model: it runs as fast as
without a LoRA.

The scale of a diffusers / PEFT file: its ``.alpha`` tensors when it has them, else the ``lora_alpha``
(and ``alpha_pattern``, ``use_rslora``) its ``lora_adapter_metadata`` names, else 1 (PEFT's default alpha,
the rank). A file for another family is refused by lora.refuse_other_family before it is converted.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import torch

from desktop.core import families

from . import lora

_COMPONENTS = ("transformer", "text_encoder", "text_encoder_2")
_OLD_TEXT_NAME = re.compile(r"\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_CLIP_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}


class FlowLoraPatcher(lora.LoraPatcher):
    """The LoRAs merged into one loaded flow model (its transformer and the text encoders it has)."""

    def __init__(self, pipe, family: str):
        self._convert = type(pipe).lora_state_dict
        self._label = families.spec(family).label
        parts = {name: getattr(pipe, name, None) for name in _COMPONENTS}
        super().__init__({name: part for name, part in parts.items() if part is not None}, family)
        self._quantized = any("GGUF" in type(p).__name__ for p in pipe.transformer.parameters())
        # torchao's int8 weights (the weight_storage setting, tuning.store_int8) hold their data inside
        self._int8 = any(hasattr(p, "qdata") for p in pipe.transformer.parameters())

    def _read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        if self._quantized:
            raise lora.LoraError(f"LoRAs cannot be merged into a GGUF-quantized {self._label} model yet: take "
                                 f"{path.stem} out of the prompt, or choose the model's .safetensors file.")
        if self._int8:
            raise lora.LoraError(f"LoRAs cannot be merged into a {self._label} model whose weights are stored in "
                                 f"int8: take {path.stem} out of the prompt, or set Weight storage to Full in the "
                                 "Engine settings.")
        tensors, metadata = lora.read_lora_file(path)
        lora._refuse_other_files(path.name, tensors)  # an embedding or a whole checkpoint, said as such
        alphas: dict = {}
        try:
            takes_alphas = "return_alphas" in inspect.signature(self._convert).parameters
            converted = self._convert(dict(tensors), **({"return_alphas": True} if takes_alphas else {}))
        except Exception as error:  # noqa: BLE001 - a converter's complaint becomes one sentence
            self._refuse_sd_lora(path, tensors, metadata)
            raise lora.LoraError(f"{path.name} could not be read as a {self._label} LoRA ({_first_line(error)}). "
                                 "It was probably trained for another model type.") from error
        if isinstance(converted, tuple):
            converted, alphas = converted[0], converted[1] or {}
        named = _text_encoders_as_peft({_prefixed(key): value for key, value in converted.items()})
        named.update({_prefixed(key): torch.as_tensor(value) for key, value in alphas.items()})
        _add_metadata_alphas(named, metadata)
        return named, metadata

    def _refuse_sd_lora(self, path: Path, tensors: dict, metadata: dict) -> None:
        """An SD LoRA whose header does not say its family (lora.guess_families reads its layer names)."""
        try:
            found = lora.guess_families(lora._group(path.name, tensors), metadata) - {"other"}
        except lora.LoraError:
            return
        if found:
            other = lora._family_text(found)
            raise lora.LoraError(f"{path.name} is a LoRA for {other}; the loaded model is {self._label}. Choose "
                                 f"{lora._article(self._label)} {self._label} LoRA or {lora._article(other)} "
                                 f"{other} model.")


def _prefixed(key: str) -> str:
    """diffusers names without a component are the transformer's (as load_lora_weights takes them)."""
    return key if key.startswith(tuple(f"{c}." for c in _COMPONENTS)) else "transformer." + key


def _text_encoders_as_peft(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """kohya's CLIP layers come out of the FLUX.1 converter in diffusers' old attention-processor names
    (``self_attn.to_q_lora.down``): renamed to the CLIP layers they are (``self_attn.q_proj.lora_A``)."""
    return {_OLD_TEXT_NAME.sub(lambda m: f".{_CLIP_NAMES[m[1]]}.lora_{'A' if m[2] == 'down' else 'B'}.weight", k)
            if k.startswith("text_encoder") else k: v for k, v in named.items()}


def _add_metadata_alphas(named: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Give each layer without an ``.alpha`` the one its PEFT metadata implies (alpha / rank is its scale)."""
    try:
        config = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    except ValueError:
        return
    if not isinstance(config, dict) or not config:
        return
    for key in [k for k in named if k.endswith(".lora_A.weight")]:
        stem = key.removesuffix(".lora_A.weight")
        component, _, module = stem.partition(".")
        if stem + ".alpha" in named:
            continue
        alpha = config.get(f"{component}.lora_alpha", config.get("lora_alpha"))
        patterns = config.get(f"{component}.alpha_pattern", config.get("alpha_pattern")) or {}
        for pattern, value in patterns.items():
            if module == pattern or module.endswith("." + pattern):
                alpha = value
        if alpha is None:
            continue
        rank = named[key].shape[0]
        if config.get(f"{component}.use_rslora", config.get("use_rslora")):
            alpha = alpha * math.sqrt(rank)  # rsLoRA scales by alpha / sqrt(rank)
        named[stem + ".alpha"] = torch.tensor(float(alpha))


def _first_line(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return f"it lacks {error.args[0]}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
