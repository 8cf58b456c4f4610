"""Diffusers flow-matching models -> the original single-file key layouts people download.

The inverse of diffusers' own converters (``diffusers.loaders.single_file_utils``):
a state dict written with these keys converts back through them to exactly the
same tensors (tests/engine/test_flow_files.py proves each one).

Transformers, each without a prefix (``model.diffusion_model.`` in a full file):

* FLUX.1 (``flux1_transformer``): Black Forest Labs' layout, ``double_blocks`` with
  fused ``img_attn.qkv`` / ``txt_attn.qkv``, ``single_blocks`` with q, k, v and the
  MLP input fused in ``linear1``, ``img_in``, ``txt_in``, ``time_in``, ``vector_in``,
  ``guidance_in`` (dev) and ``final_layer``;
* SD3.5 (``sd3_transformer``): ``joint_blocks.N.{x_block,context_block}``, ``x_embedder``,
  ``t_embedder``, ``y_embedder``, ``pos_embed``, ``final_layer``;
* Z-Image (``zimage_transformer``): Tongyi's layout (``layers``, ``noise_refiner``,
  ``context_refiner`` with fused ``attention.qkv``, ``x_embedder``, ``final_layer``);
* FLUX.2 klein (``flux2_transformer``): BFL's FLUX.2 layout (shared
  ``double_stream_modulation_*`` / ``single_stream_modulation``, no biases).

Other parts:

* VAEs: ``ldm_vae`` (LDM layout; FLUX.1's and Z-Image's ``ae.safetensors`` and the
  VAE inside SD3.5 / FLUX.1 full files) and ``flux2_vae`` (the same plus the latent
  batch norm and the quant convolutions inside encoder and decoder);
* text encoders keep the Hugging Face layout (CLIP with its ``text_model.`` level).

``full_checkpoint`` puts a whole pipeline in one file as ComfyUI's checkpoints
folder holds them: FLUX.1 with ``model.diffusion_model.``, ``text_encoders.clip_l.transformer.``,
``text_encoders.t5xxl.transformer.`` and ``vae.``; SD3.5 the same with
``text_encoders.clip_g.transformer.`` and ``first_stage_model.`` for the VAE.

Nothing here depends on the tiny sizes. Every value returned is a contiguous
tensor of its own, ready for ``safetensors.torch.save_file``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

from desktop.engine.ldm_layout import _add, clip_to_hf_layout, vae_to_ldm

TRANSFORMER_PREFIX = "model.diffusion_model."
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
CLIP_G_PREFIX = "text_encoders.clip_g.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
SD3_VAE_PREFIX = "first_stage_model."
FLUX_VAE_PREFIX = "vae."


def _swap_halves(value: torch.Tensor) -> torch.Tensor:
    """diffusers' AdaLayerNormContinuous is (scale, shift); the originals are (shift, scale). Its own inverse."""
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


class _Mapper:
    """Consumes a diffusers state dict key by key; whatever is left at the end is an error."""

    def __init__(self, state: dict[str, torch.Tensor], what: str):
        self.left = dict(state)
        self.out: dict[str, torch.Tensor] = {}
        self.what = what

    def has(self, key: str) -> bool:
        return key in self.left

    def move(self, src: str, dst: str, transform=None) -> None:
        value = self.left.pop(src)
        self.put(dst, transform(value) if transform else value)

    def move_params(self, src: str, dst: str, params=("weight", "bias"), optional=False) -> None:
        for param in params:
            key = f"{src}.{param}"
            if key in self.left:
                self.move(key, f"{dst}.{'scale' if dst.endswith('_norm') else param}")
            elif not optional and param == "weight":
                raise ValueError(f"{self.what} has no weight {key!r}")

    def fuse(self, sources: list[str], dst: str, params=("weight", "bias")) -> None:
        for param in params:
            keys = [f"{s}.{param}" for s in sources]
            present = [k in self.left for k in keys]
            if not any(present):
                continue
            if not all(present):
                raise ValueError(f"{self.what} has only some of {keys}")
            self.put(f"{dst}.{param}", torch.cat([self.left.pop(k) for k in keys], dim=0))

    def put(self, key: str, value: torch.Tensor) -> None:
        if key in self.out:
            raise ValueError(f"two weights of {self.what} map to {key}")
        self.out[key] = value.detach().contiguous().clone()

    def done(self) -> dict[str, torch.Tensor]:
        if self.left:
            raise ValueError(f"{self.what} weights with no original counterpart: {sorted(self.left)[:5]}")
        return self.out


