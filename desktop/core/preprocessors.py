"""The ControlNet preprocessors a backend offers, as tables (pure; the preprocessors themselves are in
desktop/engine/preprocess.py and run on the backend as a PreprocessJob, desktop/core/backend.py).

`PREPROCESSORS` maps each type to its name, `A1111_MODULES` to the "Module" the infotext writes for it;
`needs_weights(type)` says whether it runs a model whose weights the person must have on disk; `describe(type)` is
what the queue and the messages call a "From picture" job.
"""

from __future__ import annotations

from desktop.core.control_layers import LABELS
from desktop.core.errors import InvalidRequest

PREPROCESSORS = {
    "canny": "Canny edges",
    "lineart": "Line art",
    "scribble": "Scribble",
    "depth": "Depth (Depth Anything V2 Small)",
    "none": "None (use as is)",
}

# The "Module" AUTOMATIC1111's ControlNet extension writes in the infotext for the preprocessor each type runs here
# (a control layer made "From picture" holds that preprocessor's output, so its type's module is written too).
A1111_MODULES = {
    "canny": "canny",
    "lineart": "lineart_standard (from white bg & black line)",
    "scribble": "scribble_xdog",
    "depth": "depth_anything_v2",
    "none": "none",
}


def check_type(type: str) -> None:
    if type not in PREPROCESSORS:
        raise InvalidRequest("control", f"there is no preprocessor {type!r}; choose one of "
                                        f"{', '.join(PREPROCESSORS)}.")


def needs_weights(type: str) -> bool:
    """True when the preprocessor runs a model whose weights the person must have on disk."""
    check_type(type)
    return type == "depth"


def a1111_module(type: str) -> str:
    """ "lineart_standard (from white bg & black line)": the infotext's "Module" of a control of this type."""
    check_type(type)
    return A1111_MODULES[type]


def describe(type: str) -> str:
    """ "Canny edges from the picture": a "From picture" job of this type, as the queue and its messages say it."""
    return f"{LABELS.get(type, type)} from the picture"
