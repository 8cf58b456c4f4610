"""The released flow-family models at their real sizes, built on the meta device from Sfumato's bundled configs:
no weights are allocated, so tests can count bytes and plan memory for a 12-billion-parameter model on the CPU."""

from __future__ import annotations

import json

import torch

from desktop.engine import bundled_configs


def meta_components(name: str) -> dict[str, torch.nn.Module]:
    """Component name -> module in bf16 on the meta device, for the bundled config folder `name` ("flux1-dev", ...).
    (torch.device("meta"), not init_empty_weights: that leaves tied embeddings untied, counting them twice.)"""
    import diffusers
    import transformers

    folder = bundled_configs.configs_root() / name
    index = json.loads((folder / "model_index.json").read_text())
    components = {}
    with torch.device("meta"):
        for component, (library, cls) in ((k, v) for k, v in index.items() if isinstance(v, list) and v[0]):
            if library == "diffusers" and component != "scheduler":
                model_class = getattr(diffusers, cls)
                model = model_class.from_config(model_class.load_config(folder / component))
            elif component.startswith("text_encoder"):
                model = getattr(transformers, cls)(transformers.AutoConfig.from_pretrained(folder / component))
            else:
                continue
            components[component] = model.to(torch.bfloat16)
    return components