def _indices(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    return sorted({int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})


# ---------------------------------------------------------------------------- FLUX.1


def flux1_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``FluxTransformer2DModel`` -> BFL's FLUX.1 keys (dev, schnell, Fill, Kontext alike)."""
    m = _Mapper(state, "the FLUX.1 transformer")
    for src, dst in (
        ("time_text_embed.timestep_embedder", "time_in"),
        ("time_text_embed.text_embedder", "vector_in"),
        ("time_text_embed.guidance_embedder", "guidance_in"),
    ):
        if m.has(f"{src}.linear_1.weight"):
            m.move_params(f"{src}.linear_1", f"{dst}.in_layer")
            m.move_params(f"{src}.linear_2", f"{dst}.out_layer")
    m.move_params("context_embedder", "txt_in")
    m.move_params("x_embedder", "img_in")

    for i in _indices(state, "transformer_blocks."):
        src, dst = f"transformer_blocks.{i}", f"double_blocks.{i}"
        m.move_params(f"{src}.norm1.linear", f"{dst}.img_mod.lin")
        m.move_params(f"{src}.norm1_context.linear", f"{dst}.txt_mod.lin")
        m.fuse([f"{src}.attn.to_{x}" for x in "qkv"], f"{dst}.img_attn.qkv")
        m.fuse([f"{src}.attn.add_{x}_proj" for x in "qkv"], f"{dst}.txt_attn.qkv")
        m.move_params(f"{src}.attn.norm_q", f"{dst}.img_attn.norm.query_norm", ("weight",))
        m.move_params(f"{src}.attn.norm_k", f"{dst}.img_attn.norm.key_norm", ("weight",))
        m.move_params(f"{src}.attn.norm_added_q", f"{dst}.txt_attn.norm.query_norm", ("weight",))
        m.move_params(f"{src}.attn.norm_added_k", f"{dst}.txt_attn.norm.key_norm", ("weight",))
        m.move_params(f"{src}.ff.net.0.proj", f"{dst}.img_mlp.0")
        m.move_params(f"{src}.ff.net.2", f"{dst}.img_mlp.2")
        m.move_params(f"{src}.ff_context.net.0.proj", f"{dst}.txt_mlp.0")
        m.move_params(f"{src}.ff_context.net.2", f"{dst}.txt_mlp.2")
        m.move_params(f"{src}.attn.to_out.0", f"{dst}.img_attn.proj")
        m.move_params(f"{src}.attn.to_add_out", f"{dst}.txt_attn.proj")

    for i in _indices(state, "single_transformer_blocks."):
        src, dst = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        m.move_params(f"{src}.norm.linear", f"{dst}.modulation.lin")
        m.fuse([f"{src}.attn.to_q", f"{src}.attn.to_k", f"{src}.attn.to_v", f"{src}.proj_mlp"], f"{dst}.linear1")
        m.move_params(f"{src}.attn.norm_q", f"{dst}.norm.query_norm", ("weight",))
        m.move_params(f"{src}.attn.norm_k", f"{dst}.norm.key_norm", ("weight",))
        m.move_params(f"{src}.proj_out", f"{dst}.linear2")

    m.move_params("proj_out", "final_layer.linear")
    for param in ("weight", "bias"):
        if m.has(f"norm_out.linear.{param}"):
            m.move(f"norm_out.linear.{param}", f"final_layer.adaLN_modulation.1.{param}", _swap_halves)
    return m.done()


# ---------------------------------------------------------------------------- SD3.5


def sd3_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``SD3Transformer2DModel`` -> Stability's MMDiT keys (SD3 medium, SD3.5 medium and large)."""
    m = _Mapper(state, "the SD3 transformer")
    m.move("pos_embed.pos_embed", "pos_embed")
    m.move_params("pos_embed.proj", "x_embedder.proj")
    m.move_params("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0")
    m.move_params("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2")
    m.move_params("context_embedder", "context_embedder")
    m.move_params("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0")
    m.move_params("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2")

    blocks = _indices(state, "transformer_blocks.")
    for i in blocks:
        src, x, c = f"transformer_blocks.{i}", f"joint_blocks.{i}.x_block", f"joint_blocks.{i}.context_block"
        last = i == blocks[-1]  # its context block only feeds the image tokens: no output projection, no MLP
        m.fuse([f"{src}.attn.to_{q}" for q in "qkv"], f"{x}.attn.qkv")
        m.fuse([f"{src}.attn.add_{q}_proj" for q in "qkv"], f"{c}.attn.qkv")
        for name, dst in (
            ("attn.norm_q", f"{x}.attn.ln_q"),
            ("attn.norm_k", f"{x}.attn.ln_k"),
            ("attn.norm_added_q", f"{c}.attn.ln_q"),
            ("attn.norm_added_k", f"{c}.attn.ln_k"),
            ("attn2.norm_q", f"{x}.attn2.ln_q"),
            ("attn2.norm_k", f"{x}.attn2.ln_k"),
        ):
            if m.has(f"{src}.{name}.weight"):
                m.move(f"{src}.{name}.weight", f"{dst}.weight")
        m.move_params(f"{src}.attn.to_out.0", f"{x}.attn.proj")
        m.move_params(f"{src}.attn.to_add_out", f"{c}.attn.proj", optional=True)
        if m.has(f"{src}.attn2.to_q.weight"):
            m.fuse([f"{src}.attn2.to_{q}" for q in "qkv"], f"{x}.attn2.qkv")
            m.move_params(f"{src}.attn2.to_out.0", f"{x}.attn2.proj")
        m.move_params(f"{src}.norm1.linear", f"{x}.adaLN_modulation.1")
        for param in ("weight", "bias"):
            m.move(
                f"{src}.norm1_context.linear.{param}",
                f"{c}.adaLN_modulation.1.{param}",
                _swap_halves if last else None,
            )
        m.move_params(f"{src}.ff.net.0.proj", f"{x}.mlp.fc1")
        m.move_params(f"{src}.ff.net.2", f"{x}.mlp.fc2")
        m.move_params(f"{src}.ff_context.net.0.proj", f"{c}.mlp.fc1", optional=True)
        m.move_params(f"{src}.ff_context.net.2", f"{c}.mlp.fc2", optional=True)

    m.move_params("proj_out", "final_layer.linear")
    for param in ("weight", "bias"):
        m.move(f"norm_out.linear.{param}", f"final_layer.adaLN_modulation.1.{param}", _swap_halves)
    return m.done()


# ---------------------------------------------------------------------------- Z-Image

_ZIMAGE_RENAMES = (
    # diffusers keeps one embedder / final layer per patch size ("2-1": 2x2 pixels, 1 frame)
    ("all_x_embedder.2-1.", "x_embedder."),
    ("all_final_layer.2-1.", "final_layer."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_q.", ".attention.q_norm."),
    (".attention.norm_k.", ".attention.k_norm."),
)


def zimage_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ZImageTransformer2DModel`` -> Tongyi's Z-Image keys (q, k and v fused in ``attention.qkv``)."""
    m = _Mapper(state, "the Z-Image transformer")
    for key in sorted(state):
        if key.endswith(".attention.to_q.weight"):
            base = key[: -len(".to_q.weight")]
            m.fuse([f"{base}.to_{x}" for x in "qkv"], f"{base}.qkv", ("weight",))
    for key in sorted(m.left):
        new = key
        for old, replacement in _ZIMAGE_RENAMES:
            new = new.replace(old, replacement)
        m.move(key, new)
    return m.done()


# ---------------------------------------------------------------------------- FLUX.2

_FLUX2_TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
}
_FLUX2_DOUBLE = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.to_out.0": "img_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "attn.to_add_out": "txt_attn.proj",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj": "linear1",
    "attn.to_out": "linear2",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
}


