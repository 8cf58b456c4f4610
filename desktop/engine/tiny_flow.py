"""Tiny random-weight flow-matching models (Z-Image, FLUX.2 klein, FLUX.1, SD3.5), built on disk offline.

Placeholder: desktop/engine/tiny.py calls write_model for the kinds in tiny.FLOW_KINDS.
"""

from __future__ import annotations


def write_model(model) -> None:
    """Write `model` (a tiny.TinyModel of a flow kind): its diffusers folder, single file and sidecar configs."""
    raise NotImplementedError(f"the tiny {model.kind} model is not built yet")
