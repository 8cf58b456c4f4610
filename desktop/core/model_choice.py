"""Which model the window selects after a scan of the model folders.

On start-up a real model beats the built-in demo; otherwise the person's
choice stays, unless its file is gone, in which case the first model found
(or the demo) takes its place and the window says so.
"""

from __future__ import annotations

DEMO = "demo"


def after_scan(found: list[str], current: str, *, first_scan: bool, loaded: str | None) -> tuple[str, bool]:
    """(the model to select, whether `current`, the loaded model, went missing). `found` is in list order."""
    if current == DEMO:
        return (found[0] if found and first_scan else DEMO), False
    if current in found:
        return current, False
    return (found[0] if found else DEMO), current == loaded
