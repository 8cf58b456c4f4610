"""Errors a user can act on. Each message says what happened and what to do.

They live in core (no torch) so the UI and the CLI can catch them without
importing the engine.
"""

from __future__ import annotations

from pathlib import Path


class SfumatoError(Exception):
    """Base class: str(error) is a sentence to show the user as it is."""


class InvalidRequest(SfumatoError, ValueError):
    """A generation request with a bad value; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelLoadError(SfumatoError):
    """A model could not be loaded; `path` is what was asked for."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"Could not load the model {Path(str(path)).name!s}: {reason}")
        self.path = str(path)
        self.reason = reason


class OutOfMemory(SfumatoError):
    """The device ran out of memory; the message says what to lower."""


class NoPicture(SfumatoError):
    """The model ran but its output was not a number (NaN): there is no picture to show."""


class Cancelled(SfumatoError):
    """The user cancelled the run. Raised from the step callback."""

    def __init__(self, step: int = 0):
        super().__init__(f"Cancelled at step {step}.")
        self.step = step
