"""The ``key=value,key=value`` text of a repeatable command-line option (--control, --reference), parsed (pure).

Each part splits at its first '=', so a Windows path (``image=C:\\x\\y.png``) keeps its drive; a part without
'=' belongs to the value before it, so a path with a comma in it (``image=C:\\My Pictures, 2024\\a.png``) stays
whole; an empty part is ignored. Keys are lower-cased and stripped; values are stripped. A key given twice is an
error.
"""

from __future__ import annotations

from desktop.core.errors import InvalidRequest


def parse_options(text: str, option: str) -> dict[str, str]:
    """``key=value,...`` -> {key: value}; raises InvalidRequest(option, one sentence) for text it cannot read."""
    found: dict[str, str] = {}
    last = None
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            if last is not None:
                found[last] += "," + part
                continue
            raise InvalidRequest(option, f"expected key=value parts separated by commas, got {text!r}; "
                                         "start with a key, such as image=PATH.")
        key, value = part.split("=", 1)
        key = key.strip().lower()
        if key in found:
            raise InvalidRequest(option, f"{key} is given twice in {text!r}; give it once.")
        found[key], last = value, key
    return {key: value.strip() for key, value in found.items()}