def flux2_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``Flux2Transformer2DModel`` -> BFL's FLUX.2 keys (klein 4B / 9B, base and distilled)."""
    m = _Mapper(state, "the FLUX.2 transformer")
    for src, dst in _FLUX2_TOP.items():
        m.move_params(src, dst, optional=True)
    if m.has("norm_out.linear.weight"):
        m.move("norm_out.linear.weight", "final_layer.adaLN_modulation.1.weight", _swap_halves)
    for i in _indices(state, "transformer_blocks."):
        src, dst = f"transformer_blocks.{i}", f"double_blocks.{i}"
        m.fuse([f"{src}.attn.to_{x}" for x in "qkv"], f"{dst}.img_attn.qkv")
        m.fuse([f"{src}.attn.add_{x}_proj" for x in "qkv"], f"{dst}.txt_attn.qkv")
        for a, b in _FLUX2_DOUBLE.items():
            m.move_params(f"{src}.{a}", f"{dst}.{b}", optional=True)
    for i in _indices(state, "single_transformer_blocks."):
        src, dst = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for a, b in _FLUX2_SINGLE.items():
            m.move_params(f"{src}.{a}", f"{dst}.{b}", optional=True)
    return m.done()


# ---------------------------------------------------------------------------- VAEs and text encoders


