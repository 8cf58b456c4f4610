"""Single-file checkpoints of the flow-matching families (placeholder; see issue 20).

A full file (transformer, text encoders and VAE in one, as ComfyUI's checkpoints folder holds them) or a
transformer-only file with its text encoders and VAE as separate files (ComfyUI's diffusion_models,
text_encoders and vae folders), in safetensors (also fp8) or GGUF.
"""

from __future__ import annotations


def load_single_file(path, info, dtype):
    """The txt2img (or, for an inpainting model, inpaint) pipeline of the flow-family file `path` (ModelInfo
    `info`), loaded offline in `dtype`. Raises ModelLoadError with a sentence when it cannot be loaded."""
    from desktop.core.errors import ModelLoadError

    raise ModelLoadError(path, "single-file models of this family can't be loaded yet: use its diffusers folder.")
