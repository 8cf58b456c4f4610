"""Short ways for tests to build requests from the flat field names people know.

    make_request(prompt="a cat", steps=2, init_image=image, expand=Margins(8, 0, 0, 0))
    change(request, seed=7, inpaint_area=InpaintArea.ONLY_MASKED)

Flat names are those of FLAT_FIELDS (desktop/core/request.py); "mode",
"model", "width" and "height" and whole parts ("sampling=...") pass through.
"""

from __future__ import annotations

from desktop.core.request import FLAT_FIELDS, GenerationRequest


def make_request(**fields) -> GenerationRequest:
    return change(GenerationRequest(), **fields)


def change(request: GenerationRequest, **fields) -> GenerationRequest:
    top, parts = {}, {}
    for key, value in fields.items():
        if key not in FLAT_FIELDS:
            top[key] = value
            continue
        part, name = FLAT_FIELDS[key]
        if name is None:
            top[part] = value
        else:
            parts.setdefault(part, {})[name] = value
    for part, values in parts.items():
        top[part] = (top.get(part) or getattr(request, part)).replace(**values)
    return request.replace(**top)