def ldm_vae(vae) -> dict[str, torch.Tensor]:
    """An ``AutoencoderKL`` in the LDM layout, no prefix (FLUX.1's / Z-Image's ``ae.safetensors``)."""
    state = vae_to_ldm(vae.state_dict(), len(vae.config.up_block_types))
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def flux2_vae(vae) -> dict[str, torch.Tensor]:
    """An ``AutoencoderKLFlux2`` as BFL ships it: the LDM layout with ``encoder.quant_conv``,
    ``decoder.post_quant_conv`` and the latent statistics ``bn.running_mean`` / ``bn.running_var``."""
    state = dict(vae.state_dict())
    extra = {}
    for src, dst in (("quant_conv", "encoder.quant_conv"), ("post_quant_conv", "decoder.post_quant_conv")):
        for param in ("weight", "bias"):
            if f"{src}.{param}" in state:
                extra[f"{dst}.{param}"] = state.pop(f"{src}.{param}")
    for name in ("running_mean", "running_var"):
        extra[f"bn.{name}"] = state.pop(f"bn.{name}")
    state.pop("bn.num_batches_tracked", None)
    out = vae_to_ldm(state, len(vae.config.up_block_types))
    out.update(extra)
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def clip_text(encoder) -> dict[str, torch.Tensor]:
    """A CLIP text encoder as ComfyUI's ``clip_l.safetensors`` holds it (``text_model.*``)."""
    return {k: v.detach().contiguous().clone() for k, v in clip_to_hf_layout(encoder.state_dict()).items()}


def plain_text(encoder) -> dict[str, torch.Tensor]:
    """A T5 / Qwen text encoder in its Hugging Face keys, tied weights as copies under each name
    (diffusers' T5 loader reads ``encoder.embed_tokens.weight`` as well as ``shared.weight``)."""
    return {key: value.detach().contiguous().clone() for key, value in encoder.state_dict().items()}


def qwen_text(encoder) -> dict[str, torch.Tensor]:
    """A Qwen3 text encoder as ComfyUI's ``qwen_3_*.safetensors`` holds it: ``model.*`` keys, no tied lm_head."""
    out = {}
    for key, value in plain_text(encoder).items():
        if key.startswith("lm_head."):
            continue
        out[key if key.startswith("model.") else "model." + key] = value
    return out


def full_checkpoint(pipe, family: str) -> dict[str, torch.Tensor]:
    """A whole FLUX.1 (``family="flux1"``) or SD3.5 (``"sd3"``) pipeline as one ComfyUI checkpoint."""
    out: dict[str, torch.Tensor] = {}
    if family == "flux1":
        _add(out, TRANSFORMER_PREFIX, flux1_transformer(pipe.transformer.state_dict()))
        _add(out, CLIP_L_PREFIX, clip_text(pipe.text_encoder))
        _add(out, T5_PREFIX, plain_text(pipe.text_encoder_2))
        _add(out, FLUX_VAE_PREFIX, ldm_vae(pipe.vae))
    elif family == "sd3":
        _add(out, TRANSFORMER_PREFIX, sd3_transformer(pipe.transformer.state_dict()))
        _add(out, CLIP_L_PREFIX, clip_text(pipe.text_encoder))
        _add(out, CLIP_G_PREFIX, clip_text(pipe.text_encoder_2))
        if getattr(pipe, "text_encoder_3", None) is not None:
            _add(out, T5_PREFIX, plain_text(pipe.text_encoder_3))
        _add(out, SD3_VAE_PREFIX, ldm_vae(pipe.vae))
    else:
        raise ValueError(f"no full single-file layout for {family!r}; expected flux1 or sd3")
    return out


TRANSFORMERS = {
    "flux1": flux1_transformer,
    "sd3": sd3_transformer,
    "zimage": zimage_transformer,
    "flux2-klein": flux2_transformer,
}


# ---------------------------------------------------------------------------- the tiny models' files

TEXT_ENCODER_FILE = "qwen_3_tiny.safetensors"
VAE_FILES = {"zimage": "ae.safetensors", "flux2-klein": "flux2-vae.safetensors"}


def comfy_tree(model) -> Path:
    """``root/tiny-<kind>.comfy``: diffusion_models/, text_encoders/ and vae/ as in ComfyUI's models folder
    (tiny.py installs and stamps it as one of the kind's extra folders)."""
    from desktop.engine import tiny

    return model.folder.with_name(model.folder.name + tiny.EXTRA_SUFFIXES[0])


def write_files(model, pipe) -> None:
    """Write the single files of the tiny flow model `model` (a tiny.TinyModel) from its pipeline `pipe`.

    FLUX.1 and SD3.5: ``model.checkpoint`` is a full file (``full_checkpoint``). Z-Image and FLUX.2 klein:
    ``model.checkpoint`` is the transformer alone, and ``comfy_tree(model)`` holds the same file in
    ``diffusion_models/`` (with its sidecar ``.config`` folder), the Qwen3 encoder in
    ``text_encoders/qwen_3_tiny.safetensors`` and the VAE in ``vae/ae.safetensors`` (Z-Image, FLUX.1's VAE) or
    ``vae/flux2-vae.safetensors`` (FLUX.2), as people download them.
    """
    from safetensors.torch import save_file

    meta = {"format": "pt"}
    if model.kind in ("flux1", "sd3"):
        save_file(full_checkpoint(pipe, model.kind), str(model.checkpoint), metadata=meta)
        return
    save_file(TRANSFORMERS[model.kind](pipe.transformer.state_dict()), str(model.checkpoint), metadata=meta)
    tree = comfy_tree(model)
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (tree / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model.checkpoint, tree / "diffusion_models" / model.checkpoint.name)
    shutil.copytree(model.config, tree / "diffusion_models" / model.config.name)
    save_file(qwen_text(pipe.text_encoder), str(tree / "text_encoders" / TEXT_ENCODER_FILE), metadata=meta)
    vae = flux2_vae(pipe.vae) if model.kind == "flux2-klein" else ldm_vae(pipe.vae)
    save_file(vae, str(tree / "vae" / VAE_FILES[model.kind]), metadata=meta)
